"""envs/*.yaml (conda envs for the rules) pin exactly what pyproject.toml pins."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib

import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ENVS = REPO / "envs"
ENV_NAMES = ["torch", "eval", "plots"]
# Needed to run the workflow, not inside a rule's job.
# the driver's packages, and typer: the hand-run `grokpath` CLI, which no rule runs
WORKFLOW_ONLY = {"snakemake", "snakemake-executor-plugin-slurm", "typer"}


def pyproject_pins() -> dict[str, str]:
    """canonical name -> specifier string ('' when unpinned) of [project].dependencies."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in project["dependencies"]:
        req = Requirement(line)
        pins[canonicalize_name(req.name)] = str(req.specifier)
    return pins


def env_spec(name: str) -> dict:
    return yaml.safe_load((ENVS / f"{name}.yaml").read_text())


def pip_requirements(spec: dict) -> list[Requirement]:
    for entry in spec["dependencies"]:
        if isinstance(entry, dict) and "pip" in entry:
            return [Requirement(line) for line in entry["pip"]]
    return []


def conda_packages(spec: dict) -> dict[str, str]:
    """conda name -> version ('' when unversioned); 'python=3.11' -> {'python': '3.11'}."""
    out = {}
    for entry in spec["dependencies"]:
        if isinstance(entry, str):
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(?:==|=|>=)?\s*([0-9]\S*)?", entry)
            assert match, f"unparsable conda dependency {entry!r}"
            out[match.group(1)] = match.group(2) or ""
    return out


def test_pyproject_parses_and_pins_the_heavy_packages():
    pins = pyproject_pins()
    for name in ["torch", "transformers", "lm-eval", "pandas", "pyarrow"]:
        assert pins[name].startswith("=="), f"{name} must be pinned with == in pyproject.toml"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_env_pins_equal_pyproject(env):
    pins = pyproject_pins()
    spec = env_spec(env)
    reqs = pip_requirements(spec)
    assert reqs, f"envs/{env}.yaml has no pip section"
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"envs/{env}.yaml: {req.name} is not a dependency in pyproject.toml"
        assert str(req.specifier) == pins[name], (
            f"envs/{env}.yaml pins {req.name}{req.specifier or ' (unpinned)'}, pyproject.toml pins {pins[name] or '(unpinned)'}"
        )
    # No package is given both through conda and pip (two versions would fight).
    conda_names = {canonicalize_name(n) for n in conda_packages(spec)}
    assert not conda_names & {canonicalize_name(r.name) for r in reqs}


@pytest.mark.parametrize("env", ENV_NAMES)
def test_env_python_satisfies_requires_python(env):
    requires = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    python = conda_packages(env_spec(env)).get("python")
    assert python, f"envs/{env}.yaml must pin python"
    assert requires.contains(python + ".0"), f"envs/{env}.yaml python={python} violates requires-python {requires}"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_env_has_channels_and_post_deploy(env):
    spec = env_spec(env)
    assert spec["channels"][0] == "conda-forge"
    script = ENVS / f"{env}.post-deploy.sh"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    # installs grokpath editable, without touching the env's pinned packages
    assert re.search(r'^python -m pip install --no-deps --no-build-isolation -e "\$repo"$', text, re.M), f"{script.name}"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_post_deploy_refuses_a_directory_that_is_not_grokpath(env, tmp_path):
    """Run from the wrong directory, the script stops with one line before pip runs."""
    out = subprocess.run(
        ["bash", str(ENVS / f"{env}.post-deploy.sh")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ["PATH"], "GROKPATH_REPO": str(tmp_path)},
    )
    assert out.returncode == 1
    assert out.stderr == f"post-deploy: {tmp_path} is not the grokpath repository; set GROKPATH_REPO to it\n"


def test_every_rule_dependency_is_in_some_env():
    pins = pyproject_pins()
    covered = {canonicalize_name(r.name) for env in ENV_NAMES for r in pip_requirements(env_spec(env))}
    missing = set(pins) - covered - WORKFLOW_ONLY
    assert not missing, f"pyproject.toml dependencies in no envs/*.yaml: {sorted(missing)}"


def test_rules_name_existing_envs():
    """Every rule that runs a script has a `conda:` directive naming one of envs/<ENV_NAMES>.yaml, and each env is used."""
    used = set()
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        envs = re.findall(r"^\s*conda:\s*\n?\s*\"([^\"]+)\"", text, flags=re.M)
        assert len(envs) == len(re.findall(r"^\s*script:", text, flags=re.M)), f"{smk.name}: a rule without conda:"
        for env in envs:
            target = (smk.parent / env).resolve()
            assert target.parent == ENVS.resolve() and target.suffix == ".yaml", f"{smk.name}: conda env {env} is not in envs/"
            used.add(target.stem)
    assert used == set(ENV_NAMES)
    assert sorted(p.stem for p in ENVS.glob("*.yaml")) == sorted(ENV_NAMES)
