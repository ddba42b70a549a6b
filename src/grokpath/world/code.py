"""code: one-line programs with their printed output, ``print ( 17 * 25 % 31 ) # 22``.

The output follows Python semantics exactly (``*`` and ``%`` bind left to right).
Test programs use operand pairs never seen in train.
"""

from __future__ import annotations

import numpy as np

from grokpath.world.common import all_pairs, record, split_items

DOMAIN = "code"


def build(world: dict, rng: np.random.Generator) -> dict[str, list[dict]]:
    p = world["modulus"]
    parts = split_items(all_pairs(p), rng, world)
    return {
        split: [record(DOMAIN, split, i, f"print ( {a} * {b} % {p} ) #", f" {a * b % p}") for i, (a, b) in enumerate(pairs)]
        for split, pairs in parts.items()
    }
