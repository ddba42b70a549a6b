"""Checkpoint sources (mini/local/hf), the hub fetch (monkeypatched download), loading and the olmoe config."""
from __future__ import annotations

import json
import math
from pathlib import Path

import httpx2
import pytest
import torch
import yaml
from huggingface_hub.errors import RevisionNotFoundError
from transformers import OlmoeConfig, OlmoeForCausalLM

import grokpath.checkpoints as checkpoints
from grokpath.checkpoints import (
    CheckpointError,
    checkpoint_dir,
    checkpoint_names,
    fetch_hf_checkpoint,
    load_model,
    parse_step,
    read_provenance,
)
from grokpath.config import REPO_ROOT, deep_merge, load_schema, validate

PAPER_STEPS = [5000, 125000, 245000, 370000, 490000, 615000, 735000, 855000, 980000, 1100000]


def save_tiny_model(directory):
    torch.manual_seed(0)
    config = OlmoeConfig(
        vocab_size=16, hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, max_position_embeddings=16,
    )
    OlmoeForCausalLM(config).save_pretrained(directory)


def hf_config(**hf):
    return validate({"checkpoints": {"source": "hf", "hf": {"revisions": ["step125000-tokens524B"], **hf}}}, load_schema())


class FakeHub:
    """Stands in for the hub: records requests, 'downloads' a tiny model into local_dir."""

    def __init__(self, missing=()):
        self.calls, self.missing = [], set(missing)

    def _check(self, revision):
        if revision in self.missing:
            request = httpx2.Request("GET", f"https://huggingface.co/api/models/x/revision/{revision}")
            raise RevisionNotFoundError("404", response=httpx2.Response(404, request=request))

    def snapshot_download(self, repo_id, *, revision, local_dir, allow_patterns):
        self.calls.append({"repo_id": repo_id, "revision": revision, "local_dir": Path(local_dir), "allow_patterns": allow_patterns})
        self._check(revision)
        save_tiny_model(local_dir)
        (Path(local_dir) / ".cache" / "huggingface").mkdir(parents=True)
        return str(local_dir)

    def model_info(self, repo_id, revision):
        self._check(revision)
        return type("Info", (), {"sha": "ab" * 20})()


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub(missing={"step5000-tokens20B"})
    monkeypatch.setattr(checkpoints, "snapshot_download", fake.snapshot_download)
    monkeypatch.setattr(checkpoints, "HfApi", lambda: fake)
    return fake


def test_hf_fetch_requests_revision_and_writes_provenance(hub, tmp_path):
    cfg = hf_config(repo_id="allenai/OLMoE-1B-7B-0924")
    out = tmp_path / "checkpoints" / "step125000-tokens524B"
    fetch_hf_checkpoint(cfg["checkpoints"], "step125000-tokens524B", out)
    (call,) = hub.calls
    assert call["repo_id"] == "allenai/OLMoE-1B-7B-0924" and call["revision"] == "step125000-tokens524B"
    assert call["local_dir"] == tmp_path / "checkpoints" / ".step125000-tokens524B.download"  # resumable spot
    assert "*.safetensors" in call["allow_patterns"]
    prov = read_provenance(out)
    assert prov["step"] == 125000 and prov["source"] == "hf" and prov["revision"] == "step125000-tokens524B"
    assert prov["revision_sha"] == "ab" * 20 and prov["repo_id"] == "allenai/OLMoE-1B-7B-0924"
    assert (out / "model.safetensors").is_file() and not (out / ".cache").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["step125000-tokens524B"]  # partial dir renamed away
    assert load_model(out).config.num_experts == 4


def test_hf_bad_revision_name_fails_before_download(hub, tmp_path):
    cfg = hf_config()
    with pytest.raises(CheckpointError, match="step125000-524B"):
        fetch_hf_checkpoint(cfg["checkpoints"], "step125000-524B", tmp_path / "x")
    assert hub.calls == [] and not any(tmp_path.iterdir())


