"""Checkpoint sources behind one interface.

- ``mini``: the embedded pretraining run saves ``results/checkpoints/stepNNNNNN/``.
- ``local``: any directory of saved HF checkpoints (``checkpoints.local.dir``).
- ``hf``: hub revisions such as ``step125000-tokens524B``, fetched into
  ``results/checkpoints/<revision>/`` by :func:`fetch_hf_checkpoint`.
- ``olmo_core``: an OLMo-core save folder (``checkpoints.olmo_core.dir``) of ``stepN/``
  checkpoints, each converted by OLMo-core's own conversion into ``results/checkpoints/stepN/``
  (:func:`grokpath.olmo_core.convert_checkpoint`); from there on as any local source.

Names (``<ckpt>``) are zero-padded steps for mini/local runs and the revision
name for hub runs; :func:`checkpoint_names` is the single place that decides them,
:func:`checkpoint_dir` the single place that says where each one lives.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HTTPError,  # the hub client's transport error base (connect, timeout, protocol)
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import REGEX_COMMIT_HASH
from huggingface_hub.utils import filter_repo_objects
from huggingface_hub.utils.sha import git_hash, sha_fileobj
from tqdm.auto import tqdm

from grokpath.config import InputError
from grokpath.devices import resolve_device
from grokpath.io import config_hash, provenance, write_json

log = logging.getLogger(__name__)

REVISION_RE = re.compile(r"^step(?P<step>\d+)-tokens(?P<tokens>\d+)B$")
LOCAL_RE = re.compile(r"^step(?P<step>\d+)$")
TRAINER_RE = re.compile(r"^checkpoint-(?P<step>\d+)$")  # transformers Trainer's output_dir/checkpoint-<global step>
SOURCES = ("mini", "local", "hf", "olmo_core")
# Where the pretrain rule (mini), the fetch_checkpoint rule (hf) and the convert_checkpoint rule (olmo_core) put checkpoints.
RESULTS_CHECKPOINTS = Path("results/checkpoints")
PROVENANCE = "provenance.json"
DTYPES = {"float32", "bfloat16", "float16"}


class CheckpointError(InputError):
    """A checkpoint is missing, unreadable or not what its name says; the message names it."""


def local_name(step: int) -> str:
    return f"step{int(step):06d}"


def mini_checkpoint_steps(pretrain: dict) -> list[int]:
    """Checkpoint steps of the mini run: explicit ``checkpoint_steps`` or a schedule."""
    if pretrain.get("checkpoint_steps"):
        return sorted({int(s) for s in pretrain["checkpoint_steps"]})
    total, n = int(pretrain["steps"]), int(pretrain["n_checkpoints"])
    if pretrain.get("checkpoint_schedule", "linear") == "log":
        first = max(1, int(pretrain.get("first_checkpoint", max(1, total // 100))))
        steps = np.unique(np.round(np.geomspace(first, total, n)).astype(int))
    else:
        steps = np.unique(np.round(np.linspace(total / n, total, n)).astype(int))
    return [int(s) for s in steps]


def parse_step(name: str) -> int:
    """Training step of a checkpoint name (``step000500``, ``step5000-tokens20B`` or a Trainer's ``checkpoint-500``)."""
    for pattern in (LOCAL_RE, REVISION_RE, TRAINER_RE):
        match = pattern.match(name)
        if match:
            return int(match.group("step"))
    if name == "main":
        raise ValueError("revision 'main' has no step in its name; give it one in checkpoints.steps")
    raise ValueError(f"checkpoint name '{name}' does not parse: expected 'stepNNNNNN', 'step<S>-tokens<T>B' or 'checkpoint-<S>'")


def checkpoint_step(checkpoints: dict, name: str) -> int:
    """Step of a checkpoint: ``checkpoints.steps[name]`` if given, else parsed from the name."""
    explicit = checkpoints.get("steps") or {}
    if name in explicit:
        return int(explicit[name])
    return parse_step(name)


def _local_dir(checkpoints: dict) -> Path:
    directory = (checkpoints.get("local") or {}).get("dir")
    if not directory:
        raise CheckpointError("checkpoints.local.dir is not set (needed for checkpoints.source: local)")
    return Path(directory)


def _discover_local(local_dir: Path) -> list[str]:
    """Step-named HF subdirectories (``stepN``, ``stepN-tokensTB`` or a Trainer's ``checkpoint-N``) of ``local_dir``."""
    if not local_dir.is_dir():
        raise CheckpointError(f"checkpoints.local.dir '{local_dir}' is not a directory")
    names = [
        p.name
        for p in local_dir.iterdir()
        if p.is_dir() and any(r.match(p.name) for r in (LOCAL_RE, REVISION_RE, TRAINER_RE)) and (p / "config.json").is_file()
    ]
    if not names:
        raise CheckpointError(f"checkpoints.local.dir '{local_dir}' holds no step-named checkpoint directories")
    return names


def checkpoint_names(config: dict) -> list[str]:
    """Ordered (by step) checkpoint names for the configured source."""
    checkpoints = config["checkpoints"]
    source = checkpoints["source"]
    if source == "mini":
        return [local_name(s) for s in mini_checkpoint_steps(config["pretrain"])]
    if source == "local":
        local = checkpoints.get("local") or {}
        names = list(local.get("names") or []) or _discover_local(_local_dir(checkpoints))
    elif source == "hf":
        names = list((checkpoints.get("hf") or {}).get("revisions") or [])
        if not names:
            raise CheckpointError("checkpoints.hf.revisions is empty: list the hub revisions to study")
    elif source == "olmo_core":
        from grokpath.olmo_core import discover_checkpoints, run_dir

        names = list((checkpoints.get("olmo_core") or {}).get("names") or []) or discover_checkpoints(run_dir(checkpoints))
    else:
        raise ValueError(f"checkpoints.source '{source}' is not one of {', '.join(SOURCES)}")
    if len(set(names)) != len(names):
        raise CheckpointError(f"checkpoints.{source}: duplicate checkpoint names in {names}")
    steps = {}
    for name in names:
        try:
            steps[name] = checkpoint_step(checkpoints, name)
        except ValueError as err:
            raise CheckpointError(f"checkpoints.{source}: {err}") from None
    return sorted(names, key=lambda n: steps[n])


def checkpoint_dir(config: dict, ckpt: str) -> Path:
    """Directory holding checkpoint ``ckpt`` (an HF ``save_pretrained`` directory)."""
    source = config["checkpoints"]["source"]
    if source == "local":
        return _local_dir(config["checkpoints"]) / ckpt
    if source in ("mini", "hf", "olmo_core"):
        return RESULTS_CHECKPOINTS / ckpt
    raise ValueError(f"checkpoints.source '{source}' is not one of {', '.join(SOURCES)}")


def read_provenance(directory: Path | str) -> dict:
    """``provenance.json`` of a checkpoint directory, or {} when it has none (local source)."""
    path = Path(directory) / PROVENANCE
    if not path.is_file():
        return {}
    with open(path) as fh:
        return json.load(fh)


def model_config_hash(directory: Path | str) -> str:
    """Hash of the model's ``config.json``: identifies architecture and settings."""
    with open(Path(directory) / "config.json") as fh:
        return config_hash(json.load(fh))


# ---------------------------------------------------------------- hf source
# huggingface_hub reads HF_ENDPOINT once, at import; the fetch reads it per call so a
# stand-in hub (grokpath.standin.hub) set after import is honoured too.
def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _hub_error(err: Exception, repo_id: str, ckpt: str, partial: Path, endpoint: str) -> CheckpointError:
    """One-line error naming the revision for everything the hub client raises."""
    kept = f"; the partial download in {partial} is kept and a rerun resumes it"
    if isinstance(err, RevisionNotFoundError):
        return CheckpointError(f"revision '{ckpt}' not found in hub repo '{repo_id}' (checkpoints.hf.revisions)")
    if isinstance(err, GatedRepoError):
        return CheckpointError(
            f"hub repo '{repo_id}' is gated: accept its terms on the hub and log in (hf auth login) to fetch revision '{ckpt}'"
        )
    if isinstance(err, RepositoryNotFoundError):
        return CheckpointError(
            f"hub repo '{repo_id}' not found or not accessible at {endpoint} (checkpoints.hf.repo_id); fetching revision '{ckpt}'"
        )
    if isinstance(err, OfflineModeIsEnabled):
        return CheckpointError(
            f"cannot fetch revision '{ckpt}' of '{repo_id}': HF_HUB_OFFLINE is set; unset it for fetch_checkpoint"
        )
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return CheckpointError(f"disk full while fetching revision '{ckpt}' of '{repo_id}' into {partial.parent}{kept}")
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else "?"
        return CheckpointError(f"hub error {status} fetching revision '{ckpt}' of '{repo_id}' from {endpoint}{kept}")
    first_line = (str(err).splitlines() or [""])[0]
    if isinstance(err, (HTTPError, LocalEntryNotFoundError)):  # connect, timeout, protocol; "cannot reach the hub"
        return CheckpointError(
            f"cannot reach the hub at {endpoint} to fetch revision '{ckpt}' of '{repo_id}' (no network?): "
            f"{type(err).__name__}: {first_line}{kept}"
        )
    return CheckpointError(f"could not fetch revision '{ckpt}' of '{repo_id}': {type(err).__name__}: {first_line}{kept}")


HUB_ERRORS = (HfHubHTTPError, HTTPError, OfflineModeIsEnabled, LocalEntryNotFoundError, OSError)


def resolve_revision(api: HfApi, repo_id: str, ckpt: str):
    """The revision's commit SHA and file list (sizes, git blob ids, LFS sha256), in one call."""
    info = api.model_info(repo_id, revision=ckpt, files_metadata=True)
    if not info.sha or not REGEX_COMMIT_HASH.fullmatch(info.sha):
        raise CheckpointError(f"hub answered revision '{ckpt}' of '{repo_id}' without a commit SHA ({info.sha!r})")
    return info


def expected_files(info, allow_patterns: list[str], ckpt: str) -> list:
    """The siblings the fetch downloads (``allow_patterns``); at least one weights file."""
    files = list(filter_repo_objects(info.siblings or [], allow_patterns=allow_patterns, key=lambda s: s.rfilename))
    if not any(s.rfilename.endswith(".safetensors") for s in files):
        raise CheckpointError(
            f"revision '{ckpt}' has no *.safetensors file matching checkpoints.hf.allow_patterns {allow_patterns}"
        )
    return files


def _file_identity(path: Path, sibling) -> tuple[str, str, str]:
    """(algorithm, expected, actual): sha256 for LFS files, the git blob id for the rest."""
    if sibling.lfs is not None:
        with open(path, "rb") as fh:
            return "sha256", sibling.lfs.sha256, sha_fileobj(fh).hex()
    return "git blob id", sibling.blob_id, git_hash(path.read_bytes())


def check_disk_space(files: list, directory: Path, headroom_gb: float, ckpt: str) -> None:
    """Raise before downloading when the bytes still missing (plus headroom) exceed the free space."""
    missing = sum(
        s.size or 0
        for s in files
        if not ((directory / s.rfilename).is_file() and (directory / s.rfilename).stat().st_size == s.size)
    )
    free = shutil.disk_usage(directory).free
    if missing + headroom_gb * 1e9 > free:
        raise CheckpointError(
            f"not enough disk to fetch revision '{ckpt}': {missing / 1e9:.2f} GB to download plus "
            f"{headroom_gb:g} GB headroom (checkpoints.hf.disk_headroom_gb), {free / 1e9:.2f} GB free in {directory.parent}"
        )


def verify_hub_files(directory: Path, files: list, ckpt: str) -> dict[str, str]:
    """Check every downloaded file against the hub's hashes; returns {file: hash}.

    A mismatching file is removed with its download record, so a rerun fetches it again.
    """
    hashes, bad = {}, []
    for sibling in tqdm(files, desc=f"verify {ckpt}", unit="file", leave=False):
        path = directory / sibling.rfilename
        if not path.is_file():
            raise CheckpointError(f"revision '{ckpt}': {sibling.rfilename} is missing after the download")
        if sibling.lfs is None and sibling.blob_id is None:
            log.warning("revision %s: the hub lists no hash for %s; not verified", ckpt, sibling.rfilename)
            continue
        algorithm, expected, actual = _file_identity(path, sibling)
        if actual != expected:
            bad.append(f"{sibling.rfilename} has {algorithm} {actual}, the hub lists {expected}")
            path.unlink()
            (directory / ".cache" / "huggingface" / "download" / f"{sibling.rfilename}.metadata").unlink(missing_ok=True)
        hashes[sibling.rfilename] = expected
    if bad:
        raise CheckpointError(
            f"hash mismatch in revision '{ckpt}': {'; '.join(bad)} (removed: a rerun downloads {'them' if len(bad) > 1 else 'it'} again)"
        )
    return hashes


def fetch_hf_checkpoint(checkpoints: dict, ckpt: str, out_dir: Path | str, threads: int = 8) -> Path:
    """Download hub revision ``ckpt`` of ``checkpoints.hf.repo_id`` into ``out_dir``, verified.

    1. The revision name is validated before any network call.
    2. One ``model_info`` call resolves it to its commit SHA and lists every file's size and hash.
    3. Free disk is checked against the sizes still missing.
    4. ``snapshot_download`` fetches exactly that SHA (``allow_patterns``) into a hidden sibling
       ``.<ckpt>.download``: kept on failure, so a rerun skips the files already complete. How a
       file travels is huggingface_hub's choice, per file: when the hub's answer names a Xet object
       (``X-Xet-Hash``) and ``hf_xet`` is installed (it is a dependency here), ``hf_xet`` downloads
       it (chunked, with its own retries; an interrupted file is fetched again through its chunk
       cache, not resumed with a Range request). Otherwise, or with ``HF_HUB_DISABLE_XET=1``, a
       plain HTTP GET, and an interrupted transfer resumes with a Range request. The real
       OLMoE repo's weights go the Xet way; the stand-in hub names no Xet objects, so tests and
       the rehearsal run the HTTP path only. Either way step 5 checks every byte.
    5. Each file is checked against the hub's sha256 (LFS) or git blob id; then ``provenance.json``
       (with ``revision_sha``) is written and the directory renamed onto ``out_dir``.

    ``threads``: parallel file downloads.
    """
    hf = checkpoints["hf"]
    repo_id, allow_patterns = hf["repo_id"], list(hf["allow_patterns"])
    try:
        step = checkpoint_step(checkpoints, ckpt)
    except ValueError as err:
        raise CheckpointError(f"checkpoints.hf.revisions: {err}") from None
    out_dir = Path(out_dir)
    partial = out_dir.with_name(f".{out_dir.name}.download")
    partial.mkdir(parents=True, exist_ok=True)
    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint)
    try:
        info = resolve_revision(api, repo_id, ckpt)
        files = expected_files(info, allow_patterns, ckpt)
        check_disk_space(files, partial, float(hf["disk_headroom_gb"]), ckpt)
        log.info(
            "fetching %s@%s = commit %s (%d files, %.2f GB) from %s into %s",
            repo_id,
            ckpt,
            info.sha,
            len(files),
            sum(s.size or 0 for s in files) / 1e9,
            endpoint,
            partial,
        )
        snapshot_download(
            repo_id,
            revision=info.sha,
            local_dir=partial,
            cache_dir=partial / ".cache" / "hub",  # self-contained: nothing written outside results/
            allow_patterns=[s.rfilename for s in files],
            endpoint=endpoint,
            max_workers=threads,
        )
    except CheckpointError:
        raise
    except HUB_ERRORS as err:
        raise _hub_error(err, repo_id, ckpt, partial, endpoint) from None
    hashes = verify_hub_files(partial, files, ckpt)
    verify_checkpoint_dir(partial, label=f"{repo_id}@{ckpt}")
    shutil.rmtree(partial / ".cache", ignore_errors=True)  # hub download bookkeeping
    write_json(
        provenance(
            step=step,
            source="hf",
            repo_id=repo_id,
            revision=ckpt,
            revision_sha=info.sha,
            endpoint=endpoint,
            files=hashes,
            config_hash=model_config_hash(partial),
        ),
        partial / PROVENANCE,
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(partial, out_dir)
    log.info("fetched %s@%s (commit %s): %d files verified", repo_id, ckpt, info.sha, len(hashes))
    return out_dir


# ---------------------------------------------------------------- loading
def weight_files(directory: Path) -> list[Path]:
    """Weight files a ``from_pretrained`` load will read; shards listed in an index must exist."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        with open(index) as fh:
            shards = sorted(set(json.load(fh)["weight_map"].values()))
        missing = [s for s in shards if not (directory / s).is_file()]
        if missing:
            raise CheckpointError(f"checkpoint '{directory}': shard {missing[0]} listed in {index.name} is missing")
        return [directory / s for s in shards]
    files = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("pytorch_model*.bin"))
    if not files:
        raise CheckpointError(f"checkpoint '{directory}' has no weights (*.safetensors or pytorch_model*.bin)")
    return files


def verify_checkpoint_dir(directory: Path | str, label: str | None = None) -> None:
    """Raise CheckpointError naming the directory or file if the checkpoint cannot be loaded.

    Safetensors headers are parsed (cheap: no tensor data is read), which catches
    truncated and corrupt files before a long model load.
    """
    from safetensors import safe_open

    directory = Path(directory)
    label = label or str(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory '{directory}' does not exist")
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"checkpoint '{label}' has no config.json in {directory}")
    for path in weight_files(directory):
        if path.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(path), framework="pt") as fh:
                fh.keys()
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"checkpoint weights file '{path}' is corrupt or unreadable: {err}") from None


def load_model(
    directory: Path | str,
    dtype: str = "float32",
    device: str = "cpu",
    trust_remote_code: bool = False,
    device_key: str = "device",
):
    """Verify and load a causal LM from an HF directory, in eval mode on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise CheckpointError(f"dtype '{dtype}' is not one of {sorted(DTYPES)}")
    verify_checkpoint_dir(directory)
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code)
    return model.to(resolve_device(device, device_key)).eval()


def load_tokenizer(directory: Path | str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"tokenizer directory '{directory}' does not exist")
    return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=trust_remote_code)
