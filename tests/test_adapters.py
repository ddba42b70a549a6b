"""Router adapters: a tiny random model of each of the nine architectures goes through traces,
pathways and consistency, and the captured routing agrees with the model's own routing."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import word_tokenizer
from moe_zoo import ARCHITECTURES, VOCAB, dense_layers, tiny_moe

from grokpath import pathways
from grokpath.config import load_schema, validate
from grokpath.consistency import routing_consistency
from grokpath.io import read_metadata
from grokpath.metrics import read_trace
from grokpath.routing import ADAPTERS, RoutingAccumulator, adapter_for, find_routers
from grokpath.traces import run_traces

torch.set_num_threads(1)


def model_picks(model, model_type):
    """Context: per router layer, the (N, k) experts the model itself sent each token to.

    Read where the model consumes them: the experts module's forward arguments
    ``(hidden_states, top_k_index, top_k_weights)``; for JetMoE, whose experts take tokens
    grouped by expert, the gating's ``batch_index`` and ``expert_size`` (token of each slot,
    slots per expert), turned back into per-token sets here.
    """
    picks, handles = {}, []
    for name, module in model.named_modules():
        parts = name.split(".")
        if "layers" not in parts or len(parts) < parts.index("layers") + 3:
            continue
        layer = int(parts[parts.index("layers") + 1])
        tail = ".".join(parts[parts.index("layers") + 2 :])
        if model_type == "jetmoe" and tail == "mlp.router":

            def hook(module, args, output, layer=layer):
                _, batch_index, _, expert_size, logits = output
                experts = torch.repeat_interleave(torch.arange(len(expert_size)), torch.tensor(expert_size))
                sets = [set() for _ in range(logits.shape[0])]
                for token, expert in zip(batch_index.tolist(), experts.tolist()):
                    sets[token].add(expert)
                picks[layer] = sets

            handles.append(module.register_forward_hook(hook))
        elif tail in ("mlp.experts", "block_sparse_moe.experts"):

            def pre_hook(module, args, kwargs, layer=layer):
                index = args[1] if len(args) > 1 else kwargs["top_k_index"]
                picks[layer] = [set(row) for row in index.tolist()]

            handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
    return picks, handles


def batch():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(4, VOCAB, (3, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding: padded positions are no real tokens
    mask[2, 4:] = 0
    return ids, mask


@pytest.mark.parametrize("normalization", ["softmax", "topk"])
@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_captured_topk_is_the_models_own_routing(model_type, normalization):
    model = tiny_moe(model_type)
    routers = find_routers(model)
    assert routers.dense_layers == dense_layers(model_type)
    assert routers.layers == [i for i in range(model.config.num_hidden_layers) if i not in dense_layers(model_type)]
    ids, mask = batch()
    picks, handles = model_picks(model, model_type)
    with torch.no_grad(), RoutingAccumulator(model, mask, normalization, keep=True) as acc:
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    for handle in handles:
        handle.remove()
    assert sorted(picks) == routers.layers  # the model routed at exactly these layers
    real = mask.bool().reshape(-1)
    for position, layer in enumerate(routers.layers):
        dist, _ = acc.kept[position]  # (B, T, K)
        dist = dist.reshape(-1, routers.num_experts)
        np.testing.assert_allclose(dist.sum(-1).numpy(), 1.0, atol=1e-5)
        assert (dist >= 0).all()
        top = dist.topk(routers.top_k, dim=-1).indices.tolist()
        model_sets = picks[layer]
        mismatches = [t for t in range(len(top)) if real[t] and set(top[t]) != model_sets[t]]
        assert not mismatches, (
            f"{model_type} layer {layer}: token {mismatches[0]} {top[mismatches[0]]} vs {model_sets[mismatches[0]]}"
        )
        if normalization == "topk":
            assert ((dist > 0).sum(-1) == routers.top_k).all()  # zero outside the model's picks


def test_deepseek_v3_bias_topk_is_the_models_routing():
    """A trained DeepSeek-V3 router has a non-zero e_score_correction_bias: it changes which experts are
    picked but not their weights. ``topk`` is still exactly the model's routing."""
    model = tiny_moe("deepseek_v3")
    with torch.no_grad():
        for routers_module in find_routers(model).modules:
            routers_module.e_score_correction_bias.normal_(0, 0.5)
    ids, mask = batch()
    picks, handles = model_picks(model, "deepseek_v3")
    with torch.no_grad(), RoutingAccumulator(model, mask, "topk", keep=True) as acc:
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    for handle in handles:
        handle.remove()
    for position, layer in enumerate(find_routers(model).layers):
        dist = acc.kept[position][0].reshape(-1, 8)
        top = dist.topk(2, dim=-1).indices.tolist()
        assert all(set(top[t]) == picks[layer][t] for t in range(len(top)) if mask.reshape(-1)[t])


