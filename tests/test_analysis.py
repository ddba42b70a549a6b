"""Paper A's analysis inputs: the per-sample table, the curves join, the sustained-rise rule and onset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grokpath.config import validate
from grokpath.curves import build_curves, checkpoint_distance, combine_groups, moving_average, write_curves
from grokpath.io import read_metadata
from grokpath.pathways import mean_pairwise_distance
from grokpath.rise import onset_table, rise_window, sustained_rise_start
from grokpath.samples import build_samples, write_samples

RULE = {"rise_fraction": 0.1, "min_gain": 0.05, "include_foot": True, "min_checkpoints": 3}
T_STAR_INDEX = (0, 0, 0, 2, 2, 4, 4, 4)  # memorized training samples 0..7: groups of 3, 2 and 3 samples


def study_cfg(**analysis) -> dict:
    cfg = validate({"analysis": {"bootstrap": {"n": 200, "seed": 3}, **analysis}, "pathways": {}})
    cfg.setdefault("pathways", {})["threshold"] = 0.7
    return cfg


def _distance_rows(ckpt, step, domain, groups, strings):
    """distances.parquet rows computed from the pathway strings, as the metrics stage does."""
    rows = []
    for group, members in groups.items():
        if len(members) < 2:
            continue
        picked = [strings[i] for i in members]
        mean, n_pairs, _ = mean_pairwise_distance(picked, workers=1)
        rows.append((ckpt, step, domain, group, 0.7, -1, mean, n_pairs, False))
        rows.append((ckpt, step, domain, group, 0.5, -1, mean / 2, n_pairs, False))  # an ablation threshold
        for layer in range(3):
            per_layer, _, _ = mean_pairwise_distance([s.split("-")[layer] for s in picked], workers=1)
            rows.append((ckpt, step, domain, group, 0.7, layer, per_layer, n_pairs, False))
    return rows


def make_study(
    accuracy=(0.0, 0.0, 0.1, 0.4, 0.7, 0.9), domains=("math", "code"), n_test=40, n_train=12, n_val=6, seed=0, revision_sha=None
):
    """Small per-sample tables with the metrics stage's columns; accuracy follows ``accuracy``."""
    rng = np.random.default_rng(seed)
    steps = [100 * (i + 1) for i in range(len(accuracy))]
    ckpts = [f"step{s:06d}" for s in steps]
    traces, evals, cons, paths, dists, mem = [], [], [], [], [], []
    for d in domains:
        # test sample j is correct at checkpoint c when its difficulty is below the target accuracy
        difficulty = (np.arange(n_test) + 0.5) / n_test
        memorized = np.arange(n_train) < len(T_STAR_INDEX)
        t_star = [steps[T_STAR_INDEX[i]] if m else None for i, m in enumerate(memorized)]
        ids = [f"{d}-tr{i}" for i in range(n_train)]
        mem.append(
            pd.DataFrame(
                {
                    "domain": d,
                    "sample_id": ids,
                    "memorized": memorized,
                    "t_star_step": pd.array(t_star, dtype="Int64"),
                    "t_star_ckpt": None,
                    "epsilon": 1.5,
                    "delta": 0.05,
                    "epsilon_mode": "auto",
                }
            )
        )
        groups = {
            "all": list(range(n_train)),
            "memorized": list(np.flatnonzero(memorized)),
            "not_memorized": list(np.flatnonzero(~memorized)),
        }
        for i, m in enumerate(memorized):
            if m:
                groups.setdefault(f"t*={t_star[i]}", []).append(i)
        for c, (ckpt, step, acc) in enumerate(zip(ckpts, steps, accuracy)):
            evals.append(
                pd.DataFrame(
                    {
                        "ckpt": ckpt,
                        "step": step,
                        "domain": d,
                        "sample_id": [f"{d}-te{j}" for j in range(n_test)],
                        "correct": difficulty < acc,
                        "response": "",
                        "target": "",
                    }
                )
            )
            for split, n in (("train", n_train), ("validation", n_val)):
                traces.append(
                    pd.DataFrame(
                        {
                            "sample_id": [f"{d}-{split[:2]}{i}" for i in range(n)],
                            "domain": d,
                            "split": split,
                            "ckpt": ckpt,
                            "step": step,
                            "revision_sha": revision_sha and f"{revision_sha}{c}",
                            "n_tokens": 10,
                            "loss": 3.0 - 0.3 * c + rng.normal(0, 0.05, n),
                            "routing": [[0.5, 0.5]] * n,
                        }
                    )
                )
            cosine = 0.3 + 0.1 * c + rng.normal(0, 0.02, n_train)
            consistency = 1 - cosine
            consistency[0] = np.nan  # a guarded sample
            cons.append(
                pd.DataFrame(
                    {
                        "ckpt": ckpt,
                        "step": step,
                        "domain": d,
                        "split": "train",
                        "sample_id": ids,
                        "consistency": consistency,
                        "mean_cosine": cosine,
                        "max_cosine": 1.0,
                        "guarded": np.isnan(consistency),
                    }
                )
            )
            # pathways converge: later checkpoints keep fewer random experts
            strings = ["-".join(",".join(map(str, rng.permutation(8)[: max(1, 6 - c)])) for _ in range(3)) for _ in ids]
            paths.append(
                pd.DataFrame(
                    {
                        "ckpt": ckpt,
                        "step": step,
                        "domain": d,
                        "split": "train",
                        "sample_id": ids,
                        "pathway": strings,
                        "n_experts_total": 3,
                        "entropy": 2.0 - 0.2 * c + rng.normal(0, 0.01, n_train),
                    }
                )
            )
            dists += _distance_rows(ckpt, step, d, groups, strings)
    evals = pd.concat(evals, ignore_index=True)
    onset = (
        evals.groupby(["domain", "sample_id"])
        .apply(lambda g: g.loc[g["correct"], "step"].min() if g["correct"].any() else np.nan, include_groups=False)
        .rename("t_hash_step")
        .reset_index()
    )
    onset["t_hash_step"] = onset["t_hash_step"].astype("Int64")
    onset["generalized"] = onset["t_hash_step"].notna()
    onset["t_hash_ckpt"] = None
    columns = ["ckpt", "step", "domain", "group", "threshold", "layer", "mean_distance", "n_pairs", "sampled"]
    return {
        "traces": pd.concat(traces, ignore_index=True),
        "evals": evals,
        "memorization": pd.concat(mem, ignore_index=True),
        "distances": pd.DataFrame(dists, columns=columns),
        "consistency": pd.concat(cons, ignore_index=True),
        "pathways": pd.concat(paths, ignore_index=True),
        "onset": onset,
    }


