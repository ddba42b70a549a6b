"""Pathway consistency C_i on a 3-layer toy with hand-computed cosines, and the guard."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from grokpath.consistency import routing_consistency
from grokpath.io import write_parquet
from grokpath.metrics import run_consistency

EYE, SWAP = np.eye(2), np.array([[0.0, 1.0], [1.0, 0.0]])
ROUTER = np.stack([EYE, EYE, SWAP])  # (L=3, K=2, d=2)


def test_consistency_by_hand():
    # e1 = (1, 0); e2 = (0.75, 0.25); e3 = 1 * SWAP[0] = (0, 1)
    # cos12 = 0.75 / |e2|, cos23 = 0.25 / |e2|, so mean / max = 0.5 / 0.75 and C = 1/3
    routing = np.array([[[1.0, 0.0], [0.75, 0.25], [1.0, 0.0]]])
    out = routing_consistency(routing, ROUTER)
    norm = math.sqrt(0.75**2 + 0.25**2)
    assert out["max_cosine"][0] == pytest.approx(0.75 / norm)
    assert out["mean_cosine"][0] == pytest.approx(0.5 / norm)
    assert out["consistency"][0] == pytest.approx(1 / 3)
    assert not out["guarded"][0]


def test_guard_when_max_cosine_not_positive():
    # orthogonal consecutive embeddings: e1 = (1, 0), e2 = (0, 1), e3 = SWAP[1] = (1, 0); max cos = 0
    routing = np.array([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])
    out = routing_consistency(routing, ROUTER)
    assert out["max_cosine"][0] == 0.0 and out["guarded"][0] and math.isnan(out["consistency"][0])


def test_negative_cosines_guarded_and_raw_formula_without_guard():
    router = np.array([[[1.0], [-1.0]]] * 3)  # d = 1: expert 0 -> +1, expert 1 -> -1
    routing = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])  # e = +1, -1, +1: both cosines -1
    guarded = routing_consistency(routing, router)
    assert guarded["guarded"][0] and math.isnan(guarded["consistency"][0]) and guarded["mean_cosine"][0] == -1.0
    raw = routing_consistency(routing, router, guard_min_max_cosine=-2.0)
    assert not raw["guarded"][0]
    assert raw["consistency"][0] == pytest.approx(1 - (-1.0) / (-1.0 + 1e-8))


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="L, K"):
        routing_consistency(np.ones((1, 3, 4)), ROUTER)


def test_run_consistency_file_to_file(tmp_path):
    routing = np.array([[[1.0, 0.0], [0.75, 0.25], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]], dtype=np.float32)
    ckpt_dir = tmp_path / "step000010"
    table = pa.table(
        {
            "sample_id": ["x", "y"],
            "domain": ["code"] * 2,
            "split": ["test"] * 2,
            "ckpt": ["step000010"] * 2,
            "step": pa.array([10, 10], pa.int64()),
            "routing": pa.FixedSizeListArray.from_arrays(pa.array(routing.reshape(-1)), 6),
        }
    )
    write_parquet(table, ckpt_dir / "code_test.parquet", metadata={"L": 3, "K": 2})
    np.save(ckpt_dir / "router_weights.npy", ROUTER.astype(np.float32))
    out = tmp_path / "cons.parquet"
    run_consistency(
        {"consistency": {"guard_min_max_cosine": 0.0}},
        "code",
        [ckpt_dir / "code_test.parquet"],
        [ckpt_dir / "router_weights.npy"],
        out,
    )
    frame = pd.read_parquet(out)
    assert list(frame.columns) == [
        "ckpt",
        "step",
        "domain",
        "split",
        "sample_id",
        "consistency",
        "mean_cosine",
        "max_cosine",
        "guarded",
        "revision_sha",
    ]
    assert frame["consistency"].iloc[0] == pytest.approx(1 / 3, abs=1e-6)
    assert frame["guarded"].tolist() == [False, True]
    with pytest.raises(FileNotFoundError, match="router_weights"):
        run_consistency(
            {"consistency": {"guard_min_max_cosine": 0.0}},
            "code",
            [ckpt_dir / "code_test.parquet"],
            [tmp_path / "router_weights.npy"],
            out,
        )
