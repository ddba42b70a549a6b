"""Checkpoint sources (mini/local/hf) and loading; the hub fetch runs against the stand-in hub.

The stand-in (grokpath.standin.hub) is a real HTTP server on 127.0.0.1 speaking the hub's
endpoints, so these tests drive huggingface_hub's own code: SHA resolution, the tree listing,
HEAD/GET per file, resume with Range requests, and grokpath's hash check on top.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from conftest import tiny_olmoe
from huggingface_hub import HfApi

from grokpath.checkpoints import (
    CheckpointError,
    checkpoint_dir,
    checkpoint_names,
    fetch_hf_checkpoint,
    load_model,
    load_tokenizer,
    parse_step,
    read_provenance,
)
from grokpath.config import load_schema, validate
from grokpath.standin.hub import StandinHub, build_standin_repo

REPO_ID = "allenai/OLMoE-1B-7B-0924"
REVISIONS = ("step5000-tokens20B", "step125000-tokens524B")
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
FETCHED = sorted(
    ["config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", *SHARDS]
)


def save_tiny_model(directory):
    model = tiny_olmoe(
        vocab_size=16,
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16,
    )
    model.save_pretrained(directory)


def hf_config(**hf):
    revisions = hf.pop("revisions", list(REVISIONS))
    return validate({"checkpoints": {"source": "hf", "hf": {"revisions": revisions, **hf}}}, load_schema())["checkpoints"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    shas = build_standin_repo(root, REPO_ID, REVISIONS)
    return {"root": root, "shas": shas}


@pytest.fixture
def serve(store, monkeypatch):
    """Start a stand-in hub on a free loopback port and point the client at it."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the hub here is loopback
    hubs = []

    def start(**faults):
        hub = StandinHub(store["root"], **faults).start()
        hubs.append(hub)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        return hub

    yield start
    for hub in hubs:
        hub.stop()


def resolve_gets(hub):
    return [r for r in hub.requests if r["method"] == "GET" and "/resolve/" in r["path"]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- the fetch
def test_fetch_resolves_the_sha_once_downloads_that_sha_and_verifies(store, serve, tmp_path):
    hub = serve()
    rev = "step125000-tokens524B"
    out = fetch_hf_checkpoint(hf_config(), rev, tmp_path / "checkpoints" / rev)
    sha = store["shas"][rev]
    # the hub's own listing of the branch agrees with the SHA the store committed
    refs = {b.name: b.target_commit for b in HfApi(endpoint=hub.url).list_repo_refs(REPO_ID).branches}
    assert refs[rev] == sha and sha != store["shas"]["step5000-tokens20B"]
    prov = read_provenance(out)
    assert prov["revision_sha"] == sha and prov["revision"] == rev and prov["step"] == 125000
    assert prov["source"] == "hf" and prov["repo_id"] == REPO_ID and prov["endpoint"] == hub.url
    # one request names the branch (model_info); every other one names the commit SHA
    by_branch = [r["path"] for r in hub.requests if rev in r["path"]]
    assert by_branch == [f"/api/models/{REPO_ID}/revision/{rev}?blobs=true"]
    downloads = sorted(r["path"].rsplit("/", 1)[1] for r in resolve_gets(hub))
    assert downloads == FETCHED  # README.md and .gitattributes are not in allow_patterns
    assert all(f"/resolve/{sha}/" in r["path"] for r in hub.requests if "/resolve/" in r["path"])
    # files and recorded hashes: sha256 for the LFS shards, git blob ids for the rest
    assert sorted(p.name for p in out.iterdir()) == sorted(FETCHED + ["provenance.json"])
    for shard in SHARDS:
        assert prov["files"][shard] == hashlib.sha256((out / shard).read_bytes()).hexdigest()
    config_bytes = (out / "config.json").read_bytes()
    assert prov["files"]["config.json"] == hashlib.sha1(b"blob %d\0" % len(config_bytes) + config_bytes).hexdigest()
    assert sorted(p.name for p in out.parent.iterdir()) == [rev]  # the partial dir was renamed away
    model = load_model(out)
    assert model.config.num_experts == 8 and model.config.num_experts_per_tok == 2 and model.dtype == torch.float32
    tokenizer = load_tokenizer(out)
    text = "def f(x):\n    return x ** 2  # $\\frac{1}{2}$"
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token == "<|padding|>" and tokenizer.bos_token


def test_each_revision_is_its_own_model(store, serve, tmp_path):
    serve()
    cfg = hf_config()
    weights = {}
    for rev in REVISIONS:
        out = fetch_hf_checkpoint(cfg, rev, tmp_path / rev)
        assert read_provenance(out)["revision_sha"] == store["shas"][rev]
        weights[rev] = load_model(out).model.layers[0].mlp.gate.weight
    assert weights[REVISIONS[0]].shape == (8, 32)
    assert not torch.allclose(weights[REVISIONS[0]], weights[REVISIONS[1]])


def test_tampered_file_fails_the_hash_check_and_a_rerun_fetches_only_it(store, serve, tmp_path):
    rev = "step5000-tokens20B"
    out = tmp_path / rev
    serve(tamper=[SHARDS[0]])
    expected = json.loads(next(p for p in (store["root"] / REPO_ID / "commits").glob(f"{store['shas'][rev]}.json")).read_text())
    listed = next(f for f in expected["files"] if f["path"] == SHARDS[0])["lfs"]["sha256"]
    with pytest.raises(
        CheckpointError,
        match=rf"hash mismatch in revision '{rev}': {SHARDS[0]} has sha256 [0-9a-f]{{64}}, the hub lists {listed}",
    ):
        fetch_hf_checkpoint(hf_config(), rev, out)
    partial = tmp_path / f".{rev}.download"
    assert not out.exists() and not (partial / SHARDS[0]).exists() and (partial / SHARDS[1]).is_file()
    hub = serve()  # an honest server over the same store
    fetch_hf_checkpoint(hf_config(), rev, out)
    assert [r["path"].rsplit("/", 1)[1] for r in resolve_gets(hub)] == [SHARDS[0]]  # the rest was kept
    assert read_provenance(out)["files"][SHARDS[0]] == listed


def test_interrupted_transfer_resumes_with_a_range_request(store, serve, tmp_path, monkeypatch):
    # the client resumes from the last whole chunk it wrote; 16 kB chunks put that before the cut
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 16384)
    hub = serve(drop_after=50_000)
    rev = "step125000-tokens524B"
    out = fetch_hf_checkpoint(hf_config(), rev, tmp_path / rev)
    ranges = sorted((r["path"].rsplit("/", 1)[1], r["range"]) for r in resolve_gets(hub) if r["range"])
    assert ranges == [(shard, "bytes=49152-") for shard in SHARDS]  # 3 chunks of 16384 kept, the rest re-requested
    for shard in SHARDS:
        assert read_provenance(out)["files"][shard] == hashlib.sha256((out / shard).read_bytes()).hexdigest()


