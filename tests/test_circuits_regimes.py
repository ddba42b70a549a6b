"""Paper B regime rule on synthetic curves of each kind, D_crit / D_mem, and paper A labelling."""

import math

import numpy as np
import pandas as pd
import pytest

from grokpath.circuits.regimes import classify_paper_a, classify_runs, critical_data_size, label_run, summarize_run
from grokpath.config import load

STEPS = np.array([0, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000])


@pytest.fixture
def cfg():
    return load("config/config.yaml")["circuits"]["regimes"]


def curve(train, val, norm):
    return pd.DataFrame({"step": STEPS, "train_acc": train, "val_acc": val, "param_norm": norm})


ONES_FROM = lambda i, low=0.02: np.where(np.arange(len(STEPS)) >= i, 1.0, low)  # noqa: E731
RISING = np.linspace(10, 20, len(STEPS))
FALLING = np.concatenate([np.linspace(10, 30, 5), np.linspace(30, 15, 5)])


def test_grokking_delayed_generalization_norm_falls(cfg):
    s = summarize_run(curve(ONES_FROM(4), ONES_FROM(8), FALLING), cfg)
    assert s["t_mem"] == 30 and s["t_gen"] == 3000
    assert s["delay_decades"] == pytest.approx(2.0)
    assert s["norm_change"] < 0
    assert label_run(s, n_train=300, d_mem=math.nan, cfg=cfg) == "grokking"
    # above the memorization capacity the same curves count as progression
    assert label_run(s, n_train=300, d_mem=200, cfg=cfg) == "progression"


def test_progression_generalizes_with_memorization_norm_rises(cfg):
    train = np.array([0.02, 0.02, 0.05, 0.2, 0.5, 0.8, 0.97, 1, 1, 1])
    val = np.array([0.02, 0.02, 0.03, 0.1, 0.4, 0.7, 0.95, 1, 1, 1])
    s = summarize_run(curve(train, val, RISING), cfg)
    assert s["t_mem"] == s["t_gen"] == 300 and s["delay_decades"] == 0
    assert s["norm_change"] > 0
    assert label_run(s, n_train=300, d_mem=1000, cfg=cfg) == "progression"


def test_ungrokking_semi_and_undetermined(cfg):
    s = summarize_run(curve(ONES_FROM(4), np.full(len(STEPS), 0.02), RISING), cfg)
    assert math.isnan(s["t_gen"]) and label_run(s, 300, 1000, cfg) == "ungrokking"
    semi = np.where(np.arange(len(STEPS)) >= 6, 0.55, 0.02)
    assert label_run(summarize_run(curve(ONES_FROM(4), semi, RISING), cfg), 300, 1000, cfg) == "semi-grokking"
    flat = np.full(len(STEPS), 0.05)
    assert label_run(summarize_run(curve(flat, flat, RISING), cfg), 300, 1000, cfg) == "undetermined"


def test_final_accuracy_averages_last_points(cfg):
    val = ONES_FROM(8).copy()
    val[-1] = 0.5  # last two points: 1.0 and 0.5
    s = summarize_run(curve(ONES_FROM(4), val, RISING), {**cfg, "final_points": 2})
    assert s["final_val_acc"] == pytest.approx(0.75)


def test_critical_data_size_interpolates():
    assert critical_data_size(np.array([400, 200, 300]), np.array([0.9, 0.1, 0.3]), 0.5) == pytest.approx(300 + 100 * 0.2 / 0.6)
    assert critical_data_size(np.array([200, 300]), np.array([0.6, 0.9]), 0.5) == 200
    assert math.isnan(critical_data_size(np.array([200, 300]), np.array([0.1, 0.2]), 0.5))


