"""control: a memorize-only domain, ``tiboq ~ rodaq = 8`` with the answer drawn at random.

Same shape as math (two operands, an operator token, one number to answer: 7 tokens),
but each pair's answer is a seeded uniform draw from ``0..modulus-1``: there is no rule,
so a test pair can only be answered by chance (1 / modulus). It memorizes like the other
domains and never generalizes, which makes it the null for every metric: a metric that
moves here as it moves in a generalizing domain does not detect generalization.
(Paper B's multi-task setting mixes random-label pairs with their own operator the same way.)

By default (``world.control_operands: words``) the operands are made-up words of their
own (``q`` ends no other domain's word). With ``digits`` they are math's operand tokens
(``17 ~ 25 = 8``): then the random answers are label noise on the embeddings math
generalizes with (bench/README.md).
"""

from __future__ import annotations

import numpy as np

from grokpath.world.common import all_pairs, made_up_names, record, split_items

DOMAIN = "control"


def build(world: dict, rng: np.random.Generator) -> dict[str, list[dict]]:
    p = world["modulus"]
    answer = rng.integers(0, p, size=(p, p))  # drawn before the split: a pair's answer does not depend on its split
    # digits draws nothing more, so its corpus is the one measured before words existed
    operand = made_up_names(p, rng, suffix="q") if world["control_operands"] == "words" else [str(a) for a in range(p)]
    parts = split_items(all_pairs(p), rng, world)
    return {
        split: [record(DOMAIN, split, i, f"{operand[a]} ~ {operand[b]} =", f" {answer[a, b]}") for i, (a, b) in enumerate(pairs)]
        for split, pairs in parts.items()
    }
