"""A local stand-in of the Hugging Face Hub, for rehearsing the real study offline.

Two halves:

- :func:`build_standin_repo` writes a model repo with several revisions into a
  git-like store: ``<root>/<repo_id>/refs/heads/<branch>`` holds a commit SHA,
  ``commits/<sha>.json`` that commit's file list (size, git blob id, LFS sha256),
  ``objects/<sha256>`` the file contents. Each revision is a tiny random
  ``OlmoeForCausalLM`` (its own init seed), saved in bfloat16 as sharded
  safetensors with an index, plus one byte-level BPE tokenizer trained here and
  files the fetch must skip (README.md, .gitattributes).
- :class:`StandinHub` serves that store on 127.0.0.1 (stdlib ``http.server``,
  one thread per connection) with the endpoints ``huggingface_hub`` uses; point
  the client at it with ``HF_ENDPOINT=http://127.0.0.1:<port>``:

  - ``GET /api/models/<repo>[/revision/<rev>]`` (``?blobs=true`` adds size, blobId, lfs to siblings);
  - ``GET /api/models/<repo>/refs``; ``GET /api/models/<repo>/tree/<rev>[/<path>]``;
  - ``POST /api/models/<repo>/paths-info/<rev>``;
  - ``HEAD``/``GET /<repo>/resolve/<rev>/<file>`` with ``X-Repo-Commit``, ``ETag``
    (sha256 for LFS files, git blob id otherwise), ``X-Linked-Etag``/``X-Linked-Size``
    for LFS files, ``Content-Length`` and ``Range`` requests (206) for resume;
  - hub error codes (``X-Error-Code``: RepoNotFound, RevisionNotFound, EntryNotFound),
    which the client turns into its own exception types.

  Two fault modes: ``tamper`` serves the named files with one byte flipped (the
  listed hashes unchanged), ``drop_after`` cuts the first GET of every LFS file
  after that many bytes (the client then resumes it with a Range request).

What it cannot stand in for: authentication and gated repos, the CDN / Xet
redirects the real hub answers LFS downloads with, rate limits and real network
failures (DNS, TLS, proxies, stalls).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import re
import tempfile
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from huggingface_hub.utils.sha import git_hash

from grokpath.io import write_json, write_text

log = logging.getLogger(__name__)

STANDIN_REPO_ID = "allenai/OLMoE-1B-7B-0924"
# Named like the real branches (step{S}-tokens{T}B); 3 of the paper's 10.
STANDIN_REVISIONS = ("step5000-tokens20B", "step125000-tokens524B", "step245000-tokens1027B")
# Tiny OLMoE: same architecture class and router as the real one, 8 experts, top 2.
STANDIN_MODEL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "max_position_embeddings": 4096,
}
VOCAB_MULTIPLE = 128  # OLMoE pads its embedding rows to a multiple of 128 (config.json: vocab_size 50304)
LFS_PATTERNS = ("*.safetensors",)  # what the real repo's .gitattributes puts in LFS
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SPECIAL_TOKENS = {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "pad_token": "<|padding|>"}
# A few kB of mixed-domain text: the BPE merges are learnt from it; byte-level
# encoding covers every other string.
TOKENIZER_TEXT = """\
Let $x$ be a real number such that $x^2 - 5x + 6 = 0$. Then $(x-2)(x-3) = 0$, so $x = 2$ or $x = 3$.
The sum of the first $n$ positive integers is $\\frac{n(n+1)}{2}$; for $n = 100$ it is $5050$.
If $f(x) = 3x + 7$, then $f^{-1}(x) = \\frac{x - 7}{3}$ and $f(f^{-1}(x)) = x$.
The probability of rolling two sixes with two fair dice is $\\frac{1}{36}$. \\boxed{\\frac{1}{36}}
A circle of radius $r$ has area $\\pi r^2$ and circumference $2\\pi r$. Hence the answer is \\boxed{12\\pi}.
def add(a, b):
    \"\"\"Return the sum of a and b.\"\"\"
    return a + b

def is_prime(n: int) -> bool:
    if n < 2:
        return False
    for k in range(2, int(n ** 0.5) + 1):
        if n % k == 0:
            return False
    return True

class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self.items.pop()

assert add(2, 3) == 5 and is_prime(7) and not is_prime(9)
for i, word in enumerate(["alpha", "beta", "gamma"]):
    print(f"{i}: {word}")
