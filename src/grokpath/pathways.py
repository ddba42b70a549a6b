"""Routing pathways (paper A): pathway strings, their edit distances, routing entropy.

A sample's routing is an (L, K) array: per layer, the router's weights averaged over
the sample's tokens. Per layer the experts are ranked by that mean weight (ties go to
the lower expert index: a stable sort) and kept, in rank order, until the cumulative
weight passes the threshold. "Passes" means exceeds it by more than ``PASS_TOLERANCE``,
so float rounding of an exact tie (0.4 + 0.3 vs 0.7) never decides the pathway.
``include_crossing`` keeps the expert whose weight makes the sum pass; without it at
least the top expert is kept. When the sum never passes (threshold ≥ total weight) all
experts are kept. A layer is written ``"3,1,5"`` and layers are joined with ``"-"``.

Distances are plain, unnormalized Levenshtein distances (rapidfuzz), at one of two levels:
- ``char``: on the strings themselves, as the paper does. One changed expert then costs
  as many edits as its id has digits (plus a comma), so the scale depends on K.
- ``expert``: on the sequence of expert ids with one separator token per layer boundary;
  one changed expert costs 1. Each id is mapped to one private-use code point, which is
  the same as Levenshtein over the token lists, only faster.
"""

from __future__ import annotations

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

PASS_TOLERANCE = 1e-6
LEVELS = ("char", "expert")
_EXPERT_CODEPOINT = 0xE000  # start of the Unicode private-use area


def _check_routing(routing: np.ndarray) -> np.ndarray:
    routing = np.asarray(routing, dtype=np.float64)
    if routing.ndim != 3:
        raise ValueError(f"routing must be an (N, L, K) array, got shape {routing.shape}")
    return routing


