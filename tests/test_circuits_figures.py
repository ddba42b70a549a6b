"""Paper B pipeline on a tiny sweep: train cells -> regimes.parquet -> every figure (PNG + PDF).

The figure checks read the plotted data back from each returned matplotlib Figure and compare it
with the tables it was drawn from (seed means per line, one marker per grid cell, one curve per run).
"""

import matplotlib.colors as mcolors
import matplotlib.image as mimage
import numpy as np
import pandas as pd
import pytest

from grokpath.circuits.sweep import classify_files, emergence_cells, grid_cells, grid_runs, read_runs, train_cell, write_figures
from grokpath.config import load
from grokpath.figures import PAPER_B_FIGURES, paper_b

FIGURES = [
    "fig01_phase_diagram",
    "fig02_example_runs",
    "fig03_val_acc_vs_data",
    "fig04_capacity",
    "fig06_double_descent",
    "fig07_double_descent_square",
    "fig08_emergence",
    "fig09_param_norm",
    "fig10_split_ffn",
]


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


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sweep")
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

    return {"circuits": circuits, "regimes_path": regimes_path, "runs": runs, "regimes": regimes, "curves": read_runs(runs)}


def test_write_figures_renders_every_figure(sweep, tmp_path):
    assert sorted(FIGURES) == sorted(PAPER_B_FIGURES)
    outs = [tmp_path / "fig" / f"{name}.png" for name in FIGURES]
    write_figures(sweep["circuits"], sweep["regimes_path"], sweep["runs"], outs, style={"dpi": 40})
    grok = grid_runs(sweep["regimes"], sweep["circuits"]["grids"]["grokking"])
    n_examples = grok["label"].nunique()  # example_runs: one 3.2-inch panel per regime present
    sizes = {
        "fig01_phase_diagram": (7, 4.5),
        "fig02_example_runs": (3.2 * n_examples, 3),
        "fig04_capacity": (8, 3.5),
        "fig09_param_norm": (6, 4),
    }
    for out in outs:
        width, height = sizes.get(out.stem, (5.5, 4))
        assert mimage.imread(out).shape[:2] == (round(height * 40), round(width * 40)), out.name  # figsize x dpi
        assert out.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="unknown paper B figure 'fig05_nope.png'"):
        write_figures(sweep["circuits"], sweep["regimes_path"], sweep["runs"], [tmp_path / "fig05_nope.png"])


def data_lines(ax) -> list[tuple[np.ndarray, np.ndarray]]:
    """(x, y) of every drawn line; seaborn's legend entries are empty lines and are left out."""
    return [
        (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)) for line in ax.lines if len(line.get_xdata())
    ]


