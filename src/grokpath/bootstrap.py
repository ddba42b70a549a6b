"""Bootstrap over samples: resample counts, weighted means and pair means, percentile CIs.

Checkpoints are fixed and samples are resampled with replacement. The same samples are
scored at every checkpoint, so one resample of a sample set is used at all checkpoints
(it redraws the data set, not the training run). A resample is written as counts: how
often each sample was drawn. Every statistic is a function of the per-sample values and
those counts, so with all counts 1 it is the point estimate itself.

Pathway distance under a resample is the mean over pairs of *distinct draws*: with
counts w and distance matrix D (zero diagonal), the sum over ordered pairs is wᵀDw and
their number is (Σw)² − Σw², so a sample drawn twice never pairs with its own copy.
"""

from __future__ import annotations

import numpy as np


def resample_counts(rng: np.random.Generator, n_items: int, n_boot: int) -> np.ndarray:
    """(n_boot × n_items) counts of each item in a resample of size n_items with replacement."""
    if n_items == 0:
        return np.zeros((n_boot, 0))
    draws = rng.integers(0, n_items, size=(n_boot, n_items))
    offsets = np.arange(n_boot)[:, None] * n_items
    return np.bincount((draws + offsets).ravel(), minlength=n_boot * n_items).reshape(n_boot, n_items).astype(float)


def stratified_counts(rng: np.random.Generator, strata: list, n_boot: int) -> np.ndarray:
    """(n_boot × n) counts of a resample drawn within each stratum (each keeps its size).

    ``strata[i]`` labels item i; strata are drawn in sorted label order, so the counts
    depend only on the labels and the generator.
    """
    strata = np.asarray([str(s) for s in strata], dtype=object)
    counts = np.zeros((n_boot, len(strata)))
    for label in sorted(set(strata)):
        columns = np.flatnonzero(strata == label)
        counts[:, columns] = resample_counts(rng, len(columns), n_boot)
    return counts


def weighted_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """NaN-aware means of each checkpoint row of ``values`` (n_ckpt × n) under each resample: (n_boot × n_ckpt)."""
    present = np.isfinite(values)
    filled = np.where(present, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ filled.T) / (counts @ present.T.astype(float))


def pair_counts(counts: np.ndarray) -> np.ndarray:
    """Unordered pairs of distinct draws per resample: ((Σw)² − Σw²) / 2, (n_boot,)."""
    total = counts.sum(axis=1)
    return (total**2 - (counts**2).sum(axis=1)) / 2.0


def weighted_pair_mean(distance: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean distance over pairs of distinct drawn items (a copy never pairs with itself): (n_boot,)."""
    # integer distances and counts: the sums are exact in float64, whatever the BLAS summation order
    pair_sum = ((counts @ distance) * counts).sum(axis=1) / 2.0  # the diagonal is 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return pair_sum / pair_counts(counts)


def percentile_ci(values: np.ndarray, level: float, method: str = "linear") -> tuple[float, float]:
    """Percentile interval of the finite values (``inverted_cdf`` returns observed values)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [tail, 1.0 - tail], method=method)
    return float(lo), float(hi)
