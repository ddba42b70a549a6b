"""Trace-pass throughput against a plain forward pass (same model, batch and process).

The trace pass (``grokpath.traces.trace_pass``) is one forward pass plus router hooks
that reduce every layer's routing weights to per-sample sums on the device, and the
per-sample NLL. This measures what that costs: the time of each pass and their ratio,
timed as process CPU time (with ``--threads 1`` it is the pass's own work), passes
interleaved, the minimum over ``--repeats`` (other jobs on the cores only ever add time,
so the minimum is the robust estimate of a pass's cost; the median is printed beside it). Both passes
run under ``torch.inference_mode``.

Models (random weights; routers get N(0, 0.5) rows so routing is not uniform):
- ``mini``: the mini OLMoE of ``pretrain``'s schema defaults (hidden 64, 4 layers, 8 experts, top-2);
- ``olmoe-narrow``: OLMoE-1B-7B's depth, experts, top-k and vocabulary (16 layers, 64 experts,
  top-8, 50304 tokens) at a quarter of its width: hidden 512, intermediate 256 (the same 2:1 ratio), 8 heads;
- any shape through the flags.

Run (from the repo root):
    nice -n 10 .venv/bin/python bench/trace_throughput.py --threads 1
    nice -n 10 .venv/bin/python bench/trace_throughput.py --threads 1 --model olmoe-narrow
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import OlmoeConfig, OlmoeForCausalLM

from grokpath.config import load_schema
from grokpath.routing import find_gates
from grokpath.traces import trace_pass

SCHEMA = load_schema()["properties"]
PRETRAIN = {k: v.get("default") for k, v in SCHEMA["pretrain"]["properties"].items()}
TRACES = {k: v.get("default") for k, v in SCHEMA["traces"]["properties"].items()}

MODELS = {
    "mini": dict(
        vocab=64,
        hidden=PRETRAIN["hidden_size"],
        intermediate=PRETRAIN["intermediate_size"],
        layers=PRETRAIN["num_layers"],
        heads=PRETRAIN["num_heads"],
        experts=PRETRAIN["num_experts"],
        top_k=PRETRAIN["top_k"],
        batch=TRACES["batch_size"],
        length=PRETRAIN["max_position_embeddings"],
    ),
    "olmoe-narrow": dict(vocab=50304, hidden=512, intermediate=256, layers=16, heads=8, experts=64, top_k=8, batch=8, length=128),
}


def olmoe_config(shape: dict, **special) -> OlmoeConfig:
    """An OlmoeConfig of ``shape`` (vocab, hidden, intermediate, layers, heads, experts, top_k); ``special`` sets the rest."""
    return OlmoeConfig(
        vocab_size=shape["vocab"],
        hidden_size=shape["hidden"],
        intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["heads"],
        num_experts=shape["experts"],
        num_experts_per_tok=shape["top_k"],
        **special,
    )


def build(shape: dict, seed: int = 0) -> tuple[OlmoeForCausalLM, torch.Tensor, torch.Tensor]:
    """A random-weight OLMoE and a right-padded batch (lengths uniform in [length/2, length])."""
    torch.manual_seed(seed)
    config = olmoe_config(shape, max_position_embeddings=max(shape["length"], 8), pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = OlmoeForCausalLM(config).eval()
    with torch.no_grad():  # routers start at zero; random rows give realistic, non-uniform routing
        for router in find_gates(model):  # through the model's router adapter (grokpath.routing)
            router.weight.normal_(0, 0.5)
    length, batch = shape["length"], shape["batch"]
    lengths = torch.randint(length // 2, length + 1, (batch,))
    input_ids = torch.randint(3, shape["vocab"], (batch, length))
    attention_mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return model, input_ids * attention_mask, attention_mask


def time_passes(model, input_ids, attention_mask, repeats: int, clock=time.process_time, sync=None) -> dict[str, list[float]]:
    """Seconds per call of the plain forward and both trace passes, interleaved, after one warm-up each."""

    def forward():
        with torch.inference_mode():
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)

    passes = {
        "forward": forward,
        "trace softmax": lambda: trace_pass(model, input_ids, attention_mask, "softmax"),
        "trace topk": lambda: trace_pass(model, input_ids, attention_mask, "topk"),
    }
    times = {name: [] for name in passes}
    for run in passes.values():  # warm-up
        run()
    for _ in range(repeats):
        for name, run in passes.items():
            if sync:
                sync()
            start = clock()
            run()
            if sync:
                sync()
            times[name].append(clock() - start)
    return times


def measure(shape: dict, repeats: int = 10, threads: int = 1) -> dict:
    """Median CPU seconds per batch of the plain forward and both trace passes, and their ratios."""
    torch.set_num_threads(threads)
    model, input_ids, attention_mask = build(shape)
    times = time_passes(model, input_ids, attention_mask, repeats)
    best = {name: min(values) for name, values in times.items()}
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": best,
        "ratio": {name: best[name] / best["forward"] for name in best},
        "median_ratio": {name: medians[name] / medians["forward"] for name in medians},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default="mini")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20, help="timed repetitions of each pass (interleaved)")
    for key in MODELS["mini"]:
        p.add_argument(f"--{key.replace('_', '-')}", type=int, default=None, help=f"override the model's {key}")
    args = p.parse_args()
    shape = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in MODELS[args.model].items()}
    result = measure(shape, args.repeats, args.threads)
    print(
        f"model: {result['params'] / 1e6:.2f}M params, hidden {shape['hidden']}, {shape['layers']} layers, "
        f"{shape['experts']} experts, top-{shape['top_k']}, vocab {shape['vocab']}; batch {shape['batch']} x "
        f"{shape['length']} tokens (right-padded); threads {args.threads}; min CPU time of {args.repeats}\n"
    )
    print("| pass | CPU ms / batch | samples per CPU-s | time vs forward (min) | (median) |")
    print("|---|---|---|---|---|")
    for name, seconds in result["seconds"].items():
        print(
            f"| {name} | {1e3 * seconds:.1f} | {shape['batch'] / seconds:.0f} | {result['ratio'][name]:.3f}x "
            f"| {result['median_ratio'][name]:.3f}x |"
        )


if __name__ == "__main__":
    main()
