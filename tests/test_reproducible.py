"""Reproducibility: two smoke runs write byte-identical results/metrics/ and results/tables/.

Pretraining is bit-identical run to run, so the second run starts from a copy of the first
run's world, tokenizer and checkpoints (timestamps kept, so Snakemake does not retrain) and
recomputes everything from the traces on: traces, evaluation, the per-sample metrics, the
analysis tables. Bytes are compared, not contents: a timestamp or a machine name in Parquet
metadata, an unordered dict or a thread-dependent sum all show up here.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import SMOKE_ARGS, make_workdir, run_snakemake

pytestmark = pytest.mark.e2e

COMPARED = ("metrics", "tables")
COPIED = ("world", "tokenizer", "pretrain", "checkpoints")  # upstream of the traces


def result_files(results) -> list[str]:
    return sorted(
        str(p.relative_to(results))
        for part in COMPARED
        for p in (results / part).rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


def test_second_run_from_the_checkpoints_is_byte_identical(smoke_run, tmp_path):
    first = smoke_run / "results"
    files = result_files(first)
    assert "metrics/samples.parquet" in files and "tables/correlations.csv" in files and "tables/onset.csv" in files

    second = make_workdir(tmp_path / "second")
    for part in COPIED:
        shutil.copytree(first / part, second / "results" / part, ignore=shutil.ignore_patterns("state"))
    proc = run_snakemake(second, *(f"results/{f}" for f in files), *SMOKE_ARGS)
    assert "rule pretrain" not in proc.stdout + proc.stderr, "the copied checkpoints were retrained"
    assert "rule traces" in proc.stdout + proc.stderr  # the comparison covers everything from the traces on

    assert result_files(second / "results") == files
    different = [f for f in files if (first / f).read_bytes() != (second / "results" / f).read_bytes()]
    assert different == [], "not byte-identical between two runs: " + ", ".join(different)
