"""Does the mini world grok? Pretrain on it and track train loss vs test accuracy.

Builds the mini world, runs ``grokpath.pretrain.pretrain`` with the default
config (plus overrides), then at every checkpoint measures per domain:
the training loss (mean token NLL over whole texts, and over answer tokens only),
and greedy exact-match accuracy on the test prompts (teacher-forced argmax over
target + newline, which equals greedy decoding until "\\n").

Acceptance (``grokpath.world.criterion.grokking_criterion``): a domain
shows delayed generalization when its training loss stays within 0.05 of its
final value from at least 2 checkpoints BEFORE test accuracy first exceeds half
its final value, and the final test accuracy is above 0.5. The training loss is
the pretraining objective (``train_answer_loss`` with ``loss_on: answer``);
the whole-text loss is reported too. Prints one PASS/FAIL line per domain.

Routing entropy, per domain over the training texts (real tokens only, layers
averaged): ``entropy_token`` is the mean per-token entropy of the router's full
softmax (from forward hooks on every ``mlp.gate``, whose output is
``(router_logits, top_k_scores, top_k_indices)``), ``entropy_mean`` the entropy of
each sample's token-mean routing distribution, averaged over samples;
``entropy_token_max`` is the largest layer's per-token value. The uniform limit is
log K. A collapse shows as ``entropy_token`` climbing towards log K.

Run (from the repo root):
    nice -n 10 .venv/bin/python bench/mini_world_grokking.py --out /tmp/grok_bench
    nice -n 10 .venv/bin/python bench/mini_world_grokking.py --out /tmp/b2 --set pretrain.steps=2000 --set world.modulus=23
    .venv/bin/python bench/mini_world_grokking.py --eval-only --out /tmp/run/results  # a Snakemake run's results
Writes <out>/curves.csv and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from grokpath.checkpoints import local_name, mini_checkpoint_steps
from grokpath.config import deep_merge, load
from grokpath.data import read_split
from grokpath.memorization import calibrate_epsilon, loss_matrix, memorized_fraction
from grokpath.monitor import routing_entropies
from grokpath.pretrain import evaluate_rows, pretrain
from grokpath.world import build_world
from grokpath.world.criterion import grokking_criterion

REPO = Path(__file__).resolve().parents[1]


@torch.no_grad()
def routing_entropy(model, tokenizer, rows: list[dict], batch_size: int = 256) -> dict[str, float]:
    """Per-token and token-mean routing entropy (nats) of ``rows`` (``grokpath.monitor``'s hooks on ``mlp.gate``)."""
    token_sum, token_n, sample_means = 0.0, 0, []
    for start in range(0, len(rows), batch_size):
        batch = tokenizer([r["text"] for r in rows[start : start + batch_size]], padding=True, return_tensors="pt")
        got = routing_entropies(model, batch["input_ids"], batch["attention_mask"])
        token_sum, token_n = token_sum + got["token_sum"], token_n + got["n_tokens"]
        sample_means.append(got["sample_mean"])
    per_layer = token_sum / token_n
    return {
        "entropy_token": float(per_layer.mean()),
        "entropy_token_max": float(per_layer.max()),
        "entropy_mean": float(torch.cat(sample_means).mean()),
    }


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


def epsilon_table(losses: pd.DataFrame, section: dict) -> pd.DataFrame:
    """ε calibration per domain on the answer-token losses (what ``traces.loss_on: target`` gives)."""
    rows = []
    for domain, frame in losses.groupby("domain", sort=False):
        _, _, loss = loss_matrix(frame)
        got = calibrate_epsilon(loss, section["delta"], section["epsilon_step"], tuple(section["target_fraction"]))
        final = np.sort(loss[:, -1])
        rows.append(
            {
                "domain": domain,
                **got,
                "final_loss_p10": final[len(final) // 10],
                "final_loss_median": float(np.median(final)),
                "fraction_at_0.1": memorized_fraction(loss, 0.1, section["delta"]),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. pretrain.steps=2000")
    parser.add_argument(
        "--eval-only", action="store_true", help="only evaluate the checkpoints already in --out (e.g. of a run still going)"
    )
    parser.add_argument(
        "--config", type=Path, action="append", default=[], help="config file(s) over config/config.yaml (e.g. the run's)"
    )
    parser.add_argument("--domains", nargs="+", help="train and measure only these domains (screening probes)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    overrides: dict = {}
    for extra in args.config:
        overrides = deep_merge(overrides, yaml.safe_load(extra.read_text()) or {})
    cfg = load(REPO / "config" / "config.yaml", deep_merge(overrides, parse_overrides(args.set)))
    if args.domains:
        cfg["domains"] = {d: cfg["domains"][d] for d in args.domains}
    cfg = json.loads(json.dumps(cfg))  # plain JSON types; domains keep the config's order, as the pretrain rule's
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
    data = {d: {s: read_split(out / "world" / d / f"{s}.jsonl") for s in ("train", "test")} for d in domains}
    rows, sample_losses = [], []
    for step in mini_checkpoint_steps(cfg["pretrain"]):
        if not (out / "checkpoints" / local_name(step)).is_dir():
            continue
        model = AutoModelForCausalLM.from_pretrained(out / "checkpoints" / local_name(step))
        for d in domains:
            whole = evaluate_rows(model, tokenizer, data[d]["train"], "all")
            answer = evaluate_rows(model, tokenizer, data[d]["train"], "answer")
            sample_losses.append(answer[["sample_id", "loss"]].assign(domain=d, step=step))
            test = evaluate_rows(model, tokenizer, data[d]["test"], "answer")
            rows.append(
                {
                    "domain": d,
                    "step": step,
                    "train_loss": whole["loss"].mean(),
                    "train_answer_loss": answer["loss"].mean(),
                    "train_accuracy": answer["correct"].mean(),
                    "test_accuracy": test["correct"].mean(),
                    "test_answer_loss": test["loss"].mean(),
                    **routing_entropy(model, tokenizer, data[d]["train"]),
                }
            )
    curves = pd.DataFrame(rows)
    curves.to_csv(out / "curves.csv", index=False)
    table = curves.pivot(index="step", columns="domain", values=["train_answer_loss", "train_accuracy", "test_accuracy"])
    print(table.round(3).to_markdown())
    print()
    print(curves.pivot(index="step", columns="domain", values="train_loss").round(3).to_markdown())
    print()
    k = cfg["pretrain"]["num_experts"]
    print(f"routing entropy (nats; log K = {np.log(k):.3f}, 0.7 log K = {0.7 * np.log(k):.3f})")
    print(curves.pivot(index="step", columns="domain", values=["entropy_token", "entropy_mean"]).round(3).to_markdown())
    print()
    print(epsilon_table(pd.concat(sample_losses), cfg["memorization"]).to_markdown(index=False))
    objective = "train_answer_loss" if cfg["pretrain"]["loss_on"] == "answer" else "train_loss"
    verdicts = pd.concat(
        [grokking_criterion(curves, column).assign(loss=column) for column in dict.fromkeys([objective, "train_loss"])]
    )
    print()
    print(verdicts.to_markdown(index=False))
    print()
    for row in verdicts[verdicts.loss == objective].itertuples():
        print(
            f"{'PASS' if row.groks else 'FAIL'} {row.domain}: {objective} settled at step {row.loss_settled_at}, "
            f"test accuracy passes half its final {row.final_test_accuracy:.2f} at step {row.accuracy_half_at} "
            f"(gap {row.gap_checkpoints} checkpoints)"
        )
    print(f"{int(verdicts[verdicts.loss == objective].groks.sum())} of {len(domains)} domains grok")


if __name__ == "__main__":
    main()