Question: Where would you put a plate after washing it? Answer: cupboard.
Question: What do people use to cut paper? Choices: (A) scissors (B) spoon (C) pillow. Answer: A
The old man walked slowly along the river, remembering the summer he had spent there as a boy.
She opened the book and read aloud, and the children listened until the candle burned low.
Rain fell on the village all night; by morning the road to the market had turned to mud.
Organic chemistry is the study of carbon compounds. Alkanes such as methane, ethane and propane
are saturated hydrocarbons; alkenes contain a carbon-carbon double bond. Benzene, C6H6, is aromatic.
An SN2 reaction proceeds with inversion of configuration at the carbon atom attacked by the nucleophile.
The pH of a 0.01 M solution of hydrochloric acid is 2. Ethanol, CH3CH2OH, is oxidised to acetic acid.
Which of the following is a nucleophile? (A) H2O (B) BF3 (C) AlCl3 (D) CH4 Answer: (A)
Esters form when a carboxylic acid reacts with an alcohol; the reaction releases one molecule of water.
"""


# ---------------------------------------------------------------- the repo store
def _is_lfs(path: str) -> bool:
    return any(Path(path).match(pattern) for pattern in LFS_PATTERNS)


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _file_entry(path: str, data: bytes) -> dict:
    """One file of a commit, as the hub describes it (size, git blob id, LFS sha256)."""
    sha256 = hashlib.sha256(data).hexdigest()
    entry = {"path": path, "size": len(data), "object": sha256, "lfs": None}
    if _is_lfs(path):
        pointer = _lfs_pointer(sha256, len(data))
        entry["blob_id"] = git_hash(pointer)
        entry["lfs"] = {"sha256": sha256, "size": len(data), "pointer_size": len(pointer)}
    else:
        entry["blob_id"] = git_hash(data)
    return entry


def _commit_sha(revision: str, files: list[dict], parent: str | None) -> str:
    lines = [f"parent {parent or ''}", f"branch {revision}"] + [f"{f['path']} {f['blob_id']}" for f in files]
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()


def add_revision(root: Path | str, repo_id: str, revision: str, source_dir: Path | str) -> str:
    """Commit every file of ``source_dir`` as branch ``revision`` of ``repo_id``; return the commit SHA."""
    repo = Path(root) / repo_id
    (repo / "objects").mkdir(parents=True, exist_ok=True)
    files = []
    for path in sorted(p for p in Path(source_dir).rglob("*") if p.is_file()):
        rel = path.relative_to(source_dir).as_posix()
        data = path.read_bytes()
        entry = _file_entry(rel, data)
        obj = repo / "objects" / entry["object"]
        if not obj.exists():
            obj.write_bytes(data)
        files.append(entry)
    head = repo / "refs" / "heads" / revision
    parent = head.read_text().strip() if head.is_file() else None
    sha = _commit_sha(revision, files, parent)
    write_json({"revision": revision, "parent": parent, "files": files}, repo / "commits" / f"{sha}.json")
    write_text(sha + "\n", head)
    return sha


def build_tokenizer():
    """Byte-level BPE trained on :data:`TOKENIZER_TEXT`, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=sorted(set(SPECIAL_TOKENS.values())),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(TOKENIZER_TEXT.splitlines(keepends=True), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, model_max_length=STANDIN_MODEL["max_position_embeddings"], **SPECIAL_TOKENS
    )


