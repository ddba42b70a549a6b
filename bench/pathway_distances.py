"""All-group pathway distances from one pass, on synthetic OLMoE-shaped pathways.

Measures, in one process on the same strings:
- the one-pass reduction (``grokpath.pathways.group_mean_distances``) over all groups of
  a distance job (all, memorized, not_memorized and five ``t*=`` groups);
- the plain path it replaces (``mean_pairwise_distance`` group by group, on a subset);
- the bit-parallel bound: rapidfuzz's Levenshtein costs ⌈len/64⌉ words × len columns per
  pair, so the word-steps of N(N-1)/2 pairs divided by the CPU-seconds gives the rate reached.

Times are process CPU seconds (all rapidfuzz threads together), robust when other jobs
share the cores; the wall time on ``workers`` free cores is CPU-seconds / workers.

Run (from the repo root):
    nice -n 10 .venv/bin/python bench/pathway_distances.py --n 10000 --workers 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from synthetic_pathways import N_LAYERS, synthetic_routing

from grokpath import pathways


def job_groups(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A distance job's groups: 25% memorized, split over five t* checkpoints."""
    rng = np.random.default_rng(seed)
    memorized = rng.random(n) < 0.25
    t_star = rng.integers(0, 5, size=n)
    groups = {"all": np.arange(n), "memorized": np.flatnonzero(memorized), "not_memorized": np.flatnonzero(~memorized)}
    for t in range(5):
        groups[f"t*={t}"] = np.flatnonzero(memorized & (t_star == t))
    return groups


def word_steps(strings: list[str]) -> float:
    """Σ over pairs i < j of ⌈len_i/64⌉ × len_j (the bit-parallel work, in 64-bit word-steps)."""
    lengths = np.array([len(s) for s in strings], dtype=np.float64)
    words = np.ceil(lengths / 64)
    # rapidfuzz puts the longer string in the bit vectors; with near-equal lengths the order hardly matters
    return float((words.sum() * lengths.sum() - (words * lengths).sum()) / 2)


def measure(n: int, workers: int, plain_n: int, block_rows: int = 256) -> dict:
    routing = synthetic_routing(n)
    strings = pathways.pathway_strings(routing, 0.7, True)
    groups = job_groups(n)
    start, wall = time.process_time(), time.perf_counter()
    one_pass = pathways.group_mean_distances(strings, groups, block_rows=block_rows, workers=workers)
    cpu_seconds, wall_seconds = time.process_time() - start, time.perf_counter() - wall
    seconds = cpu_seconds / max(workers, 1)  # wall time on `workers` free cores
    sub = strings[:plain_n]
    sub_groups = job_groups(plain_n)
    start = time.process_time()
    plain = {g: pathways.mean_pairwise_distance([sub[k] for k in rows], workers=workers) for g, rows in sub_groups.items()}
    plain_seconds = time.process_time() - start
    start = time.process_time()
    fast = pathways.group_mean_distances(sub, sub_groups, workers=workers)
    fast_seconds = time.process_time() - start
    assert fast == plain, "one-pass means differ from the plain path"
    pairs = n * (n - 1) // 2
    steps = word_steps(strings)
    return {
        "n": n,
        "workers": workers,
        "mean_len": float(np.mean([len(s) for s in strings])),
        "experts_per_layer": float(pathways.n_experts_total(routing, 0.7, True).mean() / N_LAYERS),
        "distinct": len(set(strings)),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "wall_seconds": wall_seconds,
        "pairs": pairs,
        "us_per_pair": 1e6 * seconds / pairs,
        "word_steps": steps,
        "ns_per_word_step_per_core": 1e9 * cpu_seconds / steps,
        "plain_n": plain_n,
        "plain_seconds": plain_seconds,
        "fast_seconds": fast_seconds,
        "mean_all": one_pass["all"][0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--plain-n", type=int, default=1500, help="samples for the plain-path comparison")
    args = p.parse_args()
    r = measure(args.n, args.workers, args.plain_n)
    print(f"{r['n']} pathways, {r['experts_per_layer']:.1f} experts/layer, {r['mean_len']:.0f} chars, {r['distinct']} distinct")
    print(
        f"one pass, 8 groups: {r['cpu_seconds']:.1f} CPU-s (wall {r['wall_seconds']:.1f} s here; {r['seconds']:.1f} s on "
        f"{r['workers']} free cores) for {r['pairs']:,} pairs ({r['us_per_pair']:.2f} µs/pair, "
        f"{r['workers']} workers); {r['word_steps']:.3g} word-steps: {r['ns_per_word_step_per_core']:.2f} ns per word-step per core"
    )
    print(
        f"plain path at n={r['plain_n']}: {r['plain_seconds']:.1f} CPU-s; one pass {r['fast_seconds']:.1f} CPU-s "
        f"({r['plain_seconds'] / r['fast_seconds']:.2f}x faster, identical means)"
    )
    at_10k = r["seconds"] * (10000 * 9999 / 2) / r["pairs"]
    need = 120 / at_10k * r["ns_per_word_step_per_core"]
    print(f"scaled to n=10000: {at_10k:.0f} s on {r['workers']} free cores; 120 s needs ≤ {need:.2f} ns per word-step per core")


if __name__ == "__main__":
    main()
