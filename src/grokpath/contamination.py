"""Min-K%++ contamination filter on the test sets (Zhang et al. 2024).

For a text x and each predicted position t, with p the model's next-token distribution given x_<t:

    mu_t    = sum_z p(z) log p(z)
    sigma_t = sqrt(sum_z p(z) (log p(z) - mu_t)^2)
    s_t     = (log p(x_t) - mu_t) / sigma_t

The text's score is the mean of its lowest k% token scores (``data.contamination.k_percent``; at
least one token: ``max(1, floor(k/100 * n))`` of the n scored positions). A high score means the text
looks seen in pretraining. Per domain the top ``drop_fraction`` (``floor(share * count)`` samples,
highest score first, ties broken by sample_id) are dropped from the test file.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from grokpath.data import DataError, read_split
from grokpath.io import write_parquet
from grokpath.selection import write_jsonl

log = logging.getLogger(__name__)
SIGMA_FLOOR = 1e-12  # a one-hot next-token distribution has sigma 0; its s_t is then 0 / floor = 0


def token_scores(logits, targets):
    """s_t for next-token ``logits`` (..., V) and the observed ``targets`` (...), computed in float32."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    mu = (p * logp).sum(-1)
    sigma = (p * (logp - mu.unsqueeze(-1)) ** 2).sum(-1).clamp_min(0).sqrt().clamp_min(SIGMA_FLOOR)
    observed = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (observed - mu) / sigma


def min_k_mean(scores: np.ndarray, k_percent: float) -> float:
    """Mean of the lowest ``k_percent`` % of ``scores`` (at least one)."""
    n = len(scores)
    if n == 0:
        return float("nan")
    k = max(1, math.floor(n * k_percent / 100.0 + 1e-9))
    return float(np.sort(np.asarray(scores, dtype=np.float64))[:k].mean())


def score_batch(model, input_ids, attention_mask, k_percent: float) -> tuple[list[float], list[int]]:
    """Min-K%++ score and scored-position count per row of a right-padded batch (one forward pass)."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    valid = attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool()
    scores, counts = [], []
    for row in range(input_ids.shape[0]):  # one row at a time: float32 (T, V) temporaries, not (B, T, V)
        keep = valid[row]
        values = token_scores(logits[row, :-1][keep], input_ids[row, 1:][keep]).cpu().numpy()
        scores.append(min_k_mean(values, k_percent))
        counts.append(len(values))
    return scores, counts


def score_texts(
    model,
    tokenizer,
    texts: list[str],
    *,
    k_percent: float,
    batch_size: int,
    max_length: int,
    device: str = "cpu",
    label: str = "min-k%++",
) -> tuple[list[float], list[int]]:
    """Min-K%++ scores of ``texts`` (tokenized as the tokenizer does by default, truncated at max_length)."""
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise DataError("the scoring tokenizer has neither a pad nor an eos token to pad batches with")
    encoded = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    scores, counts = [], []
    for start in tqdm(range(0, len(encoded), batch_size), desc=label, unit="batch", mininterval=2.0):
        chunk = encoded[start : start + batch_size]
        width = max(len(ids) for ids in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, row in enumerate(chunk):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        s, c = score_batch(model, ids.to(device), mask.to(device), k_percent)
        scores += s
        counts += c
    return scores, counts


def drop_mask(sample_ids: list[str], scores: list[float], drop_fraction: float) -> list[bool]:
    """True for the floor(drop_fraction * n) highest-scoring samples (ties: by sample_id)."""
    n_drop = math.floor(drop_fraction * len(scores) + 1e-9)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], sample_ids[i]))
    dropped = [False] * len(scores)
    for i in order[:n_drop]:
        dropped[i] = True
    return dropped


def run_contamination(
    cfg: dict,
    checkpoint_dir: Path | str,
    ckpt: str,
    tests: dict[str, tuple[Path, Path]],
    scores_out: Path | str,
    threads: int | None = None,
) -> None:
    """Score every domain's unfiltered test file, write the filtered test files and the score table.

    ``tests``: domain -> (test_unfiltered.jsonl, test.jsonl to write). ``threads``: torch CPU threads.
    """
    from grokpath.checkpoints import load_model, load_tokenizer, read_provenance
    from grokpath.devices import resolve_device, use_threads

    use_threads(threads)

    settings = cfg["data"]["contamination"]
    trust = bool((cfg.get("checkpoints") or {}).get("trust_remote_code", False))
    device = resolve_device(settings["device"], "data.contamination.device")
    inputs = {domain: read_split(paths[0]) for domain, paths in tests.items()}  # fail on bad files before loading
    revision_sha = read_provenance(checkpoint_dir).get("revision_sha")
    model = load_model(checkpoint_dir, dtype=settings["dtype"], device=device, trust_remote_code=trust)
    tokenizer = load_tokenizer(checkpoint_dir, trust_remote_code=trust)
    columns = {k: [] for k in ("domain", "sample_id", "score", "n_tokens", "dropped")}
    for domain, records in inputs.items():
        ids = [r["sample_id"] for r in records]
        scores, counts = score_texts(
            model,
            tokenizer,
            [r["text"] for r in records],
            k_percent=float(settings["k_percent"]),
            batch_size=int(settings["batch_size"]),
            max_length=int(settings["max_length"]),
            device=device,
            label=f"min-k%++ {domain}",
        )
        short = [i for i, c in zip(ids, counts) if c == 0]
        if short:
            raise DataError(f"{tests[domain][0]}: sample '{short[0]}' has fewer than 2 tokens; Min-K%++ cannot score it")
        dropped = drop_mask(ids, scores, float(settings["drop_fraction"]))
        write_jsonl([r for r, d in zip(records, dropped) if not d], tests[domain][1])
        log.info(
            "%s: dropped %d of %d test samples (top %.0f%% Min-K%%++ scores)",
            domain,
            sum(dropped),
            len(records),
            100 * settings["drop_fraction"],
        )
        columns["domain"] += [domain] * len(records)
        columns["sample_id"] += ids
        columns["score"] += scores
        columns["n_tokens"] += counts
        columns["dropped"] += dropped
    n = len(columns["domain"])
    table = pa.table(
        {
            "domain": pa.array(columns["domain"], pa.string()),
            "sample_id": pa.array(columns["sample_id"], pa.string()),
            "score": pa.array(columns["score"], pa.float64()),
            "n_tokens": pa.array(columns["n_tokens"], pa.int32()),
            "dropped": pa.array(columns["dropped"], pa.bool_()),
            "ckpt": pa.array([ckpt] * n, pa.string()),
            "revision_sha": pa.array([revision_sha] * n, pa.string()),
        }
    )
    write_parquet(
        table,
        scores_out,
        metadata={
            "k_percent": settings["k_percent"],
            "drop_fraction": settings["drop_fraction"],
            "ckpt": ckpt,
            "revision_sha": revision_sha,
            "max_length": settings["max_length"],
            "dtype": settings["dtype"],
        },
    )
