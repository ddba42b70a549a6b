"""lm-eval evaluation per checkpoint, on a tiny OLMoE saved in tmp_path: the mini tasks and the benchmark tasks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import tiny_olmoe, word_tokenizer

from grokpath.config import validate
from grokpath.evaluation import DEFAULT_TASKS_DIR, domain_tasks, run_evaluation, task_yaml_files

DIGITS = [str(i) for i in range(10)]
VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>", "+", "="] + DIGITS
MEMORIZED = 6  # the first MEMORIZED test pairs are trained on, so some answers are right


def pairs(n: int) -> list[tuple[int, int]]:
    return [(i % 10, (3 * i + 1) % 10) for i in range(n)]


def make_tokenizer():
    return word_tokenizer(VOCAB, bos="<bos>", unk="<unk>", pad="<pad>", eos="<eos>")


def make_model(vocab_size: int = len(VOCAB), max_positions: int = 64, router_logits: bool = True):
    """A seeded tiny OLMoE; ``router_logits`` as the mini pretraining saves it (aux loss on)."""
    return tiny_olmoe(
        vocab_size=vocab_size,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        output_router_logits=router_logits,
    )


def memorize(model, tokenizer, examples: list[tuple[int, int]], steps: int = 150) -> None:
    """Fit `<bos> a + b = c <eos>` with loss on `c <eos>`: just enough to get some answers right."""
    ids = torch.tensor([tokenizer.encode(f"{a} + {b} = {(a + b) % 10}") + [tokenizer.eos_token_id] for a, b in examples])
    labels = ids.clone()
    labels[:, :5] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def write_test_set(path: Path, examples: list[tuple[int, int]], domain: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for i, (a, b) in enumerate(examples):
            prompt, target = f"{a} + {b} =", f" {(a + b) % 10}"
            fh.write(
                json.dumps({"sample_id": f"{domain}-{i:03d}", "prompt": prompt, "target": target, "text": prompt + target + "\n"})
                + "\n"
            )
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ckpt") / "step000100"
    tokenizer, model = make_tokenizer(), make_model()
    memorize(model, tokenizer, pairs(MEMORIZED))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "provenance.json").write_text(
        json.dumps({"step": 100, "source": "mini", "revision": None, "revision_sha": "0123abcd" * 5})
    )
    return out


def eval_cfg(**evaluation) -> dict:
    cfg = validate({"evaluation": evaluation, "domains": {"math": {}}})
    return {"evaluation": cfg["evaluation"], "domains": cfg["domains"]}


def test_domain_tasks_default_and_override():
    assert domain_tasks({"math": {}, "domain": {"task": "mmlu_college_chemistry"}}) == {
        "math": "grokpath_math",
        "domain": "mmlu_college_chemistry",
    }
    with pytest.raises(ValueError, match="both name lm-eval task 'x'"):
        domain_tasks({"a": {"task": "x"}, "b": {"task": "x"}})


def test_shipped_task_yamls_index_in_lm_eval():
    from lm_eval.tasks import TaskManager

    names = {f"grokpath_{d}" for d in ("math", "code", "commonsense", "domain")}
    indexed = set(TaskManager(include_path=str(DEFAULT_TASKS_DIR), include_defaults=False).all_tasks)
    assert names | {"grokpath"} <= indexed
    files = task_yaml_files(DEFAULT_TASKS_DIR / "grokpath_math.yaml")
    assert [f.name for f in files] == ["grokpath_math.yaml", "_grokpath_template_yaml"]


def test_run_evaluation_one_local_task(checkpoint, tmp_path):
    n = 12
    test_file = write_test_set(tmp_path / "world" / "math" / "test.jsonl", pairs(n), "math")
    out = tmp_path / "eval" / "step000100"
    frame = run_evaluation(
        eval_cfg(batch_size=8, max_gen_toks=3), checkpoint, "step000100", out, test_files={"math": test_file}, threads=1
    )

    saved = pd.read_parquet(out / "samples.parquet")
    assert list(saved.columns) == ["ckpt", "step", "revision_sha", "domain", "sample_id", "correct", "response", "target"]
    assert len(saved) == n and saved["sample_id"].tolist() == [f"math-{i:03d}" for i in range(n)]
    assert saved["correct"].dtype == bool and saved["step"].dtype == "int64"
    assert set(saved["ckpt"]) == {"step000100"} and set(saved["step"]) == {100}
    assert set(saved["revision_sha"]) == {"0123abcd" * 5}
    pd.testing.assert_frame_equal(saved, frame.astype(saved.dtypes.to_dict()), check_dtype=False)
    # lm-eval's exact_match (both sides stripped) agrees with our reading of the response
    consistent = [r.strip() == t.strip() for r, t in zip(saved["response"], saved["target"])]
    assert saved["correct"].tolist() == consistent
    # the memorized half is (mostly) right and the rest is not all right: a real mix to check against
    assert 0 < saved["correct"].sum() < n
    results = json.loads((out / "lm_eval.json").read_text())
    assert "samples" not in results
    assert results["results"]["grokpath_math"]["exact_match,strip"] == pytest.approx(saved["correct"].mean())
    rendered = (out / "tasks" / "grokpath_math.yaml").read_text()
    assert str(test_file.resolve()) in rendered and "include" not in rendered
    assert not list(out.glob(".hf_datasets.*")), "throwaway datasets cache left behind"


def test_missing_test_file_names_yaml_and_file(checkpoint, tmp_path):
    missing = tmp_path / "nowhere" / "test.jsonl"
    with pytest.raises(FileNotFoundError) as err:
        run_evaluation(eval_cfg(), checkpoint, "step000100", tmp_path / "eval", test_files={"math": missing})
    assert "grokpath_math.yaml" in str(err.value) and str(missing) in str(err.value)
    assert not (tmp_path / "eval").exists(), "nothing should be written before the check"


def test_samples_frame_expands_groups_and_scores_multiple_choice():
    from grokpath.evaluation import samples_frame

    def mc(doc_id, lls, gold):
        acc = float(max(range(len(lls)), key=lls.__getitem__) == gold)
        return {
            "doc_id": doc_id,
            "doc": {"q": "?"},
            "target": gold,
            "filter": "none",
            "metrics": ["acc", "acc_norm"],
            "filtered_resps": [(ll, False) for ll in lls],
            "acc": acc,
            "acc_norm": acc,
        }

    results = {
        "group_subtasks": {"chem": ["chem_a", "chem_b"]},
        "configs": {"chem_a": {"output_type": "multiple_choice"}, "chem_b": {"output_type": "multiple_choice"}},
        "samples": {"chem_a": [mc(1, [-3.0, -1.0], 1), mc(0, [-1.0, -2.0], 1)], "chem_b": [mc(0, [-2.0, -0.5, -4.0], 2)]},
    }
    frame, keys = samples_frame(results, {"chem": "domain"}, {}, "step5000-tokens20B", 5000)
    assert keys == {"chem_a": "acc,none", "chem_b": "acc,none"}
    assert frame["sample_id"].tolist() == ["chem_a:0", "chem_a:1", "chem_b:0"]
    assert frame["response"].tolist() == ["0", "1", "1"]  # argmax option
    assert frame["target"].tolist() == ["1", "1", "2"]
    assert frame["correct"].tolist() == [False, True, False]
    with pytest.raises(ValueError, match="evaluation.scoring.chem.metric 'pass@1'"):
        samples_frame(results, {"chem": "domain"}, {"chem": {"metric": "pass@1"}}, "s", 1)


def test_checkpoint_named_final_takes_its_step_from_checkpoints_steps(checkpoint, tmp_path):
    """A local checkpoint without a step in its name or provenance: checkpoints.steps decides."""
    import shutil

    final = tmp_path / "local" / "final"
    shutil.copytree(checkpoint, final)
    (final / "provenance.json").unlink()  # a local checkpoint made elsewhere has none
    cfg = validate(
        {
            "evaluation": {"batch_size": 8, "max_gen_toks": 3},
            "domains": {"math": {}},
            "checkpoints": {
                "source": "local",
                "local": {"dir": str(tmp_path / "local"), "names": ["final"]},
                "steps": {"final": 1234},
            },
        }
    )
    test_file = write_test_set(tmp_path / "world" / "math" / "test.jsonl", pairs(4), "math")
    out = tmp_path / "eval" / "final"
    frame = run_evaluation(
        {k: cfg[k] for k in ("evaluation", "domains", "checkpoints")},
        final,
        "final",
        out,
        test_files={"math": test_file},
        threads=1,
    )
    assert frame["step"].tolist() == [1234] * 4 and frame["ckpt"].tolist() == ["final"] * 4
    assert frame["revision_sha"].isna().all()
    assert json.loads((out / "lm_eval.json").read_text())["grokpath"]["step"] == 1234
    with pytest.raises(ValueError, match="checkpoint name 'final' does not parse"):
        run_evaluation(eval_cfg(), final, "final", tmp_path / "eval2", test_files={"math": test_file})


# ---------------------------------------------------------------- benchmark tasks (real study)
BENCHMARK_TASKS = {
    "math": "grokpath_minerva_math",
    "code": "grokpath_humaneval_plus",
    "commonsense": "grokpath_commonsense_qa",
    "domain": "grokpath_mmlu_college_chemistry",
}


def benchmark_records() -> dict[str, list[dict]]:
    """Three test records per domain in the test JSONL contract (each benchmark's own fields)."""
    math = [
        {"problem": "What is $1+1$?", "solution": "We add: $1+1=\\boxed{2}$.", "level": "Level 1", "type": "Algebra"},
        {
            "problem": "Simplify $\\frac{2}{4}$.",
            "solution": "Divide by two: $\\boxed{\\frac{1}{2}}$.",
            "level": "Level 2",
            "type": "Prealgebra",
        },
        {"problem": "Find $x$ if $2x=6$.", "solution": "So $x=\\boxed{3}$.", "level": "Level 1", "type": "Algebra"},
    ]
    code = [
        {
            "task_id": f"HumanEval/{i}",
            "prompt": f'def f{i}(a, b):\n    """Return a {op} b."""\n',
            "canonical_solution": f"    return a {op} b\n",
            "entry_point": f"f{i}",
            "test": f"def check(candidate):\n    assert candidate(2, 3) == 2 {op} 3\n",
        }
        for i, op in enumerate(["+", "-", "*"])
    ]
    commonsense = [
        {
            "id": f"q{i}",
            "question": f"Where would you put item {i}?",
            "question_concept": "item",
            "choices": {"label": list("ABCDE"), "text": ["box", "shelf", "bag", "drawer", "floor"]},
            "answerKey": key,
        }
        for i, key in enumerate("ACE")
    ]
    domain = [
        {
            "question": f"Which element has atomic number {z}?",
            "subject": "college_chemistry",
            "choices": ["H", "He", "Li", "C"],
            "answer": ans,
        }
        for z, ans in ((1, 0), (2, 1), (6, 3))
    ]
    records = {"math": math, "code": code, "commonsense": commonsense, "domain": domain}
    for domain_name, rows in records.items():
        for i, row in enumerate(rows):
            row["sample_id"] = f"{domain_name}-test-{i:05d}"
            row["text"] = row.get("problem") or row.get("prompt") or row["question"]
    # ids out of file order: the join must use the doc's sample_id, not the row index
    records["domain"][0]["sample_id"], records["domain"][2]["sample_id"] = "domain-test-00009", "domain-test-00001"
    return records


def benchmark_tokenizer(texts: list[str]):
    """A word-level tokenizer over the texts' whitespace-separated words."""
    from tokenizers import decoders

    words = sorted({w for t in texts for w in t.split()} | set("ABCDE"))
    return word_tokenizer(
        ["<pad>", "<bos>", "<eos>", "<unk>", *words],
        bos="<bos>",
        unk="<unk>",
        pad="<pad>",
        eos="<eos>",
        decoder=decoders.WordPiece(prefix="##"),  # joins words with spaces
    )


@pytest.fixture(scope="module")
def benchmark_world(tmp_path_factory):
    """Test JSONL per domain and a tiny random OlmoeForCausalLM whose tokenizer knows their words."""
    from lm_eval.tasks.minerva_math.utils import list_fewshot_samples

    root = tmp_path_factory.mktemp("benchmarks")
    records = benchmark_records()
    tests = {}
    for domain, rows in records.items():
        tests[domain] = root / "data" / domain / "test.jsonl"
        tests[domain].parent.mkdir(parents=True)
        tests[domain].write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = (
        [json.dumps(r) for rows in records.values() for r in rows]
        + [s["problem"] + " " + s["solution"] for s in list_fewshot_samples()]
        + ["Problem: Solution: Question: Answer:"]
    )
    tokenizer = benchmark_tokenizer(texts)
    model = make_model(vocab_size=len(tokenizer), max_positions=2048, router_logits=False)
    ckpt = root / "checkpoints" / "step5000-tokens20B"
    model.save_pretrained(ckpt)
    tokenizer.save_pretrained(ckpt)
    (ckpt / "provenance.json").write_text(
        json.dumps({"step": 5000, "source": "hf", "revision": "step5000-tokens20B", "revision_sha": "f" * 40})
    )
    return {"root": root, "tests": tests, "records": records, "checkpoint": ckpt}


def benchmark_cfg(**evaluation) -> dict:
    cfg = validate(
        {
            "evaluation": {"batch_size": 4, "max_gen_toks": 6, "bootstrap_iters": 0, **evaluation},
            "domains": {d: {"task": t} for d, t in BENCHMARK_TASKS.items()},
            "checkpoints": {"source": "hf", "hf": {"revisions": ["step5000-tokens20B"]}},
        }
    )
    return {k: cfg[k] for k in ("evaluation", "domains", "checkpoints")}


def test_benchmark_eval_sample_ids_equal_the_test_jsonl_in_every_domain(benchmark_world, caplog):
    """All four benchmark tasks through lm-eval on our own test files; code execution off."""
    out = benchmark_world["root"] / "eval" / "step5000-tokens20B"
    with caplog.at_level("WARNING", logger="grokpath.evaluation"):
        run_evaluation(
            benchmark_cfg(),
            benchmark_world["checkpoint"],
            "step5000-tokens20B",
            out,
            test_files=benchmark_world["tests"],
            threads=1,
        )
    saved = pd.read_parquet(out / "samples.parquet")
    for domain, path in benchmark_world["tests"].items():
        expected = [json.loads(line)["sample_id"] for line in path.read_text().splitlines()]
        got = saved.loc[saved["domain"] == domain, "sample_id"].tolist()
        assert got == expected, domain  # in file order, the JSONL's own ids
    assert set(saved["revision_sha"]) == {"f" * 40} and set(saved["step"]) == {5000}
    code = saved[saved["domain"] == "code"]
    assert code["correct"].isna().all(), "code is not executed without allow_code_execution"
    assert code["response"].str.startswith("def f").all()  # prompt + completion were still saved
    assert any("evaluation.allow_code_execution: true" in r.getMessage() for r in caplog.records)
    others = saved[saved["domain"] != "code"]
    assert others["correct"].notna().all()
    # multiple choice: correct iff the chosen option is the gold index
    for domain, gold in (("commonsense", [0, 2, 4]), ("domain", [0, 1, 3])):
        rows = saved[saved["domain"] == domain]
        assert rows["target"].astype(int).tolist() == gold
        assert rows["correct"].tolist() == [r == t for r, t in zip(rows["response"], rows["target"])]
    # MATH: the response is the raw generation (lm-eval's minerva scores it unfiltered); random
    # output has no "Final Answer" line, so nothing is right
    assert not saved.loc[saved["domain"] == "math", "correct"].any()
    summary = json.loads((out / "lm_eval.json").read_text())
    assert summary["results"]["grokpath_minerva_math"]["exact_match,none"] == 0.0
    assert summary["grokpath"]["scoring_key"]["grokpath_humaneval_plus"] == "pass@1,create_test"
    rendered = out / "tasks"
    assert (rendered / "grokpath_benchmarks.py").is_file()
    assert "!function 'grokpath_benchmarks.minerva_process_results'" in (rendered / "grokpath_minerva_math.yaml").read_text()


def test_benchmark_code_runs_in_the_sandbox_when_allowed(benchmark_world):
    out = benchmark_world["root"] / "eval-code" / "step5000-tokens20B"
    cfg = benchmark_cfg(allow_code_execution=True, sandbox={"timeout_s": 5, "cpu_s": 5})
    cfg["domains"] = {"code": {"task": "grokpath_humaneval_plus"}}
    frame = run_evaluation(
        cfg,
        benchmark_world["checkpoint"],
        "step5000-tokens20B",
        out,
        test_files={"code": benchmark_world["tests"]["code"]},
        threads=1,
    )
    # a random model's completions are not valid bodies: every program fails its tests
    assert frame["correct"].tolist() == [False, False, False] and frame["correct"].dtype == bool


def test_benchmark_scoring_functions_on_known_answers(monkeypatch):
    """The tasks' !function code, on hand-made answers: minerva equivalence and sandboxed pass@1."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("grokpath_benchmarks", DEFAULT_TASKS_DIR / "grokpath_benchmarks.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    doc = {"problem": "Simplify $\\frac{2}{4}$.", "solution": "Divide by two: $\\boxed{\\frac{1}{2}}$."}
    doc = {
        **doc,
        "answer": bench.minerva.normalize_final_answer(
            bench.minerva.remove_boxed(bench.minerva.last_boxed_only_string(doc["solution"]))
        ),
    }
    right = "We halve.\nFinal Answer: The final answer is $0.5$. I hope it is correct."
    wrong = "Final Answer: The final answer is $\\frac{1}{3}$. I hope it is correct."
    assert bench.minerva_process_results(doc, [right]) == {"exact_match": 1, "math_verify": 1}  # sympy: 0.5 == 1/2
    assert bench.minerva_process_results(doc, [wrong]) == {"exact_match": 0, "math_verify": 0}
    # math_verify parses the whole generation, as lm-eval does: a boxed answer with no
    # "Final Answer" line is verified though exact_match finds no answer
    boxed = "Halving gives $\\boxed{\\frac{1}{2}}$."
    assert bench.minerva_process_results(doc, [boxed]) == {"exact_match": 0, "math_verify": 1}

    record = benchmark_records()["code"][2]
    program = bench.humaneval_build_predictions([[record["canonical_solution"]]], [record])[0][0]
    assert program == record["prompt"] + record["canonical_solution"]
    monkeypatch.delenv(bench.CODE_EXECUTION_ENV, raising=False)
    assert math.isnan(bench.humaneval_process_results(record, [program])["pass@1"])
    monkeypatch.setenv(bench.CODE_EXECUTION_ENV, json.dumps({"allow": True, "timeout_s": 5, "cpu_s": 5, "memory_mb": 1024}))
    assert bench.humaneval_process_results(record, [program])["pass@1"] == 1.0
    broken = record["prompt"] + "    return a + b\n"
    assert bench.humaneval_process_results(record, [broken])["pass@1"] == 0.0


@pytest.mark.parametrize(
    "ours, builtin, keys",
    [
        (
            "grokpath_commonsense_qa.yaml",
            "commonsense_qa/default.yaml",
            ["doc_to_text", "doc_to_target", "doc_to_choice", "output_type", "metric_list"],
        ),
        (
            "grokpath_mmlu_college_chemistry.yaml",
            "mmlu/default/mmlu_college_chemistry.yaml",
            ["doc_to_text", "doc_to_target", "doc_to_choice", "output_type", "metric_list", "description"],
        ),
        (
            "grokpath_humaneval_plus.yaml",
            "humaneval/humaneval_plus.yaml",
            ["doc_to_text", "doc_to_target", "output_type", "repeats"],
        ),
        (
            "grokpath_minerva_math.yaml",
            "minerva_math/minerva_math_algebra.yaml",
            ["doc_to_target", "output_type", "num_fewshot", "generation_kwargs"],
        ),
    ],
)
def test_benchmark_tasks_keep_the_builtin_prompt_and_metric(ours, builtin, keys):
    from pathlib import Path as _Path

    import lm_eval.tasks

    from grokpath.evaluation import _resolved_task_config

    mine = _resolved_task_config(DEFAULT_TASKS_DIR / ours)
    theirs = _resolved_task_config(_Path(lm_eval.tasks.__file__).parent / builtin)
    for key in keys:
        if key == "generation_kwargs":
            assert mine[key]["until"] == theirs[key]["until"] and mine[key]["do_sample"] == theirs[key]["do_sample"]
        else:
            assert mine[key] == theirs[key], key
    if "until" in (theirs.get("generation_kwargs") or {}):
        assert mine["generation_kwargs"]["until"] == theirs["generation_kwargs"]["until"]
