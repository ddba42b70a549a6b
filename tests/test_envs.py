"""envs/*.yaml (conda envs for the rules) pin exactly what pyproject.toml pins."""
from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from conftest import REPO

ENVS = REPO / "envs"
ENV_NAMES = ["torch", "eval", "plots"]
# Needed to run the workflow, not inside a rule's job.
WORKFLOW_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}


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
            f"envs/{env}.yaml pins {req.name}{req.specifier or ' (unpinned)'}, "
            f"pyproject.toml pins {pins[name] or '(unpinned)'}"
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
    assert script.is_file(), f"{script} installs grokpath into the env"
    assert "pip install" in script.read_text()


def test_every_rule_dependency_is_in_some_env():
    pins = pyproject_pins()
    covered = {canonicalize_name(r.name) for env in ENV_NAMES for r in pip_requirements(env_spec(env))}
    missing = set(pins) - covered - WORKFLOW_ONLY
    assert not missing, f"pyproject.toml dependencies in no envs/*.yaml: {sorted(missing)}"


def test_rules_name_existing_envs():
    """Each `conda:` directive in workflow/rules/*.smk points at a file in envs/."""
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for match in re.finditer(r"^\s*conda:\s*\n?\s*\"([^\"]+)\"", smk.read_text(), flags=re.M):
            target = (smk.parent / match.group(1)).resolve()
            assert target.is_file(), f"{smk.name}: conda env {match.group(1)} does not exist"
            assert target.parent == ENVS.resolve()
