"""LoRA instruction tuning of a checkpoint before evaluation (paper A).

The paper tunes each checkpoint with LoRA on the q, k, v projections (rank 32,
dropout 0.1, lr 5e-5, batch 4, max length 2048, 3 epochs) before testing it, on
MetaMathQA for math, CodeAlpaca-20k for code and alpaca-cleaned for the other
domains. Alpha is not given; our default is 2r (``evaluation.lora.alpha``).

One adapter per (checkpoint, tuning set): ``evaluation.lora.sets`` maps each domain to
a set, the set's pairs are ``<evaluation.lora.data_dir>/<set>.jsonl`` (records
``instruction``, ``input``, ``output``), and the adapter is saved unmerged to
``results/tuned/<ckpt>/<set>/`` (peft ``save_pretrained``: ``adapter_config.json``,
``adapter_model.safetensors``, plus our ``provenance.json``). Evaluation loads each
domain's adapter on top of the checkpoint (lm-eval's ``peft=``).

Prompts use the Alpaca template, with its input block when a pair's ``input`` is
non-empty and without it otherwise; the loss falls on the output and eos only.
peft builds the adapter and transformers' ``Trainer`` trains it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from grokpath.checkpoints import read_provenance
from grokpath.data import iter_jsonl
from grokpath.devices import resolve_device, use_threads
from grokpath.io import atomic_dir, file_sha256

log = logging.getLogger(__name__)

PAIR_FIELDS = ("instruction", "output")  # required strings; "input" optional (empty: no input block)


def tuning_sets(evaluation: dict, domains: list[str] | dict) -> dict[str, str]:
    """domain -> tuning set (``evaluation.lora.sets``), for every domain; names the missing one."""
    sets = evaluation["lora"]["sets"] or {}
    missing = [d for d in domains if d not in sets]
    if missing:
        raise ValueError(f"evaluation.lora.sets has no tuning set for domain(s) {missing} (configured: {sorted(sets)})")
    return {d: sets[d] for d in domains}


def tuning_data_path(evaluation: dict, set_name: str) -> Path:
    """The JSONL of tuning set ``set_name``."""
    return Path(evaluation["lora"]["data_dir"]) / f"{set_name}.jsonl"


def read_pairs(path: Path | str, max_samples: int | None = None) -> list[dict]:
    """Instruction pairs of a tuning-set JSONL as {instruction, input, output}."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"tuning set file {path} does not exist (evaluation.lora.data_dir; made by the data stage)")
    pairs = []
    for line_no, record in iter_jsonl(path):
        bad = [k for k in PAIR_FIELDS if not isinstance(record.get(k), str)]
        if bad or not isinstance(record.get("input", ""), (str, type(None))):
            raise ValueError(
                f"{path}:{line_no}: needs string fields {list(PAIR_FIELDS)} (and an optional string 'input'); bad: {bad or ['input']}"
            )
        pairs.append({"instruction": record["instruction"], "input": record.get("input") or "", "output": record["output"]})
        if max_samples and len(pairs) >= max_samples:
            break
    if not pairs:
        raise ValueError(f"tuning set file {path} holds no pairs")
    return pairs


def format_prompt(lora: dict, pair: dict) -> str:
    """The Alpaca prompt of a pair: with the input block when ``input`` is non-empty."""
    if pair["input"].strip():
        return lora["prompt_template"].format(instruction=pair["instruction"], input=pair["input"])
    return lora["prompt_template_no_input"].format(instruction=pair["instruction"])