def test_the_standin_takes_the_http_path_not_xet(store, serve):
    """huggingface_hub downloads a file through hf_xet when the hub names a Xet object for it and
    hf_xet is installed; the stand-in names none, so the HTTP path (with Range resume) is what the
    tests and the rehearsal exercise. A response that names one would go to hf_xet."""
    from huggingface_hub import get_hf_file_metadata
    from huggingface_hub.utils._runtime import is_xet_available
    from huggingface_hub.utils._xet import parse_xet_file_data_from_response

    hub = serve()
    sha = store["shas"]["step5000-tokens20B"]
    meta = get_hf_file_metadata(f"{hub.url}/{REPO_ID}/resolve/{sha}/{SHARDS[0]}")
    assert meta.xet_file_data is None and meta.commit_hash == sha
    assert is_xet_available()  # installed: the real hub's Xet-backed files would go through hf_xet

    class XetAnswer:  # the two headers a Xet-backed file's answer carries
        headers = {"X-Xet-Hash": "ab" * 32, "X-Xet-Refresh-Route": "/api/models/x/xet-read-token/main"}
        links: dict = {}

    assert parse_xet_file_data_from_response(XetAnswer(), endpoint=hub.url).file_hash == "ab" * 32


def test_missing_revision_and_repo_are_named(serve, tmp_path):
    serve()
    with pytest.raises(CheckpointError, match=rf"revision 'step370000-tokens1551B' not found in hub repo '{REPO_ID}'"):
        fetch_hf_checkpoint(hf_config(), "step370000-tokens1551B", tmp_path / "step370000-tokens1551B")
    assert not (tmp_path / "step370000-tokens1551B").exists()
    with pytest.raises(CheckpointError, match=r"hub repo 'allenai/absent' not found .*fetching revision 'step5000-tokens20B'"):
        fetch_hf_checkpoint(hf_config(repo_id="allenai/absent"), "step5000-tokens20B", tmp_path / "x")


def test_no_network_and_offline_mode_are_named(serve, tmp_path, monkeypatch):
    serve()
    port = free_port()  # nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(
        CheckpointError,
        match=rf"cannot reach the hub at http://127.0.0.1:{port} to fetch revision 'step5000-tokens20B' .*no network",
    ):
        fetch_hf_checkpoint(hf_config(), "step5000-tokens20B", tmp_path / "step5000-tokens20B")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="cannot fetch revision 'step5000-tokens20B' .*HF_HUB_OFFLINE is set"):
        fetch_hf_checkpoint(hf_config(), "step5000-tokens20B", tmp_path / "step5000-tokens20B")


def test_too_little_disk_stops_before_downloading(store, serve, tmp_path):
    hub = serve()
    commit = json.loads((store["root"] / REPO_ID / "commits" / f"{store['shas']['step5000-tokens20B']}.json").read_text())
    size = sum(f["size"] for f in commit["files"] if f["path"] in FETCHED)
    with pytest.raises(
        CheckpointError,
        match=rf"not enough disk to fetch revision 'step5000-tokens20B': {size / 1e9:.2f} GB to download plus 1e\+09 GB headroom",
    ):
        fetch_hf_checkpoint(hf_config(disk_headroom_gb=1e9), "step5000-tokens20B", tmp_path / "step5000-tokens20B")
    assert resolve_gets(hub) == [] and size > 250_000


