"""Online monitor: paper A's routing signals on a fixed probe set, during pretraining.

At every checkpoint the monitor runs ``pretrain.monitor_probes`` training texts
per domain (drawn once, seeded) through the model and records, per domain, the
mean pairwise pathway distance, the mean pathway consistency C_i (guarded
samples skipped), the raw mean consecutive-layer cosine, the probe loss, and the
mean per-token routing entropy (nats, router full softmax over real tokens, layers
averaged; uniform routing gives log K: a collapse shows as this climbing to log K).
No test set is needed: a falling distance and rising cosine after the training
loss has flattened is the memorization-to-generalization signal.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd
import torch

from grokpath.consistency import routing_consistency
from grokpath.pathways import mean_pairwise_distance, pathway_strings
from grokpath.routing import router_weights
from grokpath.traces import trace_batch

COLUMNS = ["step", "domain", "pathway_distance", "consistency", "mean_cosine", "probe_loss", "token_entropy"]


class GateLogits:
    """Context manager collecting every layer's router logits from forward hooks on
    ``model.model.layers[i].<gate_module>`` (whose output starts with the logits, (B·T, K))."""

    def __init__(self, model, gate_module: str = "mlp.gate"):
        self.gates = [layer.get_submodule(gate_module) for layer in model.model.layers]
        self.logits: list[torch.Tensor] = []
        self._hooks = []

    def __enter__(self) -> Self:
        self._hooks = [g.register_forward_hook(lambda _m, _i, out: self.logits.append(out[0].detach())) for g in self.gates]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()


def routing_entropies(logits: list[torch.Tensor], attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Routing entropy (nats) of one batch from per-layer router logits (B·T, K) and its mask (B, T).

    ``token_sum`` (L,): per-layer sum of the per-token entropy of the full softmax over real
    tokens; ``n_tokens``: their count; ``sample_mean`` (B,): per sample, the entropy of its
    token-mean routing distribution, averaged over layers.
    """
    mask = attention_mask.bool()
    probs = torch.stack([torch.softmax(x.float(), -1).view(*mask.shape, -1) for x in logits])  # (L, B, T, K)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)  # (L, B, T)
    mean_probs = (probs * mask[..., None]).sum(2) / mask.sum(1)[None, :, None]  # (L, B, K)
    sample_mean = -(mean_probs * mean_probs.clamp_min(1e-12).log()).sum(-1).mean(0)
    return {"token_sum": (entropy * mask).sum((1, 2)), "n_tokens": int(mask.sum()), "sample_mean": sample_mean}


def probe_indices(n_rows: int, n_probes: int, seed: int) -> np.ndarray:
    """Sorted indices of the probe texts (all rows when there are fewer)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=min(n_probes, n_rows), replace=False))


class Monitor:
    """Holds the encoded probe set and the rows recorded so far (``rows`` is resumable state)."""

    def __init__(self, cfg: dict, train_rows: dict[str, list[dict]], tokenizer):
        self.traces, self.pathways, self.consistency = cfg["traces"], cfg["pathways"], cfg["consistency"]
        self.probes = {}
        for domain, rows in train_rows.items():
            index = probe_indices(len(rows), cfg["pretrain"]["monitor_probes"], cfg["pretrain"]["seed"])
            self.probes[domain] = tokenizer([rows[i]["text"] for i in index], padding=True, return_tensors="pt")
        self.rows: list[dict] = []

    def record(self, model, step: int) -> list[dict]:
        weights = router_weights(model)
        new = []
        for domain, batch in self.probes.items():
            with GateLogits(model, self.traces["gate_module"]) as gates:
                loss, routing = trace_batch(
                    model, batch["input_ids"], batch["attention_mask"], self.traces["routing_normalization"]
                )
            entropy = routing_entropies(gates.logits, batch["attention_mask"])
            routing = routing.numpy()
            strings = pathway_strings(routing, self.pathways["threshold"], self.pathways["include_crossing"])
            distance = mean_pairwise_distance(strings, level=self.pathways["level"], workers=1)[0]
            cons = routing_consistency(routing, weights, self.consistency["guard_min_max_cosine"])
            new.append(
                {
                    "step": step,
                    "domain": domain,
                    "pathway_distance": float(distance),
                    "consistency": float(np.nanmean(cons["consistency"]))
                    if np.isfinite(cons["consistency"]).any()
                    else float("nan"),
                    "mean_cosine": float(np.mean(cons["mean_cosine"])),
                    "probe_loss": float(loss.mean()),
                    "token_entropy": float(entropy["token_sum"].mean() / entropy["n_tokens"]),
                }
            )
        self.rows.extend(new)
        return new

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)
