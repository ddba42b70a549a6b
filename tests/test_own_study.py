"""Bring your own study: a standalone two-domain study config (domains ``algebra`` and ``python``) on a
tiny Qwen2-MoE (a dense middle layer) trained with transformers' Trainer and the pathway-monitor
callback, its checkpoints read from the Trainer's output directory (``checkpoints.source: local``)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import make_workdir, run_snakemake, word_tokenizer
from moe_zoo import tiny_moe, train_with_callback

from grokpath.io import read_metadata

OPS = ["+", "=", "def", "return", "(", ")", ":"]
DIGITS = [f"d{i}" for i in range(10)]
NAMES = [f"v{i}" for i in range(10)]
MINI_DOMAINS = ("math", "code", "commonsense", "domain")


def records(domain: str, split: str, n: int, rng) -> list[dict]:
    """Prompt/target records in the data contract: text == prompt + target + newline."""
    rows = []
    for i in range(n):
        if domain == "algebra":
            a, b = rng.integers(0, 5, 2)
            prompt, target = f"{DIGITS[a]} + {DIGITS[b]} =", DIGITS[a + b]
        else:
            name = NAMES[rng.integers(0, 10)]
            prompt, target = f"def {name} ( ) : return", name
        rows.append(
            {"sample_id": f"{domain}-{split}-{i:03d}", "prompt": prompt + " ", "target": target, "text": f"{prompt} {target}\n"}
        )
    return rows


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from grokpath.callbacks import PathwayMonitorCallback

    root = tmp_path_factory.mktemp("own_study")
    vocab = ["<pad>", "<bos>", "<eos>", "<unk>", *OPS, *DIGITS, *NAMES]
    tokenizer = word_tokenizer(vocab, bos="<bos>", unk="<unk>", pad="<pad>", eos="<eos>")
    rng = np.random.default_rng(0)
    domains = {}
    for domain in ("algebra", "python"):
        domains[domain] = {}
        for split, n in (("train", 12), ("validation", 6), ("test", 6)):
            path = root / "data" / domain / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in records(domain, split, n, rng)))
            domains[domain][split] = str(path)
    # the local lm-eval exact-match tasks read each domain's own test file
    domains["algebra"]["task"], domains["python"]["task"] = "grokpath_math", "grokpath_code"

    torch.manual_seed(0)
    model = tiny_moe("qwen2_moe", vocab_size=len(vocab), pad_token_id=0, bos_token_id=1, eos_token_id=2)
    train = []
    for domain in domains:
        for row in map(json.loads, open(domains[domain]["train"])):
            ids = tokenizer(row["text"])["input_ids"]
            train.append({"input_ids": torch.tensor(ids), "labels": torch.tensor(ids)})
    train = [t for t in train if len(t["input_ids"]) == len(train[0]["input_ids"])] or train[:1]
    probes = {d: [r["text"] for r in map(json.loads, open(domains[d]["train"]))][:6] for d in domains}
    callback = PathwayMonitorCallback(probes, tokenizer, root / "monitor")
    train_with_callback(model, train, callback, root / "run", max_steps=6, batch_size=4, lr=1e-2, processing_class=tokenizer)

    config = {
        "study": {"name": "algebra-python"},
        "checkpoints": {"source": "local", "local": {"dir": str(root / "run")}},
        "domains": domains,
        "traces": {"batch_size": 8, "max_length": 16},
        "memorization": {"epsilon_step": 0.5},
        "pathways": {"ablation_thresholds": [0.5, 0.7]},
        "evaluation": {"max_gen_toks": 2},
        "figures": {"dpi": 50},
    }
    study_yaml = root / "study.yaml"
    study_yaml.write_text(yaml.safe_dump(config))
    return root, study_yaml


def test_dry_run_plans_only_the_study_domains(study, tmp_path):
    root, study_yaml = study
    workdir = make_workdir(tmp_path / "w")
    out = run_snakemake(workdir, "-n", "--configfile", str(study_yaml)).stdout
    domains = set(re.findall(r"results/metrics/domains/([^/]+)/", out))
    assert domains == {"algebra", "python"}
    for name in MINI_DOMAINS:
        assert f"{name}_train.parquet" not in out and f"domains/{name}/" not in out
    assert not re.search(r"^(world|pretrain)\s+\d+$", out, re.MULTILINE)  # no mini world, no mini pretraining
    assert "results/traces/checkpoint-2/algebra_train.parquet" in out and "checkpoint-6" in out


@pytest.mark.e2e
def test_two_domain_study_end_to_end(study, tmp_path):
    root, study_yaml = study
    workdir = make_workdir(tmp_path / "w")
    targets = [
        "results/tables/correlations.csv",
        "results/metrics/consistency.parquet",
        "results/metrics/distances.parquet",
        "results/metrics/cross_distances.parquet",
    ]
    run_snakemake(workdir, "--cores", "2", *targets, "--configfile", str(study_yaml), timeout=1200)
    results = workdir / "results"
    assert sorted(p.name for p in (results / "traces").iterdir()) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    meta = read_metadata(results / "traces" / "checkpoint-4" / "python_train.parquet")
    assert meta["model_type"] == "qwen2_moe" and meta["layers"] == [0, 2] and meta["dense_layers"] == [1]
    distances = pd.read_parquet(results / "metrics" / "distances.parquet")
    assert set(distances["domain"]) == {"algebra", "python"}
    assert set(distances.loc[distances["layer"] >= 0, "layer"]) == {0, 2}  # real decoder-layer indices
    consistency = pd.read_parquet(results / "metrics" / "consistency.parquet")
    assert set(consistency["domain"]) == {"algebra", "python"} and set(consistency["step"]) == {2, 4, 6}
    assert np.isfinite(consistency["mean_cosine"]).all()
    table = pd.read_csv(results / "tables" / "correlations.csv")
    assert set(table["domain"]) == {"algebra", "python"}
    monitor = pd.read_parquet(root / "monitor" / "monitor.parquet")  # the callback recorded every save
    assert sorted(set(monitor["step"])) == [2, 4, 6] and set(monitor["domain"]) == {"algebra", "python"}
