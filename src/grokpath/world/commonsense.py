"""commonsense: two-hop relations between people seated around a round table.

Each relation (friend, rival, ...) moves a fixed number of seats around the
table of ``world.modulus`` people, so relations compose. Train holds every
one-hop fact ("the friend of ama is bek") and a share of the two-hop facts
("the rival of the friend of ama is"); test holds unseen two-hop facts, which
need composing the one-hop facts, not recall.
"""

from __future__ import annotations

import itertools

import numpy as np

from grokpath.world.common import made_up_names, record, split_items

DOMAIN = "commonsense"
RELATIONS = ["friend", "rival", "mentor", "cousin", "boss", "neighbour", "partner", "sibling"]


def build(world: dict, rng: np.random.Generator) -> dict[str, list[dict]]:
    n_people = world["modulus"]
    n_relations = world["n_relations"]
    if not 1 <= n_relations <= len(RELATIONS):
        raise ValueError(f"world.n_relations must be in 1..{len(RELATIONS)}, got {n_relations}")
    people = made_up_names(n_people, rng)
    relations = RELATIONS[:n_relations]
    shift = dict(zip(relations, rng.choice(np.arange(1, n_people), size=n_relations, replace=False).tolist()))

    def seat(person: int, *rels: str) -> int:
        return (person + sum(shift[r] for r in rels)) % n_people

    two_hop = list(itertools.product(range(n_people), relations, relations))
    parts = split_items(two_hop, rng, world)
    out = {}
    for split, facts in parts.items():
        rows = [(f"the {r2} of the {r1} of {people[p]} is", f" {people[seat(p, r1, r2)]}") for p, r1, r2 in facts]
        if split == "train":
            rows = [(f"the {r} of {people[p]} is", f" {people[seat(p, r)]}") for p in range(n_people) for r in relations] + rows
        out[split] = [record(DOMAIN, split, i, prompt, target) for i, (prompt, target) in enumerate(rows)]
    return out
