"""The mini world: small, seeded corpora standing in for the paper's domains, plus a null.

Each of math, code, commonsense and domain has a rule-based task whose test split
can only be answered by applying the rule to unseen combinations, so a small MoE
first memorizes train and, under weight decay, later generalizes. ``control`` has
the same shape with random answers: it can only be memorized (test accuracy stays
at chance), the null against which every metric is read.
Output: ``<out>/<domain>/{train,validation,test}.jsonl``, ``<out>/manifest.json``
and a word-level tokenizer directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from grokpath.data import SKIP_REASONS, SPLITS
from grokpath.io import atomic_dir, atomic_path, config_hash, write_json
from grokpath.seeds import domain_rng
from grokpath.world import chemistry, code, commonsense, control, math, skills

log = logging.getLogger(__name__)

BUILDERS = {
    "math": math.build,
    "code": code.build,
    "commonsense": commonsense.build,
    "domain": chemistry.build,
    "control": control.build,
    "skills": skills.build,
}

__all__ = ["build_world", "generate_world", "BUILDERS"]


def generate_world(world: dict, domains: list[str]) -> dict[str, dict[str, list[dict]]]:
    """Records per domain and split, in memory."""
    unknown = [d for d in domains if d not in BUILDERS]
    if unknown:
        raise ValueError(f"domains {unknown} have no mini-world generator; known: {sorted(BUILDERS)}")
    return {d: BUILDERS[d](world, domain_rng(world["seed"], d)) for d in domains}


def _write_jsonl(rows: list[dict], path: Path) -> None:
    with atomic_path(path, ".jsonl") as tmp:
        with open(tmp, "w") as fh:
            for row in rows:
                fh.write(json.dumps(row, sort_keys=True) + "\n")


def build_world(cfg: dict, out_dir: Path | str, tokenizer_dir: Path | str) -> dict:
    """Write the corpus, its manifest and tokenizer; return the manifest."""
    from grokpath.world.tokenizer import build_tokenizer, save_tokenizer  # transformers: not for the workflow's imports

    world, domains = cfg["world"], list(cfg["domains"])
    out_dir = Path(out_dir)
    corpus = generate_world(world, domains)
    texts = [row["text"] for splits in corpus.values() for rows in splits.values() for row in rows]
    tokenizer = build_tokenizer(texts)
    for domain, splits in corpus.items():
        for split in SPLITS:
            _write_jsonl(splits[split], out_dir / domain / f"{split}.jsonl")
    with atomic_dir(tokenizer_dir) as tmp:
        save_tokenizer(tokenizer, tmp)
    manifest = {
        "config_hash": config_hash({"world": world, "domains": domains}),
        "vocab_size": len(tokenizer),
        "counts": {d: {s: len(rows) for s, rows in splits.items()} for d, splits in corpus.items()},
        "max_tokens": max(len(tokenizer(t)["input_ids"]) for t in texts),
        # the data stage's skip reasons (grokpath.data.SKIP_REASONS): the generator writes every row it makes
        "skipped": {d: {s: dict.fromkeys(SKIP_REASONS, 0) for s in splits} for d, splits in corpus.items()},
    }
    write_json(manifest, out_dir / "manifest.json")
    log.info("mini world: %s, vocab %d", manifest["counts"], manifest["vocab_size"])
    return manifest
