"""The one place that knows MoE routers: where they are, what they route, and how to capture it.

One :class:`Adapter` per architecture (``config.model_type``) of transformers 5.x says

- where the router of decoder layer ``i`` is (``*.layers.<i>.<path>``). Layers without one
  (dense layers: Qwen2/3-MoE ``mlp_only_layers`` / ``decoder_sparse_step``, DeepSeek's first
  ``first_k_dense_replace`` layers) are skipped; every result keeps the real layer index;
- the model's own per-token routing, read from the router's forward output: its logits, the
  experts it picked and their weights;
- the full routing distribution over all K experts (``traces.routing_normalization: softmax``),
  whose top-k are the experts the model picks:

  ========================  =====================  ===========================================================
  model_type                router                 full distribution
  ========================  =====================  ===========================================================
  olmoe, mixtral,           ``mlp.gate``           softmax of the logits
  qwen2_moe, qwen3_moe
  deepseek_v2               ``mlp.gate``           softmax; with ``topk_method: group_limited_greedy`` the
                                                   experts outside the chosen groups are 0 and the rest
                                                   renormalized to 1 (they cannot be routed to)
  deepseek_v3               ``mlp.gate``           sigmoid scores, experts outside the chosen groups 0,
                                                   normalized to sum 1 (groups chosen as the model does, with
                                                   ``e_score_correction_bias``)
  granitemoe                ``block_sparse_moe     softmax of the logits (the model itself softmaxes over its
                            .router``              top-k logits only)
  jetmoe                    ``mlp.router``         softmax of the logits (as GraniteMoE)
  phimoe                    ``mlp.router``         softmax of the logits (sparsemixer at inference picks the
                                                   top-2 logits: the second after masking the first; it
                                                   dispatches 2 experts whatever ``num_experts_per_tok`` says,
                                                   so top-k is 2)
  flex_olmo                 ``mlp.gate``           softmax of the logits (OLMo-core's MoE models in HF format)
  olmo_core                 ``feed_forward_moe     OLMo-core's native ``MoELinearRouter`` (a model wrapped in
                            .router``              ``grokpath.olmo_core.OLMoCoreCausalLM``): softmax, or its
                                                   sigmoid scores normalized to 1; logits recomputed from the
                                                   router's input (its output has none)
  ========================  =====================  ===========================================================

  ``topk`` (the model's top-k renormalized) is, for every architecture, the weights the router
  itself returns for the experts it picked, divided by their sum (this drops DeepSeek's
  ``routed_scaling_factor``), and 0 elsewhere.

  One known difference: DeepSeek-V3 picks experts by sigmoid score plus
  ``e_score_correction_bias`` but weights them by the unbiased score. With a non-zero bias
  (trained checkpoints) the top-k of the full distribution can differ from the picked experts;
  ``topk`` is the model's routing exactly. Per-token records (``per_token``) never take a top-k
  of the distribution: they hold the experts the router dispatched, for every normalization.
- the expert embeddings pathway consistency uses: the router's weight rows (K, d), one per
  routed expert. Shared experts (Qwen2-MoE's sigmoid-gated ``shared_expert``, DeepSeek's
  ``shared_experts``) have no router row and are not part of a pathway; JetMoE's attention
  router (mixture of attention heads, ``self_attention.experts.router``) is not an FFN router
  and is ignored.

``traces.router`` overrides the path (and lets an architecture without an adapter run with the
generic reader: a router whose output is its logits, or a tuple starting with them, and a
softmax top-k). Capture itself is :class:`RoutingAccumulator`: forward hooks on the routers
that reduce each layer's routing to per-sample sums on the model's device.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

NORMALIZATIONS = ("softmax", "topk")


@dataclass
class Routed:
    """One router call, per token: logits (N, K) float32, picked experts (N, k) int64, their weights (N, k) float32."""

    logits: torch.Tensor
    indices: torch.Tensor
    weights: torch.Tensor


# ---------------------------------------------------------------- reading a router's output
def _read_triple(module: nn.Module, output) -> Routed:
    """transformers 5.x ``*TopKRouter``: ``(router_logits, top_k_weights, top_k_index)``."""
    logits, weights, indices = output
    return Routed(logits.reshape(-1, logits.shape[-1]).float(), indices.long(), weights.float())


def _read_jetmoe(module: nn.Module, output) -> Routed:
    """JetMoE's ``JetMoeTopKGating``: ``(index_sorted_experts, batch_index, batch_gates, expert_size, logits)``,
    the tokens' top-k slots sorted by expert. Undone here into per-token (N, k) picks."""
    index_sorted, _, batch_gates, expert_size, logits = output
    n, k = logits.shape[0], module.top_k
    experts = torch.repeat_interleave(
        torch.arange(len(expert_size), device=logits.device), torch.as_tensor(expert_size, device=logits.device)
    )
    indices = torch.empty(n * k, dtype=torch.long, device=logits.device).scatter_(0, index_sorted, experts)
    weights = torch.empty(n * k, dtype=torch.float32, device=logits.device).scatter_(0, index_sorted, batch_gates.float())
    return Routed(logits.float(), indices.view(n, k), weights.view(n, k))


