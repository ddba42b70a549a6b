"""Shared fixtures: a smoke-size run of the whole DAG, made once per test session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def offline_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def make_workdir(path: Path) -> Path:
    """A workdir that sees the repo's config/ (the Snakefile's configfile is workdir-relative)."""
    path.mkdir(parents=True, exist_ok=True)
    link = path / "config"
    if not link.exists():
        link.symlink_to(REPO / "config")
    return path


def run_snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 1200, **popen) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=offline_env(), timeout=timeout, **popen)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-6000:]}")
    return proc


SMOKE_ARGS = ("--cores", "2", "--configfile", str(REPO / "config" / "smoke.yaml"))


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """Workdir holding results/ of one complete smoke run (and its report)."""
    workdir = make_workdir(tmp_path_factory.mktemp("smoke"))
    run_snakemake(workdir, *SMOKE_ARGS)
    run_snakemake(workdir, *SMOKE_ARGS, "--report", "results/report.html")
    return workdir
