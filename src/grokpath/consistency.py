"""Pathway consistency (paper A): how smoothly a sample's routing moves across layers.

Expert k of layer l is embedded as the router's row k, W_l[k]. The routing embedding of
sample i at layer l is e_{i,l} = Σ_k g_l(i,k) W_l[k], with g the token-mean routing weight.
With cos_l = cos(e_{i,l}, e_{i,l+1}) for l = 1..L-1, the paper's score is

    C_i = 1 − mean_l cos_l / (max_l cos_l + 1e-8).

It is implemented exactly, and the raw mean and max cosines are reported beside it (the
paper's words and formula disagree on the sign). When max_l cos_l ≤ ``guard_min_max_cosine``
the ratio is ill-conditioned (−1.2 and −9.1 were seen at random init): C_i is then NaN and
``guarded`` is True.
"""

from __future__ import annotations

import numpy as np

PAPER_EPSILON = 1e-8  # the 1e-8 in the paper's denominator


def routing_embeddings(routing: np.ndarray, router_weights: np.ndarray) -> np.ndarray:
    """e (N, L, d) from routing (N, L, K) and router weights (L, K, d)."""
    routing = np.asarray(routing, dtype=np.float64)
    router_weights = np.asarray(router_weights, dtype=np.float64)
    if routing.ndim != 3 or router_weights.ndim != 3:
        raise ValueError(
            f"routing must be (N, L, K) and router_weights (L, K, d); got {routing.shape} and {router_weights.shape}"
        )
    if routing.shape[1:] != router_weights.shape[:2]:
        raise ValueError(f"routing has L, K = {routing.shape[1:]} but router_weights has L, K = {router_weights.shape[:2]}")
    return np.einsum("nlk,lkd->nld", routing, router_weights)


def consecutive_cosines(embeddings: np.ndarray) -> np.ndarray:
    """cos(e_l, e_{l+1}) for l = 1..L-1: (N, L-1). A zero vector has cosine 0."""
    a, b = embeddings[:, :-1], embeddings[:, 1:]
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    dots = np.einsum("nld,nld->nl", a, b)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def routing_consistency(
    routing: np.ndarray, router_weights: np.ndarray, guard_min_max_cosine: float = 0.0
) -> dict[str, np.ndarray]:
    """Per sample: ``consistency`` C_i, ``mean_cosine``, ``max_cosine`` and ``guarded`` (all (N,))."""
    embeddings = routing_embeddings(routing, router_weights)
    if embeddings.shape[1] < 2:
        raise ValueError(f"consistency needs at least 2 layers, routing has {embeddings.shape[1]}")
    cosines = consecutive_cosines(embeddings)
    mean_cosine = cosines.mean(axis=1)
    max_cosine = cosines.max(axis=1)
    guarded = max_cosine <= guard_min_max_cosine
    with np.errstate(divide="ignore", invalid="ignore"):
        consistency = 1.0 - mean_cosine / (max_cosine + PAPER_EPSILON)
    consistency = np.where(guarded, np.nan, consistency)
    return {"consistency": consistency, "mean_cosine": mean_cosine, "max_cosine": max_cosine, "guarded": guarded}
