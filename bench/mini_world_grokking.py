"""Does the mini world grok? Pretrain on it and track train loss vs test accuracy.

Builds the mini world, runs ``grokpath.pretrain.pretrain`` with the default
config (plus overrides), then at every checkpoint measures per domain:
the training loss (mean token NLL over whole texts, and over answer tokens only),
and greedy exact-match accuracy on the test prompts (teacher-forced argmax over
target + newline, which equals greedy decoding until "\\n").

Acceptance (issue 4, ``grokpath.world.criterion.grokking_criterion``): a domain
shows delayed generalization when its training loss stays within 0.05 of its
final value from at least 2 checkpoints BEFORE test accuracy first exceeds half
its final value, and the final test accuracy is above 0.5. The training loss is
the pretraining objective (``train_answer_loss`` with ``loss_on: answer``);
the whole-text loss is reported too. Prints one PASS/FAIL line per domain.

Run (from the repo root):
    nice -n 10 .venv/bin/python bench/mini_world_grokking.py --out /tmp/grok_bench
    nice -n 10 .venv/bin/python bench/mini_world_grokking.py --out /tmp/b2 --set pretrain.steps=2000 --set world.modulus=23
Writes <out>/curves.csv and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from grokpath.checkpoints import local_name, mini_checkpoint_steps
from grokpath.config import deep_merge, load
from grokpath.pretrain import evaluate_rows, pretrain, read_jsonl
from grokpath.world import build_world
from grokpath.world.criterion import grokking_criterion

REPO = Path(__file__).resolve().parents[1]


def parse_overrides(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        key, value = item.split("=", 1)
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. pretrain.steps=2000")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate the checkpoints already in --out (e.g. of a run still going)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load(REPO / "config" / "config.yaml", parse_overrides(args.set))
    torch.set_num_threads(cfg["pretrain"]["threads"])
    out = args.out
    if not args.eval_only:
        build_world(cfg, out / "world", out / "tokenizer")
        began, cpu0 = time.time(), time.process_time()
        pretrain(cfg, out / "world", out / "tokenizer", out / "checkpoints", out / "loss.parquet", state_dir=out / "state")
        wall, cpu = time.time() - began, time.process_time() - cpu0
        print(f"pretraining wall {wall:.1f}s, process CPU {cpu:.1f}s, steps {cfg['pretrain']['steps']}")

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(out / "tokenizer"))
    domains = list(cfg["domains"])
    data = {d: {s: read_jsonl(out / "world" / d / f"{s}.jsonl") for s in ("train", "test")} for d in domains}
    rows = []
    for step in mini_checkpoint_steps(cfg["pretrain"]):
        if not (out / "checkpoints" / local_name(step)).is_dir():
            continue
        model = AutoModelForCausalLM.from_pretrained(out / "checkpoints" / local_name(step))
        for d in domains:
            whole = evaluate_rows(model, tokenizer, data[d]["train"], "all")
            answer = evaluate_rows(model, tokenizer, data[d]["train"], "answer")
            test = evaluate_rows(model, tokenizer, data[d]["test"], "answer")
            rows.append({"domain": d, "step": step, "train_loss": whole["loss"].mean(), "train_answer_loss": answer["loss"].mean(),
                         "train_accuracy": answer["correct"].mean(), "test_accuracy": test["correct"].mean(), "test_answer_loss": test["loss"].mean()})
    curves = pd.DataFrame(rows)
    curves.to_csv(out / "curves.csv", index=False)
    table = curves.pivot(index="step", columns="domain", values=["train_answer_loss", "train_accuracy", "test_accuracy"])
    print(table.round(3).to_markdown())
    print()
    print(curves.pivot(index="step", columns="domain", values="train_loss").round(3).to_markdown())
    objective = "train_answer_loss" if cfg["pretrain"]["loss_on"] == "answer" else "train_loss"
    verdicts = pd.concat(
        [grokking_criterion(curves, column).assign(loss=column) for column in dict.fromkeys([objective, "train_loss"])]
    )
    print()
    print(verdicts.to_markdown(index=False))
    print()
    for row in verdicts[verdicts.loss == objective].itertuples():
        print(f"{'PASS' if row.groks else 'FAIL'} {row.domain}: {objective} settled at step {row.loss_settled_at}, "
              f"test accuracy passes half its final {row.final_test_accuracy:.2f} at step {row.accuracy_half_at} "
              f"(gap {row.gap_checkpoints} checkpoints)")
    print(f"{int(verdicts[verdicts.loss == objective].groks.sum())} of {len(domains)} domains grok")


if __name__ == "__main__":
    main()
