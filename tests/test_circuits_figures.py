"""Paper B pipeline on a tiny sweep: train cells -> regimes.parquet -> every figure (PNG + PDF)."""
import pandas as pd

from grokpath.circuits.sweep import classify_files, emergence_cells, grid_cells, train_cell, write_figures
from grokpath.config import load

FIGURES = ["fig01_phase_diagram", "fig02_example_runs", "fig03_val_acc_vs_data", "fig04_capacity", "fig06_double_descent",
           "fig07_double_descent_square", "fig08_emergence", "fig09_param_norm", "fig10_split_ffn"]


def tiny_circuits():
    circuits = load("config/config.yaml")["circuits"]
    circuits.update(P=7, n_seeds=2)
    circuits["train"].update(steps=12, n_log_points=4)
    circuits["grids"] = {
        "grokking": {"task": "add", "d_h": [4, 8], "D": [20, 30]},
        "double_descent": {"task": "add", "d_h": [4, 8], "D": [30]},
        "double_descent_square": {"task": "square", "d_h": [8], "D": [30]},
    }
    circuits["capacity"] = {"d_h": [8]}
    circuits["emergence"] = {"n_add": 20, "n_sub": [20], "sizes": [[2, 4]], "split_ffn": [False, True]}
    return circuits


def test_sweep_cells_classify_and_figures(tmp_path):
    circuits = tiny_circuits()
    cells = grid_cells(circuits)
    assert ("memorize", 8, 49) in cells and ("square", 8, 30) in cells and len(cells) == 4 + 1 + 1
    runs = []
    for task, d_h, D in cells:
        runs.append(tmp_path / f"runs/{task}/dh{d_h}_D{D}.parquet")
        train_cell(circuits, task, d_h, D, runs[-1])
    for task, n_layers, d_h, D in emergence_cells(circuits):
        runs.append(tmp_path / f"runs/{task}/L{n_layers}_dh{d_h}_D{D}.parquet")
        train_cell(circuits, task, d_h, D, runs[-1], n_layers=n_layers)
    mix = pd.read_parquet(runs[-1])
    assert mix["split_ffn"].all() and (mix["n_sub"] == 20).all() and (mix["n_train"] == 20).all()

    regimes_path = tmp_path / "regimes.parquet"
    classify_files(circuits, runs, regimes_path)
    regimes = pd.read_parquet(regimes_path)
    assert len(regimes) == 2 * (len(cells) + 2)
    assert {"label", "d_crit", "d_mem", "final_val_acc", "t_mem", "t_gen", "norm_change"} <= set(regimes.columns)
    assert (regimes.loc[regimes["task"] == "memorize", "label"] == "capacity").all()
    assert regimes.loc[(regimes["task"] == "add") & (regimes["d_h"] == 8), "d_mem"].notna().all()

    outs = [tmp_path / "fig" / f"{name}.png" for name in FIGURES]
    write_figures(circuits, regimes_path, runs, outs, style={"dpi": 40})
    for out in outs:
        assert out.stat().st_size > 1000 and out.with_suffix(".pdf").stat().st_size > 1000