def study_samples(study) -> pd.DataFrame:
    keys = ("traces", "evals", "memorization", "onset", "consistency", "pathways")
    return build_samples(*(study[k] for k in keys))


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


# ---------------------------------------------------------------- the per-sample table
def test_samples_table_rows_and_columns():
    study = make_study(revision_sha="abc")
    samples = study_samples(study)
    # 2 domains x 6 checkpoints x (12 train + 6 validation + 40 test)
    assert len(samples) == 2 * 6 * (12 + 6 + 40)
    assert samples.groupby("split").size().to_dict() == {"test": 480, "train": 144, "validation": 72}
    assert list(samples["domain"].unique()) == ["code", "math"]
    assert samples[samples.domain == "math"]["split"].drop_duplicates().tolist() == ["train", "validation", "test"]
    # test rows take the checkpoint's revision from the traces
    at = samples[(samples.ckpt == "step000300")]
    assert set(at["revision_sha"]) == {"abc2"}
    tr = samples[(samples.split == "train") & (samples.domain == "math")]
    row = tr[(tr.ckpt == "step000100") & (tr.sample_id == "math-tr3")].iloc[0]
    assert bool(row["memorized"]) and row["t_star_step"] == 300 and pd.isna(row["correct"]) and pd.isna(row["t_hash_step"])
    p = study["pathways"]
    assert row["pathway"] == p[(p.ckpt == "step000100") & (p.domain == "math") & (p.sample_id == "math-tr3")]["pathway"].iloc[0]
    te = samples[(samples.split == "test") & (samples.domain == "math") & (samples.sample_id == "math-te0")]
    # difficulty 0.0125 < accuracy from step 300 (0.1) on
    assert te["correct"].astype(bool).tolist() == [False, False, True, True, True, True]
    assert (te["t_hash_step"] == 300).all() and te["memorized"].isna().all() and te["loss"].isna().all()


def test_samples_table_rejects_bad_traces():
    study = make_study(domains=("math",))
    doubled = {**study, "traces": pd.concat([study["traces"], study["traces"].iloc[:1]], ignore_index=True)}
    with pytest.raises(ValueError, match="appears more than once"):
        study_samples(doubled)
    split = study["traces"].copy()
    split.loc[split.index[:3], "revision_sha"] = "other"
    split.loc[split.index[3:6], "revision_sha"] = "again"
    with pytest.raises(ValueError, match="disagree on revision_sha"):
        study_samples({**study, "traces": split})
    with pytest.raises(ValueError, match="missing column"):
        study_samples({**study, "traces": study["traces"].drop(columns="revision_sha")})


