"""math: modular addition statements ``17 + 25 = 11`` (mod ``world.modulus``).

Test pairs (a, b) never appear in train; answering them needs the addition rule.
"""

from __future__ import annotations

import numpy as np

from grokpath.world.common import all_pairs, record, split_items

DOMAIN = "math"


def build(world: dict, rng: np.random.Generator) -> dict[str, list[dict]]:
    p = world["modulus"]
    parts = split_items(all_pairs(p), rng, world)
    return {
        split: [record(DOMAIN, split, i, f"{a} + {b} =", f" {(a + b) % p}") for i, (a, b) in enumerate(pairs)]
        for split, pairs in parts.items()
    }
