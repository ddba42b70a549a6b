"""Workflows through a real single-node SLURM (tests/slurm/run_local_slurm.sh) and profiles/slurm.

Skipped unless GROKPATH_SLURM_TESTS=1 or CI=true: the harness installs slurm-wlm and munge
when missing (root + apt) and starts private daemons. Checks that every job went through
sbatch, that each checkpoint's grouped jobs ran in one allocation, and that the outputs
equal (sha256) those of a local run.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, make_workdir, offline_env

HARNESS = REPO / "tests" / "slurm" / "run_local_slurm.sh"
TRIVIAL_SNAKEFILE = REPO / "tests" / "slurm" / "Snakefile"
PROFILE = REPO / "profiles" / "slurm"
# A cluster without slurmdbd: no sacct, no accounts. Poll soon, the jobs are short.
LOCAL_CLUSTER_ARGS = (
    "--slurm-status-command",
    "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "3",
    "--slurm-keep-successful-logs",
)

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not (os.environ.get("GROKPATH_SLURM_TESTS") == "1" or os.environ.get("CI") == "true"),
        reason="real SLURM test: set GROKPATH_SLURM_TESTS=1 (or CI=true)",
    ),
    pytest.mark.skipif(
        os.geteuid() != 0 and shutil.which("slurmctld") is None,
        reason="needs root to install slurm-wlm/munge and run slurmctld",
    ),
]

SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
OUTPUT_LINE = re.compile(r"^\s*output: (.+)$", re.M)
GROK_JOB_ID = re.compile(r"^SLURM_JOB_ID=(\S+)$", re.M)


def snakemake_through_slurm(snakefile: Path, workdir: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    cmd = [
        str(HARNESS),
        "--",
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(snakefile),
        "--directory",
        str(workdir),
        "--profile",
        str(PROFILE),
        *LOCAL_CLUSTER_ARGS,
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=offline_env(), timeout=timeout)
    (workdir / "slurm_run.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"SLURM run failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-8000:]}"
    return proc


def snakemake_local(snakefile: Path, workdir: Path, *args: str, timeout: int) -> None:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=offline_env(), timeout=timeout)
    assert proc.returncode == 0, f"local run failed: {' '.join(cmd)}\n{proc.stderr[-6000:]}"


def outputs_run(main_log: str) -> set[str]:
    """Every output path of every job that the main snakemake scheduled."""
    return {path.strip() for line in OUTPUT_LINE.findall(main_log) for path in line.split(",")}


def outputs_in_slurm_logs(workdir: Path) -> set[str]:
    """Output paths of the jobs that ran inside SLURM jobs (the plugin's per-job logs)."""
    found = set()
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        found |= outputs_run(log.read_text())
    return found


def sha256_tree(root: Path, patterns: list[str]) -> dict[str, str]:
    digests = {}
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            if path.is_file():
                digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def assert_all_jobs_went_through_sbatch(proc: subprocess.CompletedProcess, workdir: Path) -> list[tuple[str, str]]:
    main_log = proc.stdout + proc.stderr
    submitted = SUBMITTED.findall(main_log)
    assert submitted, "no job was submitted through sbatch"
    for jobid, slurm_log in submitted:
        assert Path(slurm_log).is_file(), f"SLURM job {jobid}: log {slurm_log} missing"
    scheduled = outputs_run(main_log)
    ran_in_slurm = outputs_in_slurm_logs(workdir)
    missing = scheduled - ran_in_slurm
    assert not missing, f"jobs that did not run inside a SLURM job: {sorted(missing)[:10]}"
    return submitted


def test_trivial_workflow_through_sbatch(tmp_path):
    """tests/slurm/Snakefile: pretrain -> per-checkpoint group (traces, evaluate) -> summary."""
    slurm_dir, local_dir = tmp_path / "slurm", tmp_path / "local"
    slurm_dir.mkdir()
    local_dir.mkdir()
    proc = snakemake_through_slurm(TRIVIAL_SNAKEFILE, slurm_dir, timeout=600)
    submitted = assert_all_jobs_went_through_sbatch(proc, slurm_dir)

    # pretrain, one group per checkpoint, summary: 4 sbatch calls for 6 jobs.
    log_dirs = sorted({Path(log).parent.name for _, log in submitted})
    assert log_dirs == [
        "group_ckpt_step000001_evaluate_traces",
        "group_ckpt_step000002_evaluate_traces",
        "rule_pretrain",
        "rule_summary",
    ]
    assert len(submitted) == 4

    # Each job recorded the SLURM job it ran in: grouped jobs share one per checkpoint.
    def job_id(rule: str, name: str) -> str:
        ids = GROK_JOB_ID.findall((slurm_dir / "results" / "logs" / rule / f"{name}.log").read_text())
        assert len(ids) == 1 and ids[0].isdigit(), f"{rule}/{name} did not run in a SLURM job: {ids}"
        return ids[0]

    for ckpt in ("step000001", "step000002"):
        assert job_id("traces", ckpt) == job_id("evaluate", ckpt)
    assert job_id("traces", "step000001") != job_id("traces", "step000002")
    assert len({job_id("pretrain", "pretrain"), job_id("summary", "summary"), job_id("traces", "step000001")}) == 3

    snakemake_local(TRIVIAL_SNAKEFILE, local_dir, timeout=300)
    patterns = ["results/checkpoints/*/*.txt", "results/traces/*.txt", "results/eval/*.txt", "results/summary.txt"]
    slurm_hashes, local_hashes = sha256_tree(slurm_dir, patterns), sha256_tree(local_dir, patterns)
    assert len(slurm_hashes) == 7
    assert slurm_hashes == local_hashes


# The paper A spine of the smoke DAG, kept to a few sbatch calls: world, pretrain, traces,
# evaluate and metrics (one job each for the mini study; the memorization table is metrics' output).
# Figures, tables and paper B add minutes under SLURM; test_e2e covers them.
SMOKE_TARGETS = ["results/traces/*/*.parquet", "results/eval/*/samples.parquet", "results/metrics/memorization.parquet"]
MINI_CONFIG = REPO / "config" / "config.yaml"  # study configs stand alone: the smoke overlay names the mini study first
SMOKE_CONFIG = REPO / "config" / "smoke.yaml"


@pytest.mark.e2e
def test_smoke_pipeline_through_sbatch(tmp_path, smoke_run):
    """The real Snakefile on config/smoke.yaml through profiles/slurm equals the local smoke run."""
    local_hashes = sha256_tree(smoke_run, SMOKE_TARGETS)
    assert any(p.startswith("results/traces/") for p in local_hashes), "local smoke run wrote no traces"
    assert any(p.startswith("results/eval/") for p in local_hashes), "local smoke run wrote no eval samples"
    assert "results/metrics/memorization.parquet" in local_hashes

    workdir = make_workdir(tmp_path / "smoke_slurm")
    # Targets before --configfile, which takes one or more values.
    proc = snakemake_through_slurm(
        REPO / "Snakefile", workdir, *sorted(local_hashes), "--configfile", str(MINI_CONFIG), str(SMOKE_CONFIG), timeout=900
    )
    submitted = assert_all_jobs_went_through_sbatch(proc, workdir)
    # the mini study's checkpoints all go through one trace job and one evaluation job, so no per-checkpoint
    # group (test_trivial_workflow_through_sbatch checks those groups)
    log_dirs = {Path(log).parent.name for _, log in submitted}
    assert {"rule_traces", "rule_evaluate", "rule_metrics"} <= log_dirs, sorted(log_dirs)
    assert not [d for d in log_dirs if d.startswith("group_ckpt_")], sorted(log_dirs)
    assert len({Path(p).parts[2] for p in local_hashes if p.startswith("results/traces/")}) > 1  # several checkpoints

    slurm_hashes = sha256_tree(workdir, SMOKE_TARGETS)
    assert set(slurm_hashes) == set(local_hashes)
    differing = sorted(path for path in slurm_hashes if slurm_hashes[path] != local_hashes[path])
    assert not differing, f"SLURM and local outputs differ: {differing}"
