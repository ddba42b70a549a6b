"""Mini pretraining: loadable checkpoints with provenance, loss/monitor tables, exact resume."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, OlmoeForCausalLM

from grokpath.config import validate
from grokpath.data import read_split
from grokpath.domain_workers import DomainWorkers, balanced_shares
from grokpath.pretrain import (
    amplify_slow_gradients,
    apply_gradients,
    domain_pass,
    encode,
    learning_rate,
    model_config,
    parameter_groups,
    pass_costs,
    pretrain,
    sequence_losses,
)
from grokpath.world import build_world

DOMAINS = ["math", "code", "commonsense", "domain"]
MICRO = {
    "threads": 1,
    "steps": 6,
    "checkpoint_steps": [2, 4, 6],
    "warmup_steps": 2,
    "batch_size": 8,
    "hidden_size": 16,
    "intermediate_size": 16,
    "num_layers": 2,
    "num_heads": 2,
    "num_experts": 4,
    "top_k": 2,
    "monitor_probes": 4,
}


def micro_cfg(**pretrain_overrides) -> dict:
    return validate(
        {
            "world": {"modulus": 5, "n_relations": 2, "max_test": 10, "max_validation": 5},
            "pretrain": {**MICRO, **pretrain_overrides},
            "domains": {d: {} for d in DOMAINS},
        }
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    build_world(micro_cfg(), root / "world", root / "tokenizer")
    return root


def run(cfg, world, out, **kwargs):
    pretrain(
        cfg,
        world / "world",
        world / "tokenizer",
        out / "checkpoints",
        out / "loss.parquet",
        monitor_path=out / "monitor.parquet",
        state_dir=out / "state",
        **kwargs,
    )


def weights(path) -> dict:
    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def test_checkpoints_loss_and_monitor(world, tmp_path):
    run(micro_cfg(), world, tmp_path)
    for step in (2, 4, 6):
        ckpt = tmp_path / "checkpoints" / f"step{step:06d}"
        model = AutoModelForCausalLM.from_pretrained(ckpt)
        assert model.config.model_type == "olmoe" and model.config.num_experts == 4
        assert AutoTokenizer.from_pretrained(ckpt).bos_token == "<bos>"
        prov = json.loads((ckpt / "provenance.json").read_text())
        assert prov["step"] == step and prov["source"] == "mini"
        assert prov["revision"] is None and prov["revision_sha"] is None and len(prov["config_hash"]) == 16
    assert (
        weights(tmp_path / "checkpoints" / "step000002")["model.embed_tokens.weight"]
        .ne(weights(tmp_path / "checkpoints" / "step000006")["model.embed_tokens.weight"])
        .any()
    )
    loss = pd.read_parquet(tmp_path / "loss.parquet")
    assert list(loss["step"]) == [1, 2, 3, 4, 5, 6]
    assert {"loss", "lr", "aux_loss", *(f"loss_{d}" for d in DOMAINS)} <= set(loss.columns)
    assert loss[[f"loss_{d}" for d in DOMAINS]].mean(axis=1).round(5).tolist() == loss["loss"].round(5).tolist()
    assert loss["lr"].tolist()[:3] == pytest.approx([0.001, 0.002, 0.002])
    monitor = pd.read_parquet(tmp_path / "monitor.parquet")
    assert list(monitor.columns) == [
        "step",
        "domain",
        "pathway_distance",
        "consistency",
        "mean_cosine",
        "probe_loss",
        "token_entropy",
    ]
    assert ((monitor["token_entropy"] > 0) & (monitor["token_entropy"] < math.log(4))).all()  # 4 experts
    assert len(monitor) == 3 * len(DOMAINS) and set(monitor["domain"]) == set(DOMAINS)
    assert (monitor["pathway_distance"] >= 0).all() and (monitor["probe_loss"] > 0).all()


@pytest.mark.parametrize(
    "optimizer_overrides", [{}, {"grokfast_lambda": 2.0}, {"orthogonal_gradients": True}], ids=["adamw", "grokfast", "orthograd"]
)
def test_resume_after_interruption_is_exact(world, tmp_path, optimizer_overrides):
    cfg = micro_cfg(**optimizer_overrides)  # Grokfast's moving average and OrthoGrad's wrapped state survive the restart too
    run(cfg, world, tmp_path / "whole")
    run(cfg, world, tmp_path / "cut", stop_after_step=4)  # as if killed after the step-4 checkpoint
    assert not (tmp_path / "cut" / "checkpoints" / "step000006").exists()
    assert not (tmp_path / "cut" / "loss.parquet").exists()
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "step000002")  # snakemake removes incomplete outputs
    run(cfg, world, tmp_path / "cut")
    for name in ("step000002", "step000006"):
        a, b = weights(tmp_path / "whole" / "checkpoints" / name), weights(tmp_path / "cut" / "checkpoints" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "whole" / "loss.parquet"), pd.read_parquet(tmp_path / "cut" / "loss.parquet")
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "whole" / "monitor.parquet"), pd.read_parquet(tmp_path / "cut" / "monitor.parquet")
    )
    # a state from another config is refused, naming the state file
    with pytest.raises(ValueError, match="another config"):
        run(micro_cfg(lr=0.01), world, tmp_path / "cut")


def test_parallel_domains_give_the_weights_of_one_thread(world, tmp_path):
    # the domains' passes side by side (their gradients summed in the config's order) must train
    # exactly the model that one thread trains, the router's aux loss included
    runs = {
        "one thread": micro_cfg(router_aux_loss_coef=0.01),
        "2 threads": micro_cfg(router_aux_loss_coef=0.01, parallel_domains=True, threads=2),
        "3 threads": micro_cfg(router_aux_loss_coef=0.01, parallel_domains=True, threads=3),
    }
    for name, cfg in runs.items():
        run(cfg, world, tmp_path / name)
    a = weights(tmp_path / "one thread" / "checkpoints" / "step000006")
    for name in ("2 threads", "3 threads"):
        b = weights(tmp_path / name / "checkpoints" / "step000006")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "one thread" / "loss.parquet"), pd.read_parquet(tmp_path / name / "loss.parquet")
        )
    assert pd.read_parquet(tmp_path / "2 threads" / "loss.parquet")["aux_loss"].gt(0).all()


def test_domain_gradients_sum_to_the_accumulated_backward(world):
    # the per-domain gradients, from worker processes and summed by apply_gradients in the domains'
    # order, equal what one backward() per domain accumulates in .grad
    torch.set_num_threads(1)  # as the workers run: the reduction order of a kernel depends on its threads
    cfg = micro_cfg(router_aux_loss_coef=0.01)
    tokenizer = AutoTokenizer.from_pretrained(world / "tokenizer")
    batches = [encode(read_split(world / "world" / d / "train.jsonl")[:6], tokenizer, "answer") for d in DOMAINS]
    torch.manual_seed(0)
    model = OlmoeForCausalLM(model_config(cfg["pretrain"], tokenizer))
    for batch in batches:
        losses, _, out = sequence_losses(model, batch)
        ((losses.mean() + 0.01 * out.aux_loss) / len(batches)).backward()
    accumulated = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    def one(d, index):
        return domain_pass(model, batches[d], 0.01, len(batches))

    with DomainWorkers(model, [1.0, 2.0, 1.0, 1.0], 2, one) as workers:
        assert workers.shares == [[0, 1], [2, 3]]  # loads 1 + 2 and 1 + 1
        parts = workers.step([None] * len(batches))
        assert [part["loss"] for part in parts] == [one(d, None)[0] for d in range(len(batches))]
    apply_gradients(model, parts)
    assert all(torch.equal(accumulated[n], p.grad) for n, p in model.named_parameters())


def test_a_failing_domain_worker_names_its_error(world):
    tokenizer = AutoTokenizer.from_pretrained(world / "tokenizer")
    model = OlmoeForCausalLM(model_config(micro_cfg()["pretrain"], tokenizer))

    def broken(d, index):
        raise ValueError(f"domain {d} has no batch")

    with DomainWorkers(model, [1.0, 1.0], 2, broken) as workers, pytest.raises(RuntimeError, match="domain 1 has no batch"):
        workers.step([None, None])


def test_domain_workers_end_with_a_killed_parent(tmp_path):
    # a killed pretraining job leaves no worker behind: each worker reads the parent's death as EOF
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, torch\n"
        "from grokpath.domain_workers import DomainWorkers\n"
        "w = DomainWorkers(torch.nn.Linear(2, 2), [1.0, 1.0], 2, lambda d, i: (0.0, 0.0, [None, None]))\n"
        "w.step([None, None])\n"
        "print(*[p.pid for p in w.procs], flush=True)\n"
        "os._exit(9)\n"  # no close(), as SIGKILL would leave it
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    pids = [int(pid) for pid in done.stdout.split()]
    assert done.returncode == 9 and len(pids) == 2
    deadline = time.time() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_amplify_slow_gradients_by_hand():
    layer = torch.nn.Linear(1, 1, bias=False)
    ema: dict[str, torch.Tensor] = {}
    for grad, expected_ema, expected_grad in [
        (1.0, 1.0, 1.0 + 2 * 1.0),  # the first step's average is the gradient itself
        (3.0, 0.9 * 1.0 + 0.1 * 3.0, 3.0 + 2 * 1.2),  # ema 1.2
        (-1.0, 0.9 * 1.2 + 0.1 * -1.0, -1.0 + 2 * 0.98),  # ema 0.98
    ]:
        layer.weight.grad = torch.tensor([[grad]])
        amplify_slow_gradients(layer, ema, alpha=0.9, lamb=2.0)
        assert ema["weight"].item() == pytest.approx(expected_ema)
        assert layer.weight.grad.item() == pytest.approx(expected_grad)


def test_orthogonal_gradients_first_step_by_hand(world, tmp_path):
    """After one full-batch step, AdamW's first moment is (1 - beta1) times each clipped gradient with its
    component along the parameter removed and its norm restored."""
    cfg = micro_cfg(orthogonal_gradients=True, batch_size=0, steps=2, checkpoint_steps=[1, 2])
    run(cfg, world, tmp_path, stop_after_step=1)
    state = torch.load(tmp_path / "state" / "state.pt", weights_only=False)

    pre = cfg["pretrain"]
    tokenizer = AutoTokenizer.from_pretrained(world / "tokenizer")
    torch.manual_seed(pre["seed"])
    model = OlmoeForCausalLM(model_config(pre, tokenizer))
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    for d in DOMAINS:
        batch = encode(read_split(world / "world" / d / "train.jsonl"), tokenizer, pre["loss_on"])
        for t, g in zip(total, domain_pass(model, batch, pre["router_aux_loss_coef"], len(DOMAINS))[2]):
            if g is not None:
                t += g
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in total]))
    clip = min(1.0, pre["grad_clip"] / (float(norm) + 1e-6))
    adam = state["optimizer"]["state"]  # indexed in the order of the optimizer's parameter groups
    grad_of = {id(p): g for p, g in zip(params, total)}
    ordered = [p for group in parameter_groups(model, pre["weight_decay"], pre["no_weight_decay"]) for p in group["params"]]
    orthogonal_checked = 0
    for i, w in enumerate(ordered):
        g = grad_of[id(w)]
        g = g * clip
        w = w.detach()
        along = (w * g).sum() / (w * w).sum()
        projected = g - along * w
        projected = projected * (torch.linalg.vector_norm(g) / torch.linalg.vector_norm(projected))
        torch.testing.assert_close(adam[i]["exp_avg"], (1 - pre["beta1"]) * projected, rtol=1e-4, atol=1e-9)
        if w.dim() == 2 and float(along.abs()) > 1e-3:
            assert float((adam[i]["exp_avg"] * w).sum().abs()) < 1e-4 * float(
                torch.linalg.vector_norm(g) * torch.linalg.vector_norm(w)
            )
            assert not torch.allclose(adam[i]["exp_avg"], (1 - pre["beta1"]) * g, rtol=1e-3)
            orthogonal_checked += 1
    assert orthogonal_checked >= 3


def test_balanced_shares_by_hand():
    # the default world's padded batches (rows x longest text) of math, code, commonsense, domain, control:
    # code + commonsense = 9,322 against 9,490; LPT would give code + math (8,037) against 10,775
    assert balanced_shares([2961, 5076, 4246, 3568, 2961], 2) == [[0, 3, 4], [1, 2]]
    assert balanced_shares([3, 6, 3, 3, 3], 2) == [[0, 1], [2, 3, 4]]  # 9 and 9: the first of the best found
    assert balanced_shares([5, 1], 4) == [[0], [1]]  # no idle worker is started
    assert balanced_shares([1, 1, 1], 1) == [[0, 1, 2]]
    # 8 workers for 11 domains is past the exhaustive search: LPT, dearest first to the least loaded
    assert balanced_shares(list(range(1, 12)), 8) == [[10], [9], [8], [7], [6], [0, 5], [1, 4], [2, 3]]


def test_pass_costs_are_padded_batches_by_hand():
    batches = [{"input_ids": torch.zeros(423, 7)}, {"input_ids": torch.zeros(386, 11)}]
    assert pass_costs(batches, 0) == pass_costs(batches, None) == [2961.0, 4246.0]  # full batch: every row
    assert pass_costs(batches, 64) == [448.0, 704.0]  # 64 rows a step
    assert pass_costs(batches, 400) == [2800.0, 4246.0]  # never more rows than the domain has


def test_bad_config_fails_early(world, tmp_path):
    with pytest.raises(ValueError, match="max_position_embeddings"):
        run(micro_cfg(max_position_embeddings=8), world, tmp_path)
    with pytest.raises(ValueError, match="pretrain.checkpoint_steps"):
        run(micro_cfg(checkpoint_steps=[2, 60]), world, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_answer_loss_mask(world):
    tok = AutoTokenizer.from_pretrained(world / "tokenizer")
    rows = [{"text": "1 + 2 = 3\n", "prompt": "1 + 2 =", "target": " 3"}, {"text": "1 + 1 = 2\n"}]
    # tokens: <bos> ▁1 ▁+ ▁2 ▁= ▁3 \n ; the second row has no prompt, so counts whole
    answer = encode(rows, tok, "answer")["loss_mask"].int().tolist()
    assert answer == [[0, 0, 0, 0, 0, 1, 1], [0, 1, 1, 1, 1, 1, 1]]
    assert encode(rows, tok, "all")["loss_mask"].int().tolist() == [[0, 1, 1, 1, 1, 1, 1]] * 2


def test_learning_rate_schedule():
    cfg = {"lr": 1e-3, "warmup_steps": 4}
    assert [learning_rate(s, cfg) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def test_full_batch_uses_every_training_text(world, tmp_path):
    from transformers import OlmoeForCausalLM, PreTrainedTokenizerFast

    from grokpath.data import read_split
    from grokpath.pretrain import model_config, sequence_losses

    cfg = micro_cfg(batch_size=0, steps=2, checkpoint_steps=[1, 2], loss_on="answer")
    run(cfg, world, tmp_path)
    logged = pd.read_parquet(tmp_path / "loss.parquet").set_index("step")
    tok = PreTrainedTokenizerFast.from_pretrained(str(world / "tokenizer"))
    torch.manual_seed(cfg["pretrain"]["seed"])
    model = OlmoeForCausalLM(model_config(cfg["pretrain"], tok))  # the same initial weights
    with torch.no_grad():
        for d in DOMAINS:
            rows = read_split(world / "world" / d / "train.jsonl")
            expected = sequence_losses(model, encode(rows, tok, "answer"))[0].mean().item()
            assert logged.loc[1, f"loss_{d}"] == pytest.approx(expected, abs=1e-5)  # step 1 saw the whole domain


def test_no_weight_decay_groups_on_a_real_model(world):
    """Norm gains and biases are not decayed, every matrix is: one zero-gradient AdamW step shows it."""
    from transformers import OlmoeForCausalLM, PreTrainedTokenizerFast

    from grokpath.pretrain import model_config, parameter_groups, parameter_kind

    cfg = micro_cfg()["pretrain"]
    tok = PreTrainedTokenizerFast.from_pretrained(str(world / "tokenizer"))
    torch.manual_seed(0)
    model = OlmoeForCausalLM(model_config(cfg, tok))
    kinds = {name: parameter_kind(model, name) for name, _ in model.named_parameters()}
    # 2 layers x (input, post-attention, q, k norms) + the final norm; OLMoE has no biases
    assert sorted(n for n, k in kinds.items() if k == "norm") == sorted(
        [
            f"model.layers.{i}.{m}.weight"
            for i in range(2)
            for m in ("input_layernorm", "post_attention_layernorm", "self_attn.q_norm", "self_attn.k_norm")
        ]
        + ["model.norm.weight"]
    )
    assert [n for n, k in kinds.items() if k == "router"] == ["model.layers.0.mlp.gate.weight", "model.layers.1.mlp.gate.weight"]
    assert [n for n, k in kinds.items() if k == "embedding"] == ["model.embed_tokens.weight"]
    assert not any(k == "bias" for k in kinds.values())

    groups = parameter_groups(model, 1.0, ["norm", "bias"])
    assert [g["weight_decay"] for g in groups] == [1.0, 0.0] and len(groups[1]["params"]) == 9
    params = dict(model.named_parameters())
    for p in params.values():
        p.data.fill_(2.0)
        p.grad = torch.zeros_like(p)
    torch.optim.AdamW(groups, lr=0.1).step()  # zero gradient: only decoupled decay moves a parameter
    for name, p in params.items():
        expected = 2.0 if kinds[name] == "norm" else 2.0 * (1 - 0.1 * 1.0)
        assert torch.allclose(p.data, torch.full_like(p, expected)), name
    with pytest.raises(ValueError, match="pretrain.no_weight_decay"):
        parameter_groups(model, 1.0, ["norms"])


def test_log_checkpoint_schedule_by_hand():
    from grokpath.checkpoints import mini_checkpoint_steps

    # geomspace(3, 12, 3) = 3, 6, 12; geomspace(25, 1500, 12) ratio 60^(1/11) = 1.4510, rounded
    assert mini_checkpoint_steps({"steps": 12, "n_checkpoints": 3, "checkpoint_schedule": "log", "first_checkpoint": 3}) == [
        3,
        6,
        12,
    ]
    assert mini_checkpoint_steps({"steps": 1500, "n_checkpoints": 12, "checkpoint_schedule": "log", "first_checkpoint": 25}) == [
        25,
        36,
        53,
        76,
        111,
        161,
        233,
        338,
        491,
        713,
        1034,
        1500,
    ]
    assert mini_checkpoint_steps({"steps": 12, "n_checkpoints": 3}) == [4, 8, 12]
