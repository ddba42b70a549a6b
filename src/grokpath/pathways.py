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
        [",".join(map(str, order[i, l, : n_keep[i, l]])) for l in range(order.shape[1])]
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
    return process.cdist(a, b, scorer=Levenshtein.distance, workers=workers, dtype=np.int64)


def _cpdist(a: list[str], b: list[str], workers: int) -> np.ndarray:
    return process.cpdist(a, b, scorer=Levenshtein.distance, workers=workers, dtype=np.int64)


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
    give ``(nan, 0, False)``. Rows go through rapidfuzz in blocks of ``block_rows`` so
    memory stays at block_rows × N; ``workers`` threads (-1: all cores).
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
    total = 0
    for start in range(0, n - 1, block_rows):
        stop = min(start + block_rows, n - 1)
        block = _cdist(strings[start:stop], strings[start:], workers)
        # row r (sample start + r) pairs with columns c > r
        total += int(np.triu(block, k=1).sum())
    return total / total_pairs, total_pairs, False


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
    """Mean Levenshtein distance over all pairs (a_i, b_j): ``(mean, n_pairs, sampled)``."""
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
    total = sum(int(_cdist(a[s : s + block_rows], b, workers).sum()) for s in range(0, len(a), block_rows))
    return total / total_pairs, total_pairs, False


def routing_entropy(routing: np.ndarray) -> np.ndarray:
    """Per sample (N,): the mean over layers of the Shannon entropy (nats) of the
    token-mean routing distribution, renormalized to sum 1 per layer (0·log 0 = 0)."""
    from scipy.stats import entropy  # lazy: scipy.stats costs seconds to import in every job

    routing = _check_routing(routing)
    return entropy(routing, axis=-1).mean(axis=1)
