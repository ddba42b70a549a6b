"""Table 1: the bootstrap by hand, correlations, windowing, CIs that bracket their point, the Markdown layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_analysis import _write_study, make_study, study_cfg, study_samples

from grokpath.bootstrap import pair_counts, resample_counts, stratified_counts, weighted_means, weighted_pair_mean
from grokpath.correlations import (
    METRICS,
    correlate,
    correlation_table,
    correlations_markdown,
    distance_matrix,
    group_distance,
    rowwise_pearson,
    rowwise_spearman,
    write_correlations,
)
from grokpath.curves import build_curves


# ---------------------------------------------------------------- bootstrap primitives
def test_weighted_pair_mean_pairs_distinct_draws_only():
    distance = np.array([[0.0, 2.0, 4.0], [2.0, 0.0, 6.0], [4.0, 6.0, 0.0]])
    counts = np.array([[1.0, 1, 1], [2, 1, 0], [0, 2, 2], [3, 0, 0]])
    # ones: plain mean over 3 pairs = 4; (2, 1, 0): draws a, a', b -> pairs ab, a'b (aa' is a copy) = 2;
    # (0, 2, 2): b, b', c, c' -> 4 pairs bc of 6 (bb', cc' are copies); (3, 0, 0): no pair
    np.testing.assert_allclose(weighted_pair_mean(distance, counts), [4.0, 2.0, 6.0, np.nan])
    np.testing.assert_allclose(pair_counts(counts), [3, 2, 4, 0])


def test_weighted_means_skip_missing_values():
    values = np.array([[1.0, 2.0, np.nan], [4.0, 6.0, 8.0]])  # checkpoint x sample
    counts = np.array([[1.0, 1, 1], [0, 2, 1]])
    # row 0: (1 + 2) / 2 and (4 + 6 + 8) / 3; row 1: (2*2) / 2 and (2*6 + 8) / 3
    np.testing.assert_allclose(weighted_means(values, counts), [[1.5, 6.0], [2.0, 20 / 3]])


def test_stratified_counts_keep_each_stratum_size():
    strata = ["t*=2", "t*=1", "t*=2", "none", "t*=2", "t*=1"]
    counts = stratified_counts(np.random.default_rng(0), strata, 500)
    labels = np.array(strata)
    for label, size in (("t*=1", 2), ("t*=2", 3), ("none", 1)):
        assert (counts[:, labels == label].sum(axis=1) == size).all()
    assert counts[:, 3].tolist() == [1.0] * 500  # a stratum of one is always itself
    assert counts[:, labels == "t*=2"].max() == 3 and counts[:, labels == "t*=2"].min() == 0
    np.testing.assert_array_equal(counts, stratified_counts(np.random.default_rng(0), strata, 500))


def test_resample_counts_sum_to_the_sample_size():
    counts = resample_counts(np.random.default_rng(1), 7, 300)
    assert counts.shape == (300, 7) and (counts.sum(axis=1) == 7).all()
    assert 0.9 < counts.mean() / 1.0 < 1.1 and counts.var(axis=0).mean() == pytest.approx(6 / 7, rel=0.2)


def test_group_distance_under_a_resample_by_hand():
    # group t*=1: "0", "00", "000" (Levenshtein 1, 2, 1); group t*=2: "1", "1111" (3); "x" is not memorized
    ids = ["a", "b", "c", "d", "e", "x"]
    strings = pd.Series(["0", "00", "000", "1", "1111", "zzz"], index=ids)
    strata = ["t*=1", "t*=1", "t*=1", "t*=2", "t*=2", "not memorized"]
    assert distance_matrix(["0", "00", "000"], "char").tolist() == [[0, 1, 2], [1, 0, 1], [2, 1, 0]]
    counts = np.array(
        [
            [1.0, 1, 1, 1, 1, 1],  # the point estimate: t*=1 mean 4/3 (3 pairs), t*=2 mean 3 (1 pair)
            [2, 1, 0, 1, 1, 1],  # t*=1: a, a', b -> 2 pairs of distance 1; t*=2: 3
            [3, 0, 0, 2, 0, 1],  # no distinct pair in either group
            [0, 1, 2, 0, 2, 1],  # t*=1: b, c, c' -> 2 pairs bc = 1; t*=2: e, e' -> none
        ]
    )
    equal = group_distance(strings, ids, strata, counts, "equal")
    np.testing.assert_allclose(equal, [(4 / 3 + 3) / 2, (1 + 3) / 2, np.nan, 1.0])
    pairs = group_distance(strings, ids, strata, counts, "pairs")
    np.testing.assert_allclose(pairs, [(3 * 4 / 3 + 1 * 3) / 4, (2 * 1 + 1 * 3) / 3, np.nan, 1.0])
    samples = group_distance(strings, ids, strata, counts, "samples")
    np.testing.assert_allclose(samples, [(3 * 4 / 3 + 2 * 3) / 5, (3 * 1 + 2 * 3) / 5, np.nan, 1.0])
    # pooled: every pair of distinct draws over all six samples, "x" included
    pooled = group_distance(strings, ids, strata, counts[:1], "pooled")
    full = distance_matrix(list(strings), "char")
    assert pooled[0] == pytest.approx(full[np.triu_indices(6, 1)].mean())


# ---------------------------------------------------------------- correlations
def test_correlate_hand_values():
    pearson, _, spearman, _ = correlate([1, 2, 3, 4], [2, 4, 6, 8])
    assert pearson == pytest.approx(1.0) and spearman == pytest.approx(1.0)
    pearson, _, spearman, _ = correlate([1, 2, 3, 4], [8, 6, 4, 2])
    assert pearson == pytest.approx(-1.0) and spearman == pytest.approx(-1.0)
    # monotone but not linear: Spearman 1, Pearson by hand: x=(1,2,3), y=(1,2,10):
    # mean y = 13/3, dx=(-1,0,1), dy=(-10/3,-7/3,17/3); r = 9/sqrt(2 * 438/9)
    pearson, _, spearman, _ = correlate([1, 2, 3], [1, 2, 10])
    assert spearman == pytest.approx(1.0)
    assert pearson == pytest.approx(9.0 / np.sqrt(2 * 438 / 9))
    # one swapped pair in 4: rho = 1 - 6*2/(4*15) = 0.8
    assert correlate([1, 2, 3, 4], [1, 3, 2, 4])[2] == pytest.approx(0.8)


def test_correlate_undefined_cases_are_nan():
    assert np.isnan(correlate([1, 2], [1, 2])[0])  # fewer than 3 points
    assert np.isnan(correlate([1, 1, 1], [1, 2, 3])[0])  # constant metric
    pearson = correlate([1, 2, np.nan, 4, 5], [1, 2, 3, 4, 5])[0]  # NaN pairs dropped
    assert pearson == pytest.approx(1.0)


def test_rowwise_matches_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    for i in range(5):
        p, _, s, _ = correlate(x[i], y[i])
        assert rowwise_pearson(x, y)[i] == pytest.approx(p)
        assert rowwise_spearman(x, y)[i] == pytest.approx(s)


def _table(study, **analysis):
    cfg = study_cfg(**analysis)
    samples = study_samples(study)
    curves = build_curves(cfg, samples, study["distances"])
    return correlation_table(cfg, curves, samples, study["distances"]), curves


@pytest.mark.parametrize("weighting", ["equal", "pairs", "samples", "pooled"])
def test_table_window_values_and_cis(weighting):
    study = make_study()
    table, curves = _table(study, distance_weighting=weighting)
    assert set(table["metric"]) == set(METRICS) and len(table) == 2 * len(METRICS)
    math = table[table["domain"] == "math"].set_index("metric")
    # accuracy 0, 0, .1, .4, .7, .9: crossing at step 300, foot 200 -> window steps 200..600
    assert (math["window_start_step"] == 200).all() and math["restricted"].all()
    assert math.loc["pathway_distance", "n_checkpoints"] == 5
    c = curves[(curves["domain"] == "math") & (curves["step"] >= 200)]
    assert math.loc["pathway_distance", "pearson"] == pytest.approx(np.corrcoef(c["pathway_distance"], c["accuracy"])[0, 1])
    assert math.loc["mean_cosine", "spearman"] > 0.8  # cosine rises with the checkpoint
    # the bootstrap resamples the point estimate's own samples and pairs: every CI brackets its point
    for metric, row in math.iterrows():
        for name in ("pearson", "spearman"):
            lo, value, hi = row[f"{name}_lo"], row[name], row[f"{name}_hi"]
            assert lo - 1e-9 <= value <= hi + 1e-9, (metric, name, lo, value, hi)
    assert math.loc["pathway_distance", "pearson_hi"] < 0  # pathways shrink over checkpoints
    assert math.loc["validation_loss", "samples"] == "all validation samples"
    assert math.loc["train_loss", "samples"] == "memorized training samples"
    assert math.loc["entropy", "resampled"] == "memorized training samples within each memorization group; test samples"


def test_bootstrap_is_deterministic_under_the_seed():
    study = make_study()
    first, _ = _table(study)
    again, _ = _table(study)
    pd.testing.assert_frame_equal(first, again)
    other, _ = _table(study, bootstrap={"n": 200, "seed": 4})
    assert not np.allclose(first["pearson_lo"].fillna(0), other["pearson_lo"].fillna(0))


def test_table_refuses_distances_it_cannot_resample():
    study = make_study(domains=("math",))
    cfg = study_cfg()
    samples = study_samples(study)
    curves = build_curves(cfg, samples, study["distances"])
    sampled = study["distances"].assign(sampled=True)
    with pytest.raises(ValueError, match="sampled pairs.*pathways.max_pairs"):
        correlation_table(cfg, curves, samples, sampled)
    other = samples.assign(pathway=samples["pathway"].str.split("-").str[0])  # strings of another setting: first layer only
    with pytest.raises(ValueError, match="differs from distances.parquet"):
        correlation_table(cfg, curves, other, study["distances"])
    with pytest.raises(ValueError, match="analysis.distance_threshold"):
        correlation_table(study_cfg(distance_threshold=0.5), curves, samples, study["distances"])


def test_short_window_falls_back_to_all_checkpoints():
    study = make_study(accuracy=(0.0, 0.0, 0.0, 0.0, 0.05, 0.9), domains=("code",))
    table, _ = _table(study)
    assert not table["restricted"].any() and (table["window_start_step"] == 100).all()
    assert (table.loc[table.metric == "train_loss", "n_checkpoints"] == 6).all()


def test_markdown_layout():
    table, _ = _table(make_study())
    md = correlations_markdown(table, study_cfg())
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| metric"))
    assert header == "| metric | code | math |"
    row = next(line for line in lines if line.startswith("| pathway distance |"))
    assert row.count("/") == 2 and row.count("[") == 4
    assert "from step 200, n = 5" in md
    assert (
        "validation loss over all validation samples" in md and "each group weighted equally (analysis.distance_weighting)" in md
    )


def test_write_correlations_files(tmp_path):
    study = make_study(domains=("math",))
    cfg = study_cfg()
    paths = _write_study(study, tmp_path)
    curves = build_curves(cfg, study_samples(study), study["distances"])
    curves.to_parquet(tmp_path / "curves.parquet")
    table = write_correlations(
        cfg,
        tmp_path / "curves.parquet",
        paths["samples"],
        paths["distances"],
        tmp_path / "correlations.csv",
        tmp_path / "correlations.md",
    )
    back = pd.read_csv(tmp_path / "correlations.csv")
    assert list(back.columns[:11]) == [
        "domain",
        "metric",
        "pearson",
        "pearson_lo",
        "pearson_hi",
        "spearman",
        "spearman_lo",
        "spearman_hi",
        "n_checkpoints",
        "window_start_step",
        "restricted",
    ]
    assert {"samples", "resampled"} <= set(back.columns)
    assert len(back) == len(table) == len(METRICS)
    np.testing.assert_allclose(back["pearson"], table["pearson"])
    assert (tmp_path / "correlations.md").read_text().startswith("Pearson r / Spearman")
