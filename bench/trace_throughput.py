"""Trace-pass throughput against a plain forward pass (same model, batch and process).

The trace pass (``grokpath.traces.trace_batch``) is one forward pass plus router
hooks, a softmax over every layer's router logits, token means and per-sample
NLL. This measures what that costs: samples/s of each and their ratio.

The model is the mini OLMoE of ``pretrain``'s schema defaults (hidden 64,
intermediate 128, 4 layers, 4 heads, 8 experts, top-2), random weights, a batch of
``traces.batch_size`` right-padded sequences up to ``--length`` tokens.

Run (from the repo root):
    nice -n 10 .venv/bin/python bench/trace_throughput.py --threads 1
    nice -n 10 .venv/bin/python bench/trace_throughput.py --threads 1 --hidden 128 --layers 4 --experts 16 --top-k 4
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import OlmoeConfig, OlmoeForCausalLM

from grokpath.config import load_schema
from grokpath.traces import trace_batch

SCHEMA = load_schema()["properties"]
PRETRAIN = {k: v.get("default") for k, v in SCHEMA["pretrain"]["properties"].items()}
TRACES = {k: v.get("default") for k, v in SCHEMA["traces"]["properties"].items()}


def build(args) -> tuple[OlmoeForCausalLM, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    config = OlmoeConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
        num_experts=args.experts, num_experts_per_tok=args.top_k, max_position_embeddings=max(args.length, 8),
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    model = OlmoeForCausalLM(config).eval()
    with torch.no_grad():  # routers start at zero; random rows give realistic, non-uniform routing
        for layer in model.model.layers:
            layer.mlp.gate.weight.normal_(0, 0.5)
    lengths = torch.randint(args.length // 2, args.length + 1, (args.batch,))
    input_ids = torch.randint(3, args.vocab, (args.batch, args.length))
    attention_mask = (torch.arange(args.length)[None, :] < lengths[:, None]).long()
    return model, input_ids * attention_mask, attention_mask


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=TRACES["batch_size"])
    p.add_argument("--length", type=int, default=PRETRAIN["max_position_embeddings"])
    p.add_argument("--vocab", type=int, default=64)
    p.add_argument("--hidden", type=int, default=PRETRAIN["hidden_size"])
    p.add_argument("--intermediate", type=int, default=PRETRAIN["intermediate_size"])
    p.add_argument("--layers", type=int, default=PRETRAIN["num_layers"])
    p.add_argument("--heads", type=int, default=PRETRAIN["num_heads"])
    p.add_argument("--experts", type=int, default=PRETRAIN["num_experts"])
    p.add_argument("--top-k", type=int, default=PRETRAIN["top_k"])
    p.add_argument("--repeats", type=int, default=20, help="timed repetitions of each pass (interleaved)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, input_ids, attention_mask = build(args)

    passes = {
        "forward": lambda: model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False),
        "trace softmax": lambda: trace_batch(model, input_ids, attention_mask, "softmax"),
        "trace topk": lambda: trace_batch(model, input_ids, attention_mask, "topk"),
    }
    times = {name: [] for name in passes}
    with torch.no_grad():
        for run in passes.values():  # warm-up
            run()
        for _ in range(args.repeats):
            for name, run in passes.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)

    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {n_params / 1e6:.2f}M params, hidden {args.hidden}, {args.layers} layers, {args.experts} experts, "
        f"top-{args.top_k}; batch {args.batch} x {args.length} tokens (right-padded); "
        f"threads {args.threads}; median of {args.repeats}\n"
    )
    base = statistics.median(times["forward"])
    print("| pass | ms / batch | samples/s | time vs forward |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {1e3 * median:.1f} | {args.batch / median:.0f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
