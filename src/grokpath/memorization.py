"""Memorization steps (paper A).

Training sample i is memorized at t*_i, the earliest checkpoint t such that for every
t' ≥ t: loss_i(t') ≤ ε and |loss_i(t') − loss_i(T)| ≤ δ, with T the last checkpoint.
Since the condition must hold at every later checkpoint, a sample that dips under ε and
rises again is memorized only from the last time it comes back down.

ε ``auto``: the smallest ε on the grid epsilon_step, 2·epsilon_step, ... that leaves a
memorized fraction inside ``target_fraction``; if no grid value lands in the band, the
one whose fraction is closest to it (the smaller ε on a tie), and ``in_band`` is False.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def sample_step_matrix(frame: pd.DataFrame, value: str, table: str, what: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Long (sample_id, step, value) frame to (sample_ids, steps ascending, wide sample × step frame).

    Every sample needs exactly one value at every checkpoint; ``table`` and ``what`` name
    the input in errors (e.g. "loss table", "loss").
    """
    missing = {"sample_id", "step", value} - set(frame.columns)
    if missing:
        raise ValueError(f"{table} lacks column(s) {sorted(missing)}")
    if frame.duplicated(["sample_id", "step"]).any():
        dup = frame.loc[frame.duplicated(["sample_id", "step"]), ["sample_id", "step"]].iloc[0]
        raise ValueError(f"{table} has sample '{dup.sample_id}' twice at step {dup.step}")
    wide = frame.pivot(index="sample_id", columns="step", values=value).sort_index(axis=1)
    if wide.isna().any().any():
        sample, step = wide.stack(future_stack=True).loc[lambda s: s.isna()].index[0]
        raise ValueError(f"no {what} for sample '{sample}' at step {step}: every sample needs every checkpoint")
    return wide.index.to_numpy(), wide.columns.to_numpy(dtype=np.int64), wide


