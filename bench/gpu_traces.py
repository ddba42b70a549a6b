"""GPU trace pass: tokens/s of ``grokpath.traces.trace_pass`` against a plain forward, with MFU.

The model is a random-init OLMoE of OLMoE-1B-7B's shape (16 layers, hidden 2048,
intermediate 1024, 16 heads, 64 experts, top-8, vocabulary 50304: 6.9B parameters,
1.3B active per token), in bfloat16 with transformers' ``grouped_mm`` experts, run
under ``torch.inference_mode`` on batches of ``--batch`` × ``--length`` tokens (the
anchor measurement was B = 8, S = 2048). Both passes run interleaved in one process;
each time is the median over ``--repeats`` after a warm-up, with CUDA synchronised.

MFU = model FLOPs per second / ``--peak-tflops``: per token, 2 × the active matmul
parameters (attention, router, the top-k experts' three projections, lm_head) plus the
causal attention's 2 · 2 · S/2 · d per layer.

``--reduced`` runs on the CPU at a small shape (hidden 128, 4 layers, 16 experts, top-4,
float32, B = 2, S = 64): a check that the script and the trace path work without a GPU;
its numbers are not the GPU figure. Run (from the repo root):
    .venv/bin/python bench/gpu_traces.py                        # on a CUDA machine
    nice -n 10 .venv/bin/python bench/gpu_traces.py --reduced   # anywhere
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from trace_throughput import olmoe_config, time_passes
from transformers import OlmoeForCausalLM

from grokpath.routing import find_gates
from grokpath.traces import set_experts_implementation

OLMOE_1B_7B = dict(vocab=50304, hidden=2048, intermediate=1024, layers=16, heads=16, experts=64, top_k=8)
REDUCED = dict(vocab=512, hidden=128, intermediate=64, layers=4, heads=4, experts=16, top_k=4)
PEAK_TFLOPS_BF16 = 989.0  # H100 / H200 SXM dense bf16 tensor-core peak


def flops_per_token(shape: dict, length: int) -> float:
    d, layers = shape["hidden"], shape["layers"]
    attention = 4 * d * d  # q, k, v, o projections (no grouped-query attention in OLMoE)
    experts = shape["top_k"] * 3 * d * shape["intermediate"]
    router = d * shape["experts"]
    matmul_params = layers * (attention + experts + router) + d * shape["vocab"]
    return 2.0 * matmul_params + layers * 2 * 2 * (length / 2) * d


def build(shape: dict, device: str, dtype: torch.dtype, experts: str) -> OlmoeForCausalLM:
    eos = 50279 if shape["vocab"] > 50279 else 2
    config = olmoe_config(shape, max_position_embeddings=4096, pad_token_id=1, bos_token_id=None, eos_token_id=eos)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = OlmoeForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(default)
    with torch.no_grad():  # non-uniform routing, as a trained router gives
        for router in find_gates(model):  # through the model's router adapter (grokpath.routing)
            router.weight.normal_(0, 0.5 / shape["hidden"] ** 0.5 * 8)
    set_experts_implementation(model, experts)
    return model


def measure(
    shape: dict,
    batch: int,
    length: int,
    device: str,
    dtype: torch.dtype,
    experts: str = "grouped_mm",
    repeats: int = 5,
    peak_tflops: float | None = None,
) -> dict:
    model = build(shape, device, dtype, experts)
    input_ids = torch.randint(3, shape["vocab"], (batch, length), device=device)
    attention_mask = torch.ones_like(input_ids)
    cuda = device.startswith("cuda")
    clock = time.perf_counter if cuda else time.process_time

    sync = torch.cuda.synchronize if cuda else None
    times = time_passes(model, input_ids, attention_mask, repeats, clock=clock, sync=sync)
    tokens = batch * length
    flops = flops_per_token(shape, length) * tokens
    rows = {}
    for name, values in times.items():
        seconds = statistics.median(values)
        rows[name] = {
            "seconds": seconds,
            "tokens_per_s": tokens / seconds,
            "mfu": None if not peak_tflops else flops / seconds / (peak_tflops * 1e12),
        }
    base = rows["forward"]["seconds"]
    for row in rows.values():
        row["ratio"] = row["seconds"] / base
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "rows": rows,
        "device": device,
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "clock": "wall" if cuda else "process CPU",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reduced", action="store_true", help="small shape on the CPU (no GPU needed; not the GPU figure)")
    p.add_argument("--batch", type=int, default=None, help="default 8 (reduced: 2)")
    p.add_argument("--length", type=int, default=None, help="default 2048 (reduced: 64)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--experts", choices=["grouped_mm", "eager"], default="grouped_mm")
    p.add_argument(
        "--peak-tflops", type=float, default=None, help=f"MFU denominator; default {PEAK_TFLOPS_BF16} on CUDA, none on CPU"
    )
    args = p.parse_args()
    if args.reduced:
        shape, device, dtype, batch, length = REDUCED, "cpu", torch.float32, args.batch or 2, args.length or 64
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --reduced for the CPU check")
        shape, device, dtype, batch, length = OLMOE_1B_7B, "cuda", torch.bfloat16, args.batch or 8, args.length or 2048
    peak = args.peak_tflops if args.peak_tflops is not None else (PEAK_TFLOPS_BF16 if device == "cuda" else None)
    result = measure(shape, batch, length, device, dtype, args.experts, args.repeats, peak)
    print(
        f"{result['device_name']}: random-init OLMoE {result['params'] / 1e9:.2f}B params ({shape}), {dtype}, "
        f"{args.experts} experts, batch {batch} x {length}, median {result['clock']} time of {args.repeats}\n"
    )
    print("| pass | tokens/s | time vs forward | MFU |")
    print("|---|---|---|---|")
    for name, row in result["rows"].items():
        mfu = "n/a" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
        print(f"| {name} | {row['tokens_per_s']:,.0f} | {row['ratio']:.3f}x | {mfu} |")


if __name__ == "__main__":
    main()
