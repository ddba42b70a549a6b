"""The 1-layer (or L-layer), 4-head, decoder-only classifier of the circuits study.

No LayerNorm, ReLU MLP with d_mlp = mlp_ratio * d_h, learned positional embeddings,
logits over the P residues read at the last position. Parameters live in a flat
dict of tensors so that M models can be stacked along a leading model dimension:

- :func:`forward_one` runs one model (plain matmuls, nanoGPT style);
- :func:`forward_many` runs M stacked models at once with einsum over the leading
  model dimension (the "batched" path); ``torch.func.vmap(forward_one)`` is the
  "vmap" path. Both must match :func:`forward_one` model by model (tested).

The last layer only needs the query at the last position (nothing reads the
other positions' outputs), so it computes attention and the MLP there alone:
identical logits, a quarter of the last layer's work.

Split FFN (``split_ffn=True``): hidden units [0, d_mlp/2) serve ``+`` examples
and [d_mlp/2, d_mlp) serve ``-`` examples (an MoE with a fixed, task-keyed router).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SEQ_LEN = 4


@dataclass(frozen=True)
class ModelSpec:
    P: int
    vocab: int
    d_h: int
    n_heads: int = 4
    n_layers: int = 1
    mlp_ratio: int = 4
    split_ffn: bool = False
    init_scale: float = 1.0

    def __post_init__(self):
        if self.d_h % self.n_heads:
            raise ValueError(f"circuits d_h={self.d_h} must be divisible by n_heads={self.n_heads}")
        if self.split_ffn and self.d_mlp % 2:
            raise ValueError(f"split FFN needs an even d_mlp, got {self.d_mlp}")

    @property
    def d_mlp(self) -> int:
        return self.mlp_ratio * self.d_h

    @property
    def d_head(self) -> int:
        return self.d_h // self.n_heads


def init_params(spec: ModelSpec, seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """One model's parameters; weights ~ N(0, init_scale^2 / fan_in), biases 0."""
    gen = torch.Generator().manual_seed(int(seed))
    d, f = spec.d_h, spec.d_mlp

    def normal(*shape, fan_in):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).mul_(spec.init_scale / math.sqrt(fan_in)).to(dtype)

    params = {"W_E": normal(spec.vocab, d, fan_in=d), "W_pos": normal(SEQ_LEN, d, fan_in=d)}
    for layer in range(spec.n_layers):
        p = f"blocks.{layer}."
        params[p + "W_QKV"] = normal(d, 3 * d, fan_in=d)  # [W_Q | W_K | W_V], one matmul
        params[p + "W_O"] = normal(d, d, fan_in=d)
        params[p + "W_in"] = normal(d, f, fan_in=d)
        params[p + "b_in"] = torch.zeros(f, dtype=dtype)
        params[p + "W_out"] = normal(f, d, fan_in=f)
        params[p + "b_out"] = torch.zeros(d, dtype=dtype)
    params["W_U"] = normal(d, spec.P, fan_in=d)
    return params


def stack_params(per_model: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([p[k] for p in per_model]) for k in per_model[0]}


def n_params(spec: ModelSpec) -> int:
    return sum(t.numel() for t in init_params(spec, 0).values())


def ffn_mask(spec: ModelSpec, is_minus: torch.Tensor, dtype=torch.float32) -> torch.Tensor | None:
    """[N, d_mlp] 0/1 mask of the hidden units each example may use; None for a dense FFN."""
    if not spec.split_ffn:
        return None
    half = spec.d_mlp // 2
    first = torch.arange(spec.d_mlp) < half
    return torch.where(is_minus[:, None], ~first, first).to(dtype)


def forward_one(
    params: dict[str, torch.Tensor], x: torch.Tensor, spec: ModelSpec, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits [N, P] of one model for token ids x [N, T]."""
    N, T = x.shape
    H, dk = spec.n_heads, spec.d_head
    h = F.embedding(x, params["W_E"]) + params["W_pos"][:T]
    for layer in range(spec.n_layers):
        p = f"blocks.{layer}."
        last = layer == spec.n_layers - 1
        q, k, v = (h @ params[p + "W_QKV"]).split(spec.d_h, dim=-1)
        q_in, q = (h[:, -1:], q[:, -1:]) if last else (h, q)
        Tq = q_in.shape[1]
        q = q.reshape(N, Tq, 1, H, dk)
        k = k.reshape(N, 1, T, H, dk)
        v = v.reshape(N, 1, T, H, dk)
        scores = (q * k).sum(-1) / math.sqrt(dk)  # [N, Tq, T, H]
        if not last:
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            scores = scores.masked_fill(~causal[:, :, None], float("-inf"))
        z = (scores.softmax(2)[..., None] * v).sum(2).reshape(N, Tq, H * dk)
        h = q_in + z @ params[p + "W_O"]
        hidden = torch.relu(h @ params[p + "W_in"] + params[p + "b_in"])
        if mask is not None:
            hidden = hidden * mask[:, None, :]
        h = h + hidden @ params[p + "W_out"] + params[p + "b_out"]
    return h[:, -1] @ params["W_U"]


def forward_many(
    params: dict[str, torch.Tensor], x: torch.Tensor, spec: ModelSpec, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits [M, N, P] of M stacked models; x is [M, N, T] (per-model data) or [N, T] (shared)."""
    M = params["W_E"].shape[0]
    if x.dim() == 2:
        x = x.expand(M, *x.shape)
    _, N, T = x.shape
    H, dk = spec.n_heads, spec.d_head
    offsets = (torch.arange(M, device=x.device) * params["W_E"].shape[1])[:, None, None]
    h = F.embedding(x + offsets, params["W_E"].flatten(0, 1)) + params["W_pos"][:, None, :T]
    if mask is not None and mask.dim() == 2:
        mask = mask.expand(M, *mask.shape)
    for layer in range(spec.n_layers):
        p = f"blocks.{layer}."
        last = layer == spec.n_layers - 1
        q, k, v = torch.einsum("mntd,mde->mnte", h, params[p + "W_QKV"]).split(spec.d_h, dim=-1)
        q_in, q = (h[:, :, -1:], q[:, :, -1:]) if last else (h, q)
        Tq = q_in.shape[2]
        q = q.reshape(M, N, Tq, 1, H, dk)
        k = k.reshape(M, N, 1, T, H, dk)
        v = v.reshape(M, N, 1, T, H, dk)
        scores = (q * k).sum(-1) / math.sqrt(dk)  # [M, N, Tq, T, H]; T=4: elementwise beats tiny bmm
        if not last:
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            scores = scores.masked_fill(~causal[:, :, None], float("-inf"))
        z = (scores.softmax(3)[..., None] * v).sum(3).reshape(M, N, Tq, H * dk)
        h = q_in + torch.einsum("mnte,med->mntd", z, params[p + "W_O"])
        hidden = torch.relu(torch.einsum("mntd,mdf->mntf", h, params[p + "W_in"]) + params[p + "b_in"][:, None, None])
        if mask is not None:
            hidden = hidden * mask[:, :, None, :]
        h = h + torch.einsum("mntf,mfd->mntd", hidden, params[p + "W_out"]) + params[p + "b_out"][:, None, None]
    return torch.einsum("mnd,mdp->mnp", h[:, :, -1], params["W_U"])


def param_norm(params: dict[str, torch.Tensor], stacked: bool) -> torch.Tensor:
    """L2 norm of all parameters: [M] if stacked else a scalar."""
    if stacked:
        return torch.sqrt(sum(t.detach().flatten(1).pow(2).sum(1) for t in params.values()))
    return torch.sqrt(sum(t.detach().pow(2).sum() for t in params.values()))