def loss_matrix(losses: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long (sample_id, step, loss) frame to (sample_ids (N,), steps (C,), loss (N, C)), steps ascending."""
    sample_ids, steps, wide = sample_step_matrix(losses, "loss", "loss table", "loss")
    return sample_ids, steps, wide.to_numpy(dtype=np.float64)


def memorization_index(loss: np.ndarray, epsilon: float, delta: float) -> np.ndarray:
    """Per sample, the index of its memorization checkpoint t*, or -1 if never memorized."""
    ok = (loss <= epsilon) & (np.abs(loss - loss[:, -1:]) <= delta)
    # suffix_ok[i, t]: the condition holds at t and at every later checkpoint
    suffix_ok = np.flip(np.logical_and.accumulate(np.flip(ok, axis=1), axis=1), axis=1)
    return np.where(suffix_ok.any(axis=1), suffix_ok.argmax(axis=1), -1)


def memorized_fraction(loss: np.ndarray, epsilon: float, delta: float) -> float:
    return float((memorization_index(loss, epsilon, delta) >= 0).mean())


def calibrate_epsilon(
    loss: np.ndarray, delta: float, epsilon_step: float = 0.1, target_fraction: tuple[float, float] = (0.20, 0.25)
) -> dict:
    """ε for ``auto`` mode: ``{"epsilon", "fraction", "in_band"}`` (see module docstring)."""
    low, high = target_fraction
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"memorization.target_fraction must satisfy 0 ≤ low ≤ high ≤ 1, got {target_fraction}")
    if epsilon_step <= 0:
        raise ValueError(f"memorization.epsilon_step must be > 0, got {epsilon_step}")
    # past max loss every sample passes the ε test, so the grid can stop there
    n_grid = max(1, math.ceil(float(np.max(loss)) / epsilon_step) + 1)
    best = None
    for k in range(1, n_grid + 1):
        epsilon = round(k * epsilon_step, 10)
        fraction = memorized_fraction(loss, epsilon, delta)
        if low <= fraction <= high:
            return {"epsilon": epsilon, "fraction": fraction, "in_band": True}
        gap = low - fraction if fraction < low else fraction - high
        if best is None or gap < best[0]:
            best = (gap, epsilon, fraction)
        if fraction > high:  # the fraction never falls as ε grows: later grid values are farther
            break
    _, epsilon, fraction = best
    log.warning(
        "no ε on the %.3g grid gives a memorized fraction in %s; closest: ε=%s (fraction %.3f)",
        epsilon_step,
        target_fraction,
        epsilon,
        fraction,
    )
    return {"epsilon": epsilon, "fraction": fraction, "in_band": False}


def domain_epsilon(section: dict, domain: str):
    """The configured ε for ``domain``: a number, ``"auto"``, or a per-domain map of these."""
    value = section["epsilon"]
    if isinstance(value, dict):
        if domain not in value:
            raise ValueError(f"memorization.epsilon has no entry for domain '{domain}'")
        value = value[domain]
    return value


def memorization_steps(
    losses: pd.DataFrame,
    epsilon: float | str,
    delta: float,
    epsilon_step: float = 0.1,
    target_fraction: tuple[float, float] = (0.20, 0.25),
) -> tuple[pd.DataFrame, dict]:
    """t* per sample from a long (sample_id, step, loss) frame.

    Returns the frame (sample_id, memorized, t_star_step, epsilon, delta, epsilon_mode)
    and the calibration record (epsilon, fraction, in_band, mode).
    """
    sample_ids, steps, loss = loss_matrix(losses)
    if epsilon == "auto":
        record = {**calibrate_epsilon(loss, delta, epsilon_step, tuple(target_fraction)), "mode": "auto"}
    elif isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool):
        record = {
            "epsilon": float(epsilon),
            "fraction": memorized_fraction(loss, float(epsilon), delta),
            "in_band": None,
            "mode": "fixed",
        }
    else:
        raise ValueError(f"memorization.epsilon must be a number or 'auto', got {epsilon!r}")
    index = memorization_index(loss, record["epsilon"], delta)
    t_star = pd.array([int(steps[k]) if k >= 0 else None for k in index], dtype="Int64")
    frame = pd.DataFrame(
        {
            "sample_id": sample_ids.astype(str),
            "memorized": index >= 0,
            "t_star_step": t_star,
            "epsilon": record["epsilon"],
            "delta": float(delta),
            "epsilon_mode": record["mode"],
        }
    )
    return frame, record


def ablation_grid(
    losses: pd.DataFrame, epsilons: list[float], deltas: list[float], main_epsilon: float, main_delta: float
) -> pd.DataFrame:
    """Memorized counts per checkpoint while varying ε (at the main δ) or δ (at the main ε).

    Rows: parameter ("epsilon"|"delta"), epsilon, delta, step, n_memorized (t* ≤ step), fraction.
    """
    _, steps, loss = loss_matrix(losses)
    settings = [("epsilon", float(e), float(main_delta)) for e in epsilons] + [
        ("delta", float(main_epsilon), float(d)) for d in deltas
    ]
    rows = []
    for parameter, epsilon, delta in settings:
        index = memorization_index(loss, epsilon, delta)
        for k, step in enumerate(steps):
            n = int(((index >= 0) & (index <= k)).sum())
            rows.append(
                {
                    "parameter": parameter,
                    "epsilon": epsilon,
                    "delta": delta,
                    "step": int(step),
                    "n_memorized": n,
                    "fraction": n / len(index),
                }
            )
    return pd.DataFrame(rows)


def ablation_epsilons(section: dict, main_epsilon: float) -> list[float]:
    """The ε ablation grid; ε ≤ 0 dropped.

    ``ablation_epsilon_factors`` (when set): the main ε times each factor, for loss scales
    far below the paper's (the mini world's answer-token NLL). Otherwise ``ablation_epsilons``
    as offsets from the main ε (``ablation_epsilon_relative``) or as absolute values.
    """
    grid = section["ablation_epsilons"]
    if section.get("ablation_epsilon_factors"):
        grid = [round(main_epsilon * factor, 12) for factor in section["ablation_epsilon_factors"]]
    elif section["ablation_epsilon_relative"]:
        grid = [round(main_epsilon + offset, 10) for offset in grid]
    kept = [e for e in grid if e > 0]
    if len(kept) < len(grid):
        log.info("ε ablation: dropped non-positive value(s) %s", sorted(set(grid) - set(kept)))
    return kept