def test_classify_runs_table_with_capacity(cfg):
    rows = []

    def add(task, d_h, D, seed, train, val, norm):
        for st, tr, va, no in zip(STEPS, train, val, norm):
            rows.append(
                dict(
                    task=task,
                    d_h=d_h,
                    n_layers=1,
                    split_ffn=False,
                    n_sub=0,
                    n_train=D,
                    seed=seed,
                    step=st,
                    train_acc=tr,
                    val_acc=va,
                    param_norm=no,
                    n_params=1000 * d_h,
                )
            )

    for seed in (0, 1):
        add("add", 32, 200, seed, ONES_FROM(4), np.full(len(STEPS), 0.02), RISING)  # ungrokking
        add("add", 32, 400, seed, ONES_FROM(4), ONES_FROM(8), FALLING)  # grokking
        add("memorize", 32, 961, seed, np.full(len(STEPS), 0.5), np.full(len(STEPS), np.nan), RISING)
    regimes = classify_runs(pd.DataFrame(rows), cfg)
    assert len(regimes) == 6
    by = regimes.set_index(["task", "n_train", "seed"])
    assert by.loc[("add", 200, 0), "label"] == "ungrokking"
    assert by.loc[("add", 400, 1), "label"] == "grokking"
    assert by.loc[("memorize", 961, 0), "label"] == "capacity"
    assert regimes["d_mem"].tolist() == pytest.approx([480.5] * 6)
    assert by.loc[("add", 200, 0), "d_crit"] == pytest.approx(200 + 200 * (0.5 - 0.02) / (1.0 - 0.02))
    assert (regimes["n_params"] == 32000).all()


def test_paper_a_domains_use_train_loss_as_memorization(cfg):
    steps = [125, 250, 500, 750, 1000, 1500]
    curves = pd.concat(
        [
            pd.DataFrame(
                {
                    "domain": "math",
                    "ckpt": [f"s{s}" for s in steps],
                    "step": steps,
                    "train_loss_all": [5.0, 1.0, 0.6, 0.55, 0.5, 0.5],
                    "validation_loss": 1.0,
                    "accuracy": [0.0, 0.0, 0.05, 0.2, 0.95, 0.97],
                }
            ),
            pd.DataFrame(
                {
                    "domain": "code",
                    "ckpt": [f"s{s}" for s in steps],
                    "step": steps,
                    "train_loss_all": [5.0, 4.0, 3.0, 2.0, 1.0, 0.5],
                    "validation_loss": 1.0,
                    "accuracy": [0.0, 0.0, 0.0, 0.01, 0.02, 0.03],
                }
            ),
        ]
    )
    table = classify_paper_a(curves, cfg).set_index("task")
    # math: 90% of the loss drop by step 500, accuracy >= 0.9 at step 1000: 0.3 decades later
    assert table.loc["paper_a:math", "t_mem"] == 500 and table.loc["paper_a:math", "t_gen"] == 1000
    assert table.loc["paper_a:math", "label"] == "grokking"
    assert table.loc["paper_a:code", "label"] == "ungrokking"
    with pytest.raises(ValueError, match="accuracy"):
        classify_paper_a(curves.drop(columns="accuracy"), cfg)


def test_paper_a_step_writes_table_and_names_missing_file(tmp_path, cfg):
    from grokpath.step import run_step

    curves = pd.DataFrame(
        {
            "domain": "math",
            "ckpt": ["a", "b", "c"],
            "step": [1, 2, 3],
            "train_loss_all": [3.0, 1.0, 0.9],
            "validation_loss": 1.0,
            "accuracy": [0.0, 0.95, 0.97],
        }
    )
    curves.to_parquet(tmp_path / "curves.parquet")
    call = "grokpath.circuits.sweep:classify_paper_a_file"
    names = {"circuits": {"regimes": cfg}, "out": str(tmp_path / "out.parquet"), "threads": 1}
    assert run_step(call, {**names, "curves_path": str(tmp_path / "curves.parquet")}) == 0
    table = pd.read_parquet(tmp_path / "out.parquet")
    # memorized (loss) and generalized at the same checkpoint, no norm: progression
    assert table["task"].tolist() == ["paper_a:math"] and table["label"].iloc[0] == "progression"
    assert run_step(call, {**names, "curves_path": str(tmp_path / "missing.parquet")}) == 2