# ---------------------------------------------------------------- pathway distance over groups
# a tiny distances table: three memorization groups and the pooled memorized group at one checkpoint
TINY = pd.DataFrame(
    [
        ("c", 100, "math", "t*=100", 0.7, -1, 2.0, 1, False),
        ("c", 100, "math", "t*=200", 0.7, -1, 5.0, 3, False),
        ("c", 100, "math", "t*=300", 0.7, -1, 10.0, 6, False),
        ("c", 100, "math", "memorized", 0.7, -1, 6.5, 36, False),
        ("c", 100, "math", "t*=300", 0.5, -1, 99.0, 6, False),
    ],  # another threshold: never used
    columns=["ckpt", "step", "domain", "group", "threshold", "layer", "mean_distance", "n_pairs", "sampled"],
)
TINY_SIZES = pd.Series({("math", "t*=100"): 2, ("math", "t*=200"): 3, ("math", "t*=300"): 4})


@pytest.mark.parametrize(
    "weighting, expected",
    [
        ("equal", (2.0 + 5.0 + 10.0) / 3),
        ("pairs", (1 * 2.0 + 3 * 5.0 + 6 * 10.0) / 10),  # 7.7
        ("samples", (2 * 2.0 + 3 * 5.0 + 4 * 10.0) / 9),
        ("pooled", 6.5),
    ],
)
def test_checkpoint_distance_weightings_by_hand(weighting, expected):
    out = checkpoint_distance(TINY, TINY_SIZES, "memorized", 0.7, weighting)
    assert out["pathway_distance"].tolist() == [pytest.approx(expected)]
    assert out["n_distance_groups"].tolist() == [1 if weighting == "pooled" else 3]


def test_combine_groups_skips_groups_without_a_mean():
    # a resampled group whose draws are all one sample has no pair: NaN, left out
    means = np.array([[2.0, np.nan, 10.0], [np.nan, np.nan, np.nan]])
    assert combine_groups(means, np.ones((2, 3)), [2, 3, 4], "equal")[0] == pytest.approx(6.0)
    assert combine_groups(means, np.ones((2, 3)), [2, 3, 4], "samples")[0] == pytest.approx((2 * 2 + 4 * 10) / 6)
    assert np.isnan(combine_groups(means, np.ones((2, 3)), [2, 3, 4], "pairs")[1])
    with pytest.raises(ValueError, match="weighting"):
        combine_groups(means, np.ones((2, 3)), [2, 3, 4], "pooled")


def test_checkpoint_distance_unknown_threshold_names_it():
    with pytest.raises(ValueError, match="threshold 0.9"):
        checkpoint_distance(TINY, TINY_SIZES, "memorized", 0.9, "equal")


# ---------------------------------------------------------------- join
def test_build_curves_on_small_frames():
    study = make_study()
    samples = study_samples(study)
    curves = build_curves(study_cfg(), samples, study["distances"])
    assert len(curves) == 12 and list(curves["domain"].unique()) == ["code", "math"]
    math = curves[curves["domain"] == "math"].reset_index(drop=True)
    assert math["step"].tolist() == [100, 200, 300, 400, 500, 600]
    np.testing.assert_allclose(math["accuracy"], [0.0, 0.0, 0.1, 0.4, 0.7, 0.9])
    assert (math["n_test"] == 40).all() and (math["n_group"] == 8).all() and math["revision_sha"].isna().all()
    # pathway distance: equal-weight mean of the three t* groups' means (default weighting)
    d = study["distances"]
    groups = d[
        (d.domain == "math") & (d.ckpt == "step000300") & (d.layer == -1) & (d.threshold == 0.7) & d.group.str.startswith("t*=")
    ]
    assert len(groups) == 3 and math.loc[2, "pathway_distance"] == pytest.approx(groups["mean_distance"].mean())
    assert (math["n_distance_groups"] == 3).all()
    # training loss over the memorized samples (ids 0..7) only; validation loss over all validation samples
    tr = study["traces"]
    at = tr[(tr.domain == "math") & (tr.ckpt == "step000300")]
    memorized = at[(at.split == "train") & at.sample_id.isin([f"math-tr{i}" for i in range(8)])]
    assert math.loc[2, "train_loss"] == pytest.approx(memorized["loss"].mean())
    assert math.loc[2, "train_loss"] != pytest.approx(at[at.split == "train"]["loss"].mean())
    assert math.loc[2, "train_loss_all"] == pytest.approx(at[at.split == "train"]["loss"].mean())
    assert math.loc[2, "validation_loss"] == pytest.approx(at[at.split == "validation"]["loss"].mean())
    window = study_cfg()["analysis"]["moving_average_window"]
    assert math.loc[2, "train_loss_ma"] == pytest.approx(math["train_loss"].iloc[max(0, 3 - window) : 3].mean())
    # consistency: memorized samples only (ids 0..7), NaN of sample 0 skipped
    co = study["consistency"]
    rows = co[(co.domain == "math") & (co.ckpt == "step000100") & co.sample_id.isin([f"math-tr{i}" for i in range(1, 8)])]
    assert math.loc[0, "consistency"] == pytest.approx(rows["consistency"].mean())
    # t* groups of 3, 2, 3 samples at steps 100, 300, 500
    assert math["n_memorized_new"].tolist() == [3, 0, 2, 0, 3, 0] and math["n_memorized"].tolist() == [3, 3, 5, 5, 8, 8]
    np.testing.assert_allclose(math["fraction_memorized"], np.array([3, 3, 5, 5, 8, 8]) / 12)
    # a test sample with difficulty (j + .5)/40 first becomes correct where accuracy passes it: cumulative = accuracy here
    np.testing.assert_allclose(math["cumulative_accuracy"], [0.0, 0.0, 0.1, 0.4, 0.7, 0.9])


