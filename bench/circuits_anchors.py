"""Paper B's anchor cells at the paper's scale (P = 113), one seed each, on the CPU.

Settings are config/circuits_paper.yaml's (lr 1e-3, weight decay 1.0, betas 0.9/0.98,
full batch, 10-step warmup) with one seed per cell and that file's 40,000 full-batch
steps (the appendix's 30-40k epochs). Each cell goes through the
workflow's own ``train_cell`` and the classifier's ``classify_runs``; the curves,
labels and CPU time land in ``--out``.

    nice -n 5 .venv/bin/python bench/circuits_anchors.py --out results/bench/circuits_p113
    nice -n 5 .venv/bin/python bench/circuits_anchors.py --cells 32:3000 --steps 30000   # one cell, fewer steps
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import pandas as pd
import yaml

from grokpath.circuits.regimes import classify_runs
from grokpath.circuits.sweep import train_cell
from grokpath.config import load_schema, validate

# (d_h, D) and the regime the paper reports there
ANCHORS = {(64, 3000): "grokking", (32, 2600): "ungrokking", (32, 3000): "semi-grokking"}


def paper_circuits(steps: int | None, threads: int) -> dict:
    with open("config/circuits_paper.yaml") as fh:
        overlay = yaml.safe_load(fh)
    cfg = validate({"circuits": copy.deepcopy(overlay["circuits"])}, load_schema())
    circuits = cfg["circuits"]
    circuits["n_seeds"] = 1
    circuits["train"].update(device="cpu", threads=threads, n_log_points=80)
    if steps:
        circuits["train"]["steps"] = steps
    return circuits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/bench/circuits_p113"))
    ap.add_argument("--steps", type=int, default=None, help="default: config/circuits_paper.yaml's")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cells", nargs="*", default=[f"{d}:{n}" for d, n in ANCHORS], help="d_h:D pairs")
    args = ap.parse_args()
    circuits = paper_circuits(args.steps, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    timing = {}
    for cell in args.cells:
        d_h, D = (int(x) for x in cell.split(":"))
        path = args.out / f"add_dh{d_h}_D{D}.parquet"
        if not path.exists():  # resumable: a finished cell is kept
            cpu, wall = time.process_time(), time.perf_counter()
            train_cell(circuits, "add", d_h, D, path, threads=args.threads)
            timing[cell] = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}
            with open(args.out / f"add_dh{d_h}_D{D}.timing.json", "w") as fh:
                json.dump(timing[cell], fh)
        curves = pd.concat([pd.read_parquet(p) for p in sorted(args.out.glob("add_dh*_D*.parquet"))], ignore_index=True)
        regimes = classify_runs(curves, circuits["regimes"])
        regimes.to_csv(args.out / "regimes.csv", index=False)
        cols = ["d_h", "n_train", "final_train_acc", "final_val_acc", "t_mem", "t_gen", "delay_decades", "label"]
        print(regimes[cols].to_string(index=False), flush=True)
        print(json.dumps(timing), flush=True)


if __name__ == "__main__":
    main()
