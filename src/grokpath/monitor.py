"""Pathway monitor: paper A's routing signals on a fixed probe set, inside any training loop.

:class:`PathwayMonitor` takes a model, probe texts (per domain, or one list) and a tokenizer,
and at each :meth:`~PathwayMonitor.record` call writes one row per domain with the columns
``COLUMNS``: the mean pairwise pathway distance, the mean pathway consistency C_i (guarded
samples skipped), the raw mean consecutive-layer cosine, the probe loss, and the mean per-token
routing entropy (nats, the model's full routing distribution over real tokens, layers averaged;
uniform routing gives log K: a collapse shows as this climbing to log K). Any architecture with
a router adapter (``grokpath.routing``) works. No test set is needed: a falling distance and
rising cosine after the training loss has flattened is the memorization-to-generalization signal.

The mini pretraining records through it (:meth:`PathwayMonitor.from_config`), and
``grokpath.callbacks`` wraps it for a ``transformers.Trainer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from grokpath.consistency import routing_consistency
from grokpath.pathways import mean_pairwise_distance, pathway_strings
from grokpath.routing import RoutingAccumulator, check_model, router_weights
from grokpath.traces import trace_pass

COLUMNS = ["step", "domain", "pathway_distance", "consistency", "mean_cosine", "probe_loss", "token_entropy"]
DEFAULTS = {  # the schema's defaults of the settings the monitor reads (pathways.*, consistency.*, traces.*)
    "threshold": 0.7,
    "include_crossing": True,
    "level": "char",
    "routing_normalization": "softmax",
    "guard_min_max_cosine": 0.0,
    "router": None,
    "max_length": None,
}
ROUTER_SETTING = "the keyword router="  # how a monitor user names the router path (traces.router in a config)
MIN_PROBE_TOKENS = 2  # tokens besides special ones: a next-token loss needs at least one prediction
MAX_UNKNOWN_SHARE = 0.5  # of a domain's probe tokens: more is a tokenizer that does not know the text


def check_settings(settings: dict) -> dict:
    """``DEFAULTS`` overridden by ``settings``; an unknown setting is one line naming it."""
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown monitor setting '{sorted(unknown)[0]}'; known: {sorted(DEFAULTS)}")
    return {**DEFAULTS, **settings}


def tokenize_probes(probes: Mapping[str, Sequence[str]] | Sequence[str], tokenizer, max_length: int | None = None) -> dict:
    """domain -> the padded batch of its probe texts (one list of texts: domain ``all``).

    Refused with one line naming the domain: fewer than 2 probes (no pathway distance), a probe of
    fewer than ``MIN_PROBE_TOKENS`` tokens besides special ones (its loss would be NaN), or probes
    more than ``MAX_UNKNOWN_SHARE`` of whose tokens are the unknown token (the rows would measure the
    tokenizer, not the model: one token for every text).
    """
    if isinstance(probes, str) or not isinstance(probes, Mapping):
        probes = {"all": [probes] if isinstance(probes, str) else list(probes)}
    if tokenizer.pad_token is None:
        raise ValueError("the monitor's tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos token)")
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    batches = {}
    for domain, texts in probes.items():
        if len(texts) < 2:
            raise ValueError(f"monitor probes of domain '{domain}': {len(texts)} text(s); a pathway distance needs 2")
        batch = tokenizer(
            list(texts), padding=True, return_tensors="pt", truncation=max_length is not None, max_length=max_length
        )
        content = [
            [t for t, real in zip(ids.tolist(), mask.tolist()) if real and t not in special]
            for ids, mask in zip(batch["input_ids"], batch["attention_mask"])
        ]
        short = [i for i, ids in enumerate(content) if len(ids) < MIN_PROBE_TOKENS]
        if short:
            raise ValueError(
                f"monitor probes of domain '{domain}': probe {short[0]} tokenizes to {len(content[short[0]])} token(s) "
                f"besides special ones ({len(short)} of {len(content)} probes under {MIN_PROBE_TOKENS}); "
                "is the tokenizer the model's, and the text not empty?"
            )
        n_unknown = sum(ids.count(tokenizer.unk_token_id) for ids in content) if tokenizer.unk_token_id is not None else 0
        share = n_unknown / sum(map(len, content))
        if share > MAX_UNKNOWN_SHARE:
            raise ValueError(
                f"monitor probes of domain '{domain}': {share:.0%} of their tokens are the unknown token "
                f"'{tokenizer.unk_token}' (more than {MAX_UNKNOWN_SHARE:.0%}); is the tokenizer the model's?"
            )
        batches[domain] = batch
    return batches


def probe_indices(n_rows: int, n_probes: int, seed: int) -> np.ndarray:
    """Sorted indices of the probe texts (all rows when there are fewer)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=min(n_probes, n_rows), replace=False))