def encode_pair(tokenizer, prompt: str, output: str, max_length: int) -> dict[str, list[int]]:
    """Token ids, attention mask and labels of prompt + output + eos; labels are -100 on the prompt."""
    prompt_ids = tokenizer.encode(prompt)
    output_ids = tokenizer.encode(output, add_special_tokens=False) + [tokenizer.eos_token_id]
    ids = (prompt_ids + output_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + output_ids)[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def tune_lora(
    cfg: dict,
    checkpoint_dir: Path | str,
    set_name: str,
    data_file: Path | str,
    out_dir: Path | str,
    *,
    threads: int | None = None,
) -> dict:
    """Train one LoRA adapter of a checkpoint on tuning set ``set_name`` and save it (unmerged) to ``out_dir``.

    ``cfg``: the ``evaluation``, ``study`` and (optional) ``checkpoints`` sections.
    Returns the summary also written into ``out_dir/provenance.json`` (key ``tuning``).
    """
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    evaluation = cfg["evaluation"]
    lora = evaluation["lora"]
    checkpoint_dir, data_file, out_dir = Path(checkpoint_dir), Path(data_file), Path(out_dir)
    if not (checkpoint_dir / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint_dir} is not a saved HF model (no config.json)")
    pairs = read_pairs(data_file, lora["max_samples"])
    device = resolve_device(evaluation["device"], "evaluation.device")
    dtype = "float32" if evaluation["dtype"] == "auto" else evaluation["dtype"]
    use_threads(threads)
    seed = int(cfg.get("study", {}).get("seed", 0))

    checkpoints = cfg.get("checkpoints") or {}
    remote = bool(checkpoints.get("trust_remote_code", False))
    tokenizer = AutoTokenizer.from_pretrained(checkpoints.get("tokenizer") or checkpoint_dir, trust_remote_code=remote)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer of {checkpoint_dir} has no eos token; the outputs need one")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # positions follow the token index; right padding keeps them right
    # pure instruction loss: no MoE load-balancing term (the router is not tuned)
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint_dir, dtype=getattr(torch, dtype), output_router_logits=False, trust_remote_code=remote
    )
    max_length = min(lora["max_length"], getattr(model.config, "max_position_embeddings", lora["max_length"]))
    examples = [encode_pair(tokenizer, format_prompt(lora, p), p["output"], max_length) for p in pairs]
    n_truncated = sum(len(e["input_ids"]) == max_length for e in examples)

    torch.manual_seed(seed)
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=list(lora["target_modules"]),
            task_type="CAUSAL_LM",
        ),
    )
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    log.info(
        "LoRA on %s, set '%s': %d pairs (%d truncated at %d tokens), %d trainable parameters, %s on %s",
        checkpoint_dir,
        set_name,
        len(examples),
        n_truncated,
        max_length,
        trainable,
        dtype,
        device,
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.trainer.", dir=out_dir.parent))
    try:
        args = TrainingArguments(
            output_dir=str(scratch),
            per_device_train_batch_size=lora["batch_size"],
            learning_rate=lora["lr"],
            num_train_epochs=lora["epochs"],
            seed=seed,
            data_seed=seed,
            logging_strategy="epoch",
            save_strategy="no",
            report_to=[],
            use_cpu=device == "cpu",
            bf16=dtype == "bfloat16" and device != "cpu",
            fp16=dtype == "float16" and device != "cpu",
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=peft_model,
            args=args,
            train_dataset=Dataset.from_list(examples),
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        )
        output = trainer.train()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    epoch_losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]

    summary = {
        "method": "lora",
        "set": set_name,
        "base": str(checkpoint_dir),
        "data": str(data_file),
        "data_sha256": file_sha256(data_file),
        "n_pairs": len(examples),
        "n_truncated": n_truncated,
        "train_loss": float(output.training_loss),
        "epoch_losses": epoch_losses,
        **{k: lora[k] for k in ("r", "alpha", "dropout", "lr", "batch_size", "epochs", "target_modules")},
        "max_length": max_length,
        "dtype": dtype,
        "seed": seed,
    }
    provenance = read_provenance(checkpoint_dir)
    with atomic_dir(out_dir) as tmp:
        peft_model.save_pretrained(tmp)
        (tmp / "provenance.json").write_text(json.dumps({**provenance, "tuning": summary}, indent=2) + "\n")
    log.info("LoRA set '%s': train loss %.4f, epoch losses %s -> %s", set_name, summary["train_loss"], epoch_losses, out_dir)
    return summary
