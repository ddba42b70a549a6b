"""The whole DAG on the smoke config, through snakemake."""
from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO
from grokpath.checkpoints import checkpoint_names
from grokpath.config import deep_merge, validate

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
    assert len(ckpts) >= 2
    loss = pd.read_parquet(results / "pretrain" / "loss.parquet")
    assert {"step", "loss"} <= set(loss.columns) and len(loss) > 0

    last = results / "checkpoints" / ckpts[-1]
    model = AutoModelForCausalLM.from_pretrained(last)
    assert model.config.model_type == "olmoe"
    provenance = json.loads((last / "provenance.json").read_text())
    assert provenance["step"] == int(ckpts[-1].removeprefix("step"))

    for ckpt in ckpts:
        for domain in config["domains"]:
            for split in ("train", "validation", "test"):
                table = pq.read_table(results / "traces" / ckpt / f"{domain}_{split}.parquet")
                assert table.num_rows > 0
                assert {"sample_id", "loss", "routing", "n_tokens"} <= set(table.column_names)
        samples = pd.read_parquet(results / "eval" / ckpt / "samples.parquet")
        assert set(samples["domain"]) == set(config["domains"])


def test_smoke_tables_figures_report(smoke_run):
    results = smoke_run / "results"
    table = pd.read_csv(results / "tables" / "correlations.csv")
    assert {"domain", "metric", "pearson", "spearman"} <= set(table.columns)
    figures = sorted((results / "figures").rglob("*.png"))
    assert any("paper_a" in str(f) for f in figures) and any("paper_b" in str(f) for f in figures)
    report = (results / "report.html").read_text(errors="replace")
    assert len(report) > 10_000
