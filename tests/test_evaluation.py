"""lm-eval evaluation per checkpoint and LoRA tuning, on a tiny OLMoE saved in tmp_path."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from grokpath.config import validate
from grokpath.evaluation import DEFAULT_TASKS_DIR, domain_tasks, run_evaluation, task_yaml_files

DIGITS = [str(i) for i in range(10)]
VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>", "+", "="] + DIGITS
MEMORIZED = 6  # the first MEMORIZED test pairs are trained on, so some answers are right


def pairs(n: int) -> list[tuple[int, int]]:
    return [(i % 10, (3 * i + 1) % 10) for i in range(n)]


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def make_model():
    from transformers import OlmoeConfig, OlmoeForCausalLM

    torch.manual_seed(0)
    config = OlmoeConfig(
        vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
        max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        output_router_logits=True,  # as the mini pretraining saves it (aux loss on)
    )
    return OlmoeForCausalLM(config)


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
            fh.write(json.dumps({"sample_id": f"{domain}-{i:03d}", "prompt": prompt, "target": target,
                                 "text": prompt + target + "\n"}) + "\n")
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ckpt") / "step000100"
    tokenizer, model = make_tokenizer(), make_model()
    memorize(model, tokenizer, pairs(MEMORIZED))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "provenance.json").write_text(json.dumps({"step": 100, "source": "mini", "revision": None}))
    return out


def eval_cfg(**evaluation) -> dict:
    cfg = validate({"evaluation": evaluation, "domains": {"math": {}}})
    return {"evaluation": cfg["evaluation"], "domains": cfg["domains"]}


def test_domain_tasks_default_and_override():
    assert domain_tasks({"math": {}, "domain": {"task": "mmlu_college_chemistry"}}) == {
        "math": "grokpath_math", "domain": "mmlu_college_chemistry"}
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
    frame = run_evaluation(eval_cfg(batch_size=8, max_gen_toks=3), checkpoint, "step000100", out,
                           test_files={"math": test_file}, threads=1)

    saved = pd.read_parquet(out / "samples.parquet")
    assert list(saved.columns) == ["ckpt", "step", "domain", "sample_id", "correct", "response", "target"]
    assert len(saved) == n and saved["sample_id"].tolist() == [f"math-{i:03d}" for i in range(n)]
    assert saved["correct"].dtype == bool and saved["step"].dtype == "int64"
    assert set(saved["ckpt"]) == {"step000100"} and set(saved["step"]) == {100}
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


def test_lora_tuning_changes_only_qkv_and_saves_a_loadable_model(checkpoint, tmp_path):
    from transformers import AutoModelForCausalLM

    from grokpath.tuning import tune_lora

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [
        {"instruction": "1 + 2 =", "output": "3"},
        {"query": "4 + 4 =", "response": "8"},
        {"instruction": "2 + 5 =", "input": "", "output": "7"},
    ]))
    cfg = validate({"study": {"seed": 0}, "evaluation": {"tuning": "lora", "lora": {"r": 4, "alpha": 8, "data": {"math": str(data)}}}})
    out = tmp_path / "tuned" / "step000100"
    summary = tune_lora(cfg, checkpoint, {"math": data}, out, threads=1)
    assert summary["n_pairs"] == 3 and len(summary["epoch_losses"]) == 3

    base = AutoModelForCausalLM.from_pretrained(checkpoint).state_dict()
    tuned_model = AutoModelForCausalLM.from_pretrained(out)
    tuned = tuned_model.state_dict()
    assert set(tuned) == set(base), "merged model must have the base model's parameter names (no lora_ leftovers)"
    qkv = [k for k in base if any(f"self_attn.{m}.weight" in k for m in ("q_proj", "k_proj", "v_proj"))]
    assert len(qkv) == 3
    for name in base:
        changed = not torch.equal(base[name], tuned[name])
        assert changed == (name in qkv), f"{name}: changed={changed}"
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["step"] == 100 and provenance["tuning"]["r"] == 4
    assert (out / "tokenizer.json").is_file()


def test_lora_data_without_response_is_named(tmp_path):
    from grokpath.tuning import read_pairs

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "1 + 2 ="}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1"):
        read_pairs(bad)


def test_samples_frame_expands_groups_and_scores_multiple_choice():
    from grokpath.evaluation import samples_frame

    def mc(doc_id, lls, gold):
        acc = float(max(range(len(lls)), key=lls.__getitem__) == gold)
        return {"doc_id": doc_id, "doc": {"q": "?"}, "target": gold, "filter": "none", "metrics": ["acc", "acc_norm"],
                "filtered_resps": [(ll, False) for ll in lls], "acc": acc, "acc_norm": acc}

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