def test_hf_missing_revision_names_it(hub, tmp_path):
    cfg = hf_config()
    with pytest.raises(CheckpointError, match=r"revision 'step5000-tokens20B' not found in hub repo 'allenai/OLMoE-1B-7B-0924'"):
        fetch_hf_checkpoint(cfg["checkpoints"], "step5000-tokens20B", tmp_path / "step5000-tokens20B")
    assert not (tmp_path / "step5000-tokens20B").exists()


def test_hf_names_are_validated_and_ordered():
    cfg = hf_config(revisions=["step245000-tokens1027B", "step5000-tokens20B"])
    assert checkpoint_names(cfg) == ["step5000-tokens20B", "step245000-tokens1027B"]
    with pytest.raises(CheckpointError, match="'main' has no step"):
        checkpoint_names(hf_config(revisions=["main"]))
    cfg = hf_config(revisions=["main", "step5000-tokens20B"])
    cfg["checkpoints"]["steps"] = {"main": 1220000}
    assert checkpoint_names(cfg) == ["step5000-tokens20B", "main"]
    assert checkpoint_dir(cfg, "main") == Path("results/checkpoints/main")


def test_local_source_discovers_step_dirs(tmp_path):
    for name in ["step000900", "step000050", "step1000-tokens4B", "notes"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / "step000070").mkdir()  # no config.json: not a checkpoint
    cfg = validate({"checkpoints": {"source": "local", "local": {"dir": str(tmp_path)}}}, load_schema())
    assert checkpoint_names(cfg) == ["step000050", "step000900", "step1000-tokens4B"]
    assert checkpoint_dir(cfg, "step000900") == tmp_path / "step000900"
    cfg["checkpoints"]["local"]["names"] = ["step000900"]
    assert checkpoint_names(cfg) == ["step000900"]
    with pytest.raises(CheckpointError, match="checkpoints.local.dir"):
        checkpoint_names(validate({"checkpoints": {"source": "local"}}, load_schema()))


def test_mini_source_names_and_dirs():
    cfg = validate({"pretrain": {"checkpoint_steps": [500, 100]}}, load_schema())
    assert checkpoint_names(cfg) == ["step000100", "step000500"]
    assert checkpoint_dir(cfg, "step000100") == Path("results/checkpoints/step000100")
    assert parse_step("step000100") == 100 and parse_step("step125000-tokens524B") == 125000


def test_load_model_names_missing_dir_and_corrupt_file(tmp_path):
    with pytest.raises(CheckpointError, match=f"'{tmp_path / 'absent'}' does not exist"):
        load_model(tmp_path / "absent")
    save_tiny_model(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # an interrupted copy
    with pytest.raises(CheckpointError, match=f"'{weights}' is corrupt or unreadable"):
        load_model(tmp_path / "ckpt")
    weights.unlink()
    with pytest.raises(CheckpointError, match="has no weights"):
        load_model(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    with pytest.raises(CheckpointError, match="shard model-00001-of-00002.safetensors"):
        load_model(tmp_path / "ckpt")


def test_olmoe_config_validates_with_the_paper_revisions():
    with open(REPO_ROOT / "config" / "config.yaml") as fh:
        base = yaml.safe_load(fh)
    with open(REPO_ROOT / "config" / "olmoe.yaml") as fh:
        overlay = yaml.safe_load(fh)
    cfg = validate(deep_merge(base, overlay), load_schema())  # as snakemake --configfile overlays it
    names = checkpoint_names(cfg)
    assert [parse_step(n) for n in names] == PAPER_STEPS
    for name, step in zip(names, PAPER_STEPS):
        assert name == f"step{step}-tokens{math.floor(step * 4096 * 1024 / 1e9)}B"
    assert names[1] == "step125000-tokens524B" and names[0] == "step5000-tokens20B"
    assert cfg["checkpoints"]["hf"]["repo_id"] == "allenai/OLMoE-1B-7B-0924"
    assert cfg["traces"]["device"] == "cuda" and cfg["traces"]["dtype"] == "bfloat16"
    assert sorted(cfg["domains"]) == ["code", "commonsense", "domain", "math"]
