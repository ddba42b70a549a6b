"""skills: compositions of primitive skills on a short number sequence, labelled.

A library of primitives acts on a sequence of ``world.skills_length`` numbers mod
``world.modulus``: elementwise ones (``inc`` +1, ``add3`` +3, ``dbl`` ×2, ``neg`` −x,
``map`` through a seeded permutation of 0..p-1) and order ones (``rev`` reverse, ``rot``
rotate left by one, ``swap`` swap the first two). A text names 2 to 4 distinct primitives,
applied left to right, then the operands: ``inc rev map 3 5 1 6 = 2 0 4 5``. With
``world.skills_format: steps`` the answer writes the sequence after every primitive, one
``=`` each (``inc rev map 3 5 1 6 = 4 6 2 0 = 0 2 6 4 = 2 0 4 5``): each step applies one
named primitive to the sequence just written, so an unseen composition can be answered
by applying seen primitives in turn (step-by-step outputs are what let transformers
compose functions they never saw composed: Ramesh et al., arXiv 2311.12997).

Every record carries its ``skills`` (the primitives of its composition, in order), so
which samples SHOULD share a route is known: samples of one composition share every
skill, and any two compositions share the primitives they have in common. Train holds
every primitive alone (``world.skills_atoms`` operand draws each) and a share
(``world.train_fraction``) of the compositions (``world.skills_operands`` draws each);
validation and test hold the other compositions, unseen in train, whose primitives
were all seen. So a test prompt can be answered by composing learned skills, not recall.
"""

from __future__ import annotations

import itertools

import numpy as np

from grokpath.world.common import record, split_items

DOMAIN = "skills"
PRIMITIVES = ["inc", "add3", "dbl", "neg", "map", "rev", "rot", "swap"]


def primitive_functions(p: int, permutation: list[int]) -> dict:
    """Each primitive as a function of a tuple of numbers mod ``p``."""
    return {
        "inc": lambda xs: tuple((x + 1) % p for x in xs),
        "add3": lambda xs: tuple((x + 3) % p for x in xs),
        "dbl": lambda xs: tuple((2 * x) % p for x in xs),
        "neg": lambda xs: tuple((-x) % p for x in xs),
        "map": lambda xs: tuple(permutation[x] for x in xs),
        "rev": lambda xs: tuple(reversed(xs)),
        "rot": lambda xs: tuple(xs[1:]) + tuple(xs[:1]),
        "swap": lambda xs: (tuple(xs[1:2]) + tuple(xs[:1]) + tuple(xs[2:])) if len(xs) > 1 else tuple(xs),
    }


def apply_skills(skills: list[str], operands: tuple[int, ...], functions: dict) -> tuple[int, ...]:
    """The composition applied left to right (the first named primitive acts first)."""
    out = tuple(operands)
    for name in skills:
        out = functions[name](out)
    return out


def compositions(library: list[str], depths: list[int], cap: int, rng: np.random.Generator) -> list[tuple[str, ...]]:
    """Ordered tuples of distinct primitives of each depth, at most ``cap`` per depth (a seeded draw)."""
    out = []
    for depth in depths:
        every = list(itertools.permutations(library, depth))
        if len(every) > cap:
            every = [every[i] for i in sorted(rng.choice(len(every), size=cap, replace=False))]
        out += every
    return out


def _row(skills: tuple[str, ...], operands: tuple[int, ...], functions: dict, steps: bool) -> dict:
    """prompt, target and skills; with ``steps``, also ``step_offsets``: the character offset in ``text``
    of each step's first output number (the token before it is where that step's primitive applies)."""
    prompt = " ".join(skills) + " " + " ".join(map(str, operands)) + " ="
    sequences = [apply_skills(list(skills[: k + 1]), operands, functions) for k in range(len(skills))]
    shown = [" ".join(map(str, seq)) for seq in (sequences if steps else sequences[-1:])]
    row = {"prompt": prompt, "target": " " + " = ".join(shown), "skills": list(skills)}
    if steps:
        offsets, at = [], len(prompt) + 1
        for part in shown:
            offsets.append(at)
            at += len(part) + len(" = ")
        row["step_offsets"] = offsets
    return row


def build(world: dict, rng: np.random.Generator) -> dict[str, list[dict]]:
    p, length = world["modulus"], world["skills_length"]
    n_primitives, (min_depth, max_depth) = world["skills_primitives"], world["skills_depth"]
    if not 2 <= n_primitives <= len(PRIMITIVES):
        raise ValueError(f"world.skills_primitives must be in 2..{len(PRIMITIVES)}, got {n_primitives}")
    if not 2 <= min_depth <= max_depth <= n_primitives:
        raise ValueError(f"world.skills_depth [{min_depth}, {max_depth}] must satisfy 2 <= min <= max <= skills_primitives")
    library = PRIMITIVES[:n_primitives]
    functions = primitive_functions(p, rng.permutation(p).tolist())
    combos = compositions(library, list(range(min_depth, max_depth + 1)), world["skills_compositions"], rng)
    parts = split_items(combos, rng, {**world, "max_test": len(combos), "max_validation": len(combos)})
    steps = world["skills_format"] == "steps"

    def draws(n: int) -> list[tuple[int, ...]]:
        return [tuple(int(x) for x in rng.integers(0, p, size=length)) for _ in range(n)]

    out = {}
    for split, combos_in in parts.items():
        n_draws = world["skills_operands"]
        rows = [_row(skills, ops, functions, steps) for skills in combos_in for ops in draws(n_draws)]
        if split == "train":
            rows = [_row((name,), ops, functions, steps) for name in library for ops in draws(world["skills_atoms"])] + rows
        else:  # the caps of the other domains, drawn over compositions so every held-out composition can appear
            cap = world["max_test"] if split == "test" else world["max_validation"]
            if len(rows) > cap:
                rows = [rows[i] for i in sorted(rng.choice(len(rows), size=cap, replace=False))]
        out[split] = [
            {
                **record(DOMAIN, split, i, row["prompt"], row["target"]),
                **{k: v for k, v in row.items() if k not in ("prompt", "target")},
            }
            for i, row in enumerate(rows)
        ]
    return out
