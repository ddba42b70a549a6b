"""Optional LoRA instruction tuning of a checkpoint before evaluation (paper A).

The paper tunes each checkpoint with LoRA on the q, k, v projections (rank 32,
dropout 0.1, lr 5e-5, batch 4, max length 2048, 3 epochs) before testing it.
Alpha is not given; our default is 2r (config ``evaluation.lora.alpha``).

Our choice: one adapter per checkpoint over the union of the per-domain pair
files (``evaluation.lora.data``), so one tuned model is evaluated on every domain
in one lm-eval call. peft builds the adapter; a plain torch loop trains it; the
merged model (``merge_and_unload``) is saved as an ordinary HF directory.
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import torch
from tqdm import tqdm

from grokpath.data import iter_jsonl
from grokpath.io import atomic_dir

log = logging.getLogger(__name__)

INSTRUCTION_FIELDS = ("instruction", "query")  # alpaca / CodeAlpaca, MetaMathQA
RESPONSE_FIELDS = ("response", "output")


def read_pairs(path: Path | str, max_samples: int | None = None) -> list[dict]:
    """Instruction/response pairs of a JSONL file as {instruction, input, response}."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"LoRA data file {path} does not exist (evaluation.lora.data)")
    pairs = []
    for line_no, record in iter_jsonl(path):
        instruction = next((record[k] for k in INSTRUCTION_FIELDS if isinstance(record.get(k), str)), None)
        response = next((record[k] for k in RESPONSE_FIELDS if isinstance(record.get(k), str)), None)
        if instruction is None or response is None:
            raise ValueError(f"{path}:{line_no}: needs a string field of {INSTRUCTION_FIELDS} and one of {RESPONSE_FIELDS}")
        pairs.append({"instruction": instruction, "input": record.get("input") or "", "response": response})
        if max_samples and len(pairs) >= max_samples:
            break
    if not pairs:
        raise ValueError(f"LoRA data file {path} holds no pairs")
    return pairs


def encode_pair(tokenizer, pair: dict, prompt_template: str, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels; the loss falls on the response and eos only."""
    prompt_ids = tokenizer.encode(prompt_template.format(instruction=pair["instruction"], input=pair["input"]))
    response_ids = tokenizer.encode(pair["response"], add_special_tokens=False) + [tokenizer.eos_token_id]
    ids = (prompt_ids + response_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + response_ids)[:max_length]
    return ids, labels


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def tune_lora(
    cfg: dict,
    checkpoint_dir: Path | str,
    data_files: dict[str, Path | str],
    out_dir: Path | str,
    *,
    threads: int | None = None,
    device: str | None = None,
) -> dict:
    """LoRA-tune one checkpoint on the instruction pairs and save the merged model to ``out_dir``.

    ``cfg``: the ``evaluation``, ``study`` and (optional) ``checkpoints`` sections. ``data_files``: domain -> pair JSONL.
    Returns the summary also written into ``out_dir/provenance.json`` (key ``tuning``).
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lora = cfg["evaluation"]["lora"]
    checkpoint_dir = Path(checkpoint_dir)
    if not data_files:
        raise ValueError("evaluation.tuning is 'lora' but evaluation.lora.data names no pair file")
    if not (checkpoint_dir / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint_dir} is not a saved HF model (no config.json)")
    pairs = [p for domain in sorted(data_files) for p in read_pairs(data_files[domain], lora["max_samples"])]
    device = device or cfg["evaluation"].get("device", "cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if threads:
        torch.set_num_threads(int(threads))
    seed = int(cfg.get("study", {}).get("seed", 0))
    torch.manual_seed(seed)

    checkpoints = cfg.get("checkpoints", {})
    remote = bool(checkpoints.get("trust_remote_code", False))
    tokenizer = AutoTokenizer.from_pretrained(checkpoints.get("tokenizer") or checkpoint_dir, trust_remote_code=remote)
    # pure instruction loss: no MoE load-balancing term (the router is not tuned)
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint_dir, dtype=torch.float32, output_router_logits=False, trust_remote_code=remote
    ).to(device)
    max_length = min(lora["max_length"], getattr(model.config, "max_position_embeddings", lora["max_length"]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer of {checkpoint_dir} has no eos token; the responses need one")
    examples = [encode_pair(tokenizer, p, lora["prompt_template"], max_length) for p in pairs]

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
    log.info("LoRA on %s: %d pairs, %d trainable parameters, max length %d", checkpoint_dir, len(examples), trainable, max_length)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lora["lr"])
    order_rng = random.Random(seed)
    epoch_losses = []
    peft_model.train()
    for epoch in range(lora["epochs"]):
        order = list(range(len(examples)))
        order_rng.shuffle(order)
        batches = [order[i : i + lora["batch_size"]] for i in range(0, len(order), lora["batch_size"])]
        total = 0.0
        for batch in tqdm(batches, desc=f"lora epoch {epoch + 1}/{lora['epochs']}", unit="batch"):
            inputs = {k: v.to(device) for k, v in collate([examples[i] for i in batch], pad_id).items()}
            loss = peft_model(**inputs).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        epoch_losses.append(total / len(batches))
        log.info("LoRA epoch %d: mean loss %.4f", epoch + 1, epoch_losses[-1])

    merged = peft_model.merge_and_unload()
    summary = {
        "method": "lora",
        "base": str(checkpoint_dir),
        "data": {d: str(p) for d, p in sorted(data_files.items())},
        "n_pairs": len(examples),
        "epoch_losses": epoch_losses,
        **{k: lora[k] for k in ("r", "alpha", "dropout", "lr", "batch_size", "epochs", "target_modules")},
        "max_length": max_length,
    }
    provenance_path = checkpoint_dir / "provenance.json"
    provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {}
    with atomic_dir(out_dir) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "provenance.json").write_text(json.dumps({**provenance, "tuning": summary}, indent=2) + "\n")
    return summary