def _read_generic(module: nn.Module, output, top_k: int) -> Routed:
    """A router returning its logits, or a tuple starting with them (then the picks are its softmax top-k)."""
    if isinstance(output, (tuple, list)) and len(output) == 3 and all(isinstance(x, torch.Tensor) for x in output):
        if output[2].dtype in (torch.int32, torch.int64) and output[1].shape == output[2].shape:
            return _read_triple(module, output)
    logits = logits_of(output).float()
    logits = logits.reshape(-1, logits.shape[-1])
    weights, indices = torch.softmax(logits, -1).topk(top_k, dim=-1)
    return Routed(logits, indices, weights)


def logits_of(output) -> torch.Tensor:
    """Router logits from a router's forward output: a tensor, or a tuple whose first item is the logits."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"unrecognised router output of type {type(output).__name__}")


# ---------------------------------------------------------------- full distributions, experts first (K, N)
# Experts-first: a softmax over a short last axis is ~10x slower on the CPU than over the first.
def _softmax_full(module: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.T, dim=0)


def _group_mask(scores: torch.Tensor, n_group: int, topk_group: int, per_group: Callable) -> torch.Tensor:
    """(N, K) bool: experts in the ``topk_group`` groups with the highest ``per_group`` score."""
    n, k = scores.shape
    group_scores = per_group(scores.view(n, n_group, k // n_group))
    group_idx = torch.topk(group_scores, k=topk_group, dim=-1, sorted=False)[1]
    mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1).bool()
    return mask.unsqueeze(-1).expand(n, n_group, k // n_group).reshape(n, k)


def _deepseek_v2_full(module: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """As ``DeepseekV2TopkRouter.forward``: softmax; group-limited greedy zeroes the groups it does not choose."""
    probs = torch.softmax(logits, dim=-1)
    if getattr(module, "topk_method", "greedy") == "group_limited_greedy":
        mask = _group_mask(probs, module.num_group, module.topk_group, lambda g: g.max(dim=-1).values)
        probs = probs * mask
        probs = probs / probs.sum(-1, keepdim=True)
    return probs.T


def _deepseek_v3_full(module: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """As ``DeepseekV3TopkRouter.forward``: sigmoid scores; groups chosen by the sum of each group's two best
    biased scores; experts outside them 0; normalized to sum 1."""
    scores = logits.sigmoid()
    biased = scores + module.e_score_correction_bias.float()
    mask = _group_mask(biased, module.num_group, module.topk_group, lambda g: g.topk(2, dim=-1)[0].sum(dim=-1))
    scores = scores * mask
    return (scores / scores.sum(-1, keepdim=True)).T


def _olmo_core():
    """grokpath.olmo_core, imported when an OLMo-core model is read (it imports this module)."""
    from grokpath import olmo_core

    return olmo_core


@dataclass(frozen=True)
class Adapter:
    """How grokpath reads the routers of one architecture (see the module docstring)."""

    model_type: str
    path: str  # router module inside decoder layer i: *.layers.<i>.<path>
    read: Callable[[nn.Module, object], Routed] = _read_triple
    full: Callable[[nn.Module, torch.Tensor], torch.Tensor] = _softmax_full
    weight: str | Callable[[nn.Module], torch.Tensor] = "weight"  # attribute path of the (K, d) router matrix, or a function
    dispatched: int | None = None  # experts per token the router always dispatches (else its top_k / the config's)
    reads_input: bool = False  # read() gets (inputs, output): for routers whose output has no logits


ADAPTERS: dict[str, Adapter] = {
    a.model_type: a
    for a in (
        Adapter("olmoe", "mlp.gate"),
        Adapter("mixtral", "mlp.gate"),
        Adapter("qwen2_moe", "mlp.gate"),
        Adapter("qwen3_moe", "mlp.gate"),
        Adapter("deepseek_v2", "mlp.gate", full=_deepseek_v2_full),
        Adapter("deepseek_v3", "mlp.gate", full=_deepseek_v3_full),
        Adapter("granitemoe", "block_sparse_moe.router"),
        Adapter("jetmoe", "mlp.router", read=_read_jetmoe, weight="layer.weight"),
        # sparsemixer (transformers models/phimoe/modeling_phimoe.py) picks one expert, masks it and picks a
        # second: PhimoeTopKRouter returns 2 experts per token and the block runs both, whatever top_k is
        Adapter("phimoe", "mlp.router", dispatched=2),
        Adapter("flex_olmo", "mlp.gate"),
        Adapter(
            "olmo_core",
            "feed_forward_moe.router",
            read=lambda module, packed: _olmo_core().read_router(module, packed),
            full=lambda module, logits: _olmo_core().full_distribution(module, logits),
            weight=lambda module: _olmo_core().router_weight(module),
            reads_input=True,
        ),
    )
}


def model_type_of(model: nn.Module) -> str:
    return str(getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__)


def adapter_for(model: nn.Module, router: str | None = None) -> Adapter:
    """The model's adapter; ``router`` (``traces.router``) overrides its module path.

    An architecture without an adapter runs only with ``router`` set (generic reader: logits
    first, softmax top-k); otherwise a one-line error names its model_type.
    """
    model_type = model_type_of(model)
    adapter = ADAPTERS.get(model_type)
    if adapter is None:
        if not router:
            raise ValueError(
                f"model_type '{model_type}' has no router adapter: add an Adapter to grokpath.routing.ADAPTERS "
                "(router path, output reader, full distribution), or set traces.router to the router's path "
                "inside a decoder layer to use the generic softmax top-k reader"
            )
        top_k = top_k_of(model)
        return Adapter(model_type, router, read=lambda module, output: _read_generic(module, output, top_k))
    if router and router != adapter.path:
        return replace(adapter, path=router)
    return adapter


@dataclass
class Routers:
    """The routers of a model in layer order, with their real decoder-layer indices."""

    adapter: Adapter
    modules: list[nn.Module]
    layers: list[int]  # real decoder-layer index of each router
    dense_layers: list[int]  # decoder layers without a router
    num_experts: int
    top_k: int

    def metadata(self) -> dict:
        return {
            "model_type": self.adapter.model_type,
            "router": self.adapter.path,
            "layers": self.layers,
            "dense_layers": self.dense_layers,
        }


def _weight_of(module: nn.Module, attr) -> torch.Tensor:
    if callable(attr):
        return attr(module)
    value = module
    for part in attr.split("."):
        value = getattr(value, part)
    return value


def find_routers(model: nn.Module, router: str | None = None) -> Routers:
    """Every router of ``model`` (``traces.router`` overrides the adapter's path)."""
    adapter = adapter_for(model, router)
    pattern = re.compile(r"(?:^|\.)layers\.(\d+)\." + re.escape(adapter.path) + r"$")
    found = sorted(
        ((int(m.group(1)), module) for name, module in model.named_modules() if (m := pattern.search(name))),
        key=lambda item: item[0],
    )
    if not found:
        raise ValueError(
            f"no router modules named '*.layers.<i>.{adapter.path}' in {type(model).__name__} "
            f"(model_type '{adapter.model_type}'); set traces.router to the router's path inside a decoder layer"
        )
    layers = [i for i, _ in found]
    n_layers = int(getattr(model.config, "num_hidden_layers", layers[-1] + 1))
    modules = [module for _, module in found]
    return Routers(
        adapter=adapter,
        modules=modules,
        layers=layers,
        dense_layers=sorted(set(range(n_layers)) - set(layers)),
        num_experts=int(_weight_of(modules[0], adapter.weight).shape[0]),
        top_k=adapter.dispatched or top_k_of(model, modules[0]),
    )


def check_model(model: nn.Module, router: str | None = None, setting: str = "traces.router") -> Routers:
    """The routers of ``model``, or one line naming its model_type and ``setting`` (the caller's name for the
    router path: ``traces.router`` in a config, ``router=`` for the monitor) when grokpath cannot read them."""
    model_type = model_type_of(model)
    if model_type not in ADAPTERS and not router:
        raise ValueError(
            f"model_type '{model_type}' ({type(model).__name__}) has no router adapter in grokpath.routing "
            f"(known: {', '.join(sorted(ADAPTERS))}); if it is a mixture of experts, set {setting} to its router's "
            "path inside a decoder layer (e.g. 'mlp.gate') to read it with the generic softmax top-k reader"
        )
    path = router or ADAPTERS[model_type].path
    pattern = re.compile(r"(?:^|\.)layers\.(\d+)\." + re.escape(path) + r"$")  # as find_routers looks
    if not any(pattern.search(name) for name, _ in model.named_modules()):
        raise ValueError(
            f"model_type '{model_type}' ({type(model).__name__}) has no MoE layer: no module '*.layers.<i>.{path}'; "
            f"set {setting} to its router's path inside a decoder layer if it has one elsewhere"
        )
    return find_routers(model, router)


def find_gates(model: nn.Module, router: str | None = None) -> list[nn.Module]:
    """Router modules in layer order (dense layers skipped)."""
    return find_routers(model, router).modules


def top_k_of(model: nn.Module, gate: nn.Module | None = None) -> int:
    """Experts used per token: the router's ``top_k`` or the config's ``num_experts_per_tok``."""
    if gate is not None and getattr(gate, "top_k", None):
        return int(gate.top_k)
    top_k = getattr(model.config, "num_experts_per_tok", None)
    if top_k is None:
        raise ValueError(f"{type(model).__name__}: cannot tell top-k (no router top_k, no config.num_experts_per_tok)")
    return int(top_k)


def router_weights(model: nn.Module, router: str | None = None) -> np.ndarray:
    """Expert embeddings for consistency as float32 (L, K, d): row k of router l is expert k's embedding."""
    routers = find_routers(model, router)
    return np.stack([_weight_of(m, routers.adapter.weight).detach().float().cpu().numpy() for m in routers.modules]).astype(
        np.float32
    )


# ---------------------------------------------------------------- per-token distributions
def distribution(routers: Routers, module: nn.Module, output, normalization: str) -> tuple[torch.Tensor, Routed]:
    """Per-token routing distribution experts-first (K, N) float32 and the router's own picks."""
    routed = routers.adapter.read(module, output)
    if normalization == "softmax":
        return routers.adapter.full(module, routed.logits), routed
    if normalization == "topk":
        weights = routed.weights / routed.weights.sum(-1, keepdim=True)
        dist = torch.zeros(routed.logits.shape[1], routed.logits.shape[0], dtype=torch.float32, device=weights.device)
        return dist.scatter_(0, routed.indices.T, weights.T), routed
    raise ValueError(f"traces.routing_normalization '{normalization}' is not one of {NORMALIZATIONS}")


def routing_weights(logits: torch.Tensor, normalization: str, top_k: int) -> torch.Tensor:
    """Softmax-router weights (..., K) from logits: the full softmax, or its top-k renormalized (zero elsewhere)."""
    probs = torch.softmax(logits.float(), dim=-1)
    if normalization == "softmax":
        return probs
    if normalization == "topk":
        values, indices = probs.topk(top_k, dim=-1)
        return torch.zeros_like(probs).scatter(-1, indices, values / values.sum(-1, keepdim=True))
    raise ValueError(f"traces.routing_normalization '{normalization}' is not one of {NORMALIZATIONS}")


class RoutingAccumulator:
    """Context manager: router hooks that reduce each layer's routing to per-sample sums on the device.

    Per router, the hook turns the router's output into the per-token distribution
    (:func:`distribution`) and adds it, masked by ``attention_mask``, into an (L, B, K)
    float32 accumulator where the model runs. Options: ``per_token`` keeps each layer's top-k
    ids and weights; ``entropy`` sums the per-token entropy of the full distribution;
    ``keep`` keeps the per-token distributions and the router's own picks (tests, debugging).
    :meth:`means` divides by the real-token counts.
    """

    def __init__(
        self,
        model,
        attention_mask: torch.Tensor,
        normalization: str = "softmax",
        router: str | None = None,
        per_token: bool = False,
        entropy: bool = False,
        keep: bool = False,
    ):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"traces.routing_normalization '{normalization}' is not one of {NORMALIZATIONS}")
        self.routers = find_routers(model, router)
        self.top_k = self.routers.top_k
        self.normalization, self.per_token, self.entropy, self.keep = normalization, per_token, entropy, keep
        self.mask = attention_mask.float()
        n, batch = len(self.routers.modules), attention_mask.shape[0]
        self.sums = torch.zeros(n, batch, self.routers.num_experts, dtype=torch.float32, device=attention_mask.device)
        self.entropy_sums = torch.zeros(n, dtype=torch.float32, device=attention_mask.device)
        self.seen = [False] * n
        self.token_ids: list[torch.Tensor | None] = [None] * n
        self.token_weights: list[torch.Tensor | None] = [None] * n
        self.kept: list[tuple[torch.Tensor, Routed] | None] = [None] * n
        self._handles = []

    def _hook(self, layer: int):
        def hook(module, inputs, output):
            if self.routers.adapter.reads_input:
                output = (inputs, output)
            batch, length = self.mask.shape
            dist, routed = distribution(self.routers, module, output, self.normalization)
            dist = dist.view(-1, batch, length)  # (K, B, T)
            self.sums[layer] = (dist * self.mask).sum(-1).T
            if self.per_token:
                # the experts the router dispatched each token to (not a top-k of ``dist``, which differs for
                # DeepSeek-V3's biased choice), with their weight in ``dist``, heaviest first
                picked = routed.indices.reshape(-1, routed.indices.shape[-1]).T  # (k, N)
                values, order = dist.view(dist.shape[0], -1).gather(0, picked).sort(dim=0, descending=True, stable=True)
                indices = picked.gather(0, order)
                self.token_ids[layer] = indices.view(-1, batch, length).permute(1, 2, 0)
                self.token_weights[layer] = values.view(-1, batch, length).permute(1, 2, 0)
            if self.entropy:
                full = (
                    dist
                    if self.normalization == "softmax"
                    else self.routers.adapter.full(module, routed.logits).view(-1, batch, length)
                )
                per_token = -(full * full.clamp_min(1e-12).log()).sum(0)  # (B, T)
                self.entropy_sums[layer] = (per_token * self.mask).sum()
            if self.keep:
                self.kept[layer] = (dist.permute(1, 2, 0).detach(), routed)
            self.seen[layer] = True

        return hook

    def __enter__(self) -> RoutingAccumulator:
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.routers.modules)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _check(self) -> None:
        if not all(self.seen):
            raise RuntimeError(
                f"router of layer {self.routers.layers[self.seen.index(False)]} produced no output during the forward pass"
            )

    def means(self) -> torch.Tensor:
        """(B, L, K) token-mean routing weights over real tokens, on the model's device."""
        self._check()
        return (self.sums / self.mask.sum(1)[None, :, None]).permute(1, 0, 2)

    def mean_entropy(self) -> float:
        """Per-token entropy (nats) of the full distribution, averaged over real tokens and then layers."""
        self._check()
        return float(self.entropy_sums.mean() / self.mask.sum())
