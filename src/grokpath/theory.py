"""Fig. 8 of paper A: as routing becomes structured, effective dimension and pathway distance fall together.

Our design (the paper gives only "16 experts, 100-dim inputs, 200 samples"):

- Inputs come from ``n_clusters`` clusters: x = m·μ_c + A_c z + σ ε, with unit mean μ_c,
  an orthonormal (d × r) basis A_c of within-cluster variation, z ~ N(0, I_r), ε ~ N(0, I_d).
- A MoE with ``n_layers`` routers (each reads x; gates g_ℓ(x) = softmax(R_ℓ x) over K experts)
  starts from large random router weights: sharp but sample-specific, i.e. erratic, routing.
- Training (full-batch Adam) fits the routers to a structured target routing: in layer ℓ,
  cluster c sends weight ``target_weight`` to its expert k*(ℓ, c). Routing thus moves from
  erratic to structured, the change that paper A ties to generalization.
- With the routing fixed, the MoE with linear experts f(x) = Σ_ℓ Σ_k g_ℓk(x) w_ℓkᵀ x is a
  linear model in the expert weights with features φ(x) = g(x) ⊗ x. H is its Gauss-Newton
  matrix (1/n) Σ φφᵀ, normalized to unit trace, and the effective dimension is
  Tr(H(H + λI)⁻¹) (the degrees of freedom of ridge regression on those features). It is
  computed from the n × n kernel (G Gᵀ) ∘ (X Xᵀ) / n, which has the same nonzero spectrum.
- Pathways use the paper's rule (threshold on cumulative routing weight); the distance is the
  mean Levenshtein distance over all sample pairs.

Structured routing makes G Gᵀ close to a block matrix, so the kernel becomes block diagonal
over clusters with rank about n_clusters × (cluster_rank + 1); erratic routing spreads it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from grokpath.io import provenance, write_frame

log = logging.getLogger(__name__)


def effective_dimension(gates: np.ndarray, inputs: np.ndarray, ridge: float) -> float:
    """Tr(H(H+λI)⁻¹) of the trace-normalized Gauss-Newton matrix of a linear-expert MoE.

    ``gates``: (n, L, K) routing weights; ``inputs``: (n, d).
    """
    n = inputs.shape[0]
    gate_gram = np.einsum("ilk,jlk->ij", gates, gates)  # Σ_ℓ g_ℓ(x_i)·g_ℓ(x_j)
    kernel = gate_gram * (inputs @ inputs.T) / n
    eig = np.clip(np.linalg.eigvalsh(kernel), 0.0, None)
    eig = eig / eig.sum()
    return float((eig / (eig + ridge)).sum())


def _pathway_distance(gates: np.ndarray, threshold: float, clusters: np.ndarray) -> tuple[float, float]:
    """Mean pairwise Levenshtein distance of the pathway strings: over all pairs, within clusters."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    from grokpath.pathways import pathway_strings

    strings = pathway_strings(gates, threshold=threshold, include_crossing=True)
    dist = process.cdist(strings, strings, scorer=Levenshtein.distance, workers=1, dtype=np.int64)
    upper = np.triu_indices(len(strings), k=1)
    same = (clusters[:, None] == clusters[None, :])[upper]
    pairs = dist[upper].astype(float)
    return float(pairs.mean()), float(pairs[same].mean()) if same.any() else float("nan")


def run_theory_seed(theory: dict, seed: int) -> pd.DataFrame:
    """One synthetic run: a row per measurement step."""
    import torch

    torch.set_num_threads(1)
    k, d, n = int(theory["n_experts"]), int(theory["input_dim"]), int(theory["n_samples"])
    layers, c, r = int(theory["n_layers"]), int(theory["n_clusters"]), int(theory["cluster_rank"])
    gen = torch.Generator().manual_seed(int(seed))

    means = torch.nn.functional.normalize(torch.randn(c, d, generator=gen), dim=-1)
    bases = torch.linalg.qr(torch.randn(c, d, max(r, 1), generator=gen))[0][:, :, :r]
    cluster = torch.randint(0, c, (n,), generator=gen)
    z = torch.randn(n, r, generator=gen)
    inputs = (
        float(theory["cluster_mean_norm"]) * means[cluster]
        + torch.einsum("ndr,nr->nd", bases[cluster], z)
        + float(theory["noise"]) * torch.randn(n, d, generator=gen)
    )
    # target routing: cluster c puts target_weight on expert k*(ℓ, c) in layer ℓ, the rest spread evenly
    best = torch.randint(0, k, (layers, c), generator=gen)
    top = float(theory["target_weight"])
    target = torch.full((layers, c, k), (1.0 - top) / (k - 1))
    target.scatter_(2, best[:, :, None], top)
    target = target[:, cluster].permute(1, 0, 2)  # (n, L, K)

    router = (float(theory["router_init_scale"]) / d**0.5 * torch.randn(layers, k, d, generator=gen)).requires_grad_()
    optimizer = torch.optim.Adam([router], lr=float(theory["lr"]))
    x_np, cluster_np = inputs.numpy().astype(np.float64), cluster.numpy()
    rows = []
    for step in range(int(theory["steps"]) + 1):
        logits = torch.einsum("lkd,nd->nlk", router, inputs)
        loss = -(target * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
        if step % int(theory["log_every"]) == 0 or step == int(theory["steps"]):
            gates = torch.softmax(logits, dim=-1).detach().numpy().astype(np.float64)
            distance, within = _pathway_distance(gates, float(theory["threshold"]), cluster_np)
            rows.append(
                {
                    "seed": int(seed),
                    "step": step,
                    "routing_loss": float(loss.detach()),
                    "effective_dimension": effective_dimension(gates, x_np, float(theory["ridge"])),
                    "pathway_distance": distance,
                    "within_cluster_distance": within,
                    "mean_top_gate": float(gates.max(axis=-1).mean()),
                }
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return pd.DataFrame(rows)


def run_theory(theory: dict) -> pd.DataFrame:
    """All seeds of the synthetic experiment, concatenated."""
    seeds = [int(theory["seed"]) + i for i in range(int(theory["n_seeds"]))]
    frames = []
    for seed in seeds:
        frames.append(run_theory_seed(theory, seed))
        last = frames[-1].iloc[-1]
        log.info(
            "theory seed %d: effective dimension %.1f, distance %.1f at the end",
            seed,
            last.effective_dimension,
            last.pathway_distance,
        )
    return pd.concat(frames, ignore_index=True)


def write_theory(cfg: dict, table_path: Path, figure_path: Path) -> pd.DataFrame:
    """Run the experiment, write ``theory.parquet`` and fig. 8 (PNG + PDF)."""
    from grokpath.figures.common import save_figure
    from grokpath.figures.paper_a import fig08_theory

    theory = cfg["analysis"]["theory"]
    table = run_theory(theory)
    write_frame(table, table_path, metadata=provenance(theory=theory))
    save_figure(fig08_theory(table, style=cfg.get("figures")), figure_path, cfg.get("figures"))
    return table
