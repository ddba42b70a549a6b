"""Paper A join (curves.parquet), the sustained-rise rule and the onset bootstrap."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grokpath.analysis import (
    build_curves,
    moving_average,
    onset_table,
    rise_window,
    sustained_rise_start,
    weighted_pair_mean,
    write_curves,
)
from grokpath.config import validate

RULE = {"rise_fraction": 0.1, "min_gain": 0.05, "include_foot": True, "min_checkpoints": 3}


def study_cfg(**analysis) -> dict:
    cfg = validate({"analysis": {"bootstrap": {"n": 200, "seed": 3}, **analysis}, "pathways": {}})
    cfg.setdefault("pathways", {})["threshold"] = 0.7
    return cfg


def make_study(accuracy=(0.0, 0.0, 0.1, 0.4, 0.7, 0.9), domains=("math", "code"), n_test=40, n_train=12, n_val=6, seed=0):
    """Small per-sample tables with the metrics stage's columns; accuracy follows ``accuracy``."""
    rng = np.random.default_rng(seed)
    steps = [100 * (i + 1) for i in range(len(accuracy))]
    ckpts = [f"step{s:06d}" for s in steps]
    traces, evals, cons, paths, dists, mem = [], [], [], [], [], []
    for d in domains:
        # test sample j is correct at checkpoint c when its difficulty is below the target accuracy
        difficulty = (np.arange(n_test) + 0.5) / n_test
        memorized = np.arange(n_train) < n_train // 2
        t_star = np.where(memorized, np.array(steps)[np.arange(n_train) % len(steps)], np.nan)
        mem.append(pd.DataFrame({"domain": d, "sample_id": [f"{d}-tr{i}" for i in range(n_train)], "memorized": memorized,
                                 "t_star_step": t_star, "t_star_ckpt": None, "epsilon": 1.5, "delta": 0.05, "epsilon_mode": "auto"}))
        for c, (ckpt, step, acc) in enumerate(zip(ckpts, steps, accuracy)):
            evals.append(pd.DataFrame({"ckpt": ckpt, "step": step, "domain": d, "sample_id": [f"{d}-te{j}" for j in range(n_test)],
                                       "correct": difficulty < acc, "response": "", "target": ""}))
            for split, n in (("train", n_train), ("validation", n_val)):
                traces.append(pd.DataFrame({"sample_id": [f"{d}-{split[:2]}{i}" for i in range(n)], "domain": d, "split": split,
                                            "ckpt": ckpt, "step": step, "n_tokens": 10,
                                            "loss": 3.0 - 0.3 * c + rng.normal(0, 0.05, n), "routing": [[0.5, 0.5]] * n}))
            ids = [f"{d}-tr{i}" for i in range(n_train)]
            cosine = 0.3 + 0.1 * c + rng.normal(0, 0.02, n_train)
            consistency = 1 - cosine
            consistency[0] = np.nan  # a guarded sample
            cons.append(pd.DataFrame({"ckpt": ckpt, "step": step, "domain": d, "split": "train", "sample_id": ids,
                                      "consistency": consistency, "mean_cosine": cosine, "max_cosine": 1.0, "guarded": np.isnan(consistency)}))
            # pathways converge: later checkpoints keep fewer random experts
            strings = ["-".join(",".join(map(str, rng.permutation(8)[: max(1, 6 - c)])) for _ in range(3)) for _ in ids]
            paths.append(pd.DataFrame({"ckpt": ckpt, "step": step, "domain": d, "split": "train", "sample_id": ids, "pathway": strings,
                                       "n_experts_total": 3, "entropy": 2.0 - 0.2 * c + rng.normal(0, 0.01, n_train)}))
            for group, thr, dist in (("memorized", 0.7, 20.0 - 3 * c), ("all", 0.7, 25.0 - 3 * c), ("memorized", 0.5, 10.0 - c)):
                for layer in (-1, 0, 1, 2):
                    dists.append({"ckpt": ckpt, "step": step, "domain": d, "group": group, "threshold": thr, "layer": layer,
                                  "mean_distance": dist if layer == -1 else dist / 3, "n_pairs": 15, "sampled": False})
    onset = pd.concat(evals).groupby(["domain", "sample_id"]).apply(
        lambda g: g.loc[g["correct"], "step"].min() if g["correct"].any() else np.nan, include_groups=False
    ).rename("t_hash_step").reset_index()
    onset["generalized"] = onset["t_hash_step"].notna()
    onset["t_hash_ckpt"] = None
    return {
        "traces": pd.concat(traces, ignore_index=True), "evals": pd.concat(evals, ignore_index=True),
        "memorization": pd.concat(mem, ignore_index=True), "distances": pd.DataFrame(dists),
        "consistency": pd.concat(cons, ignore_index=True), "pathways": pd.concat(paths, ignore_index=True), "onset": onset,
    }


# ---------------------------------------------------------------- sustained rise
@pytest.mark.parametrize(
    "accuracy, start",
    [
        ([0.0, 0.0, 0.0, 0.0, 0.1, 0.5, 0.9], 3),  # flat then rise: the foot is the last flat checkpoint
        ([0.0, 0.3, 0.05, 0.0, 0.2, 0.6, 0.8], 3),  # an early bump that falls back does not start the rise
        ([0.1, 0.3, 0.5, 0.7], 0),  # rising from the first checkpoint
        ([0.2, 0.21, 0.2, 0.22], None),  # gain 0.02 < min_gain
        ([0.5, 0.1, 0.1, 0.6], 2),  # the minimum sets the baseline, not the first value
    ],
)
def test_sustained_rise_start_hand_cases(accuracy, start):
    assert sustained_rise_start(accuracy, RULE) == start


