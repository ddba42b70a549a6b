"""Train many circuits models at once and log their curves.

All models of one job (the seeds of one grid cell, possibly several data sizes)
share one example pool (:class:`~grokpath.circuits.tasks.TaskData`). Three
batching paths compute the same thing (tested to float tolerance):

- ``batched``: parameters stacked on a leading model dimension, einsum over it
  (:func:`~grokpath.circuits.model.forward_many`), one AdamW over the stacks;
- ``vmap``: the same stacks, ``torch.func.vmap`` over the single-model forward;
- ``loop``: one model after another, each with its own AdamW.

AdamW is elementwise, and the summed loss gives each model its own gradient, so a
stacked AdamW step equals M separate ones. No gradient clipping (it would couple models).

``auto`` (see :func:`choose_batching`): on CUDA always ``batched``; on CPU
``batched`` while a model's training step is small (per-model work
``n_train * d_h * (d_h + P) * n_layers`` at most ``train.auto_max_work``), else
``loop``. bench/circuits_vmap.py (3 seeds, CPU time, one thread) measured batched
at 1.02x a loop (work 4.7e5, P=23), 1.25x (2.8e6, P=47, d_h=32), 1.19x (7.8e6,
d_h=64) and 0.93x (4.3e7, P=113, d_h=64); vmap at 0.75x, 1.45x, 1.02x and 0.81x.
Small steps are dispatch-bound (stacking saves calls); large ones are BLAS-bound,
where M separate matmuls beat the stacked ones and their backward. The default
threshold 2e7 sits between the last two points.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from grokpath.circuits.model import ModelSpec, ffn_mask, forward_many, forward_one, init_params, param_norm, stack_params
from grokpath.circuits.tasks import TaskData
from grokpath.devices import resolve_device

log = logging.getLogger(__name__)

BATCHING = ("auto", "vmap", "batched", "loop")
CURVE_COLUMNS = ["seed", "n_train", "step", "train_loss", "train_acc", "val_loss", "val_acc", "param_norm"]
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def log_steps(n_steps: int, n_points: int) -> list[int]:
    """Step 0 plus about n_points log-spaced steps up to n_steps (always included)."""
    if n_steps < 1 or n_points < 2:
        raise ValueError(f"circuits.train: steps ({n_steps}) must be >= 1 and n_log_points ({n_points}) >= 2")
    steps = np.unique(np.round(np.logspace(0, math.log10(n_steps), n_points)).astype(int))
    return [0, *[int(s) for s in steps if 0 < s < n_steps], int(n_steps)]


def choose_batching(requested: str, spec: ModelSpec, n_train: int, device: torch.device, auto_max_work: float) -> str:
    if requested not in BATCHING:
        raise ValueError(f"circuits.train.batching must be one of {BATCHING}, got '{requested}'")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "batched"
    work = n_train * spec.d_h * (spec.d_h + spec.P) * spec.n_layers
    return "batched" if work <= auto_max_work else "loop"


def _subset(data: TaskData, m: int) -> TaskData:
    return TaskData(
        data.task,
        data.P,
        data.inputs,
        data.labels[m : m + 1],
        data.train_mask[m : m + 1],
        data.val_mask[m : m + 1],
        data.is_minus,
    )


def _logits(params, x, spec, mask, path):
    """Logits [M, N, P] of stacked params under the given path (x shared [N, T] or per model [M, N, T])."""
    if path == "batched":
        return forward_many(params, x, spec, mask)
    x_dim = 0 if x.dim() == 3 else None
    mask_dim = None if mask is None or mask.dim() == 2 else 0
    if path == "vmap":
        return torch.func.vmap(lambda p, xx, mm: forward_one(p, xx, spec, mm), in_dims=(0, x_dim, mask_dim))(params, x, mask)
    # "one": a single stacked model (loop path)
    one = {k: v[0] for k, v in params.items()}
    return forward_one(one, x[0] if x_dim == 0 else x, spec, None if mask is None else (mask[0] if mask_dim == 0 else mask))[None]


@torch.no_grad()
def _evaluate(params, data: TaskData, spec, path, chunk: int, device, dtype) -> dict[str, torch.Tensor]:
    """Loss and accuracy on each model's train and validation sets, plus the parameter norm."""
    M, N = data.labels.shape
    ce = torch.empty(M, N, dtype=torch.float64)
    correct = torch.empty(M, N, dtype=torch.bool)
    for start in range(0, N, chunk):
        sl = slice(start, start + chunk)
        x = data.inputs[sl].to(device)
        mask = ffn_mask(spec, data.is_minus[sl], dtype)
        logits = _logits(params, x, spec, None if mask is None else mask.to(device), path)
        y = data.labels[:, sl].to(device)
        ce[:, sl] = F.cross_entropy(logits.flatten(0, 1).double(), y.flatten(), reduction="none").view(M, -1).cpu()
        correct[:, sl] = (logits.argmax(-1) == y).cpu()

    def masked_mean(values, mask):
        n = mask.sum(1)
        total = torch.where(mask, values.double(), torch.zeros((), dtype=torch.float64)).sum(1)
        return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(total, float("nan")))

    return {
        "train_loss": masked_mean(ce, data.train_mask),
        "train_acc": masked_mean(correct, data.train_mask),
        "val_loss": masked_mean(ce, data.val_mask),
        "val_acc": masked_mean(correct, data.val_mask),
        "param_norm": param_norm(params, stacked=True).double().cpu(),
    }


