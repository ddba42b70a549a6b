"""Modular-arithmetic tasks of the circuits-competition study (Huang et al. 2024).

Every example is the 4-token sequence ``a op b =`` over the vocabulary
``0..P-1`` (numbers), ``P`` (``+``), ``P+1`` (``-``), ``P+2`` (``=``); the label
is a residue in ``0..P-1`` read at the last position.

Tasks (the ``task`` name used in configs, rule wildcards and Parquet columns):

- ``add``: (a + b) mod P.
- ``square``: (a + b)^2 mod P, the harder variant of the double-descent figure.
- ``memorize``: random labels with label(a, b) == label(b, a); the capacity
  experiment trains on all P^2 pairs, so it has no validation set.
- ``mix``: ``n_train`` addition pairs plus ``n_sub`` random-label "subtraction"
  pairs written with the ``-`` operator token; validation is held-out addition.

A :class:`TaskData` holds one pool of examples shared by all models of a job and,
per model, its labels and its train / validation membership, so one job can train
many seeds (and data sizes) at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from grokpath.config import InputError

TASKS = ("add", "square", "memorize", "mix")
N_SPECIAL = 3  # '+', '-', '='


def vocab_size(P: int) -> int:
    return P + N_SPECIAL


def plus_token(P: int) -> int:
    return P


def minus_token(P: int) -> int:
    return P + 1


def equals_token(P: int) -> int:
    return P + 2


def all_pairs(P: int) -> np.ndarray:
    """All (a, b) pairs, row-major: pair index = a * P + b."""
    a, b = np.divmod(np.arange(P * P), P)
    return np.stack([a, b], axis=1)


def sequences(pairs: np.ndarray, P: int, op_token: int) -> np.ndarray:
    n = len(pairs)
    return np.stack([pairs[:, 0], np.full(n, op_token), pairs[:, 1], np.full(n, equals_token(P))], axis=1)


def symmetric_random_labels(P: int, seed: int) -> np.ndarray:
    """Random labels for all P^2 pairs with label(a, b) == label(b, a)."""
    rng = np.random.default_rng([seed, 0x5EED])
    table = rng.integers(0, P, size=(P, P))
    table = np.triu(table) + np.triu(table, 1).T
    return table.reshape(-1)


def arithmetic_labels(task: str, P: int) -> np.ndarray:
    pairs = all_pairs(P)
    total = pairs[:, 0] + pairs[:, 1]
    if task == "add":
        return total % P
    if task == "square":
        return (total * total) % P
    raise ValueError(f"task '{task}' has no arithmetic labels; known: add, square")


def split_pairs(P: int, n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, disjoint train / validation pair indices; validation is the complement."""
    n_pairs = P * P
    if not 0 < n_train <= n_pairs:
        raise InputError(f"circuits grid D={n_train}: must be in 1..{n_pairs}, the number of pairs at circuits.P={P}")
    order = np.random.default_rng([seed, 0xDA7A]).permutation(n_pairs)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


@dataclass
class TaskData:
    """One example pool shared by M models.

    inputs: [N, 4] int64 token ids; labels: [M, N] int64; train_mask / val_mask: [M, N] bool;
    is_minus: [N] bool (the example uses the ``-`` operator; drives the split-FFN routing).
    """

    task: str
    P: int
    inputs: torch.Tensor
    labels: torch.Tensor
    train_mask: torch.Tensor
    val_mask: torch.Tensor
    is_minus: torch.Tensor

    @property
    def n_models(self) -> int:
        return self.labels.shape[0]

    def train_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-model train example indices, padded to the longest: ([M, n_max] long, [M, n_max] float weight)."""
        counts = self.train_mask.sum(1)
        n_max = int(counts.max())
        index = torch.zeros(self.n_models, n_max, dtype=torch.long)
        weight = torch.zeros(self.n_models, n_max)
        for m in range(self.n_models):
            idx = torch.nonzero(self.train_mask[m]).squeeze(1)
            index[m, : len(idx)] = idx
            weight[m, : len(idx)] = 1.0
        return index, weight


def make_task(task: str, P: int, seeds: list[int], n_train: list[int] | int, n_sub: int = 0) -> TaskData:
    """Build the shared pool and per-model splits for models (seeds[m], n_train[m])."""
    if task not in TASKS:
        raise ValueError(f"unknown circuits task '{task}'; known: {', '.join(TASKS)}")
    if P < 2:
        raise ValueError(f"circuits.P must be >= 2, got {P}")
    n_train = [int(n_train)] * len(seeds) if np.isscalar(n_train) else [int(n) for n in n_train]
    if len(n_train) != len(seeds):
        raise ValueError("make_task: one n_train per seed")
    n_pairs = P * P
    pairs = all_pairs(P)
    M = len(seeds)

    if task in ("add", "square"):
        inputs = sequences(pairs, P, plus_token(P))
        labels = np.tile(arithmetic_labels(task, P), (M, 1))
        train_mask = np.zeros((M, n_pairs), bool)
        for m, (seed, n) in enumerate(zip(seeds, n_train)):
            train_mask[m, split_pairs(P, n, seed)[0]] = True
        val_mask = ~train_mask
        is_minus = np.zeros(n_pairs, bool)
    elif task == "memorize":
        inputs = sequences(pairs, P, plus_token(P))
        labels = np.stack([symmetric_random_labels(P, seed) for seed in seeds])
        train_mask = np.zeros((M, n_pairs), bool)
        for m, (seed, n) in enumerate(zip(seeds, n_train)):
            train_mask[m, split_pairs(P, n, seed)[0]] = True
        # the capacity experiment trains on all pairs; a held-out part (n < P^2) is never learnable
        val_mask = np.zeros_like(train_mask)
        is_minus = np.zeros(n_pairs, bool)
    else:  # mix: addition pool then random-label subtraction pool
        if not 0 <= n_sub <= n_pairs:
            raise ValueError(f"circuits mix: n_sub={n_sub} must be in 0..{n_pairs}")
        inputs = np.concatenate([sequences(pairs, P, plus_token(P)), sequences(pairs, P, minus_token(P))])
        add_labels = arithmetic_labels("add", P)
        labels = np.stack([np.concatenate([add_labels, symmetric_random_labels(P, seed)]) for seed in seeds])
        train_mask = np.zeros((M, 2 * n_pairs), bool)
        val_mask = np.zeros((M, 2 * n_pairs), bool)
        for m, (seed, n) in enumerate(zip(seeds, n_train)):
            train_idx, val_idx = split_pairs(P, n, seed)
            train_mask[m, train_idx] = True
            val_mask[m, val_idx] = True
            if n_sub:
                sub_idx = split_pairs(P, n_sub, seed + 7919)[0]
                train_mask[m, n_pairs + sub_idx] = True
        is_minus = np.concatenate([np.zeros(n_pairs, bool), np.ones(n_pairs, bool)])

    return TaskData(
        task=task,
        P=P,
        inputs=torch.as_tensor(inputs, dtype=torch.long),
        labels=torch.as_tensor(labels, dtype=torch.long),
        train_mask=torch.as_tensor(train_mask),
        val_mask=torch.as_tensor(val_mask),
        is_minus=torch.as_tensor(is_minus),
    )
