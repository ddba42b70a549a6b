"""Benchmark: train a grid cell's seeds batched (einsum over stacked params), vmapped
(torch.func.vmap over the single-model forward) or as a loop of single models.

Reports models x steps per second for each path, same machine, same run, and the
ratio to the loop. Time is this process's CPU time (``time.process_time``, one
thread by default), which stays meaningful when other jobs share the cores; wall
time is printed beside it. The crossover it shows
is the rule behind ``circuits.train.batching: auto`` (``auto_max_work``).

    nice -n 10 .venv/bin/python bench/circuits_vmap.py                 # default sizes
    nice -n 10 .venv/bin/python bench/circuits_vmap.py --sizes 47:32:0.5 113:64:0.3 --seeds 11 --steps 20
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from grokpath.circuits.model import ModelSpec
from grokpath.circuits.tasks import make_task, vocab_size
from grokpath.circuits.train import train_models
from grokpath.config import load

PATHS = ("loop", "vmap", "batched")


def bench_size(P: int, d_h: int, frac: float, n_seeds: int, steps: int, threads: int, repeats: int) -> list[dict]:
    cfg = dict(load("config/config.yaml")["circuits"]["train"])
    cfg.update(steps=steps, n_log_points=2, device="cpu", threads=threads, dtype="float32")
    seeds = list(range(n_seeds))
    n_train = int(frac * P * P)
    data = make_task("add", P, seeds, n_train)
    spec = ModelSpec(P=P, vocab=vocab_size(P), d_h=d_h)
    # eval (steps 0 and end) is timed separately and subtracted: one pass over all pairs per model
    rows = []
    for path in PATHS:
        train_models(data, spec, seeds, {**cfg, "batching": path, "steps": 2})  # warm-up
        best, best_wall = float("inf"), float("inf")
        for _ in range(repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            train_models(data, spec, seeds, {**cfg, "batching": path})
            full_cpu, full_wall = time.process_time() - cpu, time.perf_counter() - wall
            cpu, wall = time.process_time(), time.perf_counter()
            train_models(data, spec, seeds, {**cfg, "batching": path, "steps": 1})  # eval x2 + 1 step + setup
            best = min(best, (full_cpu - (time.process_time() - cpu)) / (steps - 1))
            best_wall = min(best_wall, (full_wall - (time.perf_counter() - wall)) / (steps - 1))
        rows.append(
            {
                "P": P,
                "d_h": d_h,
                "n_train": n_train,
                "seeds": n_seeds,
                "path": path,
                "cpu_ms_per_step_all_models": 1000 * best,
                "wall_ms_per_step_all_models": 1000 * best_wall,
                "model_steps_per_cpu_s": n_seeds / best,
                "work": n_train * d_h * (d_h + P),
            }
        )
    loop = next(r for r in rows if r["path"] == "loop")["model_steps_per_cpu_s"]
    for r in rows:
        r["speedup_vs_loop"] = r["model_steps_per_cpu_s"] / loop
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        nargs="+",
        default=["23:32:0.5", "31:32:0.5", "47:32:0.5", "47:64:0.5", "113:64:0.3"],
        help="P:d_h:train_fraction",
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    print(
        f"{'P':>4} {'d_h':>4} {'D':>6} {'work':>10} {'path':>8} {'cpu ms/step':>12} {'wall ms/step':>13} {'models*steps/cpu-s':>19} {'vs loop':>8}",
        flush=True,
    )
    for size in args.sizes:
        P, d_h, frac = size.split(":")
        for r in bench_size(int(P), int(d_h), float(frac), args.seeds, args.steps, args.threads, args.repeats):
            rows.append(r)
            print(
                f"{r['P']:>4} {r['d_h']:>4} {r['n_train']:>6} {r['work']:>10.3g} {r['path']:>8} {r['cpu_ms_per_step_all_models']:>12.1f} "
                f"{r['wall_ms_per_step_all_models']:>13.1f} {r['model_steps_per_cpu_s']:>19.1f} {r['speedup_vs_loop']:>7.2f}x",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
