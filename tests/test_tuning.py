"""LoRA instruction tuning: one adapter per (checkpoint, tuning set), evaluated per domain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_evaluation import MEMORIZED, make_model, make_tokenizer, memorize, pairs, write_test_set

from grokpath.config import validate
from grokpath.tuning import encode_pair, format_prompt, read_pairs, tune_lora, tuning_data_path, tuning_sets

PAIRS = [
    {"instruction": "1 + 2 =", "input": "", "output": "3"},
    {"instruction": "4 + 4 =", "output": "8"},
    {"instruction": "2 + 5 =", "input": "7 + 0", "output": "7"},
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ckpt") / "step000100"
    tokenizer, model = make_tokenizer(), make_model()
    memorize(model, tokenizer, pairs(MEMORIZED), steps=60)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "provenance.json").write_text(json.dumps({"step": 100, "source": "mini", "revision": None, "revision_sha": "ab" * 20}))
    return out


def lora_cfg(tmp_path: Path, **lora) -> dict:
    return validate(
        {
            "study": {"seed": 0},
            "evaluation": {"tuning": "lora", "lora": {"r": 4, "alpha": 8, "data_dir": str(tmp_path / "tuning"), **lora}},
        }
    )


def write_set(tmp_path: Path, name: str, records: list[dict]) -> Path:
    path = tmp_path / "tuning" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_alpaca_prompt_keeps_the_input_field(tmp_path):
    lora = lora_cfg(tmp_path)["evaluation"]["lora"]
    with_input = format_prompt(lora, {"instruction": "Add.", "input": "2 and 3", "output": "5"})
    assert with_input == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n"
    )
    without = format_prompt(lora, {"instruction": "Add.", "input": "  ", "output": "5"})
    assert without == (
        "Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request.\n\n### Instruction:\nAdd.\n\n### Response:\n"
    )


def test_encode_pair_puts_the_loss_on_output_and_eos_only():
    tokenizer = make_tokenizer()
    encoded = encode_pair(tokenizer, "1 + 2 =", "3", max_length=64)
    # <bos> 1 + 2 = | 3 <eos>   (ids: bos 1, digits 6+d, '+' 4, '=' 5, eos 2)
    assert encoded["input_ids"] == [1, 7, 4, 8, 5, 9, 2]
    assert encoded["labels"] == [-100] * 5 + [9, 2]
    assert encoded["attention_mask"] == [1] * 7
    assert encode_pair(tokenizer, "1 + 2 =", "3", max_length=6)["labels"] == [-100] * 5 + [9]


def test_read_pairs_names_the_bad_line(tmp_path):
    bad = write_set(tmp_path, "bad", [PAIRS[0], {"instruction": "1 + 2 ="}])
    with pytest.raises(ValueError, match=r"bad.jsonl:2: needs string fields \['instruction', 'output'\]"):
        read_pairs(bad)
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl"):
        read_pairs(tmp_path / "nowhere.jsonl")
    assert [p["input"] for p in read_pairs(write_set(tmp_path, "ok", PAIRS))] == ["", "", "7 + 0"]


def test_tuning_sets_come_from_config_and_name_a_missing_domain(tmp_path):
    evaluation = lora_cfg(tmp_path)["evaluation"]
    assert tuning_sets(evaluation, ["math", "code", "commonsense", "domain"]) == {
        "math": "metamathqa",
        "code": "codealpaca",
        "commonsense": "alpaca-cleaned",
        "domain": "alpaca-cleaned",
    }
    assert tuning_data_path(evaluation, "metamathqa") == tmp_path / "tuning" / "metamathqa.jsonl"
    with pytest.raises(ValueError, match=r"no tuning set for domain\(s\) \['chemistry'\]"):
        tuning_sets(evaluation, ["math", "chemistry"])


def test_adapter_changes_only_qkv_and_each_domain_is_evaluated_with_its_own(checkpoint, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = lora_cfg(tmp_path, sets={"math": "arith", "code": "other"}, epochs=2)
    arith = write_set(tmp_path, "arith", PAIRS)
    other = write_set(tmp_path, "other", [{"instruction": "9 + 9 =", "input": "", "output": "8"}] * 4)
    adapters = {}
    for name, data in (("arith", arith), ("other", other)):
        adapters[name] = tmp_path / "tuned" / "step000100" / name
        summary = tune_lora(cfg, checkpoint, name, data, adapters[name], threads=1)
        assert summary["set"] == name and len(summary["epoch_losses"]) == 2
    assert summary["n_pairs"] == 4 and summary["data_sha256"] and summary["r"] == 4

    adapter = adapters["arith"]
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and sorted(config["target_modules"]) == ["k_proj", "q_proj", "v_proj"]
    assert (adapter / "adapter_model.safetensors").is_file() and not (adapter / "model.safetensors").exists()
    provenance = json.loads((adapter / "provenance.json").read_text())
    assert provenance["step"] == 100 and provenance["revision_sha"] == "ab" * 20 and provenance["tuning"]["set"] == "arith"

    base = AutoModelForCausalLM.from_pretrained(checkpoint).state_dict()
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(checkpoint), adapter).merge_and_unload().state_dict()
    assert set(merged) == set(base)
    qkv = {k for k in base if any(f"self_attn.{m}.weight" in k for m in ("q_proj", "k_proj", "v_proj"))}
    assert len(qkv) == 3
    for name in base:
        assert (not torch.equal(base[name], merged[name])) == (name in qkv), name

    # evaluation: math with the 'arith' adapter, code with 'other', one job, two lm-eval calls
    from grokpath.evaluation import run_evaluation

    eval_cfg = validate(
        {
            "evaluation": {
                "tuning": "lora",
                "batch_size": 8,
                "max_gen_toks": 3,
                "lora": {"sets": {"math": "arith", "code": "other"}},
            },
            "domains": {"math": {}, "code": {}},
        }
    )
    tests = {d: write_test_set(tmp_path / "world" / d / "test.jsonl", pairs(5), d) for d in ("math", "code")}
    out = tmp_path / "eval" / "step000100"
    with pytest.raises(ValueError, match=r"no adapter was given for domain\(s\) \['code'\]"):
        run_evaluation(eval_cfg, checkpoint, "step000100", out, test_files=tests, adapters={"math": adapters["arith"]})
    frame = run_evaluation(
        eval_cfg,
        checkpoint,
        "step000100",
        out,
        test_files=tests,
        threads=1,
        adapters={"math": adapters["arith"], "code": adapters["other"]},
    )
    assert frame.groupby("domain", sort=False).size().to_dict() == {"math": 5, "code": 5}
    summary = json.loads((out / "lm_eval.json").read_text())["grokpath"]
    assert summary["adapter_of_domain"] == {"math": str(adapters["arith"]), "code": str(adapters["other"])}
    calls = summary["calls"]
    assert [c["tasks"] for c in calls] == [["grokpath_math"], ["grokpath_code"]]
    assert [c["config"]["model_args"].split("peft=")[1] for c in calls] == [
        str(adapters["arith"].resolve()),
        str(adapters["other"].resolve()),
    ]
    saved = pd.read_parquet(out / "samples.parquet")
    assert saved["sample_id"].tolist() == [f"math-{i:03d}" for i in range(5)] + [f"code-{i:03d}" for i in range(5)]
    shutil.rmtree(out)