def olmo_tokenizer(tokenizer_json: Path | str):
    """The real OLMo tokenizer (``tokenizer.json`` of OLMoE-1B-7B, 50,280 tokens) as a ``PreTrainedTokenizerFast``."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json), model_max_length=STANDIN_MODEL["max_position_embeddings"], **SPECIAL_TOKENS
    )


def build_standin_repo(
    root: Path,
    repo_id: str = STANDIN_REPO_ID,
    revisions: list[str] | None = None,
    seed: int = 0,
    max_shard_size: str = "150KB",
    tokenizer_json: Path | None = None,
) -> dict[str, str]:
    """Write a stand-in hub store at ``root``: one random tiny OLMoE per revision; returns {revision: commit SHA}.

    ``revisions`` default to three named like the real study's. Revision ``i`` is initialised
    with seed ``seed + i``; ``main`` points at the last revision's commit. Weights are bfloat16
    (as the real checkpoints), sharded so the repo has a ``model.safetensors.index.json``.
    ``tokenizer_json``: the real OLMo tokenizer (``grokpath real-rows``); the embedding then has
    OLMoE's padded vocabulary (the token count rounded up to a multiple of 128: 50,280 -> 50,304).
    Without it, a small byte-level BPE trained here.
    """
    import torch
    from transformers import OlmoeConfig, OlmoeForCausalLM

    revisions = list(revisions or STANDIN_REVISIONS)
    tokenizer = olmo_tokenizer(tokenizer_json) if tokenizer_json else build_tokenizer()
    vocab_size = -(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE if tokenizer_json else len(tokenizer)
    config = OlmoeConfig(
        vocab_size=vocab_size,
        norm_topk_prob=False,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **STANDIN_MODEL,
    )
    shas = {}
    for i, revision in enumerate(revisions):
        torch.manual_seed(seed + i)
        model = OlmoeForCausalLM(config).to(torch.bfloat16)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, max_shard_size=max_shard_size)
            tokenizer.save_pretrained(tmp)
            Path(tmp, "README.md").write_text(f"# Stand-in of {repo_id} at {revision}\n\nA tiny random OLMoE.\n")
            Path(tmp, ".gitattributes").write_text("".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS))
            shas[revision] = add_revision(root, repo_id, revision, tmp)
        log.info("stand-in hub: %s@%s is commit %s", repo_id, revision, shas[revision])
    repo = Path(root) / repo_id
    write_text(shas[revisions[-1]] + "\n", repo / "refs" / "heads" / "main")
    return shas


# ---------------------------------------------------------------- the server
def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


class _NotFound(Exception):
    def __init__(self, code: str, message: str, commit: str | None = None):
        super().__init__(message)
        self.code, self.commit = code, commit


class HubStore:
    """Read side of the store written by :func:`build_standin_repo`."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def repo(self, repo_id: str) -> Path:
        repo = self.root / repo_id
        if not (repo / "refs" / "heads").is_dir():
            raise _NotFound("RepoNotFound", f"Repository {repo_id} not found")
        return repo

    def resolve(self, repo_id: str, revision: str) -> tuple[str, dict]:
        """(commit SHA, commit record) of a branch name or commit SHA."""
        repo = self.repo(repo_id)
        if COMMIT_RE.match(revision) and (repo / "commits" / f"{revision}.json").is_file():
            sha = revision
        else:
            head = repo / "refs" / "heads" / revision
            if "/" in revision or not head.is_file():
                raise _NotFound("RevisionNotFound", f"Invalid rev id: {revision}")
            sha = head.read_text().strip()
        with open(repo / "commits" / f"{sha}.json") as fh:
            return sha, json.load(fh)

    def branches(self, repo_id: str) -> list[tuple[str, str]]:
        heads = self.repo(repo_id) / "refs" / "heads"
        return [(p.name, p.read_text().strip()) for p in sorted(heads.iterdir()) if p.is_file()]

    def object_path(self, repo_id: str, entry: dict) -> Path:
        return self.root / repo_id / "objects" / entry["object"]


def _sibling(entry: dict, blobs: bool) -> dict:
    out = {"rfilename": entry["path"]}
    if blobs:
        out.update(size=entry["size"], blobId=entry["blob_id"])
        if entry["lfs"]:
            lfs = entry["lfs"]
            out["lfs"] = {"sha256": lfs["sha256"], "size": lfs["size"], "pointerSize": lfs["pointer_size"]}
    return out


