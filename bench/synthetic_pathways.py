"""Synthetic OLMoE-shaped routing for the distance benchmarks.

Token-mean routing of 16 layers × 64 experts: per layer a softmax of Gaussian logits
(a shared per-layer bias plus a per-sample part), peaked enough that the 0.7 threshold
keeps about 10.9 experts per layer and the pathway strings run to about 495 characters,
as measured for OLMoE-1B-7B-shaped pathways.
"""

from __future__ import annotations

import numpy as np

N_LAYERS, N_EXPERTS = 16, 64
SHARED_SCALE, SAMPLE_SCALE = 0.6, 1.49  # logit standard deviations, tuned to ~10.9 experts/layer at 0.7


def synthetic_routing(n: int, seed: int = 0, n_layers: int = N_LAYERS, n_experts: int = N_EXPERTS) -> np.ndarray:
    """(n, n_layers, n_experts) float32 token-mean routing weights, rows summing to 1."""
    rng = np.random.default_rng(seed)
    logits = SHARED_SCALE * rng.standard_normal((1, n_layers, n_experts)) + SAMPLE_SCALE * rng.standard_normal(
        (n, n_layers, n_experts)
    )
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


if __name__ == "__main__":
    from grokpath import pathways

    routing = synthetic_routing(2000)
    strings = pathways.pathway_strings(routing, 0.7, True)
    print(
        f"experts/layer at 0.7: {pathways.n_experts_total(routing, 0.7, True).mean() / N_LAYERS:.2f}; "
        f"characters: {np.mean([len(s) for s in strings]):.0f}; distinct: {len(set(strings))} of {len(strings)}"
    )