def test_bad_revision_name_fails_before_any_request(serve, tmp_path):
    hub = serve()
    with pytest.raises(CheckpointError, match="step125000-524B"):
        fetch_hf_checkpoint(hf_config(), "step125000-524B", tmp_path / "x")
    assert hub.requests == [] and not any(tmp_path.iterdir())


# ---------------------------------------------------------------- the stand-in server itself
def test_standin_serves_ranges_hub_headers_and_error_codes(store, serve):
    hub = serve()
    sha = store["shas"]["step5000-tokens20B"]
    url = f"{hub.url}/{REPO_ID}/resolve/{sha}/{SHARDS[1]}"
    data = (store["root"] / REPO_ID / "objects").glob("*")
    full = urllib.request.urlopen(url).read()
    digest = hashlib.sha256(full).hexdigest()
    assert digest in {p.name for p in data}
    head = urllib.request.urlopen(urllib.request.Request(url, method="HEAD"))
    assert head.headers["X-Repo-Commit"] == sha and head.headers["X-Linked-Etag"] == f'"{digest}"'
    assert int(head.headers["X-Linked-Size"]) == len(full) == int(head.headers["Content-Length"])
    part = urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=100-199"}))
    assert part.status == 206 and part.read() == full[100:200] and part.headers["Content-Range"] == f"bytes 100-199/{len(full)}"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": f"bytes={len(full)}-"}))
    assert err.value.code == 416
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{hub.url}/{REPO_ID}/resolve/step5000-tokens20B/absent.bin")
    assert err.value.code == 404 and err.value.headers["X-Error-Code"] == "EntryNotFound"
    info = HfApi(endpoint=hub.url).get_paths_info(REPO_ID, ["config.json", SHARDS[0]], revision=sha)
    assert {p.path: p.lfs is not None for p in info} == {"config.json": False, SHARDS[0]: True}


def test_standin_serve_cli_writes_its_port(store, tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "grokpath.cli",
            "standin-hub",
            "serve",
            str(store["root"]),
            "--port",
            "0",
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        port = int(port_file.read_text())
        refs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models/{REPO_ID}/refs"))
        assert {b["name"]: b["targetCommit"] for b in refs["branches"]} == {**store["shas"], "main": store["shas"][REVISIONS[-1]]}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---------------------------------------------------------------- names, sources, loading
def test_hf_names_are_validated_and_ordered():
    cfg = {"checkpoints": hf_config(revisions=["step245000-tokens1027B", "step5000-tokens20B"])}
    assert checkpoint_names(cfg) == ["step5000-tokens20B", "step245000-tokens1027B"]
    with pytest.raises(CheckpointError, match="'main' has no step"):
        checkpoint_names({"checkpoints": hf_config(revisions=["main"])})
    cfg = {"checkpoints": hf_config(revisions=["main", "step5000-tokens20B"])}
    cfg["checkpoints"]["steps"] = {"main": 1220000}
    assert checkpoint_names(cfg) == ["step5000-tokens20B", "main"]
    assert checkpoint_dir(cfg, "main") == Path("results/checkpoints/main")


def test_local_source_discovers_step_dirs(tmp_path):
    for name in ["step000900", "step000050", "step1000-tokens4B", "notes"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / "step000070").mkdir()  # no config.json: not a checkpoint
    cfg = validate({"checkpoints": {"source": "local", "local": {"dir": str(tmp_path)}}}, load_schema())
    assert checkpoint_names(cfg) == ["step000050", "step000900", "step1000-tokens4B"]
    assert checkpoint_dir(cfg, "step000900") == tmp_path / "step000900"
    cfg["checkpoints"]["local"]["names"] = ["step000900"]
    assert checkpoint_names(cfg) == ["step000900"]
    with pytest.raises(CheckpointError, match="checkpoints.local.dir"):
        checkpoint_names(validate({"checkpoints": {"source": "local"}}, load_schema()))


def test_mini_source_names_and_dirs():
    cfg = validate({"pretrain": {"checkpoint_steps": [500, 100]}}, load_schema())
    assert checkpoint_names(cfg) == ["step000100", "step000500"]
    assert checkpoint_dir(cfg, "step000100") == Path("results/checkpoints/step000100")
    assert parse_step("step000100") == 100 and parse_step("step125000-tokens524B") == 125000


def test_load_model_names_missing_dir_and_corrupt_file(tmp_path):
    with pytest.raises(CheckpointError, match=f"'{tmp_path / 'absent'}' does not exist"):
        load_model(tmp_path / "absent")
    save_tiny_model(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # an interrupted copy
    with pytest.raises(CheckpointError, match=f"'{weights}' is corrupt or unreadable"):
        load_model(tmp_path / "ckpt")
    weights.unlink()
    with pytest.raises(CheckpointError, match="has no weights"):
        load_model(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    with pytest.raises(CheckpointError, match="shard model-00001-of-00002.safetensors"):
        load_model(tmp_path / "ckpt")
