"""control: a memorize-only domain, ``17 ~ 25 = 8`` with the answer drawn at random.

Same shape as math (two operands, an operator token, one number to answer), but each
pair's answer is a seeded uniform draw from ``0..modulus-1``: there is no rule, so a
test pair can only be answered by chance (1 / modulus). It memorizes like the other
domains and never generalizes, which makes it the null for every metric: a metric that
moves here as it moves in a generalizing domain does not detect generalization.
(Paper B's multi-task setting mixes random-label pairs with their own operator the same way.)
"""

from __future__ import annotations

import numpy as np

from grokpath.world.common import all_pairs, record, split_items

DOMAIN = "control"


def build(world: dict, rng: np.random.Generator) -> dict[str, list[dict]]:
    p = world["modulus"]
    answer = rng.integers(0, p, size=(p, p))  # drawn before the split: a pair's answer does not depend on its split
    parts = split_items(all_pairs(p), rng, world)
    return {
        split: [record(DOMAIN, split, i, f"{a} ~ {b} =", f" {answer[a, b]}") for i, (a, b) in enumerate(pairs)]
        for split, pairs in parts.items()
    }
