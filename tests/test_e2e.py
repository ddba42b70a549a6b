"""The whole DAG on the smoke config, through snakemake."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO

from grokpath.checkpoints import checkpoint_names
from grokpath.config import deep_merge, validate
from grokpath.figures import PAPER_A_FIGURES, PAPER_B_FIGURES

pytestmark = pytest.mark.e2e


def smoke_config() -> dict:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    return validate(deep_merge(base, smoke))


def test_smoke_dag_outputs(smoke_run):
    from transformers import AutoModelForCausalLM

    config = smoke_config()
    results = smoke_run / "results"
    ckpts = checkpoint_names(config)
    pre = config["pretrain"]
    assert len(ckpts) == pre["n_checkpoints"] == 3
    loss = pd.read_parquet(results / "pretrain" / "loss.parquet")
    assert loss["step"].tolist() == list(range(1, pre["steps"] + 1))  # one row per optimizer step
    assert {f"loss_{domain}" for domain in config["domains"]} <= set(loss.columns)
    # the logged loss is the mean of the domains' losses, and the smoke run does learn
    per_domain = loss[[f"loss_{domain}" for domain in config["domains"]]].mean(axis=1)
    np.testing.assert_allclose(loss["loss"], per_domain, rtol=1e-6)
    assert loss["loss"].iloc[-1] < loss["loss"].iloc[0]

    last = results / "checkpoints" / ckpts[-1]
    model = AutoModelForCausalLM.from_pretrained(last)
    assert model.config.model_type == "olmoe"
    provenance = json.loads((last / "provenance.json").read_text())
    assert provenance["step"] == int(ckpts[-1].removeprefix("step"))

    n_routing = pre["num_layers"] * pre["num_experts"]  # token-mean weights, L x K
    for ckpt in ckpts:
        for domain in config["domains"]:
            for split in ("train", "validation", "test"):
                world = pd.read_json(results / "world" / domain / f"{split}.jsonl", lines=True)
                table = pq.read_table(results / "traces" / ckpt / f"{domain}_{split}.parquet").to_pandas()
                assert table["sample_id"].tolist() == world["sample_id"].tolist(), f"{ckpt} {domain}_{split}"
                assert (table["step"] == int(ckpt.removeprefix("step"))).all()
                assert table["routing"].map(len).eq(n_routing).all()
                routing = np.stack(table["routing"].to_numpy()).reshape(len(table), pre["num_layers"], pre["num_experts"])
                np.testing.assert_allclose(routing.sum(axis=2), 1.0, rtol=1e-4)  # softmax weights per layer
                assert np.isfinite(table["loss"]).all() and (table["loss"] > 0).all()
        samples = pd.read_parquet(results / "eval" / ckpt / "samples.parquet")
        assert set(samples["domain"]) == set(config["domains"])


def test_smoke_tables_figures_report(smoke_run):
    results = smoke_run / "results"
    table = pd.read_csv(results / "tables" / "correlations.csv")
    assert {"domain", "metric", "pearson", "spearman"} <= set(table.columns)
    assert set(table["domain"]) == set(smoke_config()["domains"])
    expected = {f"paper_a/{name}.png" for name in [*PAPER_A_FIGURES, "fig00_monitor", "fig08_theory"]} | {
        f"paper_b/{name}.png" for name in PAPER_B_FIGURES
    }
    figures = {str(f.relative_to(results / "figures")) for f in (results / "figures").rglob("*.png")}
    assert figures == expected
    # the report embeds every figure (its path is a key of the page's `results` literal) and Table 1
    report = (results / "report.html").read_text(encoding="utf-8")
    embedded = set(re.findall(r'"(results/[^"]+\.(?:png|csv))"\s*:\s*\{', report))
    assert embedded == {f"results/figures/{f}" for f in expected} | {
        "results/tables/correlations.csv",
        "results/tables/controls.csv",
        "results/tables/onset.csv",
    }


def test_smoke_controls_tables(smoke_run):
    """tables/controls*.csv of the smoke run against Table 1, the curves and values recomputed here from samples.parquet."""
    from grokpath.controls import METRICS, layer_sum_matrix, permute_layers

    config = smoke_config()
    results = smoke_run / "results"
    controls = pd.read_csv(results / "tables" / "controls.csv")
    per_ckpt = pd.read_csv(results / "tables" / "controls_checkpoints.csv")
    curves = pd.read_parquet(results / "metrics" / "curves.parquet")
    corr = pd.read_csv(results / "tables" / "correlations.csv")
    assert set(controls["domain"]) == set(config["domains"]) and "control" in set(controls["domain"])
    assert set(controls["metric"]) == set(METRICS)
    assert controls.groupby("domain")["metric"].count().eq(len(METRICS)).all()
    control = controls[controls["domain"] == "control"]
    assert control["control_domain"].all() and not control["generalizes"].any()
    # Table 1's metrics: the plain r over the window is Table 1's own number
    both = controls.merge(corr, on=["domain", "metric"], suffixes=("", "_table1"))
    np.testing.assert_allclose(both["pearson"], both["pearson_table1"], equal_nan=True)
    # log(step) against accuracy over all checkpoints, by hand
    for domain, c in curves.groupby("domain"):
        t, a = np.log(c["step"].to_numpy(float)), c["accuracy"].to_numpy(float)
        row = controls[(controls["domain"] == domain) & (controls["metric"] == "log_step")].iloc[0]
        expected = np.corrcoef(t, a)[0, 1] if np.ptp(a) > 0 else np.nan
        np.testing.assert_allclose(row["pearson_all"], expected, equal_nan=True)
        assert np.isnan(row["partial_all"])  # time given time leaves nothing
    # the decomposition: the plain distance is the curves' one; length and pooled within recomputed by hand
    merged = per_ckpt.merge(curves, on=["domain", "ckpt"], suffixes=("", "_curves"))
    assert len(merged) == len(curves)
    np.testing.assert_allclose(merged["pathway_distance"], merged["pathway_distance_curves"], equal_nan=True)
    samples = pd.read_parquet(results / "metrics" / "samples.parquet")
    memorized = samples[(samples["split"] == "train") & samples["memorized"].fillna(False).astype(bool)]
    distances = pd.read_parquet(results / "metrics" / "distances.parquet")
    pooled = distances[(distances["group"] == "memorized") & (distances["layer"] == -1) & np.isclose(distances["threshold"], 0.7)]
    for row in per_ckpt.itertuples():
        at = memorized[(memorized["domain"] == row.domain) & (memorized["ckpt"] == row.ckpt)]
        groups = [g["pathway"].str.len().mean() for _, g in at.groupby("t_star_step") if len(g) >= 2]
        np.testing.assert_allclose(row.pathway_length, np.mean(groups) if groups else np.nan, equal_nan=True)
        within = pooled[(pooled["domain"] == row.domain) & (pooled["ckpt"] == row.ckpt)]["mean_distance"]
        np.testing.assert_allclose(row.within_pooled, within.iloc[0] if len(within) else np.nan, equal_nan=True)
        if np.isfinite(row.additivity):  # one alignment of the joined strings is the layer-by-layer one
            assert row.additivity <= 1 + 1e-12
        strings = at["pathway"].tolist()
        if len(strings) >= 2:  # the permutation property on the run's own pathways
            before = layer_sum_matrix(strings).sum()
            assert layer_sum_matrix(permute_layers(strings, np.random.default_rng(row.step))).sum() == before
    text = (results / "tables" / "controls.md").read_text()
    assert "control (memorize-only)" in text and "Verdict rule" in text


def test_one_metrics_job_writes_what_the_per_domain_rules_write(smoke_run, tmp_path, monkeypatch):
    """The mini study's `metrics` job against the per-domain rules' functions, called one by one on its traces."""
    from grokpath import metrics
    from grokpath.data import split_path

    config = smoke_config()
    monkeypatch.chdir(smoke_run)  # the config's data paths are workdir-relative
    trace_dirs = [Path("results/traces") / ckpt for ckpt in checkpoint_names(config)]
    eval_samples = [Path("results/eval") / ckpt / "samples.parquet" for ckpt in checkpoint_names(config)]
    router_weights = [d / "router_weights.npy" for d in trace_dirs]
    out = tmp_path / "metrics"
    for domain in config["domains"]:
        d = out / "domains" / domain

        def traces(splits, domain=domain):
            return [t / f"{domain}_{split}.parquet" for t in trace_dirs for split in splits]

        metrics.run_memorization(
            config, domain, traces(["train"]), d / "memorization.parquet", d / "memorization_ablation.parquet"
        )
        splits = metrics.pathway_splits(config["pathways"])
        metrics.run_pathways(
            config, domain, traces(splits), d / "memorization.parquet", d / "pathways.parquet", d / "distances.parquet", 2
        )
        metrics.run_consistency(
            config, domain, traces(config["consistency"]["splits"]), router_weights, d / "consistency.parquet"
        )
        metrics.run_onset(config, domain, eval_samples, d / "onset.parquet")
        texts = [Path(split_path(config["domains"], domain, split)) for split in ("train", "test")]
        metrics.run_groups(config, domain, d / "memorization.parquet", d / "onset.parquet", *texts, d / "groups.parquet", 1)
    names = [*(f"domains/{d}/{t}.parquet" for d in config["domains"] for t in metrics.METRIC_TABLES)]
    for table in metrics.METRIC_TABLES:
        metrics.gather([out / "domains" / d / f"{table}.parquet" for d in config["domains"]], out / f"{table}.parquet")
        names.append(f"{table}.parquet")
    metrics.run_cross_distances(
        config, [out / "domains" / d / "pathways.parquet" for d in config["domains"]], out / "cross_distances.parquet", 2
    )
    names.append("cross_distances.parquet")

    assert len(names) == 7 * len(config["domains"]) + 8
    for name in names:
        one_job = pd.read_parquet(smoke_run / "results" / "metrics" / name)
        assert len(one_job) > 0 or name.endswith("groups.parquet"), name
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), one_job, obj=name)


def test_one_analysis_job_writes_what_the_tables_rules_write(smoke_run, tmp_path):
    """The mini study's `analysis` job against the tables' and figures' rules' functions, one by one on its inputs."""
    from grokpath.controls import write_controls
    from grokpath.correlations import write_correlations
    from grokpath.curves import write_curves
    from grokpath.figures.paper_a import write_paper_a_figures
    from grokpath.rise import write_onset
    from grokpath.samples import write_samples

    config = smoke_config()
    results = smoke_run / "results"
    metrics = results / "metrics"
    ckpts = checkpoint_names(config)
    traces = [
        results / "traces" / c / f"{d}_{s}.parquet" for c in ckpts for d in config["domains"] for s in ("train", "validation")
    ]
    evals = [results / "eval" / c / "samples.parquet" for c in ckpts]
    out = tmp_path
    write_samples(
        traces,
        evals,
        metrics / "memorization.parquet",
        metrics / "onset.parquet",
        metrics / "consistency.parquet",
        metrics / "pathways.parquet",
        out / "samples.parquet",
    )
    write_onset(config, out / "samples.parquet", out / "onset.csv")
    write_curves(config, out / "samples.parquet", metrics / "distances.parquet", out / "curves.parquet")
    args = (out / "curves.parquet", out / "samples.parquet", metrics / "distances.parquet")
    write_correlations(config, *args, out / "correlations.csv", out / "correlations.md")
    write_controls(
        config,
        *args,
        metrics / "cross_distances.parquet",
        out / "controls.csv",
        out / "controls.md",
        out / "controls_checkpoints.csv",
    )
    write_paper_a_figures(
        config,
        *args,
        metrics / "cross_distances.parquet",
        metrics / "groups.parquet",
        metrics / "memorization_ablation.parquet",
        out / "correlations.csv",
        out / "figures",
    )
    for name in ("samples", "curves"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{name}.parquet"), pd.read_parquet(metrics / f"{name}.parquet"))
    for name in ("onset.csv", "correlations.csv", "correlations.md", "controls.csv", "controls.md", "controls_checkpoints.csv"):
        assert (out / name).read_text() == (results / "tables" / name).read_text(), name
    assert len((out / "correlations.csv").read_text().splitlines()) > 1
    for name in PAPER_A_FIGURES:
        ours, job = out / "figures" / f"{name}.png", results / "figures" / "paper_a" / f"{name}.png"
        assert ours.read_bytes() == job.read_bytes(), name