def _train_stack(params, data: TaskData, spec: ModelSpec, cfg: dict, path: str, device, dtype, desc: str) -> list[dict]:
    """Train the stacked params in place with one AdamW; return curve rows (one per model and log step)."""
    M = data.n_models
    steps = int(cfg["steps"])
    logged = set(log_steps(steps, int(cfg["n_log_points"])))
    index, weight = data.train_index()
    x_train = data.inputs[index].to(device)
    y_train = data.labels.gather(1, index).to(device)
    weight = weight.to(device=device, dtype=dtype)
    n_per_model = weight.sum(1)
    mask_train = ffn_mask(spec, data.is_minus[index].flatten(), dtype)
    if mask_train is not None:
        mask_train = mask_train.view(M, -1, spec.d_mlp).to(device)
    n_train = data.train_mask.sum(1).tolist()

    opt = torch.optim.AdamW(
        list(params.values()), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), weight_decay=cfg["weight_decay"]
    )
    warmup = max(1, int(cfg["warmup_steps"]))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    rows = []
    for step in tqdm(range(steps + 1), desc=desc, mininterval=5.0, leave=False):
        if step in logged:
            metrics = _evaluate(params, data, spec, path, int(cfg["eval_chunk"]), device, dtype)
            for m in range(M):
                rows.append(
                    {"model": m, "n_train": int(n_train[m]), "step": step, **{k: float(v[m]) for k, v in metrics.items()}}
                )
        if step == steps:
            break
        logits = _logits(params, x_train, spec, mask_train, path)
        ce = F.cross_entropy(logits.flatten(0, 1), y_train.flatten(), reduction="none").view(M, -1)
        loss = ((ce * weight).sum(1) / n_per_model).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return rows


def train_models(data: TaskData, spec: ModelSpec, seeds: list[int], cfg: dict) -> tuple[pd.DataFrame, dict]:
    """Train one model per (seeds[m], data model m); return (curves, run info).

    ``cfg`` is the ``circuits.train`` section. Curves have one row per (model, log step):
    seed, n_train, step, train_loss, train_acc, val_loss, val_acc, param_norm.
    """
    if len(seeds) != data.n_models:
        raise ValueError(f"train_models: {len(seeds)} seeds for {data.n_models} data models")
    if cfg["dtype"] not in DTYPES:
        raise ValueError(f"circuits.train.dtype must be one of {list(DTYPES)}, got '{cfg['dtype']}'")
    dtype = DTYPES[cfg["dtype"]]
    device = torch.device(resolve_device(cfg["device"], "circuits.train.device"))
    if device.type == "cpu":
        torch.set_num_threads(int(cfg["threads"]))
    n_train_max = int(data.train_mask.sum(1).max())
    path = choose_batching(cfg["batching"], spec, n_train_max, device, float(cfg["auto_max_work"]))
    log.info(
        "training %d models (%s, d_h=%d, L=%d, split_ffn=%s, D<=%d) on %s with batching=%s",
        len(seeds),
        data.task,
        spec.d_h,
        spec.n_layers,
        spec.split_ffn,
        n_train_max,
        device,
        path,
    )

    def fresh(model_seeds):
        per_model = [init_params(spec, s, dtype) for s in model_seeds]
        return {k: v.to(device).requires_grad_() for k, v in stack_params(per_model).items()}

    start = time.perf_counter()
    if path == "loop":
        rows = []
        for m, seed in enumerate(seeds):
            for row in _train_stack(fresh([seed]), _subset(data, m), spec, cfg, "one", device, dtype, f"seed {seed}"):
                rows.append({**row, "model": m})
    else:
        rows = _train_stack(fresh(seeds), data, spec, cfg, path, device, dtype, f"{len(seeds)} models")
    seconds = time.perf_counter() - start
    curves = pd.DataFrame(rows)
    curves.insert(0, "seed", [int(seeds[m]) for m in curves["model"]])
    curves = curves.drop(columns="model")[CURVE_COLUMNS]
    final = curves[curves["step"] == curves["step"].max()]
    log.info(
        "done in %.1fs: final train acc %s, val acc %s",
        seconds,
        np.round(final["train_acc"].to_numpy(), 3).tolist(),
        np.round(final["val_acc"].to_numpy(), 3).tolist(),
    )
    return curves, {"batching": path, "device": str(device), "seconds": seconds}
