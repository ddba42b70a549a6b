"""Memorization steps t* and ε calibration on hand-made loss tables."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from grokpath import memorization
from grokpath.io import read_metadata, write_parquet
from grokpath.metrics import gather, run_memorization

STEPS = [100, 200, 300, 400, 500]
LOSSES = {
    "a": [3.0, 0.90, 0.92, 0.91, 0.90],  # under ε and stable from step 200
    "b": [2.0, 0.95, 1.50, 0.95, 0.93],  # dips under ε at 200, rises at 300, back from 400
    "c": [3.0, 2.50, 2.00, 1.50, 1.20],  # never under ε
    "d": [3.0, 0.50, 0.60, 0.70, 0.80],  # under ε from 200 but within δ of the end only at 500
    "e": [0.5, 0.50, 0.50, 0.50, 0.50],  # memorized from the first checkpoint
}
T_STAR = {"a": 200, "b": 400, "c": None, "d": 500, "e": 100}


def long_frame(losses: dict, steps=STEPS) -> pd.DataFrame:
    return pd.DataFrame([{"sample_id": s, "step": t, "loss": v} for s, row in losses.items() for t, v in zip(steps, row)])


def test_t_star_by_hand():
    frame, record = memorization.memorization_steps(long_frame(LOSSES), epsilon=1.0, delta=0.05)
    got = dict(zip(frame["sample_id"], frame["t_star_step"]))
    assert {k: (None if pd.isna(v) else int(v)) for k, v in got.items()} == T_STAR
    assert frame.set_index("sample_id")["memorized"].to_dict() == {k: v is not None for k, v in T_STAR.items()}
    assert str(frame["t_star_step"].dtype) == "Int64"
    assert record == {"epsilon": 1.0, "fraction": 0.8, "in_band": None, "mode": "fixed"}
    assert set(frame["epsilon_mode"]) == {"fixed"}


def test_delta_decides_when_loss_still_falls():
    frame, _ = memorization.memorization_steps(long_frame({"d": LOSSES["d"]}), epsilon=1.0, delta=0.25)
    assert int(frame["t_star_step"].iloc[0]) == 300  # |0.6 - 0.8| = 0.2 ≤ 0.25


def constant(values: list[float]) -> dict:
    return {f"s{i}": [v] * 3 for i, v in enumerate(values)}


def test_auto_epsilon_smallest_grid_value_in_band():
    # fraction: 0 at ε = 0.1, 0.2; 4/20 = 0.20 at ε = 0.3 (in [0.20, 0.25])
    losses = constant([0.25] * 4 + [0.45] + [5.0] * 15)
    frame, record = memorization.memorization_steps(long_frame(losses, [1, 2, 3]), "auto", 0.05, 0.1, (0.20, 0.25))
    assert record["epsilon"] == pytest.approx(0.3) and record["fraction"] == 0.2 and record["in_band"] is True
    assert frame["memorized"].sum() == 4 and set(frame["epsilon_mode"]) == {"auto"}


def test_auto_epsilon_fine_grid_for_answer_token_losses():
    # answer-token NLLs of a memorized set sit far below 0.1: the paper's step would count all of them
    losses = constant([0.004] * 4 + [0.012] * 2 + [0.03] * 14)
    _, coarse = memorization.memorization_steps(long_frame(losses, [1, 2, 3]), "auto", 0.05, 0.1, (0.20, 0.25))
    assert coarse == {"epsilon": pytest.approx(0.1), "fraction": 1.0, "in_band": False, "mode": "auto"}
    frame, fine = memorization.memorization_steps(long_frame(losses, [1, 2, 3]), "auto", 0.05, 0.005, (0.20, 0.25))
    assert fine == {"epsilon": pytest.approx(0.005), "fraction": 0.2, "in_band": True, "mode": "auto"}
    assert frame["memorized"].sum() == 4


def test_auto_epsilon_closest_when_no_grid_value_in_band():
    # fraction jumps 0 -> 0.3 at ε = 0.3: gap 0.05 above the band beats gap 0.20 below it
    losses = constant([0.25] * 3 + [5.0] * 7)
    _, record = memorization.memorization_steps(long_frame(losses, [1, 2, 3]), "auto", 0.05, 0.1, (0.20, 0.25))
    assert record == {"epsilon": pytest.approx(0.3), "fraction": pytest.approx(0.3), "in_band": False, "mode": "auto"}


def test_missing_checkpoint_is_named():
    frame = long_frame(LOSSES).query("not (sample_id == 'b' and step == 300)")
    with pytest.raises(ValueError, match="'b' at step 300"):
        memorization.memorization_steps(frame, 1.0, 0.05)


def test_ablation_counts_memorized_by_step():
    table = memorization.ablation_grid(long_frame(LOSSES), [1.0], [0.05], 1.0, 0.05)
    eps = table.query("parameter == 'epsilon'")
    assert eps["n_memorized"].tolist() == [1, 2, 2, 3, 4]  # t*: e 100, a 200, b 400, d 500
    assert eps["fraction"].tolist() == [0.2, 0.4, 0.4, 0.6, 0.8]
    assert table.query("parameter == 'delta'")["n_memorized"].tolist() == [1, 2, 2, 3, 4]


def test_relative_ablation_grid_drops_non_positive():
    section = {"ablation_epsilons": [-0.2, 0.0, 0.1], "ablation_epsilon_relative": True}
    assert memorization.ablation_epsilons(section, 0.2) == [0.2, 0.3]
    assert memorization.ablation_epsilons({**section, "ablation_epsilon_relative": False}, 0.2) == [0.1]
    # factors scale the calibrated ε (0.002 x 0.5, 1, 3) and override the offsets
    assert memorization.ablation_epsilons({**section, "ablation_epsilon_factors": [0.5, 1.0, 3.0]}, 0.002) == [
        0.001,
        0.002,
        0.006,
    ]


def test_per_domain_epsilon():
    section = {"epsilon": {"math": 1.2, "code": "auto"}}
    assert memorization.domain_epsilon(section, "math") == 1.2
    with pytest.raises(ValueError, match="'commonsense'"):
        memorization.domain_epsilon(section, "commonsense")


def test_run_memorization_file_to_file(tmp_path):
    section = {
        "epsilon": 1.0,
        "epsilon_step": 0.1,
        "target_fraction": [0.2, 0.25],
        "delta": 0.05,
        "ablation_epsilons": [0.0, 0.5],
        "ablation_epsilon_relative": True,
        "ablation_deltas": [0.03, 0.05],
    }
    paths = []
    for k, step in enumerate(STEPS):
        path = tmp_path / f"step{step:06d}" / "math_train.parquet"
        ids = list(LOSSES)
        write_parquet(
            pa.table(
                {
                    "sample_id": ids,
                    "domain": ["math"] * 5,
                    "ckpt": [f"step{step:06d}"] * 5,
                    "step": pa.array([step] * 5, pa.int64()),
                    "revision_sha": [f"sha{step}"] * 5,
                    "loss": pa.array([LOSSES[s][k] for s in ids], pa.float32()),
                }
            ),
            path,
        )
        paths.append(path)
    out, ablation_out = tmp_path / "mem.parquet", tmp_path / "abl.parquet"
    run_memorization({"memorization": section}, "math", paths, out, ablation_out)
    frame = pd.read_parquet(out)
    assert list(frame.columns) == [
        "domain",
        "sample_id",
        "memorized",
        "t_star_step",
        "t_star_ckpt",
        "t_star_revision_sha",
        "epsilon",
        "delta",
        "epsilon_mode",
    ]
    row = frame.set_index("sample_id").loc["b"]
    assert row.t_star_step == 400 and row.t_star_ckpt == "step000400" and row.t_star_revision_sha == "sha400"
    assert pd.isna(frame.set_index("sample_id").loc["c", "t_star_ckpt"])
    abl = pd.read_parquet(ablation_out)
    assert list(abl.columns) == [
        "domain",
        "parameter",
        "epsilon",
        "delta",
        "ckpt",
        "step",
        "n_memorized",
        "fraction",
        "revision_sha",
    ]
    assert (abl["revision_sha"] == "sha" + abl["step"].astype(str)).all()
    assert sorted(abl.query("parameter == 'epsilon'")["epsilon"].unique()) == [1.0, 1.5]
    assert read_metadata(out)["calibration"]["math"]["mode"] == "fixed"
    gather([out, out], tmp_path / "all.parquet")
    assert len(pd.read_parquet(tmp_path / "all.parquet")) == 10
