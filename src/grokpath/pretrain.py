"""Mini pretraining: a small OLMoE trained from scratch on the mini world.

nanoGPT-plain: one loop, AdamW with linear warmup then constant lr, weight
decay (none on norm gains and biases: ``no_weight_decay``), balanced domains
(each step takes ``batch_size`` random training texts from every domain, or
all of them when ``batch_size`` is 0/null = full batch, and averages the
per-domain losses; with ``parallel_domains`` the domains' passes run side by side in
worker processes, :mod:`grokpath.domain_workers`, with the same weights). The loss is plain
language modelling over every token of each text (``loss_on: all``, as in the
paper's pretraining data) or only over the answer tokens (``loss_on: answer``).

Checkpoints go to ``<checkpoints>/stepNNNNNN/`` (model, tokenizer,
provenance.json), each written atomically. A resumable training state (model,
optimizer, RNG streams, loss and monitor logs) is written to ``<state>/state.pt``
at every checkpoint, together with that checkpoint's weights
(``<state>/weights/stepNNNNNN.pt``), *before* the checkpoint directory. A
restarted run loads the state, re-creates any checkpoint directory up to that
step that is missing (Snakemake deletes the outputs of an incomplete job), and
continues, giving bit-identical weights to an uninterrupted run on the same
machine and thread count. Delete ``<state>`` to start over; a state from another
config is refused.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm
from transformers import OlmoeConfig, OlmoeForCausalLM, PreTrainedTokenizerFast

from grokpath.checkpoints import local_name, mini_checkpoint_steps
from grokpath.data import read_split
from grokpath.domain_workers import DomainWorkers, can_fork
from grokpath.io import atomic_dir, atomic_path, config_hash, provenance, write_frame
from grokpath.traces import answer_mask, answer_starts, sample_exact_match, sample_losses

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"


# ---------------------------------------------------------------- data
def encode(rows: list[dict], tokenizer: PreTrainedTokenizerFast, loss_on: str = "all") -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask`` and a ``loss_mask`` over predicted tokens.

    ``loss_mask[i, t]`` says whether token t of sample i is a training target:
    every real token after BOS (``all``), or only the answer tokens, i.e. the
    target and the closing newline (``answer``, split by :func:`grokpath.traces.answer_starts`;
    rows without a prompt count whole).
    """
    batch = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
    starts = [1] * len(rows)  # position 0 is BOS, never predicted
    if loss_on == "answer":
        prompted = [i for i, r in enumerate(rows) if "prompt" in r]
        found = answer_starts(tokenizer, [rows[i]["text"] for i in prompted], [rows[i]["prompt"] for i in prompted])
        for i, start in zip(prompted, found):
            starts[i] = start
    loss_mask = answer_mask(batch["attention_mask"], starts)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "loss_mask": loss_mask}


