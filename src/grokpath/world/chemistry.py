"""domain: a fictional chemistry of made-up elements.

Atomic facts give each element an atomic number ("number of zorium = 7");
the mass of a two-element compound is the sum of its atomic numbers mod
``world.modulus`` ("mass of zorium bexium = 12"). Train holds every atomic fact
and a share of the compounds; test holds unseen compounds, which need the
atomic facts composed with the mass rule.
"""

from __future__ import annotations

import numpy as np

from grokpath.world.common import all_pairs, made_up_names, record, split_items

DOMAIN = "domain"


def build(world: dict, rng: np.random.Generator) -> dict[str, list[dict]]:
    p = world["modulus"]
    elements = made_up_names(p, rng, suffix="ium")
    number = rng.permutation(p).tolist()  # element i has atomic number number[i]
    parts = split_items(all_pairs(p), rng, world)
    out = {}
    for split, pairs in parts.items():
        rows = [(f"mass of {elements[a]} {elements[b]} =", f" {(number[a] + number[b]) % p}") for a, b in pairs]
        if split == "train":
            rows = [(f"number of {elements[e]} =", f" {number[e]}") for e in range(p)] + rows
        out[split] = [record(DOMAIN, split, i, prompt, target) for i, (prompt, target) in enumerate(rows)]
    return out