def test_build_curves_group_all_pools_the_distance():
    study = make_study()
    samples = study_samples(study)
    curves = build_curves(study_cfg(sample_group="all"), samples, study["distances"])
    d = study["distances"]
    expected = d[(d.domain == "code") & (d.group == "all") & (d.layer == -1) & (d.threshold == 0.7)].sort_values("step")
    np.testing.assert_allclose(curves[curves.domain == "code"]["pathway_distance"], expected["mean_distance"])
    tr = samples[(samples.split == "train") & (samples.domain == "code") & (samples.ckpt == "step000100")]
    assert curves[curves.domain == "code"]["train_loss"].iloc[0] == pytest.approx(tr["loss"].mean())


def _write_study(study, tmp_path):
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
    paths["samples"] = tmp_path / "samples.parquet"
    write_samples(
        trace_paths, eval_paths, paths["memorization"], paths["onset"], paths["consistency"], paths["pathways"], paths["samples"]
    )
    return paths


def test_write_samples_and_curves_round_trip(tmp_path):
    study = make_study(domains=("math",), revision_sha="f00")
    paths = _write_study(study, tmp_path)
    back = pd.read_parquet(paths["samples"])
    pd.testing.assert_frame_equal(back, study_samples(study), check_dtype=False)
    out = tmp_path / "curves.parquet"
    write_curves(study_cfg(distance_weighting="pairs"), paths["samples"], paths["distances"], out)
    curves = pd.read_parquet(out)
    assert curves["revision_sha"].tolist() == [f"f00{c}" for c in range(6)]
    meta = read_metadata(out)
    assert meta["distance_weighting"] == "pairs" and meta["sample_group"] == "memorized"
    assert meta["samples"]["validation_loss"] == "all validation samples"
    assert meta["samples"]["train_loss"] == "memorized training samples"


# ---------------------------------------------------------------- onset
def test_onset_bootstrap_contains_point_and_is_seeded():
    samples = study_samples(make_study(revision_sha="r"))
    table = onset_table(study_cfg(), samples)
    math = table.set_index("domain").loc["math"]
    assert math["rise_found"] and math["onset_step"] == 200.0  # 0, 0, 0.1: crossing at 300, foot at 200
    assert math["onset_ckpt"] == "step000200" and math["onset_revision_sha"] == "r1"
    assert math["onset_lo_step"] <= math["onset_step"] <= math["onset_hi_step"]
    assert math["n_test"] == 40 and math["final_accuracy"] == pytest.approx(0.9)
    pd.testing.assert_frame_equal(table, onset_table(study_cfg(), samples))


def test_delay_columns_from_train_loss_and_test_accuracy():
    from grokpath.rise import delay_table

    steps = [100, 200, 300, 400, 500, 600]
    losses = [2.0, 0.5, 0.1, 0.12, 0.1, 0.1]  # settled (within 0.05 of 0.1) from step 300 on
    correct_of = [0, 0, 0, 0, 1, 2]  # of 2 test samples: accuracy 0.5 at 500 is not above half of 1.0
    rows = []
    for step, loss, n_correct in zip(steps, losses, correct_of):
        for i, sample_loss in enumerate((loss - 0.01, loss + 0.01)):  # mean over train samples = loss
            rows.append(
                {"domain": "math", "step": step, "split": "train", "sample_id": f"t{i}", "loss": sample_loss, "correct": None}
            )
        for i in range(2):
            rows.append(
                {"domain": "math", "step": step, "split": "test", "sample_id": f"x{i}", "loss": 1.0, "correct": i < n_correct}
            )
    verdict = delay_table({"delta": 0.05, "min_gap": 2, "min_final_accuracy": 0.5}, pd.DataFrame(rows))["math"]
    assert verdict == {
        "loss_settled_step": 300,
        "accuracy_half_step": 600,
        "delay_checkpoints": 3,
        "delayed_generalization": True,
    }
    strict = delay_table({"delta": 0.05, "min_gap": 4, "min_final_accuracy": 0.5}, pd.DataFrame(rows))["math"]
    assert strict["delay_checkpoints"] == 3 and not strict["delayed_generalization"]