def take(batch: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows ``index`` of an encoded batch, trimmed to their longest sequence."""
    part = {k: v[index] for k, v in batch.items()}
    width = int(part["attention_mask"].sum(1).max())
    return {k: v[:, :width] for k, v in part.items()}


def sequence_losses(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, object]:
    """Per-sample mean NLL over ``loss_mask`` tokens, teacher-forced exact match, and the model output."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    args = (out.logits, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])
    return sample_losses(*args), sample_exact_match(*args), out


@torch.no_grad()
def evaluate_rows(model, tokenizer, rows: list[dict], loss_on: str, batch_size: int = 256) -> pd.DataFrame:
    """Per-sample loss (mean NLL over ``loss_on`` tokens) and greedy exact match.

    With ``loss_on='answer'`` the exact match is teacher-forced argmax over the
    target and its newline, which equals greedy decoding of the prompt until
    "\\n" (each greedy step sees the same prefix as long as it is right).
    """
    model.eval()
    frames = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = encode(chunk, tokenizer, loss_on)
        loss, correct, _ = sequence_losses(model, batch)
        frames.append(
            pd.DataFrame({"sample_id": [r["sample_id"] for r in chunk], "loss": loss.numpy(), "correct": correct.numpy()})
        )
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- model
def model_config(pretrain: dict, tokenizer: PreTrainedTokenizerFast) -> OlmoeConfig:
    return OlmoeConfig(
        vocab_size=len(tokenizer),
        hidden_size=pretrain["hidden_size"],
        intermediate_size=pretrain["intermediate_size"],
        num_hidden_layers=pretrain["num_layers"],
        num_attention_heads=pretrain["num_heads"],
        num_experts=pretrain["num_experts"],
        num_experts_per_tok=pretrain["top_k"],
        max_position_embeddings=pretrain["max_position_embeddings"],
        router_aux_loss_coef=float(pretrain["router_aux_loss_coef"]),
        initializer_range=float(pretrain["init_std"]),
        output_router_logits=pretrain["router_aux_loss_coef"] > 0,
        norm_topk_prob=False,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


NO_DECAY_KINDS = ("norm", "bias", "embedding", "router")


def parameter_kind(model: torch.nn.Module, name: str) -> str:
    """``norm`` (RMSNorm/LayerNorm gains), ``bias``, ``embedding`` (token embeddings),
    ``router`` (the ``mlp.gate`` rows) or ``weight`` (every other matrix)."""
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    if "norm" in type(module).__name__.lower():
        return "norm"
    if leaf == "bias":
        return "bias"
    if isinstance(module, torch.nn.Embedding):
        return "embedding"
    if module_name.endswith("mlp.gate"):
        return "router"
    return "weight"


def parameter_groups(model: torch.nn.Module, weight_decay: float, no_decay: list[str]) -> list[dict]:
    """AdamW groups: decay ``weight_decay`` on every parameter except the kinds in ``no_decay``.

    The usual recipe (nanoGPT, OLMo) decays matrices only: norm gains and biases get
    none. Decaying RMSNorm gains shrinks what the routers see, so their softmax drifts
    towards uniform over training.
    """
    unknown = sorted(set(no_decay) - set(NO_DECAY_KINDS))
    if unknown:
        raise ValueError(f"pretrain.no_weight_decay: unknown kind(s) {unknown}; known: {list(NO_DECAY_KINDS)}")
    decay, keep = [], []
    for name, param in model.named_parameters():
        (keep if parameter_kind(model, name) in no_decay else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def learning_rate(step: int, pretrain: dict) -> float:
    """Linear warmup over ``warmup_steps``, then constant (grokking needs a long flat phase)."""
    warmup = pretrain["warmup_steps"]
    return pretrain["lr"] * min(1.0, (step + 1) / warmup) if warmup > 0 else pretrain["lr"]


def domain_pass(model, batch: dict[str, torch.Tensor], aux_coef: float, n_domains: int) -> tuple:
    """One domain's ``(loss, aux loss, gradients)`` of a step; the gradients are those of
    ``(loss + aux_coef * aux) / n_domains``, one tensor (or None) per trainable parameter.

    Every domain gets its own ``torch.autograd.grad`` (nothing accumulates in ``.grad``), so
    :func:`apply_gradients` sums them in the domains' order, wherever each pass ran.
    """
    losses, _, out = sequence_losses(model, batch)
    loss = losses.mean()
    aux = out.aux_loss if getattr(out, "aux_loss", None) is not None else torch.zeros(())
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad((loss + aux_coef * aux) / n_domains, params, allow_unused=True)
    return loss.item(), aux.item(), grads


def pass_costs(batches: list[dict[str, torch.Tensor]], batch_size: int | None) -> list[float]:
    """What each domain's pass costs, for sharing them out: its padded batch, rows x longest text
    (``batch_size`` rows a step, or every row at 0/None: full batch)."""
    costs = []
    for batch in batches:
        n, width = batch["input_ids"].shape
        costs.append(float((min(batch_size, n) if batch_size else n) * width))
    return costs


def apply_gradients(model, parts: list[dict]) -> None:
    """Set each parameter's ``.grad`` to the sum of the domains' gradients, in the domains' order."""
    params = [p for p in model.parameters() if p.requires_grad]
    for i, param in enumerate(params):
        total = None
        for part in parts:
            grad = part["grads"][i]
            if grad is not None:
                total = grad.clone() if total is None else total.add_(grad)
        param.grad = total


def amplify_slow_gradients(model, ema: dict[str, torch.Tensor], alpha: float, lamb: float) -> None:
    """Grokfast-EMA (Lee et al. 2024, arXiv 2405.20233, Algorithm 2): keep an exponential moving
    average of each gradient, ``ema = alpha * ema + (1 - alpha) * grad``, and add ``lamb * ema`` to the
    gradient. The paper reads the slow component as the one that generalizes and reports grokking in
    far fewer steps; on the mini world under AdamW it slowed memorization instead (bench/README.md).
    ``ema`` is updated in place.
    """
    for name, param in model.named_parameters():
        if param.grad is None:
            continue
        if name in ema:
            ema[name].mul_(alpha).add_(param.grad, alpha=1 - alpha)
        else:
            ema[name] = param.grad.detach().clone()
        param.grad.add_(ema[name], alpha=lamb)


def run_hash(cfg: dict) -> str:
    return config_hash({k: cfg.get(k) for k in ("world", "pretrain", "domains")})


def _save_checkpoint(model, tokenizer, out: Path, step: int, chash: str) -> None:
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = provenance(step=step, source="mini", revision=None, revision_sha=None, config_hash=chash)
        (tmp / "provenance.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _save_torch(path: Path, state: dict) -> None:
    with atomic_path(path, ".pt") as tmp:
        torch.save(state, tmp)


def _weights_path(state_path: Path, step: int) -> Path:
    return state_path.parent / "weights" / f"{local_name(step)}.pt"


# ---------------------------------------------------------------- training
def pretrain(
    cfg: dict,
    world_dir: Path | str,
    tokenizer_dir: Path | str,
    checkpoints_dir: Path | str,
    loss_path: Path | str,
    monitor_path: Path | str | None = None,
    state_dir: Path | str | None = None,
    stop_after_step: int | None = None,
    threads: int | None = None,
) -> None:
    """Train, save every checkpoint of ``mini_checkpoint_steps``, write the loss log.

    ``threads``: the job's CPU threads (else ``pretrain.threads``), used as ``pretrain.parallel_domains`` says.

    ``stop_after_step`` returns right after the checkpoint at that step is saved,
    leaving the run exactly as a kill would (used to test resuming).
    """
    pre, domains = cfg["pretrain"], list(cfg["domains"])
    world_dir, checkpoints_dir = Path(world_dir), Path(checkpoints_dir)
    state_path = Path(state_dir or Path(loss_path).parent / "state") / STATE_FILE
    ckpt_steps = mini_checkpoint_steps(pre)
    if ckpt_steps[-1] > pre["steps"]:
        raise ValueError(f"pretrain.checkpoint_steps: step {ckpt_steps[-1]} is beyond pretrain.steps={pre['steps']}")
    chash = run_hash(cfg)
    threads = int(threads or pre["threads"])
    # parallel_domains: the domains' passes side by side in worker processes, one torch thread
    # each (grokpath.domain_workers); otherwise torch splits each pass's kernels over every thread
    n_workers = min(threads, len(domains)) if pre["parallel_domains"] else 1
    torch.set_num_threads(1 if pre["parallel_domains"] else threads)

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    train = {d: read_split(world_dir / d / "train.jsonl") for d in domains}
    data = {d: encode(rows, tokenizer, pre["loss_on"]) for d, rows in train.items()}
    longest = max(int(b["attention_mask"].sum(1).max()) for b in data.values())
    if longest > pre["max_position_embeddings"]:
        raise ValueError(
            f"pretrain.max_position_embeddings={pre['max_position_embeddings']} < longest training text ({longest} tokens)"
        )

    full_batch = not pre["batch_size"]  # 0 or null: full batch
    torch.manual_seed(pre["seed"])
    model = OlmoeForCausalLM(model_config(pre, tokenizer))
    optimizer = torch.optim.AdamW(
        parameter_groups(model, pre["weight_decay"], pre["no_weight_decay"]),
        lr=pre["lr"],
        betas=(pre["beta1"], pre["beta2"]),
        eps=pre["adam_eps"],
    )
    if pre["orthogonal_gradients"]:
        from pytorch_optimizer import OrthoGrad

        optimizer = OrthoGrad(optimizer)  # projects every gradient, then steps the AdamW above
    sampler = torch.Generator().manual_seed(pre["seed"])
    loss_rows: list[dict] = []
    grad_ema: dict[str, torch.Tensor] = {}
    monitor = None
    if monitor_path is not None:
        from grokpath.monitor import PathwayMonitor

        monitor = PathwayMonitor.from_config(model, cfg, {d: train[d] for d in domains}, tokenizer)
    start = 0

    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        if state["config_hash"] != chash:
            raise ValueError(
                f"{state_path} belongs to another config (hash {state['config_hash']} != {chash}); delete it to restart"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        sampler.set_state(state["sampler"])
        loss_rows = state["loss_rows"]
        grad_ema = state["grad_ema"]
        if monitor is not None:
            monitor.rows = state["monitor_rows"]
        start = state["step"]
        log.info("resuming from %s at step %d", state_path, start)
        for step in (s for s in ckpt_steps if s <= start and not (checkpoints_dir / local_name(s)).is_dir()):
            saved = OlmoeForCausalLM(model.config)
            saved.load_state_dict(torch.load(_weights_path(state_path, step)))
            _save_checkpoint(saved, tokenizer, checkpoints_dir / local_name(step), step, chash)
            log.info("re-created missing checkpoint %s from the saved state", local_name(step))

    n_params = sum(p.numel() for p in model.parameters())
    log.info("OLMoE %d params, domains %s, steps %d, checkpoints %s", n_params, domains, pre["steps"], ckpt_steps)

    def domain_step(i: int, index: torch.Tensor | None) -> tuple:
        batch = data[domains[i]] if index is None else take(data[domains[i]], index)
        return domain_pass(model, batch, pre["router_aux_loss_coef"], len(domains))

    model.train()
    with ExitStack() as stack:
        workers = None
        if n_workers > 1 and not can_fork():
            log.warning("pretrain.parallel_domains: no 'fork' start method on this platform; the domains run one after the other")
        elif n_workers > 1:
            costs = pass_costs([data[d] for d in domains], pre["batch_size"])
            workers = stack.enter_context(DomainWorkers(model, costs, n_workers, domain_step))
            log.info("domain workers: %s", [[domains[i] for i in share] for share in workers.shares])
        began = time.time()
        for step in tqdm(range(start + 1, pre["steps"] + 1), desc="pretrain", initial=start, total=pre["steps"]):
            lr = learning_rate(step - 1, pre)
            for group in optimizer.param_groups:
                group["lr"] = lr
            row = {"step": step, "lr": lr}
            indices = [
                None if full_batch else torch.randperm(len(data[d]["input_ids"]), generator=sampler)[: pre["batch_size"]]
                for d in domains
            ]
            if workers is not None:
                parts = workers.step(indices)
            else:
                parts = [dict(zip(("loss", "aux", "grads"), domain_step(i, index))) for i, index in enumerate(indices)]
            apply_gradients(model, parts)
            total, aux_total = 0.0, 0.0
            for d, part in zip(domains, parts):
                row[f"loss_{d}"] = part["loss"]
                total += part["loss"] / len(domains)
                aux_total += part["aux"] / len(domains)
            if pre["grokfast_lambda"] > 0:
                amplify_slow_gradients(model, grad_ema, pre["grokfast_alpha"], pre["grokfast_lambda"])
            if pre["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), pre["grad_clip"])
            optimizer.step()
            row.update(loss=total, aux_loss=aux_total)
            loss_rows.append(row)

            if step in ckpt_steps:
                model.eval()
                if monitor is not None:
                    monitor.record(step)
                model.train()
                _save_torch(_weights_path(state_path, step), model.state_dict())
                _save_torch(
                    state_path,
                    {
                        "step": step,
                        "config_hash": chash,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "torch_rng": torch.get_rng_state(),
                        "sampler": sampler.get_state(),
                        "loss_rows": loss_rows,
                        "grad_ema": grad_ema,
                        "monitor_rows": monitor.rows if monitor is not None else [],
                    },
                )
                _save_checkpoint(model, tokenizer, checkpoints_dir / local_name(step), step, chash)
                log.info(
                    "step %d: loss %.4f (%s), %.1fs",
                    step,
                    total,
                    " ".join(f"{d}={row[f'loss_{d}']:.3f}" for d in domains),
                    time.time() - began,
                )
                if stop_after_step is not None and step >= stop_after_step:
                    log.info("stopping after step %d as asked", step)
                    return

    frame = pd.DataFrame(loss_rows)
    write_frame(frame, loss_path, metadata={"config_hash": chash, "n_params": n_params, "domains": domains})
    if monitor is not None:
        write_frame(monitor.frame(), monitor_path, metadata={"config_hash": chash})
    log.info("pretraining done: %d steps in %.1fs this run", pre["steps"] - start, time.time() - began)
