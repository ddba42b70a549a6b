"""Paper B training: batched / vmap trajectories equal single-model runs; the workflow step writes a cell."""

import numpy as np
import pandas as pd
import pytest
import torch

from grokpath.circuits.model import ModelSpec, ffn_mask, forward_many, forward_one, init_params, stack_params
from grokpath.circuits.tasks import make_task, vocab_size
from grokpath.circuits.train import choose_batching, log_steps, train_models
from grokpath.config import load
from grokpath.step import run_step

P = 11


def train_cfg(**over):
    cfg = load("config/config.yaml")["circuits"]["train"]
    cfg.update(steps=25, n_log_points=6, dtype="float64", device="cpu", threads=1, lr=3e-3)
    cfg.update(over)
    return cfg


def curves(path, spec, data, seeds):
    out, info = train_models(data, spec, seeds, train_cfg(batching=path))
    assert info["batching"] == path
    return out.sort_values(["seed", "step"]).reset_index(drop=True)


@pytest.mark.parametrize("path", ["batched", "vmap"])
def test_stacked_trajectories_equal_single_model_runs(path):
    seeds = [0, 1, 2]
    data = make_task("add", P, seeds, [40, 60, 40])  # mixed data sizes in one stack (padded)
    spec = ModelSpec(P=P, vocab=vocab_size(P), d_h=8)
    single = curves("loop", spec, data, seeds)
    stacked = curves(path, spec, data, seeds)
    assert len(single) == len(stacked) == 3 * len(log_steps(25, 6))
    cols = ["train_loss", "train_acc", "val_loss", "val_acc", "param_norm"]
    np.testing.assert_allclose(stacked[cols].to_numpy(), single[cols].to_numpy(), rtol=1e-9, atol=1e-10)
    assert single["train_loss"].iloc[-1] < single["train_loss"].iloc[0]  # it trained


def test_one_seed_one_cell_trajectory_float32():
    data = make_task("add", P, [4], 50)
    spec = ModelSpec(P=P, vocab=vocab_size(P), d_h=8)
    cfg = train_cfg(dtype="float32", steps=20)
    single, _ = train_models(data, spec, [4], {**cfg, "batching": "loop"})
    for path in ("batched", "vmap"):
        stacked, _ = train_models(data, spec, [4], {**cfg, "batching": path})
        np.testing.assert_allclose(stacked["train_loss"], single["train_loss"], rtol=1e-4)
        np.testing.assert_allclose(stacked["param_norm"], single["param_norm"], rtol=1e-5)