def kept_experts(routing: np.ndarray, threshold: float = 0.7, include_crossing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Experts in rank order (N, L, K) and how many of them each layer keeps (N, L)."""
    routing = _check_routing(routing)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"pathway threshold must be in (0, 1], got {threshold}")
    order = np.argsort(-routing, axis=-1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(routing, order, axis=-1), axis=-1)
    passes = cumulative > threshold + PASS_TOLERANCE
    crossing = passes.argmax(axis=-1)  # rank of the expert that makes the sum pass
    n_keep = crossing + 1 if include_crossing else np.maximum(crossing, 1)
    n_keep = np.where(passes.any(axis=-1), n_keep, routing.shape[-1])
    return order, n_keep


def layer_strings(routing: np.ndarray, threshold: float = 0.7, include_crossing: bool = True) -> list[list[str]]:
    """Per sample, per layer: the kept experts joined with ``,`` (``"3,1,5"``)."""
    order, n_keep = kept_experts(routing, threshold, include_crossing)
    return [
        [",".join(map(str, order[i, layer, : n_keep[i, layer]])) for layer in range(order.shape[1])]
        for i in range(order.shape[0])
    ]


def pathway_strings(routing: np.ndarray, threshold: float = 0.7, include_crossing: bool = True) -> list[str]:
    """Per sample: the layers' expert lists joined with ``-`` (``"3,1,5-...-9,1"``)."""
    return ["-".join(layers) for layers in layer_strings(routing, threshold, include_crossing)]


def n_experts_total(routing: np.ndarray, threshold: float = 0.7, include_crossing: bool = True) -> np.ndarray:
    """Experts kept over all layers, per sample (N,)."""
    return kept_experts(routing, threshold, include_crossing)[1].sum(axis=1)


def as_level(strings: list[str], level: str = "char") -> list[str]:
    """Strings to compare at ``level``: unchanged for ``char``; one symbol per expert for ``expert``."""
    if level == "char":
        return list(strings)
    if level != "expert":
        raise ValueError(f"pathways.level must be one of {LEVELS}, got '{level}'")
    out = []
    for s in strings:
        layers = s.split("-")
        out.append("-".join("".join(chr(_EXPERT_CODEPOINT + int(e)) for e in layer.split(",") if e) for layer in layers))
    return out


def _cdist(a: list[str], b: list[str], workers: int) -> np.ndarray:
    return process.cdist(a, b, scorer=Levenshtein.distance, workers=workers, dtype=np.int32)


def _cpdist(a: list[str], b: list[str], workers: int) -> np.ndarray:
    return process.cpdist(a, b, scorer=Levenshtein.distance, workers=workers, dtype=np.int64)


def _unique_counts(strings: list[str], members: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Distinct strings (first-seen order) and their multiplicity in each group (U, G) int64."""
    index: dict[str, int] = {}
    codes = np.array([index.setdefault(s, len(index)) for s in strings], dtype=np.int64)
    counts = np.zeros((len(index), len(members)), dtype=np.int64)
    for g, rows in enumerate(members.values()):
        np.add.at(counts[:, g], codes[rows], 1)
    return list(index), counts


def _weighted_sums(
    rows: list[str], cols: list[str], row_w: np.ndarray, col_w: np.ndarray, *, triangle: bool, block_rows: int, workers: int
) -> np.ndarray:
    """Per group g, Σ row_w[u, g]·col_w[v, g]·d(rows[u], cols[v]) as exact integers (G,).

    ``triangle``: rows and cols are the same list and only u < v counts (the distance is
    symmetric and d(s, s) = 0). Blocks of ``block_rows`` rows go through rapidfuzz; each
    block's distances are reduced into every group at once by one matrix product, so no
    N × N matrix is ever held. The product runs in float64 when every partial sum is an
    integer below 2**53 (then it is exact), else in int64.
    """
    n_groups = row_w.shape[1]
    total = np.zeros(n_groups, dtype=object)  # Python ints: no overflow
    if not rows or not cols:
        return total
    bound = max(map(len, rows)) + max(map(len, cols))  # d(a, b) <= max(len) <= this
    exact_float = bound * int(row_w.sum(0).max()) * int(col_w.sum(0).max()) < 2**53
    for start in range(0, len(rows), block_rows):
        stop = min(start + block_rows, len(rows))
        first = start + 1 if triangle else 0  # columns before the block's first row never count
        if first >= len(cols):
            break
        dist = _cdist(rows[start:stop], cols[first:], workers)
        if triangle:  # block row r is sample start + r; keep columns first + c > start + r
            dist[np.tril_indices(stop - start, k=-1, m=dist.shape[1])] = 0
        weights = col_w[first:]
        if exact_float:
            per_row = np.rint(dist.astype(np.float64) @ weights.astype(np.float64)).astype(np.int64)
        else:
            per_row = dist.astype(np.int64) @ weights
        total += [int(x) for x in (per_row * row_w[start:stop]).sum(0)]
    return total


def group_mean_distances(
    strings: list[str],
    groups: dict[str, np.ndarray],
    max_pairs: int | None = None,
    seed: int = 0,
    level: str = "char",
    block_rows: int = 256,
    workers: int = -1,
    dedup: bool = True,
) -> dict[str, tuple[float, int, bool]]:
    """Mean Levenshtein distance over the pairs i < j inside every group, from one pass.

    ``groups`` maps a name to the indices (or a boolean mask) of its members in
    ``strings``; groups may overlap. Returns ``{name: (mean, n_pairs, sampled)}`` with
    the same semantics as :func:`mean_pairwise_distance`, which gives identical numbers
    group by group. The exact groups are reduced together: identical strings are merged
    (``dedup``) and weighted by their multiplicity in each group, only the upper triangle
    of distinct strings is computed, in blocks of ``block_rows`` rows, and each block is
    reduced into every group's integer sum. A group with more than ``max_pairs`` pairs is
    sampled on its own instead.
    """
    strings = as_level(strings, level)
    members = {}
    for name, rows in groups.items():
        rows = np.asarray(rows)
        members[name] = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
    out: dict[str, tuple[float, int, bool]] = {}
    exact: dict[str, np.ndarray] = {}
    for name, rows in members.items():
        n = len(rows)
        n_pairs = n * (n - 1) // 2
        if n_pairs == 0:
            out[name] = (float("nan"), 0, False)
        elif max_pairs is not None and n_pairs > max_pairs:
            out[name] = mean_pairwise_distance([strings[k] for k in rows], max_pairs, seed, "char", block_rows, workers)
        else:
            exact[name] = rows
    if exact:
        union = np.unique(np.concatenate(list(exact.values())))
        local = {name: np.searchsorted(union, rows) for name, rows in exact.items()}
        picked = [strings[k] for k in union]
        if dedup:
            distinct, counts = _unique_counts(picked, local)
        else:
            distinct, counts = picked, np.zeros((len(picked), len(local)), dtype=np.int64)
            for g, rows in enumerate(local.values()):
                np.add.at(counts[:, g], rows, 1)
        sums = _weighted_sums(distinct, distinct, counts, counts, triangle=True, block_rows=block_rows, workers=workers)
        for (name, rows), total in zip(exact.items(), sums):
            n_pairs = len(rows) * (len(rows) - 1) // 2
            out[name] = (total / n_pairs, n_pairs, False)
    return {name: out[name] for name in groups}


def mean_pairwise_distance(
    strings: list[str],
    max_pairs: int | None = None,
    seed: int = 0,
    level: str = "char",
    block_rows: int = 256,
    workers: int = -1,
) -> tuple[float, int, bool]:
    """Mean Levenshtein distance over all pairs i < j: ``(mean, n_pairs, sampled)``.

    When ``max_pairs`` is set and there are more pairs, ``max_pairs`` pairs (i != j)
    are drawn uniformly with replacement; ``sampled`` says so. Fewer than 2 strings
    give ``(nan, 0, False)``. The exact mean is the integer sum of all pair distances
    divided by the pair count (see :func:`group_mean_distances`); ``workers`` threads
    (-1: all cores).
    """
    strings = as_level(strings, level)
    n = len(strings)
    total_pairs = n * (n - 1) // 2
    if total_pairs == 0:
        return float("nan"), 0, False
    if max_pairs is not None and total_pairs > max_pairs:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, size=max_pairs)
        j = (i + rng.integers(1, n, size=max_pairs)) % n  # uniform over j != i
        dist = _cpdist([strings[k] for k in i], [strings[k] for k in j], workers)
        return float(dist.mean()), int(max_pairs), True
    return group_mean_distances(strings, {"all": np.arange(n)}, block_rows=block_rows, workers=workers)["all"]


def mean_pairwise_distance_value(strings: list[str], **kwargs) -> float:
    """Just the mean of :func:`mean_pairwise_distance` (for the online monitor)."""
    return mean_pairwise_distance(strings, **kwargs)[0]


def cross_distance(
    a: list[str],
    b: list[str],
    max_pairs: int | None = None,
    seed: int = 0,
    level: str = "char",
    block_rows: int = 256,
    workers: int = -1,
) -> tuple[float, int, bool]:
    """Mean Levenshtein distance over all pairs (a_i, b_j): ``(mean, n_pairs, sampled)``.

    Exact: identical strings on either side are merged and weighted by multiplicity.
    """
    a, b = as_level(a, level), as_level(b, level)
    total_pairs = len(a) * len(b)
    if total_pairs == 0:
        return float("nan"), 0, False
    if max_pairs is not None and total_pairs > max_pairs:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, len(a), size=max_pairs)
        j = rng.integers(0, len(b), size=max_pairs)
        dist = _cpdist([a[k] for k in i], [b[k] for k in j], workers)
        return float(dist.mean()), int(max_pairs), True
    rows, row_w = _unique_counts(a, {"a": np.arange(len(a))})
    cols, col_w = _unique_counts(b, {"b": np.arange(len(b))})
    total = _weighted_sums(rows, cols, row_w, col_w, triangle=False, block_rows=block_rows, workers=workers)[0]
    return total / total_pairs, total_pairs, False


def routing_entropy(routing: np.ndarray) -> np.ndarray:
    """Per sample (N,): the mean over layers of the Shannon entropy (nats) of the
    token-mean routing distribution, renormalized to sum 1 per layer (0·log 0 = 0)."""
    from scipy.stats import entropy  # lazy: scipy.stats costs seconds to import in every job

    routing = _check_routing(routing)
    return entropy(routing, axis=-1).mean(axis=1)


def pathway_drift(frame, level: str = "char", workers: int = 1):
    """What moves the pathway distance: drift from the start versus sharing between samples.

    ``frame`` is the long pathway table (columns domain, split, step, sample_id, pathway;
    one row per sample and checkpoint, as ``results/metrics/domains/<d>/pathways.parquet``).
    One row per (domain, split, step) with:

    - ``drift_from_first``: mean over samples of the edit distance between a sample's
      pathway at this checkpoint and its own pathway at the domain's first checkpoint
      (routing differentiating from its initial state; 0 at the first checkpoint);
    - ``n_distinct``: distinct pathway strings among the samples (sharing: fewer means
      more samples on the same route, hence a smaller mean pairwise distance);
    - ``modal_share``: share of samples on the most common pathway;
    - ``n_samples``.

    Only samples present at the first checkpoint count towards ``drift_from_first``.
    """
    import pandas as pd

    missing = {"domain", "split", "step", "sample_id", "pathway"} - set(frame.columns)
    if missing:
        raise ValueError(f"pathway_drift: frame lacks column(s) {sorted(missing)}")
    rows = []
    for (domain, split), part in frame.groupby(["domain", "split"], sort=True):
        first_step = int(part["step"].min())
        first = part.loc[part["step"] == first_step].set_index("sample_id")["pathway"]
        for step, at in part.groupby("step", sort=True):
            strings = at["pathway"].astype(str).tolist()
            counts = at["pathway"].value_counts()
            known = at.loc[at["sample_id"].isin(first.index)]
            start = first.loc[known["sample_id"]].astype(str).tolist()
            drift = _cpdist(as_level(known["pathway"].astype(str).tolist(), level), as_level(start, level), workers)
            rows.append(
                {
                    "domain": domain,
                    "split": split,
                    "step": int(step),
                    "drift_from_first": float(drift.mean()) if len(drift) else float("nan"),
                    "n_distinct": int(len(counts)),
                    "modal_share": float(counts.iloc[0] / len(strings)),
                    "n_samples": len(strings),
                }
            )
    return pd.DataFrame(rows)
