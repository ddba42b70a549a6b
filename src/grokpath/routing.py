"""The one place that knows how to capture MoE router outputs.

Router ("gate") modules are found by name: ``*.layers.<i>.<gate_module>``, with
``gate_module`` from ``traces.gate_module`` (default ``mlp.gate``: OLMoE, Qwen-MoE,
and Mixtral in transformers 5.x). Their output differs across versions:

- transformers 5.x ``OlmoeTopKRouter`` returns ``(router_logits, top_k_scores, top_k_indices)``;
- older versions (a plain ``nn.Linear`` gate) return the logits alone.

:func:`logits_of` accepts both. The trace pass hooks the routers found here and reduces
their logits on the device (``grokpath.traces.RoutingAccumulator``).
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

DEFAULT_GATE_MODULE = "mlp.gate"


def find_gates(model: nn.Module, gate_module: str = DEFAULT_GATE_MODULE) -> list[nn.Module]:
    """Router modules in layer order (layers without a router, e.g. dense ones, are skipped)."""
    pattern = re.compile(r"(?:^|\.)layers\.(\d+)\." + re.escape(gate_module) + r"$")
    found = []
    for name, module in model.named_modules():
        match = pattern.search(name)
        if match:
            found.append((int(match.group(1)), module))
    if not found:
        raise ValueError(
            f"no router modules named '*.layers.<i>.{gate_module}' in {type(model).__name__}; "
            "set traces.gate_module to the router's path inside a decoder layer"
        )
    found.sort(key=lambda item: item[0])
    return [module for _, module in found]


def logits_of(output) -> torch.Tensor:
    """Router logits from a gate's forward output: a tensor, or a tuple whose first item is the logits."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"unrecognised router output of type {type(output).__name__}")


def num_experts(gate: nn.Module) -> int:
    return int(gate.weight.shape[0])


def top_k_of(model: nn.Module, gate: nn.Module | None = None) -> int:
    """Experts used per token: the gate's ``top_k`` or the config's ``num_experts_per_tok``."""
    if gate is not None and getattr(gate, "top_k", None):
        return int(gate.top_k)
    top_k = getattr(model.config, "num_experts_per_tok", None)
    if top_k is None:
        raise ValueError(f"{type(model).__name__}: cannot tell top-k (no gate.top_k, no config.num_experts_per_tok)")
    return int(top_k)


def router_weights(model: nn.Module, gate_module: str = DEFAULT_GATE_MODULE) -> np.ndarray:
    """Router weight matrices as float32 (L, K, d): row k of layer l is expert k's embedding."""
    gates = find_gates(model, gate_module)
    return np.stack([gate.weight.detach().float().cpu().numpy() for gate in gates]).astype(np.float32)
