"""Group similarity and Hungarian matching on tiny hand-checked cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from grokpath.matching import embed_texts, group_similarity, match_groups, matched_groups
from grokpath.metrics import run_groups


def test_hungarian_beats_greedy_on_2x2():
    # greedy takes 0.9 then 0.1 (total 1.0); the optimum crosses: 0.8 + 0.85 = 1.65
    assert match_groups(np.array([[0.9, 0.8], [0.85, 0.1]])) == [(0, 1), (1, 0)]


def test_rectangular_matching_pairs_min_side():
    assert match_groups(np.array([[0.1, 0.9, 0.2]])) == [(0, 1)]


def test_group_similarity_is_mean_pairwise_cosine():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    test = np.array([[1.0, 0.0], [0.6, 0.8]])
    train_groups, test_groups, score = group_similarity(train, np.array([7, 7, 9]), test, np.array([3, 3]))
    assert train_groups.tolist() == [7, 9] and test_groups.tolist() == [3]
    # group 7 vs 3: cosines 1, 0.6, 0, 0.8 -> 0.6; group 9 vs 3: 1, 0.6 -> 0.8
    np.testing.assert_allclose(score, [[0.6], [0.8]])


def test_matched_groups_tfidf():
    train = pd.DataFrame({"sample_id": ["a", "b"], "t_star_step": [100, 200], "text": ["apple banana", "car engine wheel"]})
    test = pd.DataFrame({"sample_id": ["x", "y"], "t_hash_step": [300, 400], "text": ["car wheel engine", "banana apple"]})
    frame = matched_groups(train, test, backend="tfidf")
    assert frame[["train_group_step", "test_group_step", "delay_steps"]].values.tolist() == [[100, 400, 300], [200, 300, 100]]
    assert frame["similarity"].tolist() == pytest.approx([1.0, 1.0])
    assert set(frame["backend"]) == {"tfidf"}


def test_unknown_backend_is_named_by_the_schema():
    from grokpath.config import ConfigError, validate

    with pytest.raises(ConfigError, match=r"config key 'matching.backend': 'bert' is not one of"):
        validate({"matching": {"backend": "bert"}})


def test_minilm_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embeddings, used = embed_texts(["the cat sat on the mat", "a cat is sitting on a mat", "x + y = 12"], backend="minilm")
    assert used == "minilm" and embeddings.shape == (3, 384)
    assert embeddings[0] @ embeddings[1] > embeddings[0] @ embeddings[2]


def test_run_groups_file_to_file(tmp_path):
    pd.DataFrame(
        {
            "domain": "math",
            "sample_id": ["a", "b", "c"],
            "memorized": [True, True, False],
            "t_star_step": pd.array([100, 200, None], dtype="Int64"),
        }
    ).to_parquet(tmp_path / "mem.parquet")
    pd.DataFrame(
        {
            "domain": "math",
            "sample_id": ["x", "y"],
            "generalized": [True, True],
            "t_hash_step": pd.array([300, 400], dtype="Int64"),
        }
    ).to_parquet(tmp_path / "onset.parquet")
    for name, rows in (
        ("train", [("a", "apple banana"), ("b", "car engine wheel"), ("c", "zzz")]),
        ("test", [("x", "car wheel engine"), ("y", "banana apple")]),
    ):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"sample_id": s, "text": t}) + "\n" for s, t in rows))
    cfg = {"matching": {"backend": "tfidf", "batch_size": 8, "text_field": "text"}}
    out = tmp_path / "groups.parquet"
    run_groups(
        cfg, "math", tmp_path / "mem.parquet", tmp_path / "onset.parquet", tmp_path / "train.jsonl", tmp_path / "test.jsonl", out
    )
    frame = pd.read_parquet(out)
    assert list(frame.columns) == [
        "domain",
        "train_group_step",
        "test_group_step",
        "n_train",
        "n_test",
        "similarity",
        "delay_steps",
        "backend",
    ]
    assert frame["delay_steps"].tolist() == [300, 100]
    (tmp_path / "test.jsonl").write_text(json.dumps({"sample_id": "x", "text": "t"}) + "\n")
    with pytest.raises(ValueError, match="'y' has no text"):
        run_groups(
            cfg,
            "math",
            tmp_path / "mem.parquet",
            tmp_path / "onset.parquet",
            tmp_path / "train.jsonl",
            tmp_path / "test.jsonl",
            out,
        )
