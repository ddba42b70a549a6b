"""Traces: routing means and losses against independent recomputation, Parquet schema, determinism."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_olmoe, word_tokenizer

from grokpath import traces
from grokpath.config import load_schema, validate
from grokpath.io import read_metadata
from grokpath.routing import find_gates, logits_of, router_weights
from grokpath.traces import answer_mask, routing_weights, run_traces, sample_exact_match, sample_losses, trace_batch, trace_pass

torch.set_num_threads(1)
WORDS = [f"w{i}" for i in range(30)]
N_LAYERS, N_EXPERTS, TOP_K = 2, 8, 2


def build_checkpoint(directory, seed=0):
    """A tiny OLMoE and a WordLevel tokenizer (BOS prepended) saved as an HF directory."""
    vocab = ["<pad>", "<bos>", "<eos>", "<unk>", *WORDS]
    tokenizer = word_tokenizer(vocab, bos="<bos>", unk="<unk>", pad="<pad>", eos="<eos>")
    model = tiny_olmoe(
        seed,
        vocab_size=len(vocab),
        num_hidden_layers=N_LAYERS,
        num_experts=N_EXPERTS,
        num_experts_per_tok=TOP_K,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    ).eval()
    with torch.no_grad():  # routers start at zero: give them weights so routing is not uniform
        for gate in find_gates(model):
            gate.weight.normal_(0, 1.0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, tokenizer


def write_split(path, n, seed, prefix):
    rng = random.Random(seed)
    records = [
        {"sample_id": f"{prefix}-{i:03d}", "text": " ".join(rng.choices(WORDS, k=rng.randint(2, 14))) + "\n"} for i in range(n)
    ]
    rng.shuffle(records)  # the Parquet must come back sorted by sample_id
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    model, tokenizer = build_checkpoint(root / "ckpt")
    domains = {}
    for d, name in enumerate(["alpha", "beta"]):
        domains[name] = {}
        for s, split in enumerate(["train", "validation", "test"]):
            write_split(root / "data" / name / f"{split}.jsonl", n=7 + s, seed=10 * d + s, prefix=name)
        domains[name] = {split: str(root / "data" / name / f"{split}.jsonl") for split in ["train", "validation", "test"]}
    cfg = validate({"domains": domains, "traces": {"batch_size": 3, "max_length": 12}}, load_schema())
    return root, model, tokenizer, cfg


def reference_routing(model, ids, normalization):
    """Token-mean routing of one unpadded sample from a pre-hook on the MoE block: x @ W.T, softmax."""
    inputs = []
    handles = [layer.mlp.register_forward_pre_hook(lambda m, a: inputs.append(a[0])) for layer in model.model.layers]
    with torch.no_grad():
        model(torch.tensor([ids]))
    for h in handles:
        h.remove()
    rows = []
    for layer, x in zip(model.model.layers, inputs):
        probs = torch.softmax(x[0].double() @ layer.mlp.gate.weight.detach().double().T, dim=-1).numpy()  # (T, K)
        if normalization == "topk":
            keep = np.argsort(-probs, axis=1)[:, :TOP_K]
            sparse = np.zeros_like(probs)
            np.put_along_axis(sparse, keep, np.take_along_axis(probs, keep, 1), 1)
            probs = sparse / sparse.sum(1, keepdims=True)
        rows.append(probs.mean(0))
    return np.stack(rows)  # (L, K)


@pytest.mark.parametrize("normalization", ["softmax", "topk"])
def test_trace_file_matches_independent_recomputation(study, tmp_path, normalization):
    root, model, tokenizer, cfg = study
    cfg = {**cfg, "traces": {**cfg["traces"], "routing_normalization": normalization}}
    run_traces(cfg, root / "ckpt", "step000100", tmp_path)
    frame = pq.read_table(tmp_path / "alpha_train.parquet").to_pandas()
    records = {json.loads(row)["sample_id"]: json.loads(row)["text"] for row in open(root / "data/alpha/train.jsonl")}
    assert list(frame.sample_id) == sorted(records)
    lengths = {len(tokenizer(records[s])["input_ids"]) for s in records}
    assert len(lengths) > 1  # batches of 3 mix lengths: right padding is exercised
    for row in frame.itertuples():
        ids = tokenizer(records[row.sample_id])["input_ids"][:12]
        assert row.n_tokens == len(ids)
        expected = reference_routing(model, ids, normalization)
        np.testing.assert_allclose(np.asarray(row.routing).reshape(N_LAYERS, N_EXPERTS), expected, atol=2e-6)
        with torch.no_grad():
            alone = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
        assert row.loss == pytest.approx(alone, abs=2e-5)
    if normalization == "topk":
        assert (np.stack(frame.routing) == 0).any()  # experts never in a token's top-k stay at zero


def test_trace_batch_padding_invariant_and_topk_sums():
    torch.manual_seed(1)
    logits = torch.randn(5, 8)
    weights = routing_weights(logits, "topk", 3)
    assert torch.allclose(weights.sum(-1), torch.ones(5))
    assert ((weights > 0).sum(-1) == 3).all()
    assert torch.equal(weights.argmax(-1), logits.argmax(-1))


def test_trace_batch_handles_padding(study):
    _, model, _, _ = study
    ids = torch.tensor([[1, 5, 6, 7, 8, 9], [1, 10, 11, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    loss, routing = trace_batch(model, ids, mask)
    assert loss.shape == (2,) and routing.shape == (2, N_LAYERS, N_EXPERTS)
    alone_loss, alone_routing = trace_batch(model, ids[1:, :3], mask[1:, :3])
    assert loss[1].item() == pytest.approx(alone_loss[0].item(), abs=1e-5)
    assert torch.allclose(routing[1], alone_routing[0], atol=1e-6)
    assert torch.allclose(routing.sum(-1), torch.ones(2, N_LAYERS), atol=1e-5)


def test_schema_metadata_and_deterministic_bytes(study, tmp_path):
    root, model, _, cfg = study
    cfg = {**cfg, "traces": {**cfg["traces"], "per_token": True}}
    for run in ("a", "b"):
        run_traces(cfg, root / "ckpt", "step000100", tmp_path / run)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(
        [
            f"{d}_{s}{x}"
            for d in ("alpha", "beta")
            for s in ("train", "validation", "test")
            for x in (".parquet", ".tokens.parquet")
        ]
        + ["router_weights.npy"]
    )
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    schema = pq.read_schema(tmp_path / "a" / "beta_validation.parquet")
    assert [f.name for f in schema] == [
        "sample_id",
        "domain",
        "split",
        "ckpt",
        "step",
        "revision_sha",
        "n_tokens",
        "loss",
        "routing",
    ]
    assert str(schema.field("sample_id").type) == "dictionary<values=string, indices=int32, ordered=0>"
    assert str(schema.field("step").type) == "int64" and str(schema.field("n_tokens").type) == "int32"
    assert str(schema.field("loss").type) == "float"
    routing_type = schema.field("routing").type
    assert isinstance(routing_type, pa.FixedSizeListType) and routing_type.list_size == N_LAYERS * N_EXPERTS
    assert routing_type.value_type == pa.float32()
    meta = read_metadata(tmp_path / "a" / "beta_validation.parquet")
    assert (meta["L"], meta["K"], meta["top_k"], meta["routing_normalization"]) == (N_LAYERS, N_EXPERTS, TOP_K, "softmax")
    assert meta["max_length"] == 12 and meta["n_truncated"] >= 1 and meta["step"] == 100
    assert len(meta["model_config_hash"]) == 16 and meta["grokpath_version"]
    frame = pq.read_table(tmp_path / "a" / "beta_validation.parquet").to_pandas()
    assert set(frame.domain) == {"beta"} and set(frame.split) == {"validation"} and frame.revision_sha.isna().all()
    assert (frame.n_tokens <= 12).all() and (frame.n_tokens == 12).any()

    tokens = pq.read_table(tmp_path / "a" / "beta_validation.tokens.parquet").to_pandas()
    assert len(tokens) == frame.n_tokens.sum() * N_LAYERS
    assert tokens.expert_ids.iloc[0].dtype == np.uint8 and tokens.weights.iloc[0].dtype == np.float16
    first = tokens[tokens.sample_id == frame.sample_id.iloc[0]]
    mean_top = np.zeros((N_LAYERS, N_EXPERTS))
    for row in first.itertuples():
        mean_top[row.layer, row.expert_ids.astype(int)] += row.weights
    softmax_mean = np.asarray(frame.routing.iloc[0]).reshape(N_LAYERS, N_EXPERTS)
    assert (mean_top / frame.n_tokens.iloc[0] <= softmax_mean + 1e-3).all()  # top-k part of the full softmax

    weights = np.load(tmp_path / "a" / "router_weights.npy")
    assert weights.dtype == np.float32 and weights.shape == (N_LAYERS, N_EXPERTS, 32)
    np.testing.assert_array_equal(weights[1], model.model.layers[1].mlp.gate.weight.detach().numpy())


def test_router_output_shapes_across_versions():
    logits = torch.randn(4, 8)
    assert logits_of(logits) is logits  # older transformers: the gate returns logits
    assert logits_of((logits, torch.ones(4, 2), torch.zeros(4, 2))) is logits  # 5.x OlmoeTopKRouter
    with pytest.raises(TypeError):
        logits_of({"logits": logits})


def test_router_weights_and_missing_gate(study):
    _, model, _, _ = study
    assert router_weights(model).shape == (N_LAYERS, N_EXPERTS, 32)
    with pytest.raises(ValueError, match="traces.router"):
        find_gates(model, "block_sparse_moe.gate")


def test_bad_data_fails_before_model_load(study, tmp_path):
    root, _, _, cfg = study
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sample_id": "x-1", "text": "w1 w2"}\n{"sample_id": "x-1", "text": "w3 w4"}\n')
    domains = {**cfg["domains"], "alpha": {**cfg["domains"]["alpha"], "test": str(bad)}}
    with pytest.raises(ValueError, match=r"bad.jsonl:2: duplicate sample_id 'x-1'"):
        run_traces({**cfg, "domains": domains}, tmp_path / "no-such-checkpoint", "step000100", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_step_bfloat16_run_and_clear_error(study, tmp_path):
    from grokpath.step import run_step

    root, _, _, cfg = study
    bf16 = {**cfg, "traces": {**cfg["traces"], "dtype": "bfloat16"}}
    names = {"checkpoint_dir": str(root / "ckpt"), "ckpt": "step000100", "threads": 1}
    assert run_step("grokpath.traces:run_traces", {**names, "cfg": bf16, "out_dir": str(tmp_path / "bf16")}) == 0
    run_traces(cfg, root / "ckpt", "step000100", tmp_path / "fp32")
    half = pq.read_table(tmp_path / "bf16" / "alpha_test.parquet").to_pandas()
    full = pq.read_table(tmp_path / "fp32" / "alpha_test.parquet").to_pandas()
    assert read_metadata(tmp_path / "bf16" / "alpha_test.parquet")["dtype"] == "bfloat16"
    np.testing.assert_allclose(half.loss, full.loss, rtol=0.03)  # half-precision logits, float32 NLL
    np.testing.assert_allclose(np.stack(half.routing), np.stack(full.routing), atol=0.03)

    missing = {**names, "checkpoint_dir": str(tmp_path / "gone"), "cfg": cfg, "out_dir": str(tmp_path / "x")}
    assert run_step("grokpath.traces:run_traces", missing, tmp_path / "err.log") == 2
    assert f"checkpoint directory '{tmp_path / 'gone'}' does not exist" in (tmp_path / "err.log").read_text()


def test_revision_sha_and_step_come_from_provenance(study, tmp_path):
    import shutil

    root, _, _, cfg = study
    ckpt = tmp_path / "main"
    shutil.copytree(root / "ckpt", ckpt)
    (ckpt / "provenance.json").write_text(json.dumps({"revision_sha": "cd" * 20, "source": "hf"}))
    one = {**cfg, "domains": {"beta": cfg["domains"]["beta"]}}
    one["checkpoints"] = {**cfg["checkpoints"], "steps": {"main": 1220000}}
    run_traces(one, ckpt, "main", tmp_path / "out")
    frame = pq.read_table(tmp_path / "out" / "beta_train.parquet").to_pandas()
    assert set(frame.revision_sha) == {"cd" * 20} and set(frame.step) == {1220000} and set(frame.ckpt) == {"main"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"beta_{s}.parquet" for s in ("train", "validation", "test")] + ["router_weights.npy"]
    )


def write_prompted_split(path, n, seed, prefix):
    """Records with prompt/target, ``text == prompt + target + "\\n"``."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        prompt = " ".join(rng.choices(WORDS, k=rng.randint(1, 6)))
        target = " " + " ".join(rng.choices(WORDS, k=rng.randint(1, 3)))
        records.append({"sample_id": f"{prefix}-{i:03d}", "text": prompt + target + "\n", "prompt": prompt, "target": target})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_target_loss_is_mean_nll_over_target_tokens(study, tmp_path):
    root, model, tokenizer, cfg = study
    splits = {s: tmp_path / "data" / f"{s}.jsonl" for s in ("train", "validation", "test")}
    records = {s: write_prompted_split(p, n=5, seed=i, prefix=s) for i, (s, p) in enumerate(splits.items())}
    domains = {"gamma": {s: str(p) for s, p in splits.items()}}
    target_cfg = validate({"domains": domains, "traces": {"batch_size": 2, "max_length": 12, "loss_on": "target"}}, load_schema())
    all_cfg = validate({"domains": domains, "traces": {"batch_size": 2, "max_length": 12}}, load_schema())
    run_traces(target_cfg, root / "ckpt", "step000100", tmp_path / "target")
    run_traces(all_cfg, root / "ckpt", "step000100", tmp_path / "all")
    target = pq.read_table(tmp_path / "target" / "gamma_train.parquet").to_pandas().set_index("sample_id")
    whole = pq.read_table(tmp_path / "all" / "gamma_train.parquet").to_pandas().set_index("sample_id")
    assert read_metadata(tmp_path / "target" / "gamma_train.parquet")["loss_on"] == "target"
    for record in records["train"]:
        ids = tokenizer(record["text"])["input_ids"][:12]
        n_prompt = 1 + len(record["prompt"].split())  # BOS + one token per prompt word
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        log_probs = torch.log_softmax(logits.double(), -1)
        nll = [-log_probs[t - 1, ids[t]].item() for t in range(n_prompt, len(ids))]  # token t predicted at t-1
        assert target.loc[record["sample_id"], "loss"] == pytest.approx(sum(nll) / len(nll), abs=2e-5)
        everything = [-log_probs[t - 1, ids[t]].item() for t in range(1, len(ids))]
        assert whole.loc[record["sample_id"], "loss"] == pytest.approx(sum(everything) / len(everything), abs=2e-5)
    # routing stays a mean over all real tokens
    np.testing.assert_allclose(np.stack(target.routing), np.stack(whole.loc[target.index].routing), atol=1e-6)


