"""Security defaults: no remote code unless the config asks, and no network in the default path."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, no_network_env

from grokpath.checkpoints import load_model, load_tokenizer
from grokpath.config import load_schema, validate
from grokpath.evaluation import model_args

# A checkpoint's config.json can name custom modeling code (auto_map); importing it runs it.
EVIL_MODULE = """
from pathlib import Path
Path(__file__).with_name("REMOTE_CODE_RAN").write_text("imported")
from transformers import OlmoeForCausalLM as EvilModel
"""


def test_trust_remote_code_defaults_off():
    config = validate({}, load_schema())
    assert config["checkpoints"]["trust_remote_code"] is False
    assert "trust_remote_code=False" in model_args(config["evaluation"], config["checkpoints"], "/some/model")


def test_every_auto_from_pretrained_passes_trust_remote_code():
    """Auto* classes follow a checkpoint's auto_map to its own code; each call must say whether to."""
    calls = []
    for path in (REPO / "src" / "grokpath").rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"\bAuto\w+\.from_pretrained\(", text):
            depth, end = 1, match.end()
            while depth and end < len(text):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            calls.append((path.name, text[match.start() : end]))
    assert calls
    missing = [f"{name}: {call}" for name, call in calls if "trust_remote_code" not in call]
    assert missing == [], "Auto*.from_pretrained without an explicit trust_remote_code"


@pytest.fixture
def checkpoint_with_remote_code(smoke_run, tmp_path) -> Path:
    source = sorted((smoke_run / "results" / "checkpoints").iterdir())[-1]
    ckpt = shutil.copytree(source, tmp_path / f"{tmp_path.name}_ckpt")  # a unique name in HF's modules cache
    config = json.loads((ckpt / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (ckpt / "config.json").write_text(json.dumps(config))
    (ckpt / "modeling_evil.py").write_text(EVIL_MODULE)
    return ckpt


@pytest.mark.e2e
def test_default_load_never_runs_remote_code(checkpoint_with_remote_code):
    config = validate({}, load_schema())
    trust = config["checkpoints"]["trust_remote_code"]
    model = load_model(checkpoint_with_remote_code, trust_remote_code=trust)
    load_tokenizer(checkpoint_with_remote_code, trust_remote_code=trust)
    assert type(model).__name__ == "OlmoeForCausalLM"
    assert not (checkpoint_with_remote_code / "REMOTE_CODE_RAN").exists()
    from transformers.utils import HF_MODULES_CACHE

    assert not list(Path(HF_MODULES_CACHE).glob(f"**/{checkpoint_with_remote_code.name}/**/REMOTE_CODE_RAN"))


@pytest.mark.e2e
def test_trust_remote_code_key_turns_it_on(checkpoint_with_remote_code, tmp_path):
    """The control for the test above: with the key on, the same directory's code does run."""
    script = (
        "import sys; from grokpath.checkpoints import load_model\n"
        "try: load_model(sys.argv[1], trust_remote_code=True)\n"
        "except Exception as err: print('load failed after import:', err)\n"
    )
    env = no_network_env(tmp_path / "net")
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    subprocess.run([sys.executable, "-c", script, str(checkpoint_with_remote_code)], env=env, timeout=300, check=True)
    assert list((tmp_path / "modules").rglob("REMOTE_CODE_RAN"))


def test_socket_blocker_blocks(tmp_path):
    """The sitecustomize used for the no-network run really stops connections, and logs them."""
    env = no_network_env(tmp_path)
    script = (
        "import socket\n"
        "try:\n    socket.create_connection(('192.0.2.1', 443), timeout=2)\nexcept OSError as err:\n    print(err)\n"
        "try:\n    socket.getaddrinfo('huggingface.co', 443)\nexcept OSError as err:\n    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.count("network blocked by grokpath test") == 2
    assert "huggingface.co" in Path(env["GROKPATH_NET_LOG"]).read_text()


@pytest.mark.e2e
def test_smoke_pipeline_runs_without_network(offline_resumed_run):
    """The whole smoke DAG (killed and resumed) completed with every socket blocked, and never tried one."""
    import pandas as pd
    import yaml

    from grokpath.circuits.regimes import LABELS
    from grokpath.circuits.sweep import emergence_cells, grid_cells
    from grokpath.config import deep_merge

    results = offline_resumed_run["workdir"] / "results"
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config = validate(deep_merge(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), smoke), load_schema())
    # its last outputs are there in full: Table 1 for every domain, a regime label for every circuits run
    table = pd.read_csv(results / "tables" / "correlations.csv")
    assert set(table["domain"]) == set(config["domains"])
    regimes = pd.read_parquet(results / "circuits" / "regimes.parquet")
    circuits = config["circuits"]
    assert len(regimes) == circuits["n_seeds"] * (len(grid_cells(circuits)) + len(emergence_cells(circuits)))
    assert set(regimes["label"].astype(str)) <= {*LABELS, "capacity"}
    attempts = offline_resumed_run["net_log"].read_text()
    assert attempts == "", f"network access attempted:\n{attempts}"
