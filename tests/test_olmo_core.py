"""OLMo-core runs: the native router adapter, OLMo-core's conversion as a checkpoint source, and a study of
an OLMo-core run directory end to end (conversion, traces, metrics, the generic exact-match task on three
domains) through snakemake. Needs the extra grokpath[olmo-core]; OLMo-core's MoE forward needs a GPU, so
routers are called directly on hidden states here (bench/olmo_core_callback.py covers training)."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import make_workdir, run_snakemake, word_tokenizer

pytest.importorskip("olmo_core", reason="OLMo-core is not installed: pip install -e '.[olmo-core]' (grokpath's extra)")

from olmo_core_run import OLMO_CORE_VOCAB, build, tiny_moe_config, write_run  # noqa: E402

from grokpath.checkpoints import checkpoint_names, read_provenance  # noqa: E402
from grokpath.io import read_metadata  # noqa: E402
from grokpath.olmo_core import OLMoCoreCausalLM, convert_checkpoint, native_router_weights  # noqa: E402
from grokpath.routing import RoutingAccumulator, find_routers, router_weights  # noqa: E402

WORDS = [f"w{i}" for i in range(20)]
DOMAINS = ("alpha", "beta-2", "gamma")  # any names: no task YAML of their own


def tokenizer():
    tok = word_tokenizer([*OLMO_CORE_VOCAB, *WORDS, "+", "="], bos="<bos>", unk="<unk>", pad="<pad>", eos="<eos>")
    tok.model_max_length = 32  # the converted config's max_position_embeddings (OLMo-core's default)
    return tok


def direct_routing(router, hidden: torch.Tensor):
    """Softmax over x @ W.T (W: the flat weight viewed (K, d)) and its top-k: the router by hand."""
    weight = router.weight.detach().view(router.num_experts, router.d_model)
    probs = torch.softmax(hidden.reshape(-1, router.d_model) @ weight.T, dim=-1)
    values, indices = probs.topk(router.top_k, dim=-1)
    return probs, values, indices


@pytest.fixture(scope="module")
def native():
    model, _ = build(tiny_moe_config(len(tokenizer())), seed=1)
    return OLMoCoreCausalLM(model.eval())


def test_router_locations_and_weights(native):
    routers = find_routers(native)
    assert routers.adapter.model_type == "olmo_core" and routers.layers == [0, 1] and routers.dense_layers == []
    assert (routers.num_experts, routers.top_k) == (8, 2)
    expected = np.stack([b.feed_forward_moe.router.weight.detach().view(8, 32).numpy() for b in native.layers.values()])
    np.testing.assert_array_equal(router_weights(native), expected)


@pytest.mark.parametrize("normalization", ["softmax", "topk"])
def test_router_scores_picks_and_weights_equal_a_direct_computation(native, normalization):
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 32)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    routers = find_routers(native)
    with torch.no_grad(), RoutingAccumulator(native, mask, normalization, keep=True) as acc:
        for router in routers.modules:  # each router called on hidden states, as its block calls it
            router(hidden)
    means = acc.means()
    for layer, router in enumerate(routers.modules):
        probs, values, indices = direct_routing(router, hidden)
        dist, routed = acc.kept[layer]
        torch.testing.assert_close(routed.logits.softmax(-1), probs)
        assert torch.equal(routed.indices, indices)
        torch.testing.assert_close(routed.weights, values)
        if normalization == "softmax":
            expected = probs
        else:  # the picked experts' weights renormalized to 1, zero elsewhere
            expected = torch.zeros_like(probs).scatter(-1, indices, values / values.sum(-1, keepdim=True))
        torch.testing.assert_close(dist.reshape(-1, 8), expected)
        real = expected.view(2, 5, 8) * mask[..., None]
        torch.testing.assert_close(means[:, layer], real.sum(1) / mask.sum(1, keepdim=True))


def test_sigmoid_gating_full_distribution_is_the_normalized_sigmoid():
    config = tiny_moe_config(len(tokenizer()))
    config.block.feed_forward_moe.router.gating_function = "sigmoid"
    model, _ = build(config, seed=2)
    wrapped = OLMoCoreCausalLM(model.eval())
    router = find_routers(wrapped).modules[0]
    hidden = torch.randn(1, 4, 32)
    with torch.no_grad(), RoutingAccumulator(wrapped, torch.ones(1, 4), "softmax", keep=True) as acc:
        for module in find_routers(wrapped).modules:
            module(hidden)
    scores = torch.sigmoid(hidden.reshape(4, 32) @ router.weight.detach().view(8, 32).T) + 1e-7
    torch.testing.assert_close(acc.kept[0][0].reshape(4, 8), scores / scores.sum(-1, keepdim=True))
    assert torch.equal(acc.kept[0][1].indices, scores.topk(2, dim=-1).indices)


# ---------------------------------------------------------------- a run directory
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("olmo_core_run")
    model = write_run(root / "run", tokenizer(), steps=[2, 4], seed=0)
    (root / "run" / "step6").mkdir()  # a save that never completed: skipped, named, counted
    return root, model


def test_discovery_takes_complete_step_directories(run, caplog):
    root, _ = run
    config = {"checkpoints": {"source": "olmo_core", "olmo_core": {"dir": str(root / "run")}}}
    assert checkpoint_names(config) == ["step2", "step4"]
    assert "skipped 1 step directory(ies)" in caplog.text and "step6 (no train/rank0.pt)" in caplog.text


def test_converted_gate_picks_the_native_routers_top_k(run, tmp_path):
    root, model = run
    checkpoints = {"source": "olmo_core", "olmo_core": {"dir": str(root / "run")}}
    out = convert_checkpoint(checkpoints, "step4", tmp_path / "step4")
    from grokpath.checkpoints import load_model

    hf = load_model(out)
    assert hf.config.model_type == "flex_olmo"
    torch.manual_seed(3)
    hidden = torch.randn(6, 32)
    with torch.no_grad():
        for i, gate in enumerate(find_routers(hf).modules):
            native_weights, native_indices, _, _ = model.blocks[str(i)].feed_forward_moe.router(hidden[None])
            _, hf_weights, hf_indices = gate(hidden)
            assert torch.equal(hf_indices, native_indices[0])
            torch.testing.assert_close(hf_weights, native_weights[0])
    provenance = read_provenance(out)
    assert provenance["step"] == 4 and provenance["source"] == "olmo_core" and provenance["router_layers_checked"] == [0, 1]
    digest = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    assert provenance["files"] == {"model.safetensors": digest}
    assert provenance["revision_sha"] == hashlib.sha256(f"model.safetensors {digest}\n".encode()).hexdigest()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_validate_without_a_gpu_is_refused_in_one_line(run, tmp_path):
    from grokpath.checkpoints import CheckpointError

    root, _ = run
    checkpoints = {"source": "olmo_core", "olmo_core": {"dir": str(root / "run"), "validate": True}}
    with pytest.raises(CheckpointError, match=r"validate runs OLMo-core's MoE forward, which needs a GPU"):
        convert_checkpoint(checkpoints, "step2", tmp_path / "step2")


def test_a_missing_experiment_config_is_one_line_naming_the_checkpoint(run, tmp_path):
    import shutil

    root, _ = run
    broken = tmp_path / "run"
    shutil.copytree(root / "run" / "step2", broken / "step2")
    (broken / "step2" / "config.json").unlink()
    from grokpath.checkpoints import CheckpointError

    with pytest.raises(CheckpointError, match=r"step2' has no config.json \(OLMo-core's ConfigSaverCallback writes it\)"):
        convert_checkpoint({"source": "olmo_core", "olmo_core": {"dir": str(broken)}}, "step2", tmp_path / "out")


# ---------------------------------------------------------------- the study, end to end
def records(domain: str, split: str, n: int, rng) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = rng.integers(0, 10, 2)
        prompt, target = (f"w{a} + w{b} =", f"w{(a + b) % 20}") if domain != "gamma" else (f"w{a} w{b}", f"w{a}")
        rows.append(
            {"sample_id": f"{domain}-{split}-{i:02d}", "prompt": prompt + " ", "target": target, "text": f"{prompt} {target}\n"}
        )
    return rows


@pytest.mark.e2e
def test_olmo_core_study_end_to_end(run, tmp_path):
    root, _ = run
    rng = np.random.default_rng(0)
    domains = {}
    for domain in DOMAINS:
        domains[domain] = {"task": "grokpath_exact_match"}
        for split, n in (("train", 6), ("validation", 4), ("test", 4)):
            path = root / "data" / domain / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in records(domain, split, n, rng)))
            domains[domain][split] = str(path)
    config = {
        "study": {"name": "olmo-core-run"},
        "checkpoints": {"source": "olmo_core", "olmo_core": {"dir": str(root / "run")}},
        "domains": domains,
        "traces": {"batch_size": 8, "max_length": 16},
        "memorization": {"epsilon_step": 0.5},
        "evaluation": {"max_gen_toks": 2, "bootstrap_iters": 0},
    }
    study_yaml = tmp_path / "study.yaml"
    study_yaml.write_text(yaml.safe_dump(config))
    workdir = make_workdir(tmp_path / "w")
    targets = [
        "results/metrics/consistency.parquet",
        "results/metrics/distances.parquet",
        "results/eval/step4/samples.parquet",  # one checkpoint's lm-eval run: the generic task on three domains
    ]
    run_snakemake(workdir, "--cores", "2", *targets, "--configfile", str(study_yaml), timeout=900)
    results = workdir / "results"

    for ckpt, step in (("step2", 2), ("step4", 4)):  # converted routers equal OLMo-core's saved ones
        converted = results / "checkpoints" / ckpt
        from grokpath.checkpoints import load_model

        gates = router_weights(load_model(converted))
        native = native_router_weights(root / "run" / ckpt / "model_and_optim")
        for layer, weight in native.items():
            np.testing.assert_array_equal(gates[layer], weight.view(8, 32).numpy())
        sha = read_provenance(converted)["revision_sha"]
        meta = read_metadata(results / "traces" / ckpt / "alpha_train.parquet")
        assert meta["model_type"] == "flex_olmo" and meta["step"] == step and meta["layers"] == [0, 1]
        traces = pd.read_parquet(results / "traces" / ckpt / "gamma_test.parquet")
        assert set(traces["revision_sha"]) == {sha} and set(traces["step"]) == {step}
    samples = pd.read_parquet(results / "eval" / "step4" / "samples.parquet")
    assert list(dict.fromkeys(samples["domain"])) == list(DOMAINS) and set(samples["revision_sha"]) == {sha}
    for domain in DOMAINS:
        expected = [json.loads(line)["sample_id"] for line in open(domains[domain]["test"])]
        assert list(samples.loc[samples["domain"] == domain, "sample_id"]) == expected
    assert (samples["correct"] == (samples["response"].str.strip() == samples["target"].str.strip())).all()
    summary = json.loads((results / "eval" / "step4" / "lm_eval.json").read_text())
    assert summary["grokpath"]["task_of_domain"] == {d: f"grokpath_exact_match_{d}" for d in DOMAINS}
    assert (
        read_provenance(results / "checkpoints" / "step2")["revision_sha"]
        != read_provenance(results / "checkpoints" / "step4")["revision_sha"]
    )
    consistency = pd.read_parquet(results / "metrics" / "consistency.parquet")
    assert set(consistency["domain"]) == set(DOMAINS) and set(consistency["step"]) == {2, 4}
    distances = pd.read_parquet(results / "metrics" / "distances.parquet")
    assert set(distances["domain"]) == set(DOMAINS) and set(distances.loc[distances["layer"] >= 0, "layer"]) == {0, 1}
    log = (results / "logs" / "convert_checkpoint" / "step4.log").read_text()
    assert re.search(r"routers of layers \[0, 1\] equal OLMo-core's", log)
