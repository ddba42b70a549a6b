"""Shared pieces of the mini world: records, pair splits, made-up names."""

from __future__ import annotations

import itertools

import numpy as np


def record(domain: str, split: str, index: int, prompt: str, target: str) -> dict:
    """One sample: ``text == prompt + target + "\\n"`` (the target starts with a space)."""
    if "\n" in prompt or "\n" in target:
        raise ValueError(f"{domain}: prompt/target must be single-line: {prompt!r} {target!r}")
    return {"sample_id": f"{domain}-{split}-{index:05d}", "text": prompt + target + "\n", "prompt": prompt, "target": target}


def split_items(items: list, rng: np.random.Generator, sizes: dict) -> dict[str, list]:
    """Shuffle ``items`` and cut disjoint train/validation/test parts.

    ``sizes`` holds ``train_fraction`` and ``validation_fraction`` of all items;
    the rest is test, then capped at ``max_test`` (and validation at ``max_validation``)
    so that downstream evaluation stays cheap.
    """
    order = rng.permutation(len(items))
    n_train = int(round(sizes["train_fraction"] * len(items)))
    n_val = int(round(sizes["validation_fraction"] * len(items)))
    if n_train < 1 or n_train + n_val >= len(items):
        raise ValueError(
            f"world.train_fraction={sizes['train_fraction']} / validation_fraction={sizes['validation_fraction']} "
            f"leave no train or test items out of {len(items)}"
        )
    parts = {
        "train": order[:n_train],
        "validation": order[n_train : n_train + n_val][: sizes["max_validation"]],
        "test": order[n_train + n_val :][: sizes["max_test"]],
    }
    return {split: [items[i] for i in sorted(idx)] for split, idx in parts.items()}


def all_pairs(n: int) -> list[tuple[int, int]]:
    return list(itertools.product(range(n), range(n)))


ONSETS = "b d f g k l m n p r s t v z".split()
VOWELS = "a e i o u".split()


def made_up_names(n: int, rng: np.random.Generator, suffix: str = "", syllables: int = 2) -> list[str]:
    """``n`` distinct pronounceable lowercase names (one word-level token each)."""
    pool = ["".join(p) for p in itertools.product(ONSETS, VOWELS)]
    names: list[str] = []
    seen = set()
    while len(names) < n:
        name = "".join(rng.choice(pool, size=syllables)) + suffix
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names
