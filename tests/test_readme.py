"""Every command README.md shows, run as written or as the cheap form of itself named in HOW.

The commands are read from README.md's fenced shell blocks, so a command cannot drift from its test:
a README command that HOW does not name fails, and so does a HOW entry the README no longer shows.
Long or networked commands run as dry runs (``snakemake -n``, inserted right after the program so that
it cannot become an argument of ``--configfile``), in a fresh view of the checkout, so that a developer's
own ``results/`` does not turn the plan into "nothing to be done". The real-SLURM run itself is
tests/test_slurm.py's; here the cluster command is dry-run through its profile.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, offline_env

from grokpath.checkpoints import checkpoint_names
from grokpath.config import deep_merge, load, validate
from grokpath.standin.real_rows import real_rows_ready

README = REPO / "README.md"
SHELL = {"bash", "sh", "shell", "console"}
DRY_RUN = "snakemake with -n added after the program"

QUICK_START = "bash scripts/bootstrap.sh && .venv/bin/snakemake --cores all"
TEST_COMMAND = "bash scripts/bootstrap.sh && bash scripts/test.sh"
UNLOCK = ".venv/bin/snakemake --unlock"
OWN_STUDY = (
    ".venv/bin/snakemake --cores all results/tables/correlations.csv results/metrics/consistency.parquet"
    " --configfile my_study.yaml"
)
REHEARSAL = "scripts/rehearse_real_study.sh rehearsal/"
CLUSTER = ".venv/bin/snakemake --profile profiles/slurm --configfile config/olmoe.yaml"

# README command -> how this file runs it (each in a fresh view of the checkout unless said otherwise)
HOW = {
    QUICK_START: f"bootstrap.sh as written where it installs nothing (else a named skip); {DRY_RUN}",
    TEST_COMMAND: "bootstrap.sh as written; test.sh with all its lint, its pytest limited to --collect-only of this file; repo root",
    UNLOCK: "as written",
    OWN_STUDY: f"{DRY_RUN}; README's my_study.yaml verbatim, two Trainer-named checkpoints and the domains' JSONL files",
    REHEARSAL: "with -n appended (its extra arguments go to snakemake): builds the stand-in hub, dry-runs the real DAG",
    CLUSTER: f"{DRY_RUN}: the slurm profile and olmoe.yaml plan every job, no cluster or network needed",
}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every ``` block."""
    return [(m[1].strip().lower(), m[2]) for m in re.finditer(r"^```([^\n]*)\n(.*?)^```", text, re.M | re.S)]


def commands(body: str) -> list[str]:
    """One command per logical line of a shell block, comments dropped, words joined by single spaces."""
    found = []
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            found.append(" ".join(words))
    return found


def readme_commands() -> list[str]:
    return [c for lang, body in fenced_blocks(README.read_text()) if lang in SHELL for c in commands(body)]


def steps(command: str) -> list[str]:
    return [s.strip() for s in command.split("&&")]


def shown(command: str) -> str:
    """``command`` as the README shows it; fails here when the README no longer does."""
    assert command in readme_commands(), f"README.md no longer shows `{command}`: update HOW in tests/test_readme.py"
    return command


def with_dry_run(command: str) -> str:
    """``command`` with -n right after every snakemake program."""
    out = []
    for step in steps(command):
        words = step.split()
        if Path(words[0]).name == "snakemake":
            words.insert(1, "-n")
        out.append(" ".join(words))
    return " && ".join(out)


def run(command: str, cwd: Path, timeout: int = 300) -> tuple[int, str]:
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, env=offline_env(), timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table: rule -> number of jobs."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def planned_domains(output: str) -> set[str]:
    return set(re.findall(r"results/metrics/domains/([^/\s,]+)/", output))


def bootstrap_would_install() -> str | None:
    """What scripts/bootstrap.sh would still download here (None: it installs nothing and takes seconds)."""
    stamp = REPO / ".venv" / f".grokpath-{hashlib.sha256((REPO / 'pyproject.toml').read_bytes()).hexdigest()[:16]}"
    if not stamp.is_file():
        return f"{stamp} is missing: bootstrap.sh would pip-install the project"
    rows = Path(os.environ.get("GROKPATH_REAL_ROWS") or REPO / ".cache" / "real-rows")
    if not real_rows_ready(rows):
        return f"{rows} is not filled: bootstrap.sh would download the real-row wheels"
    return None


