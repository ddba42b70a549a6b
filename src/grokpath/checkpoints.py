"""Checkpoint sources behind one interface.

- ``mini``: the embedded pretraining run saves ``results/checkpoints/stepNNNNNN/``.
- ``local``: any directory of saved HF checkpoints (``checkpoints.local.dir``).
- ``hf``: hub revisions such as ``step125000-tokens524B``, fetched into
  ``results/checkpoints/<revision>/`` by :func:`fetch_hf_checkpoint`.

Names (``<ckpt>``) are zero-padded steps for mini/local runs and the revision
name for hub runs; :func:`checkpoint_names` is the single place that decides them,
:func:`checkpoint_dir` the single place that says where each one lives.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client
import numpy as np
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

from grokpath.io import config_hash, provenance, write_json

log = logging.getLogger(__name__)

REVISION_RE = re.compile(r"^step(?P<step>\d+)-tokens(?P<tokens>\d+)B$")
LOCAL_RE = re.compile(r"^step(?P<step>\d+)$")
# Where the pretrain rule (mini) and the fetch_checkpoint rule (hf) put checkpoints.
RESULTS_CHECKPOINTS = Path("results/checkpoints")
PROVENANCE = "provenance.json"
DTYPES = {"float32", "bfloat16", "float16"}


class CheckpointError(ValueError):
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
    """Training step of a checkpoint name (``step000500`` or ``step5000-tokens20B``)."""
    for pattern in (LOCAL_RE, REVISION_RE):
        match = pattern.match(name)
        if match:
            return int(match.group("step"))
    if name == "main":
        raise ValueError("revision 'main' has no step in its name; give it one in checkpoints.steps")
    raise ValueError(f"checkpoint name '{name}' does not parse: expected 'stepNNNNNN' or 'step<S>-tokens<T>B'")


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
    """Step-named HF subdirectories (``stepN`` or ``stepN-tokensTB``) of ``local_dir``."""
    if not local_dir.is_dir():
        raise CheckpointError(f"checkpoints.local.dir '{local_dir}' is not a directory")
    names = [
        p.name
        for p in local_dir.iterdir()
        if p.is_dir() and (LOCAL_RE.match(p.name) or REVISION_RE.match(p.name)) and (p / "config.json").is_file()
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
    else:
        raise ValueError(f"checkpoints.source '{source}' is not one of mini, local, hf")
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
    if source in ("mini", "hf"):
        return RESULTS_CHECKPOINTS / ckpt
    raise ValueError(f"checkpoints.source '{source}' is not one of mini, local, hf")


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
def fetch_hf_checkpoint(checkpoints: dict, ckpt: str, out_dir: Path | str) -> Path:
    """Download hub revision ``ckpt`` of ``checkpoints.hf.repo_id`` into ``out_dir``.

    The revision name is validated before any network call. The download goes to
    a hidden sibling ``.<ckpt>.download`` (kept on failure, so a rerun resumes it)
    and is renamed onto ``out_dir`` only once complete, with ``provenance.json``.
    """
    hf = checkpoints["hf"]
    repo_id = hf["repo_id"]
    try:
        step = checkpoint_step(checkpoints, ckpt)
    except ValueError as err:
        raise CheckpointError(f"checkpoints.hf.revisions: {err}") from None
    out_dir = Path(out_dir)
    partial = out_dir.with_name(f".{out_dir.name}.download")
    partial.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s@%s into %s (resumable: %s)", repo_id, ckpt, out_dir, partial)
    try:
        sha = HfApi().model_info(repo_id, revision=ckpt).sha
        snapshot_download(
            repo_id,
            revision=ckpt,
            local_dir=partial,
            allow_patterns=list(hf["allow_patterns"]),
        )
    except RevisionNotFoundError:
        raise CheckpointError(f"revision '{ckpt}' not found in hub repo '{repo_id}' (checkpoints.hf.revisions)") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"hub repo '{repo_id}' not found or not accessible (checkpoints.hf.repo_id)") from None
    except (OSError, httpx2.HTTPError) as err:  # offline, network or server trouble
        raise CheckpointError(
            f"could not fetch {repo_id}@{ckpt}: {type(err).__name__}: {err}; "
            f"the partial download in {partial} is kept and a rerun resumes it"
        ) from None
    shutil.rmtree(partial / ".cache", ignore_errors=True)  # hub download bookkeeping
    verify_checkpoint_dir(partial, label=f"{repo_id}@{ckpt}")
    write_json(
        provenance(
            step=step,
            source="hf",
            repo_id=repo_id,
            revision=ckpt,
            revision_sha=sha,
            config_hash=model_config_hash(partial),
        ),
        partial / PROVENANCE,
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(partial, out_dir)
    log.info("fetched %s@%s (sha %s)", repo_id, ckpt, sha)
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


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("traces.device is 'cuda' but no CUDA device is available")
    return device


def load_model(directory: Path | str, dtype: str = "float32", device: str = "cpu", trust_remote_code: bool = False):
    """Verify and load a causal LM from an HF directory, in eval mode on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise CheckpointError(f"dtype '{dtype}' is not one of {sorted(DTYPES)}")
    verify_checkpoint_dir(directory)
    model = AutoModelForCausalLM.from_pretrained(
        str(directory), dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
    )
    return model.to(resolve_device(device)).eval()


def load_tokenizer(directory: Path | str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"tokenizer directory '{directory}' does not exist")
    return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=trust_remote_code)
