"""Checkpoint sources behind one interface.

- ``mini``: the embedded pretraining run saves ``results/checkpoints/stepNNNNNN/``.
- ``local``: any directory of saved HF checkpoints (``checkpoints.local.dir``).
- ``hf``: hub revisions such as ``step125000-tokens524B``.

Names (``<ckpt>``) are zero-padded steps for mini/local runs and the revision
name for hub runs; :func:`checkpoint_names` is the single place that decides them.
"""
from __future__ import annotations

import re

import numpy as np

REVISION_RE = re.compile(r"^step(?P<step>\d+)-tokens(?P<tokens>\d+)B$")
LOCAL_RE = re.compile(r"^step(?P<step>\d+)$")


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
        raise ValueError("revision 'main' has no step in its name; list it with an explicit step in checkpoints.hf.steps")
    raise ValueError(f"checkpoint name '{name}' does not parse: expected 'stepNNNNNN' or 'step<S>-tokens<T>B'")


def checkpoint_names(config: dict) -> list[str]:
    """Ordered checkpoint names for the configured source."""
    source = config["checkpoints"]["source"]
    if source == "mini":
        return [local_name(s) for s in mini_checkpoint_steps(config["pretrain"])]
    if source == "local":
        return list(config["checkpoints"]["local"]["names"])
    if source == "hf":
        names = list(config["checkpoints"]["hf"]["revisions"])
        for name in names:
            parse_step(name)
        return sorted(names, key=parse_step)
    raise ValueError(f"checkpoints.source '{source}' is not one of mini, local, hf")
