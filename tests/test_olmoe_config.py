"""config/olmoe.yaml is a study config on its own: read as the Snakefile reads a --configfile (without
config/config.yaml), it has the real study's values, and its DAG dry-runs on a fresh tree."""

from __future__ import annotations

import copy
import math
import re

import pytest
import yaml
from conftest import REPO, make_workdir, run_snakemake
from snakemake.utils import update_config

from grokpath.checkpoints import checkpoint_names, parse_step
from grokpath.config import load_schema, validate

PAPER_STEPS = [5000, 125000, 245000, 370000, 490000, 615000, 735000, 855000, 980000, 1100000]
DOMAINS = ["math", "code", "commonsense", "domain"]


def load(*names: str) -> dict:
    """As the Snakefile reads them: the given study files merged with Snakemake's own update_config
    (config.yaml only when none is given), then validated."""
    merged: dict = {}
    for name in names or ("config.yaml",):
        with open(REPO / "config" / name) as fh:
            update_config(merged, yaml.safe_load(fh))
    return validate(merged, load_schema())


@pytest.fixture(scope="module")
def base():
    return load()


@pytest.fixture(scope="module")
def olmoe():
    return load("olmoe.yaml")


def test_the_paper_revisions(olmoe):
    names = checkpoint_names(olmoe)
    assert [parse_step(n) for n in names] == PAPER_STEPS
    assert names == [f"step{s}-tokens{math.floor(s * 4096 * 1024 / 1e9)}B" for s in PAPER_STEPS]
    assert names[0] == "step5000-tokens20B" and names[1] == "step125000-tokens524B"
    hf = olmoe["checkpoints"]["hf"]
    assert olmoe["checkpoints"]["source"] == "hf" and hf["repo_id"] == "allenai/OLMoE-1B-7B-0924"
    assert "*.safetensors" in hf["allow_patterns"] and "config.json" in hf["allow_patterns"]
    assert "tokenizer.json" in hf["allow_patterns"] and not any(p in hf["allow_patterns"] for p in ("*", "*.json", "*.md"))


def test_whole_text_loss_bf16_on_cuda(olmoe, base):
    traces = olmoe["traces"]
    assert traces["loss_on"] == "all" and base["traces"]["loss_on"] == "target"  # config.yaml's mini value is undone
    assert traces["device"] == "cuda" and traces["dtype"] == "bfloat16" and traces["max_length"] == 2048
    evaluation = olmoe["evaluation"]
    assert evaluation["device"].startswith("cuda") and evaluation["dtype"] == "bfloat16"
    assert evaluation["max_gen_toks"] >= 512 and base["evaluation"]["max_gen_toks"] == 4


def test_lora_on_and_code_execution_off(olmoe):
    evaluation = olmoe["evaluation"]
    assert evaluation["tuning"] == "lora" and evaluation["allow_code_execution"] is False
    lora = evaluation["lora"]
    assert (lora["r"], lora["dropout"], lora["lr"], lora["batch_size"], lora["max_length"], lora["epochs"]) == (
        32,
        0.1,
        5e-5,
        4,
        2048,
        3,
    )
    assert lora["target_modules"] == ["q_proj", "k_proj", "v_proj"]
    text = (REPO / "config" / "olmoe.yaml").read_text()
    # the comment right above the key says how to opt in
    assert re.search(r"#[^\n]*opt in[^\n]*\n(\s*#[^\n]*\n)*\s*allow_code_execution: false", text)


def test_gpu_rules_and_10k_sample_resources(olmoe, base):
    res = olmoe["resources"]
    for rule in ("traces", "tune", "evaluate", "contamination"):
        assert res[rule]["gpu"] == 1, rule
        assert res[rule]["mem_mb"] >= 32000, rule
    for rule in ("pathways", "cross_distances"):
        assert res[rule] != base["resources"][rule]  # config.yaml's 2-core sizes are undone
        assert res[rule]["threads"] >= 8 and res[rule]["mem_mb"] >= 16000 and res[rule]["runtime"] >= 240, rule
    assert res["fetch_checkpoint"]["gpu"] == 0


def test_data_stage_is_the_real_one(olmoe):
    data = olmoe["data"]
    assert data["source"] == "hub" and data["n_train"] == 10000
    assert data["contamination"]["drop_fraction"] == 0.1 and data["contamination"]["k_percent"] == 20
    for domain in DOMAINS:
        for split in ("train", "validation", "test"):
            assert olmoe["domains"][domain][split] == f"results/data/{domain}/{split}.jsonl"


def test_no_mini_world_value_survives_the_merge(olmoe, base):
    """Every setting config.yaml tunes for the mini world is set back by olmoe.yaml."""
    mini_only = [
        ("traces", "loss_on"),
        ("traces", "max_length"),
        ("traces", "device"),
        ("traces", "dtype"),
        ("evaluation", "max_gen_toks"),
        ("evaluation", "device"),
        ("evaluation", "tuning"),
        ("resources", "pathways"),
        ("resources", "cross_distances"),
        ("study", "name"),
        ("checkpoints", "source"),
    ]
    for section, key in mini_only:
        assert olmoe[section][key] != base[section][key], f"{section}.{key} keeps the mini value {base[section][key]!r}"


def test_delete_weights_after_use_is_offered(olmoe):
    assert olmoe["checkpoints"]["hf"]["delete_weights_after_use"] is False
    cfg = copy.deepcopy(olmoe)
    cfg["checkpoints"]["hf"]["delete_weights_after_use"] = True
    assert validate(cfg, load_schema())["checkpoints"]["hf"]["delete_weights_after_use"] is True


def job_counts(stdout: str) -> dict[str, int]:
    """Snakemake's dry-run 'Job stats' table as {rule: count}."""
    table = stdout.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_dry_run_on_a_fresh_tree_lists_the_whole_study(tmp_path):
    workdir = make_workdir(tmp_path / "fresh")
    proc = run_snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "olmoe.yaml"), timeout=600)
    assert "MissingInputException" not in proc.stdout + proc.stderr
    counts = job_counts(proc.stdout)
    n_ckpt, n_domain = 10, len(DOMAINS)
    assert counts["fetch_checkpoint"] == n_ckpt and counts["traces"] == n_ckpt and counts["evaluate"] == n_ckpt
    assert counts["tune"] >= n_ckpt and counts["tune"] % n_ckpt == 0  # one adapter per (checkpoint, tuning set)
    assert counts["select_data"] == n_domain and counts["contamination"] == 1
    for rule in ("memorization", "pathways", "consistency", "onset", "groups"):
        assert counts[rule] == n_domain, rule
    assert any(rule.startswith("figure") or "figures" in rule for rule in counts), sorted(counts)
    assert "pretrain" not in counts and "world" not in counts  # no mini world in the real study
