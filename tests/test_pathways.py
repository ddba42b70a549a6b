"""Pathway strings, Levenshtein means and routing entropy, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

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


def plain_mean(strings):
    """The plain path: the full N × N distance matrix, summed over i < j."""
    matrix = process.cdist(strings, strings, scorer=Levenshtein.distance, dtype=np.int64)
    return int(np.triu(matrix, k=1).sum()) / (len(strings) * (len(strings) - 1) // 2)


def random_pathways(rng, n, n_layers=3, n_experts=12, n_distinct=None):
    routing = rng.dirichlet(np.full(n_experts, 0.3), size=(n_distinct or n, n_layers))
    if n_distinct:  # repeat some routings so identical pathways occur
        routing = routing[rng.integers(0, n_distinct, size=n)]
    return pathways.pathway_strings(routing, 0.7, True)


@pytest.mark.parametrize("n_distinct", [None, 7])
@pytest.mark.parametrize("block_rows", [1, 5, 256])
def test_group_means_equal_the_plain_path_to_the_last_bit(n_distinct, block_rows):
    rng = np.random.default_rng(1)
    strings = random_pathways(rng, 40, n_distinct=n_distinct)
    groups = {"all": np.arange(40), "odd": np.arange(1, 40, 2), "mask": rng.random(40) < 0.3, "pair": np.array([3, 17])}
    for dedup in (True, False):
        got = pathways.group_mean_distances(strings, groups, block_rows=block_rows, workers=2, dedup=dedup)
        for name, rows in groups.items():
            rows = np.flatnonzero(rows) if rows.dtype == bool else rows
            n = len(rows)
            assert got[name] == (plain_mean([strings[k] for k in rows]), n * (n - 1) // 2, False)  # exact float equality
    assert pathways.mean_pairwise_distance(strings, block_rows=block_rows)[0] == plain_mean(strings)


def test_group_means_expert_level_and_layer_strings_match_plain():
    rng = np.random.default_rng(2)
    routing = rng.dirichlet(np.full(16, 0.2), size=(30, 4))
    strings = pathways.pathway_strings(routing, 0.7, True)
    got = pathways.group_mean_distances(strings, {"all": np.arange(30)}, level="expert", block_rows=4)["all"]
    assert got[0] == plain_mean(pathways.as_level(strings, "expert"))
    layer1 = [layers[1] for layers in pathways.layer_strings(routing, 0.7, True)]
    assert pathways.group_mean_distances(layer1, {"g": np.arange(10, 30)}, block_rows=3)["g"][0] == plain_mean(layer1[10:])


def test_group_means_sample_only_groups_over_max_pairs():
    strings = ["a", "b", "c", "d", "e", "f"]  # every distinct pair has distance 1
    got = pathways.group_mean_distances(
        strings, {"big": np.arange(6), "small": np.array([0, 1, 2]), "one": np.array([4])}, max_pairs=5
    )
    assert got["big"] == (1.0, 5, True)  # 15 pairs > 5: sampled
    assert got["small"] == (1.0, 3, False)  # 3 pairs: exact
    assert math.isnan(got["one"][0]) and got["one"][1:] == (0, False)
    # the same draw as sampling that group alone
    assert got["big"] == pathways.mean_pairwise_distance(strings, max_pairs=5)


def test_cross_distance_with_repeats_matches_plain():
    rng = np.random.default_rng(3)
    a, b = random_pathways(rng, 25, n_distinct=6), random_pathways(rng, 18)
    matrix = process.cdist(a, b, scorer=Levenshtein.distance, dtype=np.int64)
    assert pathways.cross_distance(a, b, block_rows=4) == (int(matrix.sum()) / matrix.size, matrix.size, False)


def test_cross_distance_by_hand():
    assert pathways.cross_distance(["1,3-2"], ["1,3,2-2", "10,3-2"]) == (1.5, 2, False)


def test_routing_entropy_by_hand():
    uniform, one_hot = np.full(4, 0.25), np.array([0.0, 1.0, 0.0, 0.0])
    routing = np.stack([np.stack([uniform, one_hot]), np.stack([[2.0, 2.0, 0.0, 0.0], uniform])])
    np.testing.assert_allclose(pathways.routing_entropy(routing), [math.log(4) / 2, (math.log(2) + math.log(4)) / 2])


# ---------------------------------------------------------------- file to file
def write_trace(path, domain, split, ckpt, step, ids, routing, revision_sha=None):
    n, L, K = routing.shape
    table = pa.table(
        {
            "revision_sha": pa.array([revision_sha] * n, pa.string()),
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
    routing = np.array(
        [
            [[0.1, 0.4, 0.2, 0.3], [0.6, 0.1, 0.1, 0.2]],
            [[0.5, 0.3, 0.1, 0.1], [0.6, 0.1, 0.1, 0.2]],
            [[0.1, 0.1, 0.1, 0.7], [0.0, 0.0, 0.2, 0.8]],
        ]
    )
    ids = ["s0", "s1", "s2"]
    traces = []
    for ckpt, step in (("step000100", 100), ("step000200", 200)):
        for domain in ("math", "code"):
            for split in ("train", "test"):
                path = tmp_path / "traces" / ckpt / f"{domain}_{split}.parquet"
                write_trace(path, domain, split, ckpt, step, ids, routing, f"sha-{step}")
    memorized = pd.DataFrame(
        {
            "domain": "math",
            "sample_id": ids,
            "memorized": [True, True, False],
            "t_star_step": pd.array([100, 100, None], dtype="Int64"),
        }
    )
    memorized.to_parquet(tmp_path / "mem.parquet")
    cfg = {
        "pathways": {
            "threshold": 0.7,
            "include_crossing": True,
            "ablation_thresholds": [0.5, 0.7],
            "level": "char",
            "max_pairs": None,
            "seed": 0,
            "block_rows": 2,
            "distance_split": "train",
            "splits": ["train", "test"],
        }
    }
    traces = sorted((tmp_path / "traces").glob("*/math_*.parquet"))
    run_pathways(cfg, "math", traces, tmp_path / "mem.parquet", tmp_path / "pw.parquet", tmp_path / "dist.parquet")
    pw = pd.read_parquet(tmp_path / "pw.parquet")
    assert list(pw.columns) == [
        "ckpt",
        "step",
        "domain",
        "split",
        "sample_id",
        "pathway",
        "n_experts_total",
        "entropy",
        "revision_sha",
    ]
    assert set(zip(pw.step, pw.revision_sha)) == {(100, "sha-100"), (200, "sha-200")}
    assert len(pw) == 2 * 2 * 3
    # s2 layer 0: 3 (0.7, equal: not passing), then the 0.1 tie goes to expert 0
    assert pw.loc[(pw.step == 100) & (pw.split == "train"), "pathway"].tolist() == ["1,3,2-0,3", "0,1-0,3", "3,0-3"]
    dist = pd.read_parquet(tmp_path / "dist.parquet")
    assert list(dist.columns) == [
        "ckpt",
        "step",
        "domain",
        "group",
        "threshold",
        "layer",
        "mean_distance",
        "n_pairs",
        "sampled",
        "revision_sha",
    ]
    assert set(zip(dist.step, dist.revision_sha)) == {(100, "sha-100"), (200, "sha-200")}
    # groups with >= 2 samples: all, memorized, t*=100 (not_memorized has 1 sample)
    assert set(dist["group"]) == {"all", "memorized", "t*=100"}
    row = dist.query("step == 100 and group == 'memorized' and threshold == 0.7 and layer == -1").iloc[0]
    assert row.mean_distance == 4 and row.n_pairs == 1  # "1,3,2-0,3" vs "0,1-0,3": Levenshtein 4
    layer0 = dist.query("step == 100 and group == 'memorized' and layer == 0").iloc[0]
    assert layer0.mean_distance == 4  # "1,3,2" vs "0,1"
    assert set(dist.loc[dist.layer == -1, "threshold"]) == {0.5, 0.7}
    assert set(dist.loc[dist.layer >= 0, "threshold"]) == {0.7}
    # t*=100 holds exactly the memorized samples: the same numbers, computed in the same pass
    same = dist.loc[dist.group == "t*=100"].drop(columns="group").reset_index(drop=True)
    pd.testing.assert_frame_equal(same, dist.loc[dist.group == "memorized"].drop(columns="group").reset_index(drop=True))
    assert len(dist) == 2 * 3 * (2 + 2)  # checkpoints × groups × (2 thresholds + 2 layers)

    code_traces = sorted((tmp_path / "traces").glob("*/code_*.parquet"))
    memorized.assign(domain="code").to_parquet(tmp_path / "mem_code.parquet")
    run_pathways(
        cfg, "code", code_traces, tmp_path / "mem_code.parquet", tmp_path / "pw_code.parquet", tmp_path / "dist_code.parquet"
    )
    run_cross_distances(cfg, [tmp_path / "pw.parquet", tmp_path / "pw_code.parquet"], tmp_path / "cross.parquet")
    cross = pd.read_parquet(tmp_path / "cross.parquet")
    assert list(cross.columns) == ["ckpt", "step", "domain_a", "domain_b", "mean_distance", "n_pairs", "sampled", "revision_sha"]
    assert cross.revision_sha.tolist() == ["sha-100", "sha-200"]
    assert len(cross) == 2 and (cross.n_pairs == 9).all()
    same = pathways.cross_distance(["1,3,2-0,3", "0,1-0,3", "3,0-3"], ["1,3,2-0,3", "0,1-0,3", "3,0-3"])[0]
    assert cross.mean_distance.iloc[0] == pytest.approx(same)


def test_run_pathways_rejects_unknown_sample(tmp_path):
    routing = np.full((2, 1, 2), 0.5)
    write_trace(tmp_path / "c" / "math_train.parquet", "math", "train", "step000001", 1, ["a", "zz"], routing)
    pd.DataFrame(
        {"domain": "math", "sample_id": ["a"], "memorized": [True], "t_star_step": pd.array([1], dtype="Int64")}
    ).to_parquet(tmp_path / "m.parquet")
    cfg = {
        "pathways": {
            "threshold": 0.7,
            "include_crossing": True,
            "ablation_thresholds": [],
            "level": "char",
            "max_pairs": None,
            "seed": 0,
            "block_rows": 8,
            "distance_split": "train",
            "splits": ["train"],
        }
    }
    with pytest.raises(ValueError, match="'zz'"):
        run_pathways(
            cfg,
            "math",
            [tmp_path / "c" / "math_train.parquet"],
            tmp_path / "m.parquet",
            tmp_path / "p.parquet",
            tmp_path / "d.parquet",
        )
    assert not (tmp_path / "p.parquet").exists()


def test_one_symbol_per_expert_is_not_the_char_distance():
    # the only shortening the strings offer (one code point per expert id) changes the number:
    # deleting the comma of "1,2" gives "12" (1 char edit), but [1, 2] -> [12] costs 2 expert edits
    assert Levenshtein.distance("1,2", "12") == 1
    assert pathways.mean_pairwise_distance(["1,2", "12"], level="expert")[0] == 2