def seed_mean_lines(table: pd.DataFrame, hue: str, x: str, y: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """What a seaborn lineplot(hue=...) draws: per hue level (sorted), the mean of y over seeds at each x."""
    out = []
    for _, group in sorted(table.groupby(hue), key=lambda item: item[0]):
        mean = group.groupby(x)[y].mean().sort_index()
        out.append((mean.index.to_numpy(float), mean.to_numpy(float)))
    return out


def assert_lines_equal(drawn, expected):
    assert len(drawn) == len(expected)
    for (dx, dy), (ex, ey) in zip(drawn, expected):
        np.testing.assert_allclose(dx, ex)
        np.testing.assert_allclose(dy, ey, equal_nan=True)


def test_phase_diagram_marks_each_cell_with_its_majority_regime(sweep):
    grid = grid_runs(sweep["regimes"], sweep["circuits"]["grids"]["grokking"])
    ax = paper_b.phase_diagram(grid).axes[0]
    cells = ax.collections[0]
    points = cells.get_offsets()
    assert sorted(map(tuple, np.asarray(points, float))) == [(4.0, 20.0), (4.0, 30.0), (8.0, 20.0), (8.0, 30.0)]
    for (d_h, D), color in zip(np.asarray(points), cells.get_facecolors()):
        counts = grid[(grid["d_h"] == d_h) & (grid["n_train"] == D)]["label"].astype(str).value_counts()
        majority = counts[counts == counts.max()].index
        assert any(np.allclose(color[:3], mcolors.to_rgb(paper_b.REGIME_COLORS[label])) for label in majority), (d_h, D)
    per_dh = grid.groupby("d_h")[["d_crit", "d_mem"]].first()
    lines = {line.get_label(): line for line in ax.lines if len(line.get_xdata())}
    for column, label in (("d_crit", "D_crit (val acc ≥ level)"), ("d_mem", "D_mem (capacity)")):
        if per_dh[column].notna().any():
            np.testing.assert_allclose(lines[label].get_ydata(), per_dh[column].to_numpy(float), equal_nan=True)
        else:
            assert label not in lines
    assert per_dh.loc[8, "d_mem"] == pytest.approx(sweep["regimes"].query("task == 'memorize'")["final_train_acc"].mean() * 49)


def test_accuracy_figures_plot_the_seed_means(sweep):
    regimes, grids = sweep["regimes"], sweep["circuits"]["grids"]
    grok = grid_runs(regimes, grids["grokking"])
    assert_lines_equal(
        data_lines(paper_b.val_acc_vs_data(grok).axes[0]), seed_mean_lines(grok, "d_h", "n_train", "final_val_acc")
    )
    for name in ("double_descent", "double_descent_square"):
        runs = grid_runs(regimes, grids[name])
        ax = paper_b.double_descent(runs, name).axes[0]
        assert ax.get_title() == name
        assert_lines_equal(data_lines(ax), seed_mean_lines(runs, "n_train", "d_h", "final_val_acc"))

    memorize = regimes[regimes["task"] == "memorize"]
    acc_ax, count_ax = paper_b.capacity(memorize).axes
    assert_lines_equal(data_lines(acc_ax), [(np.array([8.0]), np.array([memorize["final_train_acc"].mean()]))])
    assert_lines_equal(data_lines(count_ax), [(np.array([8.0]), np.array([memorize["final_train_acc"].mean() * 49]))])

    mix = regimes[regimes["task"] == "mix"]
    assert_lines_equal(data_lines(paper_b.emergence(mix).axes[0]), seed_mean_lines(mix, "n_sub", "n_params", "final_val_acc"))
    both = regimes[regimes["task"].isin(["mix", "mix_split"])]
    # hue levels in order of appearance: mix (dense) rows come before mix_split rows
    expected = seed_mean_lines(both, "split_ffn", "n_params", "final_val_acc")
    assert_lines_equal(data_lines(paper_b.split_ffn(both).axes[0]), expected)


def test_curve_figures_plot_one_example_run_per_regime(sweep):
    grok = grid_runs(sweep["regimes"], sweep["circuits"]["grids"]["grokking"])
    curves = sweep["curves"]
    labels = [label for label in paper_b.REGIME_ORDER if label in set(grok["label"].astype(str))]

    def run_curve(title):
        d_h, D, seed = (int(part.split("=")[1]) for part in title.split("\n")[1].split(", "))
        c = curves[
            (curves["task"] == "add")
            & (curves["d_h"] == d_h)
            & (curves["n_train"] == D)
            & (curves["seed"] == seed)
            & (curves["n_layers"] == 1)
        ]
        assert len(c) == len(c["step"].unique()) > 2  # exactly one run
        return c.sort_values("step")

    axes = paper_b.example_runs(curves, grok).axes
    assert [ax.get_title().split("\n")[0] for ax in axes] == labels
    norms = {}
    for ax in axes:
        c = run_curve(ax.get_title())
        steps = c["step"].clip(lower=1).to_numpy(float)
        assert_lines_equal(data_lines(ax), [(steps, c["train_acc"].to_numpy(float)), (steps, c["val_acc"].to_numpy(float))])
        label = ax.get_title().split("\n")[0]
        assert (
            grok.set_index(["d_h", "n_train", "seed"]).loc[(c["d_h"].iloc[0], c["n_train"].iloc[0], c["seed"].iloc[0]), "label"]
            == label
        )
        norms[label] = (steps, c["param_norm"].to_numpy(float), c["val_acc"].to_numpy(float))

    norm_ax, acc_ax = paper_b.param_norm(curves, grok).axes
    assert_lines_equal(data_lines(norm_ax), [(norms[label][0], norms[label][1]) for label in labels])
    assert_lines_equal(data_lines(acc_ax), [(norms[label][0], norms[label][2]) for label in labels])
    for line, label in zip(norm_ax.lines, labels):
        assert mcolors.to_rgb(line.get_color()) == mcolors.to_rgb(paper_b.REGIME_COLORS[label])


def test_empty_tables_draw_a_note_not_a_crash():
    empty = pd.DataFrame(
        columns=[
            "task",
            "d_h",
            "n_train",
            "n_sub",
            "n_params",
            "split_ffn",
            "label",
            "final_val_acc",
            "final_train_acc",
            "d_crit",
            "d_mem",
        ]
    )
    for fig in (paper_b.phase_diagram(empty), paper_b.val_acc_vs_data(empty), paper_b.emergence(empty)):
        assert [t.get_text() for t in fig.axes[0].texts][0].startswith("no ") and data_lines(fig.axes[0]) == []
