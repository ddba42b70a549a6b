"""Bad input fails early, names the problem, and deletes no existing result.

Config-level cases go through `snakemake -n` (they must fail while the DAG is built); data and checkpoint cases
run the first job for real (the traces rule on a `checkpoints.source: local` directory). Every case plants a
sentinel result first and checks it survives byte for byte.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, make_workdir, offline_env

MINI = REPO / "config" / "config.yaml"  # study configs stand alone: the smoke overlay names the mini study first
SMOKE = REPO / "config" / "smoke.yaml"
SENTINEL = "results/metrics/curves.parquet"
SENTINEL_BYTES = b"PAR1 sentinel: an existing result that no failing run may delete PAR1"
MESSAGES: dict[str, str] = {}  # case -> the line that names the problem (printed with -s for the docs)


def plant_sentinel(workdir):
    path = workdir / SENTINEL
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(SENTINEL_BYTES)


def run_bad(workdir, overlay: dict, *targets: str, dry_run: bool) -> subprocess.CompletedProcess:
    bad = workdir / "bad.yaml"
    bad.write_text(yaml.safe_dump(overlay))
    cmd = [
        *SNAKEMAKE,
        *targets,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "1",
        *(["-n"] if dry_run else []),
        "--configfile",
        str(MINI),
        str(SMOKE),
        str(bad),
    ]  # nargs="+": config files last
    return subprocess.run(cmd, capture_output=True, text=True, env=offline_env(), timeout=600)


def expect_failure(case: str, proc: subprocess.CompletedProcess, workdir, *fragments: str, jobs_run: int = 0) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{case}: snakemake succeeded\n{output[-3000:]}"
    for fragment in fragments:
        assert fragment in output, f"{case}: {fragment!r} not in the error\n{output[-4000:]}"
    lines = [next(line.strip() for line in output.splitlines() if f in line) for f in fragments]
    line = " / ".join(dict.fromkeys(lines))
    MESSAGES[case] = line
    print(f"| {case} | `{line}` |")
    assert (workdir / SENTINEL).read_bytes() == SENTINEL_BYTES, f"{case}: the existing result was touched"
    assert output.count("Finished jobid") == 0 and output.count("localrule ") + output.count("\nrule ") <= jobs_run


@pytest.fixture
def workdir(tmp_path):
    path = make_workdir(tmp_path / "work")
    plant_sentinel(path)
    return path


# ---- config level: snakemake -n fails while parsing, before any job ----


def test_unknown_config_key(workdir):
    proc = run_bad(workdir, {"pathways": {"threshhold": 0.7}}, dry_run=True)
    expect_failure("unknown config key `pathways.threshhold`", proc, workdir, "threshhold")


def test_wrong_config_type(workdir):
    proc = run_bad(workdir, {"pathways": {"threshold": "high"}}, dry_run=True)
    expect_failure("wrong type `pathways.threshold: high`", proc, workdir, "'high' is not of type 'number'", "threshold")


def test_missing_checkpoint_directory(workdir, tmp_path):
    missing = tmp_path / "no_such_checkpoints"
    proc = run_bad(workdir, {"checkpoints": {"source": "local", "local": {"dir": str(missing)}}}, dry_run=True)
    expect_failure("`checkpoints.local.dir` missing", proc, workdir, "checkpoints.local.dir", str(missing))


def test_revision_name_that_does_not_parse(workdir):
    proc = run_bad(workdir, {"checkpoints": {"source": "hf", "hf": {"revisions": ["step12-bogus"]}}}, dry_run=True)
    expect_failure("hf revision `step12-bogus`", proc, workdir, "step12-bogus", "does not parse")


def test_test_file_of_a_task_is_missing(workdir, tmp_path):
    missing = tmp_path / "no_such_test.jsonl"
    proc = run_bad(workdir, {"domains": {"math": {"test": str(missing)}}}, dry_run=True)
    expect_failure("task's test file (`domains.math.test`) missing", proc, workdir, "Missing input files", str(missing))


def test_task_yaml_including_a_missing_file(tmp_path):
    """A task YAML whose `include:` names a missing file: evaluation fails before loading a model."""
    from grokpath.evaluation import task_yaml_files

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "grokpath_math.yaml").write_text("include: _no_such_template.yaml\ntask: grokpath_math\n")
    with pytest.raises(FileNotFoundError) as err:
        task_yaml_files(tasks / "grokpath_math.yaml")
    assert "_no_such_template.yaml" in str(err.value)
    MESSAGES["task YAML includes a missing file"] = str(err.value)
    print(f"| task YAML includes a missing file | `{err.value}` |")


# ---- data level: the first job (traces) fails before the model load ----


@pytest.fixture
def local_study(smoke_run, tmp_path):
    """A `checkpoints.source: local` study on one smoke checkpoint and copies of the smoke world's data."""
    source = smoke_run / "results"
    ckpt = sorted((source / "checkpoints").iterdir())[-1].name
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(source / "checkpoints" / ckpt, checkpoints / ckpt)
    domains = {}
    for domain_dir in sorted((source / "world").iterdir()):
        if domain_dir.is_dir():
            copy = shutil.copytree(domain_dir, tmp_path / "data" / domain_dir.name)
            domains[domain_dir.name] = {s: str(copy / f"{s}.jsonl") for s in ("train", "validation", "test")}
    overlay = {"checkpoints": {"source": "local", "local": {"dir": str(checkpoints)}}, "domains": domains}
    return {"ckpt": ckpt, "dir": checkpoints / ckpt, "overlay": overlay, "domains": domains}


@pytest.mark.e2e
def test_corrupt_safetensors(workdir, local_study):
    weights = local_study["dir"] / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)
    domain = next(iter(local_study["domains"]))
    proc = run_bad(workdir, local_study["overlay"], f"results/traces/{local_study['ckpt']}/{domain}_train.parquet", dry_run=False)
    expect_failure("truncated `model.safetensors`", proc, workdir, "is corrupt or unreadable", str(weights), jobs_run=1)
    assert not (workdir / "results" / "traces" / local_study["ckpt"] / f"{domain}_train.parquet").exists()


@pytest.mark.e2e
def test_empty_domain_file(workdir, local_study):
    domain = next(iter(local_study["domains"]))
    empty = local_study["domains"][domain]["train"]
    open(empty, "w").close()
    proc = run_bad(workdir, local_study["overlay"], f"results/traces/{local_study['ckpt']}/{domain}_train.parquet", dry_run=False)
    expect_failure(f"empty `domains.{domain}.train`", proc, workdir, "holds no records", empty, jobs_run=1)
    assert "loading" not in (workdir / "results" / "logs" / "traces" / f"{local_study['ckpt']}.log").read_text()
