"""The sustained rise of test accuracy, and the per-domain onset table (``tables/onset.csv``).

Sustained rise (our rule; the paper only says "after accuracy starts its sustained rise"):
with accuracy a_0..a_T over checkpoints, gain G = a_T - min(a) and level
L = min(a) + rise_fraction * G, the rise *crosses* at the earliest checkpoint c such that
a_j >= L for every j >= c. The window starts at c, or at c - 1 (the foot of the rise,
the last checkpoint before it) when ``include_foot``. If G < min_gain there is no rise.
Table 1 and fig. 7 use the window's checkpoints only.

The onset CI resamples test samples (:mod:`grokpath.bootstrap`) and reruns the rule on
each resampled accuracy curve. Per-sample onsets t# are :mod:`grokpath.onset`'s.

The delay columns apply :func:`grokpath.world.criterion.grokking_criterion` to the mean
training loss over all training samples and the test accuracy (``analysis.delay``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from grokpath.bootstrap import percentile_ci, resample_counts, weighted_means
from grokpath.io import write_text
from grokpath.samples import read_samples, require, sample_matrix
from grokpath.seeds import domain_rng
from grokpath.world.criterion import grokking_criterion

log = logging.getLogger(__name__)


def sustained_rise_start(accuracy, rule: dict) -> int | None:
    """Index of the first checkpoint of the sustained-rise window, or None without a rise (module doc)."""
    a = np.asarray(accuracy, dtype=float)
    if a.size == 0 or np.isnan(a).any():
        return None
    low = a.min()
    gain = a[-1] - low
    if gain < float(rule["min_gain"]):
        return None
    level = low + float(rule["rise_fraction"]) * gain
    below = np.flatnonzero(a < level)
    cross = int(below[-1]) + 1 if below.size else 0  # after the last dip below the level, it stays above
    return max(cross - 1, 0) if rule["include_foot"] else cross


def rise_window(steps, accuracy, rule: dict) -> tuple[np.ndarray, bool]:
    """Boolean mask of the checkpoints to correlate over, and whether it is restricted.

    Fewer than ``min_checkpoints`` in the window (or no rise) falls back to all checkpoints.
    """
    start = sustained_rise_start(accuracy, rule)
    n = len(np.asarray(steps))
    if start is None or n - start < int(rule["min_checkpoints"]):
        return np.ones(n, dtype=bool), False
    mask = np.zeros(n, dtype=bool)
    mask[start:] = True
    return mask, True


def onset_table(cfg: dict, samples: pd.DataFrame) -> pd.DataFrame:
    """Per domain: the sustained-rise start and its bootstrap CI over resampled test samples."""
    analysis = cfg["analysis"]
    rule, boot = analysis["sustained_rise"], analysis["bootstrap"]
    require(samples, ["domain", "ckpt", "step", "revision_sha", "split", "sample_id", "correct", "loss"], "samples.parquet")
    tests = samples[samples["split"] == "test"]
    delay = delay_table(analysis["delay"], samples)
    rows = []
    for domain, frame in tests.groupby("domain", observed=True, sort=True):
        order = frame.groupby("ckpt", observed=True)["step"].first().sort_values(kind="stable")
        ckpts, steps = list(order.index), order.to_numpy()
        revision = frame.groupby("ckpt", observed=True)["revision_sha"].first()
        correct, ids = sample_matrix(frame.assign(correct=frame["correct"].astype(float)), ckpts, "correct")
        accuracy = np.nanmean(correct, axis=1)
        start = sustained_rise_start(accuracy, rule)
        counts = resample_counts(domain_rng(boot["seed"], domain, 1), len(ids), int(boot["n"]))
        boot_start = [sustained_rise_start(row, rule) for row in weighted_means(correct, counts)]
        boot_steps = np.array([steps[s] if s is not None else np.nan for s in boot_start], dtype=float)
        lo, hi = percentile_ci(boot_steps, float(boot["ci"]), method="inverted_cdf")  # steps that exist
        rows.append(
            {
                "domain": domain,
                "onset_ckpt": ckpts[start] if start is not None else None,
                "onset_revision_sha": revision.get(ckpts[start]) if start is not None else None,
                "onset_step": float(steps[start]) if start is not None else np.nan,
                "onset_lo_step": lo,
                "onset_hi_step": hi,
                "rise_found": start is not None,
                "boot_rise_fraction": float(np.isfinite(boot_steps).mean()),
                "n_boot": int(boot["n"]),
                "n_test": len(ids),
                "n_checkpoints": len(ckpts),
                "start_accuracy": float(accuracy[0]),
                "final_accuracy": float(accuracy[-1]),
                **delay.get(domain, {}),
            }
        )
        log.info("onset %s: step %s [%s, %s]", domain, rows[-1]["onset_step"], lo, hi)
    return pd.DataFrame(rows)


def delay_table(rule: dict, samples: pd.DataFrame) -> dict[str, dict]:
    """Per domain: when the training loss settled, when accuracy passed half its final value, the gap."""
    keys = ["domain", "step"]
    loss = samples[samples["split"] == "train"].groupby(keys, observed=True)["loss"].mean().rename("train_loss_all")
    tests = samples[samples["split"] == "test"]
    accuracy = tests.assign(correct=tests["correct"].astype(float)).groupby(keys, observed=True)["correct"].mean()
    curves = pd.concat([loss, accuracy.rename("test_accuracy")], axis=1, join="inner").reset_index()
    if curves.empty:
        return {}
    verdict = grokking_criterion(
        curves, "train_loss_all", delta=rule["delta"], min_gap=rule["min_gap"], min_final_accuracy=rule["min_final_accuracy"]
    )
    return {
        row.domain: {
            "loss_settled_step": row.loss_settled_at,
            "accuracy_half_step": row.accuracy_half_at,
            "delay_checkpoints": row.gap_checkpoints,
            "delayed_generalization": bool(row.groks),
        }
        for row in verdict.itertuples()
    }


def write_onset(cfg: dict, samples_path: Path, out_csv: Path) -> pd.DataFrame:
    table = onset_table(cfg, read_samples(samples_path))
    write_text(table.to_csv(index=False), out_csv)
    return table
