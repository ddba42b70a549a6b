"""Pathway strings, Levenshtein means and routing entropy, checked against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from grokpath import pathways
from grokpath.io import write_parquet
from grokpath.metrics import run_cross_distances, run_pathways

# ranks: expert 1 (0.4), 3 (0.3), 2 (0.2), 0 (0.1); cumulative 0.4, 0.7, 0.9, 1.0
ONE_LAYER = np.array([[[0.1, 0.4, 0.2, 0.3]]])


@pytest.mark.parametrize(
    "threshold, with_crossing, without_crossing",
    [
        (0.3, "1", "1"),  # the top expert alone passes; without crossing the top one is still kept
        (0.5, "1,3", "1"),
        (0.7, "1,3,2", "1,3"),  # 0.4 + 0.3 equals 0.7: it does not pass, 0.9 does
        (0.95, "1,3,2,0", "1,3,2"),
        (1.0, "1,3,2,0", "1,3,2,0"),  # never passes: all experts
    ],
)
def test_pathway_strings_one_layer(threshold, with_crossing, without_crossing):
    assert pathways.pathway_strings(ONE_LAYER, threshold, include_crossing=True) == [with_crossing]
    assert pathways.pathway_strings(ONE_LAYER, threshold, include_crossing=False) == [without_crossing]


def test_exact_tie_is_not_flipped_by_float32():
    # 0.4f + 0.3f is 0.70000002 in float32; still "equal", so not passing 0.7
    assert pathways.pathway_strings(ONE_LAYER.astype(np.float32), 0.7, True) == ["1,3,2"]


def test_ties_go_to_lower_expert_index():
    routing = np.full((1, 1, 4), 0.25)
    assert pathways.pathway_strings(routing, 0.5, True) == ["0,1,2"]
    assert pathways.pathway_strings(routing, 0.5, False) == ["0,1"]


def test_layers_joined_with_dash_and_layer_strings():
    routing = np.array([[[0.1, 0.4, 0.2, 0.3], [0.6, 0.1, 0.1, 0.2]]])  # layer 2: 0 (0.6), 3 (0.8 passes)
    assert pathways.pathway_strings(routing, 0.7, True) == ["1,3,2-0,3"]
    assert pathways.layer_strings(routing, 0.7, True) == [["1,3,2", "0,3"]]
    assert pathways.n_experts_total(routing, 0.7, True).tolist() == [5]


def test_bad_routing_shape_is_rejected():
    with pytest.raises(ValueError, match="N, L, K"):
        pathways.pathway_strings(np.ones((2, 3)), 0.7, True)


THREE = ["1,3-2", "1,3,2-2", "10,3-2"]


def test_mean_pairwise_distance_char_by_hand():
    # d(a,b) = 2 (insert ",2"), d(a,c) = 1 (insert "0"), d(b,c) = 3 (insert "0", delete ",2")
    assert pathways.mean_pairwise_distance(THREE) == (2.0, 3, False)
    assert pathways.mean_pairwise_distance(THREE, block_rows=1) == (2.0, 3, False)
    assert pathways.mean_pairwise_distance_value(THREE) == 2.0


def test_mean_pairwise_distance_expert_level_by_hand():
    # tokens [1,3|2], [1,3,2|2], [10,3|2]: d = 1 (insert 2), 1 (1 -> 10), 2 (1 -> 10, delete 2)
    mean, n_pairs, sampled = pathways.mean_pairwise_distance(THREE, level="expert")
    assert mean == pytest.approx(4 / 3) and n_pairs == 3 and not sampled


def test_distance_of_fewer_than_two_strings_is_nan():
    mean, n_pairs, sampled = pathways.mean_pairwise_distance(["1,2"])
    assert math.isnan(mean) and n_pairs == 0 and not sampled


def test_sampled_pairs_never_pair_a_string_with_itself():
    strings = ["a", "b", "c", "d", "e"]  # every distinct pair has distance 1
    mean, n_pairs, sampled = pathways.mean_pairwise_distance(strings, max_pairs=4, seed=3)
    assert (mean, n_pairs, sampled) == (1.0, 4, True)
    assert pathways.mean_pairwise_distance(strings, max_pairs=100) == (1.0, 10, False)


def test_cross_distance_by_hand():
    assert pathways.cross_distance(["1,3-2"], ["1,3,2-2", "10,3-2"]) == (1.5, 2, False)


def test_routing_entropy_by_hand():
    uniform, one_hot = np.full(4, 0.25), np.array([0.0, 1.0, 0.0, 0.0])
    routing = np.stack([np.stack([uniform, one_hot]), np.stack([[2.0, 2.0, 0.0, 0.0], uniform])])
    np.testing.assert_allclose(pathways.routing_entropy(routing), [math.log(4) / 2, (math.log(2) + math.log(4)) / 2])


# ---------------------------------------------------------------- file to file
def write_trace(path, domain, split, ckpt, step, ids, routing):
    n, L, K = routing.shape
    table = pa.table(
        {
            "sample_id": pa.array(ids).dictionary_encode(),  # as traces.py writes them
            "domain": pa.array([domain] * n).dictionary_encode(),
            "split": pa.array([split] * n).dictionary_encode(),
            "ckpt": [ckpt] * n,
            "step": pa.array([step] * n, pa.int64()),
            "loss": pa.array(np.linspace(1, 2, n), pa.float32()),
            "routing": pa.FixedSizeListArray.from_arrays(pa.array(routing.reshape(-1), pa.float32()), L * K),
        }
    )
    write_parquet(table, path, metadata={"L": L, "K": K})


def test_run_pathways_and_cross_distances(tmp_path):
    routing = np.array([[[0.1, 0.4, 0.2, 0.3], [0.6, 0.1, 0.1, 0.2]], [[0.5, 0.3, 0.1, 0.1], [0.6, 0.1, 0.1, 0.2]], [[0.1, 0.1, 0.1, 0.7], [0.0, 0.0, 0.2, 0.8]]])
    ids = ["s0", "s1", "s2"]
    traces = []
    for ckpt, step in (("step000100", 100), ("step000200", 200)):
        for domain in ("math", "code"):
            for split in ("train", "test"):
                path = tmp_path / "traces" / ckpt / f"{domain}_{split}.parquet"
                write_trace(path, domain, split, ckpt, step, ids, routing)
    memorized = pd.DataFrame({"domain": "math", "sample_id": ids, "memorized": [True, True, False],
                              "t_star_step": pd.array([100, 100, None], dtype="Int64")})
    memorized.to_parquet(tmp_path / "mem.parquet")
    cfg = {"pathways": {"threshold": 0.7, "include_crossing": True, "ablation_thresholds": [0.5, 0.7], "level": "char",
                        "max_pairs": None, "seed": 0, "block_rows": 2, "distance_split": "train", "splits": ["train", "test"]}}
    traces = sorted((tmp_path / "traces").glob("*/math_*.parquet"))
    run_pathways(cfg, "math", traces, tmp_path / "mem.parquet", tmp_path / "pw.parquet", tmp_path / "dist.parquet")
    pw = pd.read_parquet(tmp_path / "pw.parquet")
    assert list(pw.columns) == ["ckpt", "step", "domain", "split", "sample_id", "pathway", "n_experts_total", "entropy"]
    assert len(pw) == 2 * 2 * 3
    # s2 layer 0: 3 (0.7, equal: not passing), then the 0.1 tie goes to expert 0
    assert pw.loc[(pw.step == 100) & (pw.split == "train"), "pathway"].tolist() == ["1,3,2-0,3", "0,1-0,3", "3,0-3"]
    dist = pd.read_parquet(tmp_path / "dist.parquet")
    assert list(dist.columns) == ["ckpt", "step", "domain", "group", "threshold", "layer", "mean_distance", "n_pairs", "sampled"]
    # groups with >= 2 samples: all, memorized, t*=100 (not_memorized has 1 sample)
    assert set(dist["group"]) == {"all", "memorized", "t*=100"}
    row = dist.query("step == 100 and group == 'memorized' and threshold == 0.7 and layer == -1").iloc[0]
    assert row.mean_distance == 4 and row.n_pairs == 1  # "1,3,2-0,3" vs "0,1-0,3": Levenshtein 4
    layer0 = dist.query("step == 100 and group == 'memorized' and layer == 0").iloc[0]
    assert layer0.mean_distance == 4  # "1,3,2" vs "0,1"
    assert set(dist.loc[dist.layer == -1, "threshold"]) == {0.5, 0.7}
    assert set(dist.loc[dist.layer >= 0, "threshold"]) == {0.7}

    code_traces = sorted((tmp_path / "traces").glob("*/code_*.parquet"))
    memorized.assign(domain="code").to_parquet(tmp_path / "mem_code.parquet")
    run_pathways(cfg, "code", code_traces, tmp_path / "mem_code.parquet", tmp_path / "pw_code.parquet", tmp_path / "dist_code.parquet")
    run_cross_distances(cfg, [tmp_path / "pw.parquet", tmp_path / "pw_code.parquet"], tmp_path / "cross.parquet")
    cross = pd.read_parquet(tmp_path / "cross.parquet")
    assert list(cross.columns) == ["ckpt", "step", "domain_a", "domain_b", "mean_distance", "n_pairs", "sampled"]
    assert len(cross) == 2 and (cross.n_pairs == 9).all()
    same = pathways.cross_distance(["1,3,2-0,3", "0,1-0,3", "3,0-3"], ["1,3,2-0,3", "0,1-0,3", "3,0-3"])[0]
    assert cross.mean_distance.iloc[0] == pytest.approx(same)


def test_run_pathways_rejects_unknown_sample(tmp_path):
    routing = np.full((2, 1, 2), 0.5)
    write_trace(tmp_path / "c" / "math_train.parquet", "math", "train", "step000001", 1, ["a", "zz"], routing)
    pd.DataFrame({"domain": "math", "sample_id": ["a"], "memorized": [True], "t_star_step": pd.array([1], dtype="Int64")}).to_parquet(tmp_path / "m.parquet")
    cfg = {"pathways": {"threshold": 0.7, "include_crossing": True, "ablation_thresholds": [], "level": "char",
                        "max_pairs": None, "seed": 0, "block_rows": 8, "distance_split": "train", "splits": ["train"]}}
    with pytest.raises(ValueError, match="'zz'"):
        run_pathways(cfg, "math", [tmp_path / "c" / "math_train.parquet"], tmp_path / "m.parquet", tmp_path / "p.parquet", tmp_path / "d.parquet")
    assert not (tmp_path / "p.parquet").exists()