def test_unknown_architecture_and_router_override():
    from transformers import LlamaConfig, LlamaForCausalLM

    dense = LlamaForCausalLM(
        LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)
    )
    with pytest.raises(
        ValueError,
        match=r"^model_type 'llama' has no router adapter: add an Adapter to grokpath\.routing\.ADAPTERS.*traces\.router",
    ):
        adapter_for(dense)
    mixtral = tiny_moe("mixtral")
    assert adapter_for(mixtral, "mlp.gate") is ADAPTERS["mixtral"]
    with pytest.raises(ValueError, match=r"no router modules named '\*\.layers\.<i>\.mlp\.router'.*traces\.router"):
        find_routers(mixtral, "mlp.router")


@pytest.fixture(scope="module")
def tokenizer():
    words = [f"w{i}" for i in range(VOCAB - 4)]
    return word_tokenizer(["<pad>", "<bos>", "<eos>", "<unk>", *words], bos="<bos>", unk="<unk>", pad="<pad>", eos="<eos>")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    domains = {}
    for name in ("algebra", "python"):
        domains[name] = {}
        for split in ("train", "validation", "test"):
            rows = [
                {
                    "sample_id": f"{name}-{split}-{i}",
                    "text": " ".join(f"w{j}" for j in rng.integers(0, VOCAB - 4, rng.integers(3, 9))),
                }
                for i in range(5)
            ]
            path = root / name / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            domains[name][split] = str(path)
    return domains


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_traces_pathways_consistency(model_type, tokenizer, data, tmp_path):
    model = tiny_moe(model_type, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    cfg = validate({"domains": data, "traces": {"batch_size": 2, "max_length": 12, "per_token": True}}, load_schema())
    run_traces(cfg, tmp_path / "ckpt", "step7", tmp_path / "out")
    routers = find_routers(model)
    path = tmp_path / "out" / "python_train.parquet"
    meta = read_metadata(path)
    assert meta["model_type"] == model_type and meta["router"] == ADAPTERS[model_type].path
    assert meta["layers"] == routers.layers and meta["dense_layers"] == dense_layers(model_type)
    assert meta["L"] == len(routers.layers) and meta["K"] == 8 and meta["top_k"] == 2
    frame, routing = read_trace(path)
    assert routing.shape == (5, len(routers.layers), 8)
    np.testing.assert_allclose(routing.sum(-1), 1.0, atol=1e-5)
    assert np.isfinite(frame["loss"]).all()
    tokens = pq.read_table(tmp_path / "out" / "python_train.tokens.parquet").to_pandas()
    assert sorted(set(tokens["layer"])) == routers.layers  # real decoder-layer indices
    strings = pathways.pathway_strings(routing, 0.7, True)
    assert all(s.count("-") == len(routers.layers) - 1 and s for s in strings)
    weights = np.load(tmp_path / "out" / "router_weights.npy")
    assert weights.shape == (len(routers.layers), 8, 32)
    scores = routing_consistency(routing, weights)
    assert np.isfinite(scores["mean_cosine"]).all() and (np.abs(scores["mean_cosine"]) <= 1 + 1e-9).all()


def test_router_override_reads_an_architecture_without_adapter():
    """``traces.router`` lets a model_type without an adapter run with the generic reader (logits first)."""
    model = tiny_moe("mixtral")
    model.config.model_type = "my_moe"
    with pytest.raises(ValueError, match=r"^model_type 'my_moe' has no router adapter"):
        find_routers(model)
    routers = find_routers(model, "mlp.gate")
    assert routers.adapter.model_type == "my_moe" and routers.layers == [0, 1, 2] and routers.top_k == 2
    ids, mask = batch()
    picks, handles = model_picks(model, "mixtral")
    with torch.no_grad(), RoutingAccumulator(model, mask, "softmax", "mlp.gate", keep=True) as acc:
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    for handle in handles:
        handle.remove()
    for position, layer in enumerate(routers.layers):
        top = acc.kept[position][0].reshape(-1, 8).topk(2, dim=-1).indices.tolist()
        assert all(set(top[t]) == picks[layer][t] for t in range(len(top)) if mask.reshape(-1)[t])
