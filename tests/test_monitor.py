"""The pathway monitor as an API: entropies by hand, and the Trainer callback's rows against a direct
computation on the checkpoints the Trainer saved."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import word_tokenizer
from moe_zoo import VOCAB, tiny_moe, train_with_callback

from grokpath.monitor import COLUMNS, PathwayMonitor, routing_entropies
from grokpath.routing import find_routers

torch.set_num_threads(1)
WORDS = [f"w{i}" for i in range(VOCAB - 4)]


@pytest.fixture(scope="module")
def tokenizer():
    return word_tokenizer(["<pad>", "<bos>", "<eos>", "<unk>", *WORDS], bos="<bos>", unk="<unk>", pad="<pad>", eos="<eos>")


def probe_texts(seed: int, n: int = 6) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 8))) for _ in range(n)]


@pytest.mark.parametrize("model_type", ["mixtral", "qwen2_moe"])
def test_routing_entropies_by_hand(model_type):
    """Per-token entropy of softmax(x W^T) from the router's own input, over real tokens only."""
    model = tiny_moe(model_type)
    routers = find_routers(model)
    inputs = []
    handles = [m.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach())) for m in routers.modules]
    ids = torch.randint(4, VOCAB, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    got = routing_entropies(model, ids, mask)
    for h in handles:
        h.remove()
    real = mask.bool().reshape(-1)
    token_sums, sample_means = [], []
    for x, module in zip(inputs, routers.modules):
        probs = torch.softmax(x.reshape(-1, x.shape[-1]).double() @ module.weight.detach().double().T, -1)
        entropy = -(probs * probs.log()).sum(-1)
        token_sums.append(float(entropy[real].sum()))
        means = (probs.view(2, 6, -1) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        sample_means.append(-(means * means.log()).sum(-1))
    assert got["n_tokens"] == 10
    assert got["token_sum"].tolist() == pytest.approx(token_sums, rel=1e-5)
    assert got["sample_mean"].tolist() == pytest.approx(torch.stack(sample_means).mean(0).tolist(), rel=1e-5)
    assert all(0 < s / 10 < math.log(8) for s in token_sums)


def test_monitor_rows_and_mode(tokenizer):
    model = tiny_moe("qwen2_moe")  # a dense layer in the middle: real layer indices 0 and 2
    model.train()
    monitor = PathwayMonitor(model, {"algebra": probe_texts(0), "python": probe_texts(1)}, tokenizer)
    rows = monitor.record(5)
    assert model.training  # the monitor measures in eval mode and restores the training mode
    frame = monitor.frame()
    assert list(frame.columns) == COLUMNS and list(frame["domain"]) == ["algebra", "python"]
    assert (frame["step"] == 5).all() and (frame["pathway_distance"] > 0).all() and (frame["probe_loss"] > 0).all()
    assert ((frame["token_entropy"] > 0) & (frame["token_entropy"] < math.log(8))).all()
    assert rows == monitor.rows
    with pytest.raises(ValueError, match="unknown monitor setting 'treshold'"):
        PathwayMonitor(model, probe_texts(0), tokenizer, treshold=0.5)


def test_trainer_callback_rows_equal_direct_computation_on_saved_checkpoints(tokenizer, tmp_path):
    from transformers import MixtralForCausalLM

    from grokpath.callbacks import PathwayMonitorCallback

    model = tiny_moe("mixtral", pad_token_id=0, bos_token_id=1, eos_token_id=2)
    rng = np.random.default_rng(3)
    train = []
    for _ in range(32):  # fixed-length texts: no padding in the training batches
        ids = tokenizer(" ".join(rng.choice(WORDS, size=7)))["input_ids"]
        train.append({"input_ids": torch.tensor(ids), "labels": torch.tensor(ids)})
    probes = {"algebra": probe_texts(10), "python": probe_texts(11)}
    callback = PathwayMonitorCallback(probes, tokenizer, tmp_path / "monitor")
    train_with_callback(model, train, callback, tmp_path / "run", max_steps=4, batch_size=8, lr=5e-3)

    recorded = pd.read_parquet(tmp_path / "monitor" / "monitor.parquet")
    assert (tmp_path / "monitor" / "monitor.png").stat().st_size > 0 and (tmp_path / "monitor" / "monitor.pdf").is_file()
    assert list(recorded.columns) == COLUMNS
    assert sorted(set(recorded["step"])) == [2, 4]
    direct = []
    for step in (2, 4):
        saved = MixtralForCausalLM.from_pretrained(tmp_path / "run" / f"checkpoint-{step}").eval()
        direct += PathwayMonitor(saved, probes, tokenizer).measure(step)
    direct = pd.DataFrame(direct, columns=COLUMNS)
    pd.testing.assert_frame_equal(recorded.reset_index(drop=True), direct, check_exact=False, rtol=1e-5, atol=1e-6)
    assert not np.allclose(direct["probe_loss"][:2], direct["probe_loss"][2:])  # training moved the model


def test_trainer_callback_every_n_steps_without_saves(tokenizer, tmp_path):
    from grokpath.callbacks import PathwayMonitorCallback

    model = tiny_moe("qwen2_moe", pad_token_id=0, bos_token_id=1, eos_token_id=2)
    ids = [tokenizer(t)["input_ids"] for t in probe_texts(4, 16)]
    train = [{"input_ids": torch.tensor(i), "labels": torch.tensor(i)} for i in ids if len(i) == len(ids[0])]
    callback = PathwayMonitorCallback(probe_texts(5), tokenizer, tmp_path / "monitor", every_n_steps=2, figure=False)
    train_with_callback(model, train, callback, tmp_path / "run", max_steps=5, batch_size=1, save_steps=None)
    recorded = pd.read_parquet(tmp_path / "monitor" / "monitor.parquet")
    assert list(recorded["step"]) == [2, 4] and set(recorded["domain"]) == {"all"}
    assert not (tmp_path / "monitor" / "monitor.png").exists()
    with pytest.raises(ValueError, match="every_n_steps must be a positive integer"):
        PathwayMonitorCallback(probe_texts(5), tokenizer, tmp_path, every_n_steps=0)