def _tree_entry(entry: dict, sha: str, expand: bool) -> dict:
    out = {"type": "file", "oid": entry["blob_id"], "size": entry["size"], "path": entry["path"]}
    if entry["lfs"]:
        lfs = entry["lfs"]
        out["lfs"] = {"oid": lfs["sha256"], "size": lfs["size"], "pointerSize": lfs["pointer_size"]}
    if expand:
        out["lastCommit"] = {"id": sha, "title": "stand-in commit", "date": _iso(0)}
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        log.info("%s " + format, self.client_address[0], *args)

    # ---- plumbing
    def _record(self) -> None:
        with self.server.lock:
            self.server.requests.append({"method": self.command, "path": self.path, "range": self.headers.get("Range")})

    def _send_json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, err: _NotFound) -> None:
        headers = {"X-Error-Code": err.code, "X-Error-Message": str(err)}
        if err.commit:
            headers["X-Repo-Commit"] = err.commit
        self._send_json({"error": str(err)}, status=404, headers=headers)

    def _route(self):
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        segments = [unquote(s) for s in parts.path.split("/")[1:]]
        return segments, query

    def _dispatch(self) -> None:
        self._record()
        segments, query = self._route()
        store = self.server.store
        try:
            if segments[:2] == ["api", "models"] and len(segments) >= 4:
                repo_id, rest = "/".join(segments[2:4]), segments[4:]
                if not rest:
                    return self._model_info(repo_id, "main", query)
                if rest[0] == "revision" and len(rest) == 2:
                    return self._model_info(repo_id, rest[1], query)
                if rest == ["refs"]:
                    branches = [
                        {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha} for name, sha in store.branches(repo_id)
                    ]
                    return self._send_json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})
                if rest[0] == "tree" and len(rest) >= 2:
                    sha, commit = store.resolve(repo_id, rest[1])
                    prefix = "/".join(rest[2:])
                    expand = query.get("expand", ["False"])[0].lower() == "true"
                    files = [f for f in commit["files"] if not prefix or f["path"].startswith(prefix.rstrip("/") + "/")]
                    return self._send_json([_tree_entry(f, sha, expand) for f in files])
                if rest[0] == "paths-info" and len(rest) == 2 and self.command == "POST":
                    return self._paths_info(repo_id, rest[1])
            if len(segments) >= 5 and segments[2] == "resolve":
                return self._resolve("/".join(segments[:2]), segments[3], "/".join(segments[4:]))
        except _NotFound as err:
            return self._send_error(err)
        self._send_json({"error": f"stand-in hub does not serve {self.command} {self.path}"}, status=404)

    def do_GET(self):  # noqa: N802 - http.server's names
        self._dispatch()

    def do_HEAD(self):  # noqa: N802
        self._dispatch()

    def do_POST(self):  # noqa: N802
        self._dispatch()

    # ---- endpoints
    def _model_info(self, repo_id: str, revision: str, query: dict) -> None:
        sha, commit = self.server.store.resolve(repo_id, revision)
        blobs = query.get("blobs", ["false"])[0].lower() in ("true", "1")
        self._send_json(
            {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "sha": sha,
                "private": False,
                "gated": False,
                "disabled": False,
                "library_name": "transformers",
                "tags": ["transformers", "safetensors", "olmoe", "stand-in"],
                "lastModified": _iso(0),
                "createdAt": _iso(0),
                "siblings": [_sibling(f, blobs) for f in commit["files"]],
            }
        )

    def _paths_info(self, repo_id: str, revision: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        wanted = set(form.get("paths", []))
        sha, commit = self.server.store.resolve(repo_id, revision)
        self._send_json([_tree_entry(f, sha, False) for f in commit["files"] if f["path"] in wanted])

    def _resolve(self, repo_id: str, revision: str, filename: str) -> None:
        store = self.server.store
        sha, commit = store.resolve(repo_id, revision)
        entry = next((f for f in commit["files"] if f["path"] == filename), None)
        if entry is None:
            raise _NotFound("EntryNotFound", f"{filename} does not exist on {revision}", commit=sha)
        data = store.object_path(repo_id, entry).read_bytes()
        if filename in self.server.tamper:  # same size, one byte different: only a hash check notices
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        size = len(data)
        etag = entry["lfs"]["sha256"] if entry["lfs"] else entry["blob_id"]
        start, end = 0, size - 1
        status = 200
        wanted = self.headers.get("Range")
        if wanted:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if not match or int(match.group(1)) >= size:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", sha)
        self.send_header("Last-Modified", email.utils.formatdate(0, usegmt=True))
        if entry["lfs"]:
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(size))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        body = data[start : end + 1]
        drop = self.server.drop_after
        key = (sha, filename)
        if drop is not None and entry["lfs"] and status == 200 and drop < len(body):
            with self.server.lock:
                first = key not in self.server.dropped
                self.server.dropped.add(key)
            if first:  # send part of the body, then cut the connection
                self.wfile.write(body[:drop])
                self.wfile.flush()
                self.close_connection = True
                return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, store: HubStore, tamper: set[str], drop_after: int | None):
        super().__init__(address, _Handler)
        self.store, self.tamper, self.drop_after = store, tamper, drop_after
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.dropped: set[tuple[str, str]] = set()


class StandinHub:
    """The stand-in hub on ``host:port`` (port 0: a free one), serving ``root``.

    Use as a context manager (serves in a background thread) or call
    :meth:`serve_forever`. ``requests`` lists every request seen (method, path, range).
    """

    def __init__(
        self,
        root: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        tamper: tuple[str, ...] | list[str] = (),
        drop_after: int | None = None,
    ):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"stand-in hub: host '{host}' is not a loopback address")
        if not Path(root).is_dir():
            raise FileNotFoundError(f"stand-in hub: store '{root}' does not exist (build it with `grokpath standin-hub build`)")
        self.server = _Server((host, port), HubStore(root), set(tamper), drop_after)
        self.host, self.port = host, self.server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[dict]:
        with self.server.lock:
            return list(self.server.requests)

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def start(self) -> StandinHub:
        self._thread = threading.Thread(target=self.server.serve_forever, name="standin-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> StandinHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(
    root: Path,
    port: int = 0,
    port_file: Path | None = None,
    tamper: list[str] | None = None,
    drop_after: int | None = None,
) -> None:
    """Serve a stand-in store (standin-hub build) on 127.0.0.1 until killed.

    ``port`` 0 takes a free one; ``port_file`` gets the bound port once listening. Faults for
    rehearsals: ``tamper`` serves these files with one byte flipped (the hash check), and
    ``drop_after`` cuts the first GET of each LFS file after that many bytes (resume).
    """
    hub = StandinHub(root, port=port, tamper=tamper or (), drop_after=drop_after)
    if port_file is not None:
        write_text(f"{hub.port}\n", port_file)
    log.info("stand-in hub serving %s at %s", root, hub.url)
    try:
        hub.serve_forever()
    finally:
        hub.server.server_close()