def needs_installed() -> None:
    missing = bootstrap_would_install()
    if missing:
        pytest.skip(f"run `bash scripts/bootstrap.sh` once first ({missing})")


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A fresh view of the checkout: its files linked in, no results/ or .snakemake/ of earlier runs."""
    view = tmp_path / "checkout"
    view.mkdir()
    skip = {"results", ".snakemake", "rehearsal", ".git", ".pytest_cache", ".ruff_cache"}
    for entry in REPO.iterdir():
        if entry.name not in skip:
            (view / entry.name).symlink_to(entry)
    return view


# ---- the README's own shape -------------------------------------------------------------


def test_every_readme_command_is_known():
    in_readme = readme_commands()
    assert len(in_readme) == len(set(in_readme)), "a command is shown twice"
    assert set(in_readme) - set(HOW) == set(), "README commands without a test: add them to HOW in tests/test_readme.py"
    assert set(HOW) - set(in_readme) == set(), "HOW names commands the README no longer shows"


def test_quick_start_is_exactly_two_commands_and_ci_runs_the_second():
    quick = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = [body for lang, body in fenced_blocks(quick) if lang in SHELL]
    assert [commands(body) for body in blocks][0] == [QUICK_START, TEST_COMMAND]
    ci = [c for c in commands((REPO / ".ci" / "run").read_text()) if not c.startswith(("set ", "cd "))]
    assert ci == [TEST_COMMAND]


def test_readme_is_short_and_in_a_newcomers_order():
    """What the tool does, the two commands, what you get, then use, the real study, cluster, layout, tests."""
    text = README.read_text()
    assert len(text.splitlines()) <= 220
    assert re.findall(r"^## (.+)$", text, re.M) == [
        "Quick start",
        "What you get",
        "Use grokpath on your own MoE",
        "The real study",
        "On a cluster",
        "Layout",
        "Tests",
    ]
    assert text.index("Find *grokking*") < text.index("## Quick start")


def test_prose_names_only_tested_commands():
    """A command written inline in prose must be a tested command, or a step of one."""
    text = re.sub(r"^```.*?^```", "", README.read_text(), flags=re.M | re.S)
    known = set(HOW) | {s for c in HOW for s in steps(c)}
    prefixes = (".venv/bin/", "bash ", "snakemake ", "python ", "python3 ", "pip ", "grokpath ", "pytest ", "sbatch ")
    inline = [span for span in re.findall(r"`([^`\n]+)`", text) if span.startswith(prefixes) or re.match(r"scripts/\S+ ", span)]
    assert [span for span in inline if span not in known] == []


def configfile_arguments(text: str) -> list[list[str]]:
    """The words each `--configfile` takes: everything up to the next option, the end of a code span or line."""
    found = []
    for m in re.finditer(r"--configfile\s+([^`\n]*)", text):
        words = []
        for word in m[1].split():
            if word.startswith("-") or word in {"&&", "|", ";", "#", "\\"}:
                break
            words.append(word.strip("\"'),.;:"))
        found.append(words)
    return found


DOCS = [README, REPO / "config" / "README.md", REPO / "profiles" / "README.md", REPO / "bench" / "README.md"]


@pytest.mark.parametrize(
    "doc", [*DOCS, *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "notebooks").glob("*.ipynb"))], ids=lambda p: p.name
)
def test_configfile_is_given_only_config_files(doc):
    """`--configfile` takes every following word as a config file, so a target after it is a missing file."""
    for words in configfile_arguments(doc.read_text()):
        assert words and all(w.endswith((".yaml", ".yml")) for w in words), f"{doc.name}: --configfile {' '.join(words)}"


def test_configfile_check_catches_a_target_after_the_config():
    assert configfile_arguments("`snakemake --configfile my_study.yaml results/tables/correlations.csv`") == [
        ["my_study.yaml", "results/tables/correlations.csv"]
    ]
    assert configfile_arguments("--configfile config/config.yaml config/smoke.yaml --cores 2") == [
        ["config/config.yaml", "config/smoke.yaml"]
    ]


# ---- the commands ---------------------------------------------------------------------------
# One after another: bootstrap.sh and the rehearsal rewrite .cache/real-rows, and two such writers at once fail.


def test_quick_start_plans_the_whole_default_study(checkout):
    needs_installed()
    rc, out = run(with_dry_run(shown(QUICK_START)), checkout)
    assert rc == 0, out[-4000:]
    assert "grokpath environment ready" in out and "This was a dry-run" in out
    config = load(REPO / "config" / "config.yaml")
    ckpts = checkpoint_names(config)
    jobs = job_counts(out)
    assert jobs["world"] == jobs["pretrain"] == jobs["all"] == 1
    assert jobs["traces"] == jobs["evaluate"] == jobs["metrics"] == jobs["analysis"] == 1  # the mini study: one job per stage
    assert not {"memorization", "pathways", "groups", "metrics_gather", "samples", "correlations", "figures_paper_a"} & set(jobs)
    assert jobs["circuits_sweep"] == jobs["circuits_figures"] == 1 and "circuits_train" not in jobs
    assert planned_domains(out) == set(config["domains"])
    assert all(f"results/traces/{ckpt}/" in out for ckpt in ckpts)


def test_test_command_lints_and_collects():
    needs_installed()
    rc, out = run(f"{shown(TEST_COMMAND)} --collect-only -q tests/test_readme.py", REPO)
    assert rc == 0, out[-4000:]
    assert "All checks passed!" in out  # ruff check
    assert re.search(r"\d+ files? already formatted", out)  # ruff format --check
    assert "tests/test_readme.py::test_every_readme_command_is_known" in out
    assert re.search(r"\d+ tests? collected", out)


def test_unlock_runs_as_written(checkout):
    rc, out = run(shown(UNLOCK), checkout)
    assert rc == 0, out[-4000:]
    assert "Unlocked working directory." in out


def test_own_study_plans_only_its_domains_and_targets(checkout):
    from transformers import Qwen3MoeConfig

    study_block = [body for lang, body in fenced_blocks(README.read_text()) if body.startswith("# my_study.yaml\n")]
    assert len(study_block) == 1, "README.md shows no `# my_study.yaml` block"
    (checkout / "my_study.yaml").write_text(study_block[0])
    study = yaml.safe_load(study_block[0])
    run_dir = checkout / study["checkpoints"]["local"]["dir"]
    for step in (1000, 2000):  # what transformers.Trainer writes: <output_dir>/checkpoint-<step>/config.json, ...
        Qwen3MoeConfig(hidden_size=32, num_hidden_layers=2, num_experts=4, num_experts_per_tok=2).save_pretrained(
            run_dir / f"checkpoint-{step}"
        )
    for domain, files in study["domains"].items():
        for split in ("train", "validation", "test"):
            path = checkout / files[split]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                f'{{"sample_id": "{domain}-{split}-0", "prompt": "1 + 1 =", "target": " 2", "text": "1 + 1 = 2\\n"}}\n'
            )

    rc, out = run(with_dry_run(shown(OWN_STUDY)), checkout)
    assert rc == 0, out[-4000:]
    jobs = job_counts(out)
    assert jobs["traces"] == jobs["evaluate"] == 2 and jobs["correlations"] == 1
    assert not {"world", "pretrain", "all"} & set(jobs) and not any(rule.startswith("circuits") for rule in jobs)
    assert planned_domains(out) == set(study["domains"]) == {"algebra", "python"}
    assert "results/traces/checkpoint-1000/algebra_train.parquet" in out and "results/traces/checkpoint-2000/" in out


def test_rehearsal_builds_the_standin_hub_and_plans_the_real_dag(checkout):
    needs_installed()  # the rehearsal fetches the real rows as bootstrap.sh does
    rc, out = run(f"{shown(REHEARSAL)} -n", checkout)
    assert rc == 0, out[-4000:]
    assert re.search(r"stand-in hub at http://127\.0\.0\.1:\d+", out) and "This was a dry-run" in out
    config = {}
    for name in ("olmoe.yaml", "olmoe_standin.yaml"):
        config = deep_merge(config, yaml.safe_load((REPO / "config" / name).read_text()))
    revisions = checkpoint_names(validate(config))
    jobs = job_counts(out)
    assert jobs["fetch_checkpoint"] == jobs["traces"] == jobs["evaluate"] == len(revisions)
    assert jobs["select_data"] > 0 and jobs["contamination"] == 1 and jobs["tune"] > 0
    assert (checkout / "rehearsal" / "standin" / "hub").is_dir()


def test_cluster_command_plans_the_real_study_through_the_slurm_profile(checkout):
    rc, out = run(with_dry_run(shown(CLUSTER)), checkout)
    assert rc == 0, out[-4000:]
    assert "Using profiles profiles/slurm" in out and "slurm_partition=" in out
    revisions = load(REPO / "config" / "olmoe.yaml")["checkpoints"]["hf"]["revisions"]
    jobs = job_counts(out)
    assert jobs["fetch_checkpoint"] == jobs["traces"] == jobs["evaluate"] == len(revisions) == 10
    assert jobs["select_data"] > 0 and jobs["tune"] > 0
    assert all(f"results/traces/{rev}/" in out for rev in revisions)