def test_forward_many_matches_forward_one_deep_split_ffn():
    spec = ModelSpec(P=P, vocab=vocab_size(P), d_h=8, n_layers=2, split_ffn=True)
    data = make_task("mix", P, [0, 1], 30, n_sub=20)
    params = [init_params(spec, s, torch.float64) for s in (0, 1)]
    mask = ffn_mask(spec, data.is_minus, torch.float64)
    many = forward_many(stack_params(params), data.inputs, spec, mask)
    for m in range(2):
        np.testing.assert_allclose(
            many[m].numpy(), forward_one(params[m], data.inputs, spec, mask).numpy(), rtol=1e-10, atol=1e-12
        )
    # the split FFN really routes: '+' examples ignore the second half of the hidden units
    p = {k: v.clone() for k, v in params[0].items()}
    p["blocks.1.W_out"][spec.d_mlp // 2 :] += 1.0
    changed = (forward_one(p, data.inputs, spec, mask) - forward_one(params[0], data.inputs, spec, mask)).abs().sum(-1)
    assert torch.all(changed[~data.is_minus] < 1e-12) and torch.all(changed[data.is_minus] > 1e-6)


def test_log_steps_and_auto_batching():
    assert log_steps(1000, 4) == [0, 1, 10, 100, 1000]
    spec = ModelSpec(P=113, vocab=116, d_h=64)
    assert choose_batching("auto", spec, 6000, torch.device("cpu"), 5e7) == "loop"
    assert choose_batching("auto", ModelSpec(P=31, vocab=34, d_h=32), 300, torch.device("cpu"), 5e7) == "batched"
    assert choose_batching("auto", spec, 6000, torch.device("cuda"), 5e7) == "batched"
    with pytest.raises(ValueError, match="batching"):
        choose_batching("fast", spec, 10, torch.device("cpu"), 1.0)


def test_step_trains_a_cell(tmp_path):
    config = load("config/config.yaml")
    circuits = config["circuits"]
    circuits.update(P=P, n_seeds=2)
    circuits["train"].update(steps=15, n_log_points=4)
    out = tmp_path / "runs" / "add" / "dh8_D40.parquet"
    # what rule circuits_train hands over: wildcards are strings, the job's threads an int
    names = {"circuits": circuits, "task": "add", "d_h": "8", "threads": 1}
    call, log = "grokpath.circuits.sweep:train_cell", tmp_path / "x.log"
    assert run_step(call, {**names, "D": "40", "out": str(out)}, log) == 0
    frame = pd.read_parquet(out)
    assert set(frame["seed"]) == {0, 1} and (frame["n_train"] == 40).all() and (frame["task"] == "add").all()
    assert frame.groupby("seed")["step"].max().tolist() == [15, 15]
    assert run_step(call, {**names, "D": "999", "out": str(tmp_path / "bad.parquet")}, log) == 2
    assert "circuits grid D=999: must be in 1..121" in (tmp_path / "x.log").read_text()
    assert not (tmp_path / "bad.parquet").exists()


def test_sweep_in_one_job_writes_each_cell_as_its_own_job_would(tmp_path):
    from grokpath.circuits.sweep import sweep_runs

    circuits = load("config/config.yaml")["circuits"]
    circuits.update(P=P, n_seeds=2, one_job=True)
    circuits["train"].update(steps=12, n_log_points=3)
    circuits["grids"] = {"g": {"task": "add", "d_h": [8], "D": [30, 50]}}
    circuits["capacity"] = {"d_h": [8]}
    circuits["emergence"].update(n_add=40, n_sub=[20], sizes=[[1, 8]], split_ffn=[False, True])
    runs = sweep_runs(circuits, tmp_path / "runs")
    # the workflow's file names: <task>/dh<d_h>_D<D> for the grid and capacity cells, <task>/L<n>_dh<d_h>_D<n_sub> for emergence
    assert [str(path.relative_to(tmp_path / "runs")) for _, path in runs] == [
        "add/dh8_D30.parquet",
        "add/dh8_D50.parquet",
        "memorize/dh8_D121.parquet",
        "mix/L1_dh8_D20.parquet",
        "mix_split/L1_dh8_D20.parquet",
    ]
    assert (
        run_step(
            "grokpath.circuits.sweep:train_sweep",
            {"circuits": circuits, "runs": [str(path) for _, path in runs], "threads": 1},
            tmp_path / "s.log",
        )
        == 0
    )
    for cell, path in runs:
        alone = tmp_path / "alone.parquet"
        assert (
            run_step(
                "grokpath.circuits.sweep:train_cell",
                {"circuits": circuits, **cell, "out": str(alone), "threads": 1},
                tmp_path / "c.log",
            )
            == 0
        )
        pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(alone), obj=str(path))


def test_paper_overlay_plans_a_job_per_cell(tmp_path):
    """The command in config/circuits_paper.yaml's header, as a dry run: a job per cell, and its resources
    table (which has no 'default' row) still gives every other rule the schema's default."""
    import re

    import yaml
    from conftest import REPO, make_workdir, run_snakemake

    from grokpath.circuits.sweep import sweep_runs
    from grokpath.config import deep_merge, validate

    header = (REPO / "config" / "circuits_paper.yaml").read_text().splitlines()[2]
    args = header.split("snakemake ", 1)[1].split()
    assert args[:2] == ["--cores", "all"] and "--configfile" in args
    workdir = make_workdir(tmp_path / "w")
    proc = run_snakemake(workdir, "-n", *args, timeout=600)
    stats = proc.stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}
    paper = validate(
        deep_merge(*(yaml.safe_load((REPO / "config" / n).read_text()) for n in ("config.yaml", "circuits_paper.yaml")))
    )
    n_cells = len(sweep_runs(paper["circuits"], "runs"))
    assert jobs["circuits_train"] + jobs["circuits_train_mix"] == n_cells > 100 and "circuits_sweep" not in jobs
    assert "mem_mb=16000" in proc.stdout  # the overlay's own row for circuits_train
