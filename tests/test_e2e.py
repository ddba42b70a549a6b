"""The whole DAG on the smoke config, through snakemake."""

from __future__ import annotations

import json
import re

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
        "results/tables/onset.csv",
    }
