"""Online monitor: paper A's routing signals on a fixed probe set, during pretraining.

At every checkpoint the monitor runs ``pretrain.monitor_probes`` training texts
per domain (drawn once, seeded) through the model and records, per domain, the
mean pairwise pathway distance, the mean pathway consistency C_i (guarded
samples skipped), the raw mean consecutive-layer cosine and the probe loss.
No test set is needed: a falling distance and rising cosine after the training
loss has flattened is the memorization-to-generalization signal.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from grokpath.consistency import routing_consistency
from grokpath.pathways import mean_pairwise_distance, pathway_strings
from grokpath.routing import router_weights
from grokpath.traces import trace_batch

COLUMNS = ["step", "domain", "pathway_distance", "consistency", "mean_cosine", "probe_loss"]


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
            loss, routing = trace_batch(model, batch["input_ids"], batch["attention_mask"], self.traces["routing_normalization"])
            routing = routing.numpy()
            strings = pathway_strings(routing, self.pathways["threshold"], self.pathways["include_crossing"])
            distance = mean_pairwise_distance(strings, level=self.pathways["level"], workers=1)[0]
            cons = routing_consistency(routing, weights, self.consistency["guard_min_max_cosine"])
            new.append({
                "step": step, "domain": domain, "pathway_distance": float(distance),
                "consistency": float(np.nanmean(cons["consistency"])) if np.isfinite(cons["consistency"]).any() else float("nan"),
                "mean_cosine": float(np.mean(cons["mean_cosine"])), "probe_loss": float(loss.mean()),
            })
        self.rows.extend(new)
        return new

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)