def test_target_loss_counts_target_and_newline_with_world_tokenizer():
    from grokpath.traces import target_starts
    from grokpath.world.tokenizer import build_tokenizer

    records = [
        {"sample_id": "m-1", "prompt": "17 + 25 =", "target": " 19", "text": "17 + 25 = 19\n"},
        {"sample_id": "m-2", "prompt": "the friend of ama is", "target": " bek", "text": "the friend of ama is bek\n"},
    ]
    tokenizer = build_tokenizer([r["text"] for r in records])
    ids = [tokenizer(r["text"])["input_ids"] for r in records]
    starts = target_starts(tokenizer, records, ids, "world.jsonl")
    assert starts == [5, 6]  # BOS + prompt words; the target word and "\n" remain
    assert [tokenizer.convert_ids_to_tokens(i[s:]) for i, s in zip(ids, starts)] == [["▁19", "\n"], ["▁bek", "\n"]]


def test_target_loss_needs_prompt_and_target(study, tmp_path):
    root, _, _, cfg = study
    target_cfg = {**cfg, "traces": {**cfg["traces"], "loss_on": "target"}}
    with pytest.raises(ValueError, match=r"train.jsonl:1: field 'prompt' missing"):
        run_traces(target_cfg, tmp_path / "no-such-checkpoint", "step000100", tmp_path / "out")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"sample_id": "x-1", "text": "w1 w2\n", "prompt": "w3", "target": " w2"}) + "\n")
    domains = {"alpha": {s: str(bad) for s in ("train", "validation", "test")}}
    with pytest.raises(ValueError, match=r"bad.jsonl: sample 'x-1': field 'text' does not start with field 'prompt'"):
        run_traces({**target_cfg, "domains": domains}, root / "ckpt", "step000100", tmp_path / "out")


