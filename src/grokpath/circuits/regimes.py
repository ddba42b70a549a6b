"""Label each run progression / ungrokking / grokking / semi-grokking from its curves.

The rule (thresholds are ``circuits.regimes`` config keys, names in brackets):

1. Summaries of one run's curves (log-spaced steps):
   - final train / val accuracy: the mean over the last ``final_points`` logged steps;
   - t_mem: first step with train accuracy >= ``memorized_acc``;
   - t_gen: first step with val accuracy >= ``generalized_acc``;
   - delay = log10(t_gen) - log10(t_mem), in decades of steps;
   - norm change: relative change of the parameter norm from the onset of the
     val-accuracy rise (the last step before t_gen with val acc < ``onset_acc``)
     to t_gen; over the second half of training if the run never generalizes.
2. Labels:
   - final val acc >= ``generalized_acc`` (generalized):
       - D > D_mem(d_h) (known from the capacity runs) -> **progression**;
       - else delay >= ``min_delay_decades`` -> **grokking**;
       - else the norm decides: rising -> **progression**, falling -> **grokking**
         (the paper: the norm rises when a progression run generalizes and falls when a grokking run does);
   - final val acc <= ``ungrokked_val_acc``: **ungrokking** if the run memorized
     (final train acc >= ``memorized_acc``), else **undetermined** (it learned nothing);
   - in between: **semi-grokking** (partial generalization).
   Capacity (random-label) runs get the label **capacity**.
3. Estimates per (task, d_h, n_layers, split_ffn):
   - D_mem = mean final train accuracy of the capacity runs x their training set size;
   - D_crit = the smallest D at which the seed-mean final val acc reaches
     ``critical_val_acc``, linearly interpolated between grid points (NaN if never;
     the smallest grid D if already reached there).

Paper A (:func:`classify_paper_a`): a checkpoint series has no training accuracy
and no parameter norm, so the memorization signal is train-loss convergence:
t_mem is the first checkpoint whose train loss has made ``paper_a_loss_converged``
of its total drop (first to last checkpoint) and the run counts as memorized; the
test accuracy plays val accuracy; norm change is NaN, D_mem unknown.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from grokpath.circuits.columns import RUN_KEYS

LABELS = ("progression", "grokking", "semi-grokking", "ungrokking", "undetermined")
CELL_KEYS = ["task", "d_h", "n_layers", "split_ffn", "n_sub"]


def _first_step(steps: np.ndarray, ok: np.ndarray) -> float:
    hits = np.nonzero(ok)[0]
    return float(steps[hits[0]]) if len(hits) else math.nan


def summarize_run(curve: pd.DataFrame, cfg: dict) -> dict:
    """Scalar summaries of one run (rows of one model, any order)."""
    curve = curve.sort_values("step")
    steps = curve["step"].to_numpy(float)
    train_acc = curve["train_acc"].to_numpy(float)
    val_acc = curve["val_acc"].to_numpy(float)
    norm = curve["param_norm"].to_numpy(float) if "param_norm" in curve else np.full(len(curve), np.nan)
    k = max(1, int(cfg["final_points"]))
    t_mem = _first_step(steps, train_acc >= cfg["memorized_acc"])
    gen = val_acc >= cfg["generalized_acc"]
    t_gen = _first_step(steps, gen)
    if np.isfinite(t_gen):
        i_gen = int(np.nonzero(gen)[0][0])
        below = np.nonzero(val_acc[:i_gen] < cfg["onset_acc"])[0]
        i_onset = int(below[-1]) if len(below) else 0
    else:
        i_gen, i_onset = len(steps) - 1, len(steps) // 2
    norm_change = (norm[i_gen] - norm[i_onset]) / norm[i_onset] if norm[i_onset] > 0 else math.nan
    delay = math.log10(max(t_gen, 1.0)) - math.log10(max(t_mem, 1.0)) if np.isfinite(t_gen) and np.isfinite(t_mem) else math.nan
    return {
        "final_train_acc": float(np.mean(train_acc[-k:])),
        "final_val_acc": float(np.mean(val_acc[-k:])),
        "t_mem": t_mem,
        "t_gen": t_gen,
        "delay_decades": delay,
        "norm_change": float(norm_change),
    }


def label_run(summary: dict, n_train: float, d_mem: float, cfg: dict) -> str:
    """The regime of one run from its summary (see the module docstring)."""
    val, train = summary["final_val_acc"], summary["final_train_acc"]
    if val >= cfg["generalized_acc"]:
        if np.isfinite(d_mem) and n_train > d_mem:
            return "progression"
        delay = summary["delay_decades"]
        if np.isfinite(delay) and delay >= cfg["min_delay_decades"]:
            return "grokking"
        if np.isfinite(summary["norm_change"]):
            return "progression" if summary["norm_change"] > 0 else "grokking"
        return "progression"
    if val <= cfg["ungrokked_val_acc"]:
        return "ungrokking" if train >= cfg["memorized_acc"] else "undetermined"
    return "semi-grokking"


def critical_data_size(sizes: np.ndarray, val_acc: np.ndarray, level: float) -> float:
    """Smallest D where val_acc(D) reaches level, linearly interpolated; NaN if never."""
    order = np.argsort(sizes)
    sizes, val_acc = np.asarray(sizes, float)[order], np.asarray(val_acc, float)[order]
    above = np.nonzero(val_acc >= level)[0]
    if not len(above):
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(sizes[0])
    d0, d1, a0, a1 = sizes[i - 1], sizes[i], val_acc[i - 1], val_acc[i]
    return float(d0 + (level - a0) * (d1 - d0) / (a1 - a0))


def memorization_capacity(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (d_h, n_layers, split_ffn): capacity accuracy and D_mem from the 'memorize' runs' summaries."""
    cap = runs[runs["task"] == "memorize"]
    cols = ["d_h", "n_layers", "split_ffn", "capacity_acc", "d_mem"]
    if cap.empty:
        return pd.DataFrame(columns=cols)
    out = (
        cap.assign(d_mem_run=cap["final_train_acc"] * cap["n_train"])
        .groupby(["d_h", "n_layers", "split_ffn"], as_index=False)
        .agg(capacity_acc=("final_train_acc", "mean"), d_mem=("d_mem_run", "mean"))
    )
    return out[cols]