def test_sustained_rise_without_foot_starts_at_the_crossing():
    assert sustained_rise_start([0.0, 0.0, 0.0, 0.0, 0.1, 0.5, 0.9], {**RULE, "include_foot": False}) == 4


def test_rise_window_falls_back_to_all_checkpoints_when_short():
    mask, restricted = rise_window([1, 2, 3, 4, 5], [0, 0, 0, 0.05, 0.9], RULE)  # window would be [3, 4]: 2 < 3
    assert not restricted and mask.all()
    mask, restricted = rise_window([1, 2, 3, 4, 5], [0, 0, 0.2, 0.5, 0.9], RULE)
    assert restricted and mask.tolist() == [False, True, True, True, True]


def test_moving_average_is_trailing():
    np.testing.assert_allclose(moving_average(np.array([3.0, 1.0, 2.0, 6.0]), 2), [3.0, 2.0, 1.5, 4.0])
    np.testing.assert_allclose(moving_average(np.array([[0.0, 2.0, 4.0]] * 2), 3, axis=1)[1], [0.0, 1.0, 2.0])


def test_weighted_pair_mean_excludes_copies_of_a_sample():
    distance = np.array([[0.0, 2.0, 4.0], [2.0, 0.0, 6.0], [4.0, 6.0, 0.0]])
    # ones: plain mean over 3 pairs = 4; counts (2, 1, 0): pairs (0,0') excluded -> (2+2)/2 = 2
    np.testing.assert_allclose(weighted_pair_mean(distance, np.array([[1.0, 1, 1], [2, 1, 0]])), [4.0, 2.0])


# ---------------------------------------------------------------- join
def test_build_curves_on_small_frames():
    study = make_study()
    curves = build_curves(study_cfg(), **study)
    assert len(curves) == 12 and list(curves["domain"].unique()) == ["code", "math"]
    math = curves[curves["domain"] == "math"].reset_index(drop=True)
    assert math["step"].tolist() == [100, 200, 300, 400, 500, 600]
    np.testing.assert_allclose(math["accuracy"], [0.0, 0.0, 0.1, 0.4, 0.7, 0.9])
    assert (math["n_test"] == 40).all()
    # memorized group, threshold 0.7, full pathway
    np.testing.assert_allclose(math["pathway_distance"], [20.0, 17.0, 14.0, 11.0, 8.0, 5.0])
    tr = study["traces"]
    expected = tr[(tr.domain == "math") & (tr.split == "train") & (tr.ckpt == "step000300")]["loss"].mean()
    assert math.loc[2, "train_loss"] == pytest.approx(expected)
    window = study_cfg()["analysis"]["moving_average_window"]
    assert math.loc[2, "train_loss_ma"] == pytest.approx(math["train_loss"].iloc[max(0, 3 - window) : 3].mean())
    # consistency: memorized samples only (ids 0..5), NaN of sample 0 skipped
    co = study["consistency"]
    rows = co[(co.domain == "math") & (co.ckpt == "step000100") & co.sample_id.isin([f"math-tr{i}" for i in range(1, 6)])]
    assert math.loc[0, "consistency"] == pytest.approx(rows["consistency"].mean())
    # 6 memorized samples, t* cycling over the 6 steps: one new per checkpoint
    assert math["n_memorized_new"].tolist() == [1] * 6 and math["n_memorized"].tolist() == [1, 2, 3, 4, 5, 6]
    assert math["cumulative_accuracy"].is_monotonic_increasing


def test_build_curves_group_all_and_unknown_threshold():
    study = make_study()
    curves = build_curves(study_cfg(sample_group="all"), **study)
    assert curves[curves.domain == "code"]["pathway_distance"].iloc[0] == 25.0
    with pytest.raises(ValueError, match="threshold 0.9"):
        build_curves(study_cfg(distance_threshold=0.9), **study)


def test_write_curves_round_trip(tmp_path):
    study = make_study(domains=("math",))
    paths = {}
    for name in ("memorization", "distances", "consistency", "pathways", "onset"):
        paths[name] = tmp_path / f"{name}.parquet"
        study[name].to_parquet(paths[name])
    trace_paths, eval_paths = [], []
    for ckpt, rows in study["traces"].groupby("ckpt"):
        for split, part in rows.groupby("split"):
            trace_paths.append(tmp_path / f"traces_{ckpt}_{split}.parquet")
            part.to_parquet(trace_paths[-1])
    for ckpt, rows in study["evals"].groupby("ckpt"):
        eval_paths.append(tmp_path / f"eval_{ckpt}.parquet")
        rows.to_parquet(eval_paths[-1])
    out = tmp_path / "curves.parquet"
    write_curves(study_cfg(), trace_paths, eval_paths, paths["memorization"], paths["distances"], paths["consistency"],
                 paths["pathways"], paths["onset"], out)
    back = pd.read_parquet(out)
    assert {"domain", "step", "accuracy", "train_loss", "validation_loss"} <= set(back.columns) and len(back) == 6


# ---------------------------------------------------------------- onset
def test_onset_bootstrap_contains_point_and_is_seeded():
    study = make_study()
    table = onset_table(study_cfg(), study["evals"])
    math = table.set_index("domain").loc["math"]
    assert math["rise_found"] and math["onset_step"] == 200.0  # 0, 0, 0.1: crossing at 300, foot at 200
    assert math["onset_lo_step"] <= math["onset_step"] <= math["onset_hi_step"]
    pd.testing.assert_frame_equal(table, onset_table(study_cfg(), study["evals"]))