@torch.inference_mode()
def routing_entropies(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, router: str | None = None) -> dict:
    """Routing entropy (nats) of one batch, from the model's full routing distribution.

    ``token_sum`` (L,): per-layer sum of the per-token entropy over real tokens; ``n_tokens``:
    their count; ``sample_mean`` (B,): per sample, the entropy of its token-mean routing
    distribution, averaged over layers.
    """
    with RoutingAccumulator(model, attention_mask, "softmax", router, entropy=True) as routing:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    means = routing.means()  # (B, L, K)
    sample_mean = -(means * means.clamp_min(1e-12).log()).sum(-1).mean(1)
    return {"token_sum": routing.entropy_sums.cpu(), "n_tokens": int(attention_mask.sum()), "sample_mean": sample_mean.cpu()}


class PathwayMonitor:
    """The monitor's rows for ``model`` on fixed probe texts; ``rows`` is resumable state.

    ``probes``: domain -> texts, or one list of texts (domain ``all``). ``settings`` override
    ``DEFAULTS`` (pathway threshold, crossing rule, distance level, routing normalization,
    consistency guard, router path, max tokens per probe). The model and the probes are checked
    here, once: a model without readable routers (:func:`grokpath.routing.check_model`) or probes
    the tokenizer cannot encode (:func:`tokenize_probes`) are one line, before any training.
    """

    def __init__(self, model, probes: Mapping[str, Sequence[str]] | Sequence[str], tokenizer, **settings):
        self.model, self.settings = model, check_settings(settings)
        check_model(model, self.settings["router"], ROUTER_SETTING)
        self.probes = tokenize_probes(probes, tokenizer, self.settings["max_length"])
        self.rows: list[dict] = []

    @classmethod
    def from_config(cls, model, cfg: dict, train_rows: dict[str, list[dict]], tokenizer) -> PathwayMonitor:
        """The mini pretraining's monitor: ``pretrain.monitor_probes`` training texts per domain (seeded),
        settings from the ``traces``, ``pathways`` and ``consistency`` sections."""
        probes = {}
        for domain, rows in train_rows.items():
            index = probe_indices(len(rows), cfg["pretrain"]["monitor_probes"], cfg["pretrain"]["seed"])
            probes[domain] = [rows[i]["text"] for i in index]
        return cls(model, probes, tokenizer, **settings_from_config(cfg))

    def measure(self, step: int, model=None) -> list[dict]:
        """The rows of ``model`` (default: the monitor's) at ``step``, not stored; the model is put in eval mode
        for the measurement and back in its previous mode after."""
        model = self.model if model is None else model
        s = self.settings
        was_training = model.training
        model.eval()
        try:
            weights = router_weights(model, s["router"])
            device = next(model.parameters()).device
            rows = []
            for domain, batch in self.probes.items():
                result = trace_pass(
                    model,
                    batch["input_ids"].to(device),
                    batch["attention_mask"].to(device),
                    s["routing_normalization"],
                    s["router"],
                    entropy=True,
                )
                routing = result.routing.numpy()
                strings = pathway_strings(routing, s["threshold"], s["include_crossing"])
                distance = mean_pairwise_distance(strings, level=s["level"], workers=1)[0]
                cons = routing_consistency(routing, weights, s["guard_min_max_cosine"])
                finite = np.isfinite(cons["consistency"])
                rows.append(
                    {
                        "step": int(step),
                        "domain": domain,
                        "pathway_distance": float(distance),
                        "consistency": float(np.mean(cons["consistency"][finite])) if finite.any() else float("nan"),
                        "mean_cosine": float(np.mean(cons["mean_cosine"])),
                        "probe_loss": float(result.loss.mean()),
                        "token_entropy": float(result.token_entropy),
                    }
                )
        finally:
            model.train(was_training)
        return rows

    def record(self, step: int, model=None) -> list[dict]:
        """Measure at ``step`` and append the rows."""
        new = self.measure(step, model)
        self.rows.extend(new)
        return new

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)


def settings_from_config(cfg: dict) -> dict:
    """Monitor settings from validated ``traces``, ``pathways`` and ``consistency`` sections."""
    return {
        "threshold": cfg["pathways"]["threshold"],
        "include_crossing": cfg["pathways"]["include_crossing"],
        "level": cfg["pathways"]["level"],
        "routing_normalization": cfg["traces"]["routing_normalization"],
        "guard_min_max_cosine": cfg["consistency"]["guard_min_max_cosine"],
        "router": cfg["traces"].get("router"),
    }
