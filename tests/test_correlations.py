"""Table 1 correlations: hand-checkable values, windowing, bootstrap CIs, the Markdown layout."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_analysis import make_study, study_cfg

from grokpath.analysis import build_curves
from grokpath.correlations import (
    METRICS,
    correlate,
    correlation_table,
    correlations_markdown,
    rowwise_pearson,
    rowwise_spearman,
    write_correlations,
)


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
    curves = build_curves(cfg, **study)
    keys = ("evals", "traces", "memorization", "consistency", "pathways")
    return correlation_table(cfg, curves, *(study[k] for k in keys)), curves


def test_table_window_values_and_cis():
    study = make_study()
    table, curves = _table(study)
    assert set(table["metric"]) == set(METRICS) and len(table) == 2 * len(METRICS)
    math = table[table["domain"] == "math"].set_index("metric")
    # accuracy 0, 0, .1, .4, .7, .9: crossing at step 300, foot 200 -> window steps 200..600
    assert (math["window_start_step"] == 200).all() and math["restricted"].all()
    assert math.loc["pathway_distance", "n_checkpoints"] == 5
    # distance falls linearly with the checkpoint while accuracy rises monotonically
    c = curves[(curves["domain"] == "math") & (curves["step"] >= 200)]
    assert math.loc["pathway_distance", "spearman"] == pytest.approx(-1.0)
    assert math.loc["pathway_distance", "pearson"] == pytest.approx(np.corrcoef(c["pathway_distance"], c["accuracy"])[0, 1])
    assert math.loc["mean_cosine", "spearman"] > 0.8  # cosine rises with the checkpoint
    for metric, row in math.iterrows():
        for name in ("pearson", "spearman"):
            lo, value, hi = row[f"{name}_lo"], row[name], row[f"{name}_hi"]
            if metric == "pathway_distance" and name == "pearson":
                continue  # bootstrap distances come from the strings, the point estimate from distances.parquet
            assert lo - 1e-9 <= value <= hi + 1e-9, (metric, name, lo, value, hi)
    # bootstrapped distances come from pathway strings that do shrink over checkpoints
    assert math.loc["pathway_distance", "pearson_hi"] < 0


def test_bootstrap_is_deterministic_under_the_seed():
    study = make_study()
    first, _ = _table(study)
    again, _ = _table(study)
    pd.testing.assert_frame_equal(first, again)
    other, _ = _table(study, bootstrap={"n": 200, "seed": 4})
    assert not np.allclose(first["pearson_lo"].fillna(0), other["pearson_lo"].fillna(0))


def test_short_window_falls_back_to_all_checkpoints():
    study = make_study(accuracy=(0.0, 0.0, 0.0, 0.0, 0.05, 0.9), domains=("code",))
    table, _ = _table(study)
    assert not table["restricted"].any() and (table["window_start_step"] == 100).all()
    assert (table.loc[table.metric == "train_loss", "n_checkpoints"] == 6).all()


def test_markdown_layout():
    table, _ = _table(make_study())
    md = correlations_markdown(table)
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| metric"))
    assert header == "| metric | code | math |"
    row = next(line for line in lines if line.startswith("| pathway distance |"))
    assert row.count("/") == 2 and row.count("[") == 4
    assert "from step 200, n = 5" in md


def test_write_correlations_files(tmp_path):
    study = make_study(domains=("math",))
    cfg = study_cfg()
    curves = build_curves(cfg, **study)
    paths = {}
    for name, frame in (("curves", curves), *((k, study[k]) for k in ("memorization", "consistency", "pathways"))):
        paths[name] = tmp_path / f"{name}.parquet"
        frame.to_parquet(paths[name])
    study["traces"].to_parquet(tmp_path / "traces.parquet")
    study["evals"].to_parquet(tmp_path / "eval.parquet")
    table = write_correlations(cfg, paths["curves"], [tmp_path / "traces.parquet"], [tmp_path / "eval.parquet"],
                               paths["memorization"], paths["consistency"], paths["pathways"],
                               tmp_path / "correlations.csv", tmp_path / "correlations.md")
    back = pd.read_csv(tmp_path / "correlations.csv")
    assert list(back.columns[:11]) == ["domain", "metric", "pearson", "pearson_lo", "pearson_hi", "spearman", "spearman_lo",
                                       "spearman_hi", "n_checkpoints", "window_start_step", "restricted"]
    assert len(back) == len(table) == len(METRICS)
    assert (tmp_path / "correlations.md").read_text().startswith("Pearson r / Spearman")
