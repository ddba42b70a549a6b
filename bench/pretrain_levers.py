"""Levers on one full-batch pretraining step of the default mini world, measured side by side.

Builds the default world (``config/config.yaml`` plus ``--set`` overrides) and model, then
times one full-batch step (forward, backward and AdamW over every domain, as
``grokpath.pretrain`` does it) under each variant, interleaved round-robin so that a
change in the machine's speed hits every variant alike. Reports the median process CPU
seconds per step, its ratio to the baseline, and, for ``torch.compile``, the one-off
compile cost. Variants:

- ``baseline``: the workflow's step (SDPA attention, AdamW's default CPU path);
- ``eager-attention``: transformers' eager attention instead of SDPA (sequences of 7-14 tokens);
- ``adamw-foreach`` / ``adamw-fused``: AdamW's multi-tensor and fused CPU kernels;
- ``compile``, ``compile-max-autotune``: ``torch.compile`` of the model (default mode and
  ``max-autotune-no-cudagraphs``);
- ``threads-2``: the baseline on 2 intra-op threads (wall seconds, since CPU seconds add up over threads);
- ``domains-2``: ``pretrain.parallel_domains``: the domains' passes in 2 worker processes at once,
  one torch thread each (``grokpath.domain_workers``; wall seconds, CPU of the parent and workers);
- ``domain-threads-2``: the same passes on 2 Python threads of this process instead (the GIL's cost).

``--only`` times the named variants alone (the first is the baseline). ``--domain-costs`` times each domain's forward and backward pass alone instead (1 thread, median CPU
seconds) and sums them over the shares ``pretrain.parallel_domains`` gives the workers.

Run (from the repo root):
    nice -n 5 .venv/bin/python bench/pretrain_levers.py --steps 6
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from mini_world_grokking import parse_overrides  # bench/ is on sys.path when run as a script
from transformers import OlmoeForCausalLM

from grokpath.config import deep_merge, load
from grokpath.domain_workers import DomainWorkers, balanced_shares
from grokpath.pretrain import (
    apply_gradients,
    domain_pass,
    encode,
    model_config,
    parameter_groups,
    pass_costs,
    sequence_losses,
)
from grokpath.world import generate_world
from grokpath.world.tokenizer import build_tokenizer

REPO = Path(__file__).resolve().parents[1]


def world_batches(cfg: dict):
    domains = list(cfg["domains"])
    corpus = generate_world(cfg["world"], domains)
    tokenizer = build_tokenizer([r["text"] for splits in corpus.values() for rows in splits.values() for r in rows])
    return tokenizer, {d: encode(corpus[d]["train"], tokenizer, cfg["pretrain"]["loss_on"]) for d in domains}


def cpu_seconds() -> float:
    """CPU seconds of this process and its worker processes (those of ``domains-2``)."""
    own = os.times()
    return own.user + own.system + sum(_worker_cpu(pid) for pid in _worker_pids())


def _worker_pids() -> list[int]:
    return [p.pid for p in multiprocessing.active_children()]


def _worker_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime of a live child


class Variant:
    def __init__(
        self,
        name: str,
        cfg: dict,
        tokenizer,
        attention="sdpa",
        optimizer=None,
        compile_mode=None,
        threads=1,
        domains=1,
        domain_threads=False,
    ):
        pre = cfg["pretrain"]
        torch.manual_seed(pre["seed"])
        config = model_config(pre, tokenizer)
        config._attn_implementation = attention
        self.name, self.threads, self.domains, self.model = name, threads, domains, OlmoeForCausalLM(config)
        groups = parameter_groups(self.model, pre["weight_decay"], pre["no_weight_decay"])
        self.optimizer = torch.optim.AdamW(groups, lr=pre["lr"], betas=(pre["beta1"], pre["beta2"]), **(optimizer or {}))
        self.forward = self.model
        self.compile_s = None
        if compile_mode is not None:
            self.forward = torch.compile(self.model, mode=compile_mode, dynamic=False)
        self.cpu, self.wall = [], []
        self.workers = None  # domains-2: started at the first step
        self.parent = []  # domains-2: wall-s of the parent's share (summing the gradients, AdamW) per step
        self.threads_for_domains = domain_threads

    def start_workers(self, batches: dict) -> None:
        passes = list(batches.values())
        costs = pass_costs(passes, 0)  # full batch, as grokpath.pretrain weighs it
        self.workers = DomainWorkers(
            self.model, costs, self.domains, lambda d, index: domain_pass(self.model, passes[d], 0.0, len(passes))
        )

    def step(self, batches: dict) -> None:
        torch.set_num_threads(self.threads)
        if self.domains > 1 and not self.threads_for_domains and self.workers is None:
            self.start_workers(batches)
        cpu, wall = cpu_seconds(), time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        if self.domains > 1 and self.threads_for_domains:
            passes = list(batches.values())
            with ThreadPoolExecutor(self.domains) as pool:
                parts = pool.map(lambda b: domain_pass(self.model, b, 0.0, len(passes)), passes)
            apply_gradients(self.model, [dict(zip(("loss", "aux", "grads"), part)) for part in parts])
        elif self.domains > 1:
            parts = self.workers.step([None] * len(batches))
            parent = time.perf_counter()  # the parent's share of the step, while the workers wait
            apply_gradients(self.model, parts)
        else:
            for batch in batches.values():
                losses, _, _ = sequence_losses(self.forward, batch)
                (losses.mean() / len(batches)).backward()
        self.optimizer.step()
        if self.workers is not None:
            self.parent.append(time.perf_counter() - parent)
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
        if self.compile_s is None and self.forward is not self.model:
            self.compile_s = cpu  # the first step of a compiled model pays for compilation
        else:
            self.cpu.append(cpu)
            self.wall.append(wall)


def domain_costs(cfg: dict, tokenizer, batches: dict, steps: int) -> None:
    """Each domain's pass alone (1 thread, median CPU-s), and its sum over each worker's share."""
    torch.set_num_threads(1)
    model = Variant("baseline", cfg, tokenizer).model
    aux, domains = cfg["pretrain"]["router_aux_loss_coef"], list(batches)
    seconds = {d: [] for d in domains}
    for _ in range(steps + 1):  # the first round warms up
        for d in domains:
            start = time.process_time()
            domain_pass(model, batches[d], aux, len(domains))
            seconds[d].append(time.process_time() - start)
    median = {d: statistics.median(seconds[d][1:]) for d in domains}
    costs = pass_costs([batches[d] for d in domains], cfg["pretrain"]["batch_size"])
    print("| domain | padded batch | CPU-s per pass (median) |\n|---|---|---|")
    for d in domains:
        print(f"| {d} | {tuple(batches[d]['input_ids'].shape)} | {median[d]:.4f} |")
    for share in balanced_shares(costs, 2):  # the workflow's shares: padded rows x width
        print(f"worker share {[domains[i] for i in share]}: {sum(median[domains[i]] for i in share):.4f} CPU-s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant (after one warm-up step)")
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. world.modulus=19")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--domain-costs", action="store_true", help="time each domain's pass and the workers' shares")
    parser.add_argument("--only", nargs="+", help="time only these variants (e.g. domains-2), the first as the baseline")
    args = parser.parse_args()
    cfg = load(REPO / "config" / "config.yaml")
    cfg = deep_merge(cfg, parse_overrides(args.set))
    tokenizer, batches = world_batches(cfg)
    if args.domain_costs:
        domain_costs(cfg, tokenizer, batches, args.steps)
        return
    tokens = sum(int(b["attention_mask"].sum()) for b in batches.values())
    texts = sum(len(b["input_ids"]) for b in batches.values())
    variants = [
        Variant("baseline", cfg, tokenizer),
        Variant("eager-attention", cfg, tokenizer, attention="eager"),
        Variant("adamw-foreach", cfg, tokenizer, optimizer={"foreach": True}),
        Variant("adamw-fused", cfg, tokenizer, optimizer={"fused": True}),
        Variant("threads-2", cfg, tokenizer, threads=2),
        Variant("domains-2", cfg, tokenizer, domains=2),
        Variant("domain-threads-2", cfg, tokenizer, domains=2, domain_threads=True),
    ]
    if not args.skip_compile:
        variants += [
            Variant("compile", cfg, tokenizer, compile_mode="default"),
            Variant("compile-max-autotune", cfg, tokenizer, compile_mode="max-autotune-no-cudagraphs"),
        ]
    if args.only:
        unknown = set(args.only) - {v.name for v in variants}
        if unknown:
            parser.error(f"--only: unknown variant(s) {sorted(unknown)}; known: {[v.name for v in variants]}")
        variants = [v for name in args.only for v in variants if v.name == name]
    for v in variants:  # warm-up (and compilation)
        v.step(batches)
    for _ in range(args.steps):
        for v in variants:
            v.step(batches)
    base = variants[0]
    print(f"world: {texts} training texts, {tokens} tokens per full-batch step; {args.steps} timed steps per variant")
    print("| variant | CPU-s per step (median) | wall-s per step (median) | vs baseline | one-off compile CPU-s |")
    print("|---|---|---|---|---|")
    for v in variants:
        cpu, wall = statistics.median(v.cpu), statistics.median(v.wall)
        if v.threads > 1 or v.domains > 1:
            ratio = f"{statistics.median(base.wall) / wall:.2f}x faster (wall)"
        else:
            ratio = f"{statistics.median(base.cpu) / cpu:.2f}x faster (CPU)"
        compiled = f"{v.compile_s:.1f}" if v.compile_s is not None else ""
        print(f"| {v.name} | {cpu:.3f} | {wall:.3f} | {ratio} | {compiled} |")
    for v in variants:
        if v.parent:
            print(
                f"{v.name}: the parent's share (summing the gradients, AdamW) {1000 * statistics.median(v.parent):.1f} ms per step"
            )
    for v in variants:
        if v.workers is not None:
            v.workers.close()


if __name__ == "__main__":
    main()
