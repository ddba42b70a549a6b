"""Min-K%++ scores against hand computations, and the filter that writes test.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_olmoe, word_tokenizer

from grokpath.config import validate
from grokpath.contamination import (
    drop_mask,
    min_k_mean,
    run_contamination,
    score_texts,
    token_scores,
)
from grokpath.data import read_split
from grokpath.io import read_metadata
from grokpath.selection import write_jsonl

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "and",
    "dog",
    "ran",
    "to",
    "red",
    "blue",
    "big",
    "small",
    "house",
    "tree",
    "sun",
    "moon",
    "one",
    "two",
]


def test_three_token_hand_example():
    # p = (1/2, 1/4, 1/4): mu = -(3/2) ln 2, sigma = (1/2) ln 2, so s = +1 for token 0 and -1 for 1 and 2
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]] * 3))
    s = token_scores(logits, torch.tensor([0, 1, 2]))
    assert torch.allclose(s, torch.tensor([1.0, -1.0, -1.0]), atol=1e-6)
    # a uniform distribution has sigma 0: the floor keeps s finite (0 / floor = 0)
    assert token_scores(torch.zeros(1, 4), torch.tensor([2])).item() == 0.0


def test_min_k_mean_takes_at_least_one_token():
    scores = np.array([3.0, -1.0, 2.0, 0.5, -2.0])
    assert min_k_mean(scores, 20) == -2.0  # floor(5 * 0.2) = 1
    assert min_k_mean(scores, 40) == -1.5  # (-2 - 1) / 2
    assert min_k_mean(scores, 10) == -2.0  # floor(0.5) = 0 -> at least one
    assert min_k_mean(scores, 100) == pytest.approx(2.5 / 5)
    assert math.isnan(min_k_mean(np.array([]), 20))


def test_drop_mask_highest_first_ties_by_id():
    assert drop_mask(["b", "a", "c", "d"], [1.0, 1.0, 0.0, -1.0], 0.5) == [True, True, False, False]
    assert drop_mask(["b", "a", "c"], [1.0, 1.0, 0.0], 0.34) == [False, True, False]  # floor(1.02) = 1, 'a' < 'b'
    assert drop_mask(["a", "b"], [0.0, 1.0], 0.1) == [False, False]  # floor(0.2) = 0


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random tiny OlmoeForCausalLM with a word-level tokenizer that prepends BOS."""
    directory = tmp_path_factory.mktemp("ckpt")
    vocab = ["[UNK]", "[PAD]", "[BOS]", *WORDS]
    word_tokenizer(vocab, bos="[BOS]", unk="[UNK]", pad="[PAD]").save_pretrained(directory)
    model = tiny_olmoe(vocab_size=len(vocab), pad_token_id=1, bos_token_id=2, eos_token_id=1, initializer_range=0.5)
    model.save_pretrained(directory)
    (directory / "provenance.json").write_text(json.dumps({"revision_sha": "f" * 40, "revision": "step3", "source": "hf"}))
    return directory


def texts_of(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 14)))) for _ in range(n)]


def explicit_scores(model, tokenizer, texts, k_percent):
    """Independent per-text loop in float64: log_softmax per position, mu, sigma, s_t, lowest k%."""
    out = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
        s = []
        for t in range(1, len(ids)):
            logp = torch.log_softmax(logits[t - 1], dim=-1)
            p = logp.exp()
            mu = float((p * logp).sum())
            sigma = math.sqrt(float((p * (logp - mu) ** 2).sum()))
            s.append((float(logp[ids[t]]) - mu) / sigma)
        k = max(1, int(len(s) * k_percent / 100))
        out.append((sum(sorted(s)[:k]) / k, len(s)))
    return out


def test_batched_scores_match_explicit_loop(tiny_checkpoint):
    from grokpath.checkpoints import load_model, load_tokenizer

    model, tokenizer = load_model(tiny_checkpoint), load_tokenizer(tiny_checkpoint)
    texts = texts_of(7, seed=1)
    assert tokenizer(texts[0])["input_ids"][0] == 2  # BOS prepended: every word is a scored token
    expected = explicit_scores(model, tokenizer, texts, 20)
    scores, counts = score_texts(model, tokenizer, texts, k_percent=20, batch_size=3, max_length=64)
    assert counts == [n for _, n in expected] == [len(t.split()) for t in texts]
    np.testing.assert_allclose(scores, [s for s, _ in expected], rtol=1e-4, atol=1e-4)
    # padding is masked: one text alone and inside a padded batch score the same
    alone, _ = score_texts(model, tokenizer, texts[:1], k_percent=20, batch_size=1, max_length=64)
    assert alone[0] == pytest.approx(scores[0], abs=1e-5)
    # k = 100%: the plain mean of every token score
    all_k, _ = score_texts(model, tokenizer, texts, k_percent=100, batch_size=4, max_length=64)
    np.testing.assert_allclose(all_k, [s for s, _ in explicit_scores(model, tokenizer, texts, 100)], atol=1e-4)


def test_run_contamination_drops_top_fraction(tiny_checkpoint, tmp_path):
    from grokpath.checkpoints import load_model, load_tokenizer

    cfg = validate({"data": {"contamination": {"drop_fraction": 0.2, "batch_size": 4, "max_length": 64}}})
    tests = {}
    for domain, seed in (("math", 2), ("code", 3)):
        folder = tmp_path / domain
        records = [{"sample_id": f"{domain}-test-{i}", "text": t, "problem": f"p{i}"} for i, t in enumerate(texts_of(10, seed))]
        write_jsonl(records, folder / "test_unfiltered.jsonl")
        tests[domain] = (folder / "test_unfiltered.jsonl", folder / "test.jsonl")
    run_contamination(cfg, tiny_checkpoint, "step3", tests, tmp_path / "contamination.parquet")

    table = pd.read_parquet(tmp_path / "contamination.parquet")
    assert list(table.columns) == ["domain", "sample_id", "score", "n_tokens", "dropped", "ckpt", "revision_sha"]
    assert set(table.ckpt) == {"step3"} and set(table.revision_sha) == {"f" * 40}
    assert read_metadata(tmp_path / "contamination.parquet")["k_percent"] == 20
    model, tokenizer = load_model(tiny_checkpoint), load_tokenizer(tiny_checkpoint)
    for domain, (src, dst) in tests.items():
        records = read_split(src)
        expected = [s for s, _ in explicit_scores(model, tokenizer, [r["text"] for r in records], 20)]
        rows = table[table.domain == domain]
        np.testing.assert_allclose(rows.score, expected, atol=1e-4)
        top2 = set(rows.sort_values(["score", "sample_id"], ascending=[False, True]).sample_id[:2])
        assert set(rows.sample_id[rows.dropped]) == top2  # floor(0.2 * 10) = 2 dropped
        kept = read_split(dst)
        assert [r["sample_id"] for r in kept] == [r["sample_id"] for r in records if r["sample_id"] not in top2]
        assert all(r["problem"] for r in kept)  # benchmark fields travel on
