"""The stand-in of the real study: scripts/rehearse_real_study.sh runs config/olmoe.yaml's whole
DAG (data selection, Min-K%++ filter, hub fetch with hash checks, traces, LoRA, lm-eval on the four
benchmarks, the code sandbox, metrics, tables, figures) against a loopback stand-in hub, with every
other connection blocked."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, no_network_env

DOMAINS = ["math", "code", "commonsense", "domain"]
REPO_ID = "allenai/OLMoE-1B-7B-0924"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def study(tmp_path_factory, real_rows):
    workdir = tmp_path_factory.mktemp("rehearsal")
    env = no_network_env(tmp_path_factory.mktemp("no_network"))
    env.update(
        CORES="2", GROKPATH_REAL_ROWS=str(real_rows)
    )  # fetched (from PyPI) before the network is cut  # the script sets HF_HUB_OFFLINE=0 itself: its hub is on 127.0.0.1
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "rehearse_real_study.sh"), str(workdir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise AssertionError(f"rehearsal failed ({proc.returncode}):\n{proc.stderr[-8000:]}")
    store = workdir / "standin" / "hub" / REPO_ID / "refs" / "heads"
    shas = {p.name: p.read_text().strip() for p in store.iterdir() if p.name != "main"}
    with open(REPO / "config" / "olmoe_standin.yaml") as fh:
        overlay = yaml.safe_load(fh)
    return {
        "dir": workdir, "shas": shas, "overlay": overlay, "net_log": Path(env["GROKPATH_NET_LOG"]),
        "stderr": proc.stderr, "real_rows": real_rows,
    }  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_every_revision_was_fetched_verified_and_deleted_after_use(study):
    revisions = study["overlay"]["checkpoints"]["hf"]["revisions"]
    assert sorted(study["shas"]) == sorted(revisions)
    results = study["dir"] / "results"
    for rev in revisions:
        log = (results / "logs" / "fetch_checkpoint" / f"{rev}.log").read_text()
        assert f"commit {study['shas'][rev]}" in log and "files verified" in log
        assert not (results / "checkpoints" / rev).exists()  # temp(): gone once traces/tune/evaluate ran
    assert study["net_log"].read_text() == ""  # nothing tried to leave 127.0.0.1


def test_eval_sample_ids_equal_the_test_files_and_carry_the_hub_sha(study):
    results = study["dir"] / "results"
    for rev, sha in study["shas"].items():
        samples = pd.read_parquet(results / "eval" / rev / "samples.parquet")
        assert set(samples["revision_sha"]) == {sha}, rev
        for domain in DOMAINS:
            expected = sorted(r["sample_id"] for r in read_jsonl(results / "data" / domain / "test.jsonl"))
            got = sorted(samples.loc[samples["domain"] == domain, "sample_id"])
            assert got == expected and len(expected) > 0, (rev, domain)
    code = pd.read_parquet(results / "eval" / study_last(study) / "samples.parquet")
    code = code[code["domain"] == "code"]
    assert code["correct"].notna().all()  # the sandbox ran every program (allow_code_execution: true)


def study_last(study) -> str:
    return study["overlay"]["checkpoints"]["hf"]["revisions"][-1]


def test_contamination_filter_dropped_the_top_fraction(study):
    results = study["dir"] / "results" / "data"
    drop = yaml.safe_load((REPO / "config" / "olmoe.yaml").read_text())["data"]["contamination"]["drop_fraction"]
    scores = pd.read_parquet(results / "contamination.parquet")
    for domain in DOMAINS:
        before = read_jsonl(results / domain / "test_unfiltered.jsonl")
        after = read_jsonl(results / domain / "test.jsonl")
        dropped = {r["sample_id"] for r in before} - {r["sample_id"] for r in after}
        assert abs(len(dropped) - drop * len(before)) <= 1, (domain, len(before), len(dropped))
        assert len(dropped) >= 1 and {r["sample_id"] for r in after} <= {r["sample_id"] for r in before}
        mine = scores[scores["domain"] == domain]
        assert len(mine) == len(before)
        # the dropped ones are the highest scores
        kept_max = mine[~mine["sample_id"].isin(dropped)]["score"].max()
        assert mine[mine["sample_id"].isin(dropped)]["score"].min() >= kept_max


def test_every_table_with_a_checkpoint_carries_its_revision_sha(study):
    """A `ckpt` column comes with `revision_sha`, a `<x>_ckpt` column with `<x>_revision_sha`."""
    results = study["dir"] / "results"
    checked, missing = set(), []
    for path in sorted(results.rglob("*.parquet")) + sorted(results.rglob("*.csv")):
        if path.name.startswith(".") or "checkpoints" in path.parts:
            continue
        frame = pd.read_csv(path) if path.suffix == ".csv" else pq.read_table(path).to_pandas()
        for column in [c for c in frame.columns if c == "ckpt" or c.endswith("_ckpt")]:
            sha_column = column[: -len("ckpt")] + "revision_sha"
            if sha_column not in frame.columns:
                missing.append(f"{path.relative_to(results)}: {column} without {sha_column}")
                continue
            pairs = frame[[column, sha_column]].dropna(subset=[column]).drop_duplicates()
            for ckpt, sha in pairs.itertuples(index=False):
                assert sha == study["shas"][ckpt], (path.relative_to(results), column, ckpt)
            checked.add(path.relative_to(results).parts[0])
    assert missing == []
    assert {"traces", "eval", "metrics", "tables", "data"} <= checked


def test_figures_and_tables_were_made(study):
    results = study["dir"] / "results"
    from grokpath.figures import PAPER_A_FIGURES

    figures = sorted((results / "figures" / "paper_a").glob("*.png"))
    # no fig00 (the pretraining monitor is mini-only); every figure a real PNG with its PDF beside it
    assert [f.stem for f in figures] == sorted([*PAPER_A_FIGURES, "fig08_theory"])
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    assert all(f.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-" for f in figures)
    corr = pd.read_csv(next(results.rglob("correlations.csv")))
    assert set(corr["domain"]) == set(DOMAINS)
    assert not math.isnan(corr["n_checkpoints"].max())


def test_the_benchmarks_are_the_real_rows_and_the_checkpoint_the_olmo_tokenizer(study):
    """Commonsense test records are real CSQA questions, domain ones real MMLU college chemistry
    questions, code ones real HumanEval problems, in source order; the fetched checkpoints carry the
    OLMo tokenizer with OLMoE's padded vocabulary."""
    from datasets import load_from_disk

    from grokpath.standin.real_rows import CSQA_DIR, HUMANEVAL_FILE, MMLU_DIR, TOKENIZER_FILE

    data = study["dir"] / "results" / "data"
    n = study["overlay"]["data"]["n_test"]
    csqa = list(load_from_disk(str(study["real_rows"] / CSQA_DIR)))[:n]
    got = read_jsonl(data / "commonsense" / "test_unfiltered.jsonl")
    assert [(r["id"], r["question"], r["choices"], r["answerKey"]) for r in got] == [
        (r["id"], r["question"], r["choices"], r["answerKey"]) for r in csqa
    ]
    mmlu = list(load_from_disk(str(study["real_rows"] / MMLU_DIR / "test")))[:n]
    got = read_jsonl(data / "domain" / "test_unfiltered.jsonl")
    assert [(r["question"], r["choices"], r["answer"]) for r in got] == [(r["question"], r["choices"], r["answer"]) for r in mmlu]
    humaneval = read_jsonl(study["real_rows"] / HUMANEVAL_FILE)[:n]
    got = read_jsonl(data / "code" / "test_unfiltered.jsonl")
    assert [(r["task_id"], r["prompt"], r["test"]) for r in got] == [(r["task_id"], r["prompt"], r["test"]) for r in humaneval]
    # the checkpoint served (and fetched, hash-checked) carries the OLMo tokenizer and OLMoE's padded
    # vocabulary; the Min-K%++ job scored the test texts with the fetched checkpoint's tokenizer
    repo = study["dir"] / "standin" / "hub" / REPO_ID
    commit = json.loads((repo / "commits" / f"{study['shas'][study_last(study)]}.json").read_text())
    served = {f["path"]: repo / "objects" / f["object"] for f in commit["files"]}
    real = json.loads((study["real_rows"] / TOKENIZER_FILE).read_text())["model"]
    saved = json.loads(served["tokenizer.json"].read_text())["model"]
    assert saved["vocab"] == real["vocab"] and len(real["vocab"]) == 50280
    assert [m if isinstance(m, str) else " ".join(m) for m in saved["merges"]] == real["merges"]  # newer files list pairs
    assert json.loads(served["config.json"].read_text())["vocab_size"] == 50304
    from grokpath.standin.hub import olmo_tokenizer

    tok = olmo_tokenizer(study["real_rows"] / TOKENIZER_FILE)
    scores = pd.read_parquet(data / "contamination.parquet").set_index(["domain", "sample_id"])
    for r in read_jsonl(data / "commonsense" / "test_unfiltered.jsonl"):
        assert scores.loc[("commonsense", r["sample_id"]), "n_tokens"] == len(tok(r["text"])["input_ids"]) - 1