def classify_runs(curves: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """One row per run: RUN_KEYS, summaries, label, capacity_acc, d_mem, d_crit."""
    missing = [c for c in [*RUN_KEYS, "step", "train_acc", "val_acc", "param_norm"] if c not in curves]
    if missing:
        raise ValueError(f"circuits curves lack columns {missing}")
    rows = [{**dict(zip(RUN_KEYS, key)), **summarize_run(group, cfg)} for key, group in curves.groupby(RUN_KEYS, sort=True)]
    runs = pd.DataFrame(rows)
    if "n_params" in curves:
        runs = runs.merge(curves.groupby(RUN_KEYS, as_index=False)["n_params"].first(), on=RUN_KEYS, how="left")
    capacity = memorization_capacity(runs)
    # D_mem of a d_h comes from the dense 1-layer capacity runs of that d_h
    runs = runs.merge(capacity, on=["d_h", "n_layers", "split_ffn"], how="left")
    runs["d_mem"] = runs["d_mem"].astype(float)
    runs["label"] = [
        "capacity" if r.task == "memorize" else label_run(r._asdict(), r.n_train, r.d_mem, cfg)
        for r in runs.itertuples(index=False)
    ]
    crit = []
    for key, cell in runs[runs["task"] != "memorize"].groupby(CELL_KEYS):
        mean = cell.groupby("n_train")["final_val_acc"].mean()
        crit.append(
            {
                **dict(zip(CELL_KEYS, key)),
                "d_crit": critical_data_size(mean.index.to_numpy(), mean.to_numpy(), cfg["critical_val_acc"]),
            }
        )
    crit = pd.DataFrame(crit, columns=[*CELL_KEYS, "d_crit"])
    runs = runs.merge(crit, on=CELL_KEYS, how="left")
    runs["label"] = pd.Categorical(runs["label"], categories=[*LABELS, "capacity"])
    return runs


def classify_paper_a(curves: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Label each paper-A domain's checkpoint series (columns domain, step, accuracy, train_loss_all, ...).

    The loss is over all training samples: the memorized group's loss converges by definition.
    """
    missing = [c for c in ("domain", "step", "accuracy", "train_loss_all") if c not in curves]
    if missing:
        raise ValueError(f"results/metrics/curves.parquet lacks columns {missing}")
    rows = []
    for domain, series in curves.groupby("domain", sort=True):
        series = series.sort_values("step")
        loss = series["train_loss_all"].to_numpy(float)
        drop = loss[0] - loss[-1]
        converged = loss <= loss[0] - cfg["paper_a_loss_converged"] * drop if drop > 0 else np.ones(len(loss), bool)
        frame = pd.DataFrame(
            {
                "step": series["step"].to_numpy(),
                # train-loss convergence stands in for training accuracy
                "train_acc": converged.astype(float),
                "val_acc": series["accuracy"].to_numpy(float),
            }
        )
        summary = summarize_run(frame, {**cfg, "memorized_acc": 1.0})
        summary["norm_change"] = math.nan
        rows.append(
            {
                "task": f"paper_a:{domain}",
                "n_checkpoints": len(series),
                **summary,
                "final_train_loss": float(loss[-1]),
                "d_mem": math.nan,
                "d_crit": math.nan,
                "label": label_run({**summary, "final_train_acc": 1.0}, math.nan, math.nan, cfg),
            }
        )
    return pd.DataFrame(rows)
