"""Resume after a kill, and determinism: a killed-and-resumed smoke run equals the uninterrupted one.

`offline_resumed_run` (conftest) is a second smoke run, killed (-9) while a trace job runs and resumed with
the README's command after --unlock. Its outputs are compared with `smoke_run`'s, so a mismatch means either the resume
or the pipeline is not deterministic: the message names the file to look at.
"""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.e2e

# Outputs whose bytes carry wall-clock values: figures (PDF dates), lm-eval's own JSON (timings),
# logs and benchmarks; and eval/<ckpt>/tasks/, lm-eval inputs rendered with the workdir's absolute
# paths and a temp cache name. Everything else under results/ must match.
SKIPPED_PARTS = {"logs", "benchmarks", "figures", "state", "tasks"}
SKIPPED_NAMES = {"lm_eval.json", "report.html", ".snakemake_timestamp"}
# Parquet metadata keys that record timing or the machine, not results.
VOLATILE_METADATA = {"seconds", "device"}
# The tables and the gathered per-sample metrics of a run (sorted as the test lists them).
HEADLINE = [
    "tables/controls.csv",
    "tables/controls_checkpoints.csv",
    "tables/correlations.csv",
    "tables/onset.csv",
    *(
        f"metrics/{name}.parquet"
        for name in [
            "consistency",
            "cross_distances",
            "curves",
            "distances",
            "groups",
            "memorization",
            "memorization_ablation",
            "onset",
            "pathways",
            "samples",
            "theory",
        ]
    ),
]


def parquet_digest(path) -> str:
    """Hash of a Parquet file's schema, data and metadata, without volatile metadata keys."""
    table = pq.read_table(path)
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k.decode() not in VOLATILE_METADATA}
    table = table.replace_schema_metadata(meta).combine_chunks()
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()


def digest(path, workdir=None) -> str:
    """Content hash; text files name their workdir (rendered task YAMLs hold absolute paths), so mask it."""
    if path.suffix == ".parquet":
        return parquet_digest(path)
    data = path.read_bytes()
    if workdir is not None:
        data = data.replace(str(workdir).encode(), b"<workdir>")
    return hashlib.sha256(data).hexdigest()


def compared_files(results):
    return sorted(
        p.relative_to(results)
        for p in results.rglob("*")
        if p.is_file()
        and not SKIPPED_PARTS & set(p.relative_to(results).parts)
        and p.name not in SKIPPED_NAMES
        and not p.name.startswith(".")
    )


def mismatches(reference, other) -> list[str]:
    ref_files, other_files = compared_files(reference), compared_files(other)
    problems = [f"missing: {p}" for p in sorted(set(ref_files) - set(other_files))]
    problems += [f"extra: {p}" for p in sorted(set(other_files) - set(ref_files))]
    for rel in sorted(set(ref_files) & set(other_files)):
        if digest(reference / rel, reference.parent) != digest(other / rel, other.parent):
            problems.append(f"differs: {rel}")
    return problems


def test_kill_left_no_partial_parquet(offline_resumed_run):
    at_kill = offline_resumed_run["at_kill"]
    results = offline_resumed_run["workdir"] / "results"
    traces_at_kill = [p for p in at_kill["final_parquet"] if p.startswith("results/traces/")]
    traces_at_end = [p for p in results.glob("traces/*/*.parquet") if not p.name.startswith(".")]
    assert len(traces_at_kill) < len(traces_at_end), "the kill came too late: every trace file was already written"
    assert at_kill["unreadable"] == []
    # kill -9 leaves the lock and the running job's incomplete markers: the README's command resumed
    # after --unlock, its --rerun-incomplete coming from the workflow profile
    assert at_kill["locks"] and at_kill["incomplete"]


def test_resumed_run_is_complete_and_clean(offline_resumed_run, smoke_run):
    results = offline_resumed_run["workdir"] / "results"
    assert not list((offline_resumed_run["workdir"] / ".snakemake" / "incomplete").glob("*"))
    for path in results.rglob("*.parquet"):
        if not path.name.startswith("."):
            pq.read_metadata(path)  # every final Parquet is whole
    leftovers = sorted(
        str(p.relative_to(results))
        for p in results.rglob(".*")
        if p.name != ".snakemake_timestamp" and "state" not in p.relative_to(results).parts
    )
    assert leftovers == [], f"temp files left at final locations after the resume: {leftovers}"


def test_resumed_run_equals_uninterrupted_run(offline_resumed_run, smoke_run):
    """Traces, eval samples, metrics, tables, checkpoints and circuits runs are identical."""
    problems = mismatches(smoke_run / "results", offline_resumed_run["workdir"] / "results")
    assert problems == [], "resumed run differs from the uninterrupted one:\n" + "\n".join(problems)


def test_tables_are_deterministic(offline_resumed_run, smoke_run):
    """The headline outputs alone, so a failure here is easy to read."""
    reference, other = smoke_run / "results", offline_resumed_run["workdir"] / "results"
    headline = sorted((reference / "tables").glob("*.csv")) + sorted((reference / "metrics").glob("*.parquet"))
    assert [str(p.relative_to(reference)) for p in headline] == HEADLINE
    different = [str(p.relative_to(reference)) for p in headline if digest(p) != digest(other / p.relative_to(reference))]
    assert different == []