# ---------------------------------------------------------------- one loss, one answer mask, padding
@pytest.mark.parametrize("normalization", ["softmax", "topk"])
def test_padding_changes_neither_routing_nor_loss(study, normalization):
    """A sample alone and batched beside a longer one: the same routing means, loss, answer loss and per-token top-k."""
    _, model, _, _ = study
    short, long = [1, 10, 11, 12, 5], [1, 5, 6, 7, 8, 9, 13, 14, 15]
    ids = torch.tensor([long, short + [0] * (len(long) - len(short))])
    mask = (ids != 0).long()
    alone_ids, alone_mask = torch.tensor([short]), torch.ones(1, len(short), dtype=torch.long)
    batched = trace_pass(model, ids, mask, normalization, per_token=True, loss_mask=answer_mask(mask, [6, 3]))
    alone = trace_pass(model, alone_ids, alone_mask, normalization, per_token=True, loss_mask=answer_mask(alone_mask, [3]))
    np.testing.assert_allclose(batched.routing[1].numpy(), alone.routing[0].numpy(), rtol=0, atol=1e-6)
    assert batched.loss[1].item() == pytest.approx(alone.loss[0].item(), abs=1e-6)
    assert torch.equal(batched.token_expert_ids[1, : len(short)], alone.token_expert_ids[0])
    # the routing means are over real tokens only: each layer sums to 1
    assert torch.allclose(batched.routing.sum(-1), torch.ones(2, N_LAYERS), atol=1e-5)
    # the answer loss of the short sample is over its tokens 3 and 4 alone
    with torch.no_grad():
        log_probs = torch.log_softmax(model(alone_ids).logits[0].double(), -1)
    expected = -(log_probs[2, short[3]] + log_probs[3, short[4]]).item() / 2
    assert alone.loss[0].item() == pytest.approx(expected, abs=2e-6)


def test_sample_losses_chunks_are_bit_identical_to_one_cross_entropy(monkeypatch):
    torch.manual_seed(3)
    logits = torch.randn(3, 7, 50) * 4
    ids = torch.randint(0, 50, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    loss_mask = answer_mask(mask, [3, 2, 1])
    # the plain path: one cross_entropy over every predicted position, masked mean per sample
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, 50), ids[:, 1:].reshape(-1), reduction="none").view(3, 6)
    plain = (nll * loss_mask[:, 1:]).sum(1) / loss_mask[:, 1:].sum(1)
    for chunk_bytes in (4 * 50, 4 * 50 * 5, 2**21):  # 1 row, 5 rows, all rows per chunk
        monkeypatch.setattr(traces, "_CHUNK_BYTES", chunk_bytes)
        assert torch.equal(sample_losses(logits, ids, mask, loss_mask), plain)
    # exact match: argmax right at every averaged position
    hits = (logits[:, :-1].argmax(-1) == ids[:, 1:]) | (loss_mask[:, 1:] == 0)
    assert torch.equal(sample_exact_match(logits, ids, mask, loss_mask), hits.all(1))
    forced = ids.clone()
    forced[:, 1:] = logits[:, :-1].argmax(-1)
    assert sample_exact_match(logits, forced, mask).all()


def test_answer_mask_by_hand():
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    assert answer_mask(mask, [2, 4]).tolist() == [[0, 0, 1, 1, 0], [0, 0, 0, 0, 1]]
