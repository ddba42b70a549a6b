"""Paper A's figure functions on small frames: what they plot (read back from the Figure), and the PNG + PDF writer."""

from __future__ import annotations

import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from test_analysis import make_study, study_cfg, study_samples

from grokpath.curves import aggregate_distances, build_curves, memorization_group_sizes
from grokpath.figures import PAPER_A_FIGURES, paper_a
from grokpath.figures.common import save_figure


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def tables():
    study = make_study()
    samples = study_samples(study)
    curves = build_curves(study_cfg(), samples, study["distances"])
    steps = sorted(curves["step"].unique())
    groups = pd.DataFrame(
        {
            "domain": ["math", "math", "code"],
            "train_group_step": [100, 200, 100],
            "test_group_step": [300, 400, 200],
            "n_train": 3,
            "n_test": 4,
            "similarity": [0.5, 0.6, 0.4],
            "delay_steps": [200, 200, 100],
            "backend": "tfidf",
        }
    )
    ablation = pd.DataFrame(
        [
            {
                "domain": d,
                "parameter": p,
                "epsilon": e,
                "delta": 0.05 if p == "epsilon" else e / 40,
                "ckpt": f"s{s}",
                "step": s,
                "n_memorized": i,
                "fraction": i / 10,
            }
            for d in ("math", "code")
            for p in ("epsilon", "delta")
            for e in (1.5, 2.0)
            for i, s in enumerate(steps)
        ]
    )
    ablation.loc[ablation.parameter == "delta", "epsilon"] = 1.5
    cross = pd.DataFrame(
        {"ckpt": "x", "step": steps, "domain_a": "code", "domain_b": "math", "mean_distance": 10.0, "n_pairs": 9}
    )
    theory = pd.DataFrame(
        {
            "seed": 0,
            "step": [0, 10, 20, 30],
            "routing_loss": [4, 3, 2, 1.0],
            "effective_dimension": [40, 30, 22, 20.0],
            "pathway_distance": [25, 15, 6, 4.0],
            "within_cluster_distance": [24, 12, 2, 0.0],
            "mean_top_gate": [0.4, 0.6, 0.8, 0.9],
        }
    )
    grouped = aggregate_distances(study["distances"], memorization_group_sizes(samples), "memorized", "equal")
    return {
        "curves": curves,
        "distances": study["distances"],
        "grouped": grouped,
        "groups": groups,
        "ablation": ablation,
        "cross": cross,
        "theory": theory,
        "samples": samples,
    }


CASES = {
    "fig01_memorized_vs_accuracy": (lambda t: paper_a.fig01_memorized_vs_accuracy(t["curves"]), 4),  # 2 domains + 2 twins
    "fig02_group_pairs": (lambda t: paper_a.fig02_group_pairs(t["groups"]), 1),
    "fig04_distance_loss": (lambda t: paper_a.fig04_distance_loss(t["curves"], t["distances"], 0.7), 4),
    "fig05_per_layer_distance": (lambda t: paper_a.fig05_per_layer_distance(t["grouped"], 0.7), 2),
    "fig06_consistency": (lambda t: paper_a.fig06_consistency(t["curves"]), 2),
    "fig07_regression": (lambda t: paper_a.fig07_regression(t["curves"], {"math": 200, "code": 200}), 4),
    "fig09_threshold_ablation": (lambda t: paper_a.fig09_threshold_ablation(t["grouped"]), 2),
    "fig10_epsilon_ablation": (lambda t: paper_a.fig10_epsilon_ablation(t["ablation"]), 2),
    "fig11_delta_ablation": (lambda t: paper_a.fig11_delta_ablation(t["ablation"]), 2),
    "fig12_cross_domain": (lambda t: paper_a.fig12_cross_domain(t["cross"]), 1),
    "fig13_entropy_vs_distance": (lambda t: paper_a.fig13_entropy_vs_distance(t["curves"]), 1),
    "fig08_theory": (lambda t: paper_a.fig08_theory(t["theory"]), 3),  # 2 panels + 1 twin
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_figure_function_returns_figure_with_axes(tables, name):
    make, n_axes = CASES[name]
    fig = make(tables)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == n_axes
    assert all(ax.has_data() or ax.texts for ax in fig.axes)


def _domain(tables, domain="math"):
    return tables["curves"][tables["curves"]["domain"] == domain].sort_values("step")


def _line(ax, label):
    return next(line for line in ax.get_lines() if line.get_label() == label)


def test_fig01_plots_new_memorized_and_cumulative_accuracy(tables):
    fig = paper_a.fig01_memorized_vs_accuracy(tables["curves"])
    math = _domain(tables)
    ax = next(a for a in fig.axes if a.get_title() == "math")
    assert [p.get_height() for p in ax.patches] == math["n_memorized_new"].tolist() == [3, 0, 2, 0, 3, 0]
    twin = next(a for a in fig.axes if a is not ax and a.bbox.bounds == ax.bbox.bounds and a.get_lines())
    np.testing.assert_allclose(twin.get_lines()[0].get_ydata(), math["cumulative_accuracy"])


def test_fig04_plots_distance_groups_and_training_loss(tables):
    fig = paper_a.fig04_distance_loss(tables["curves"], tables["distances"], 0.7)
    math = _domain(tables)
    ax = next(a for a in fig.axes if a.get_title() == "math")
    points = _line(ax, "distance")
    np.testing.assert_allclose(points.get_xdata(), math["step"])
    np.testing.assert_allclose(points.get_ydata(), math["pathway_distance"])
    fit = np.polyfit(math["step"].astype(float), math["pathway_distance"], 2)
    curve = _line(ax, "quadratic fit")
    np.testing.assert_allclose(curve.get_ydata(), np.polyval(fit, curve.get_xdata()))
    d = tables["distances"]
    groups = d[(d.domain == "math") & (d.layer == -1) & (d.threshold == 0.7) & d.group.str.startswith("t*=")]
    grey = [line for line in ax.get_lines() if line.get_label().startswith("_")]
    assert len(grey) == groups["group"].nunique() == 3
    first = groups[groups.group == "t*=100"].sort_values("step")["mean_distance"]
    np.testing.assert_allclose(grey[0].get_ydata(), first)
    twin = next(a for a in fig.axes if a is not ax and a.bbox.bounds == ax.bbox.bounds)
    np.testing.assert_allclose(_line(twin, "training loss").get_ydata(), math["train_loss"])


def test_fig05_and_fig09_plot_the_grouped_distances(tables):
    grouped = tables["grouped"]
    fig = paper_a.fig05_per_layer_distance(grouped, 0.7)
    assert [ax.get_title() for ax in fig.axes] == ["code", "math"]
    expected = grouped[(grouped.domain == "math") & (grouped.layer == 2) & (grouped.threshold == 0.7)].sort_values("step")
    lines = [line for line in fig.axes[1].get_lines() if len(line.get_xdata()) == len(expected)]
    assert any(np.allclose(line.get_ydata(), expected["mean_distance"]) for line in lines)
    fig = paper_a.fig09_threshold_ablation(grouped)
    for threshold in (0.5, 0.7):
        expected = grouped[(grouped.domain == "code") & (grouped.layer == -1) & (grouped.threshold == threshold)].sort_values(
            "step"
        )
        assert any(
            np.allclose(line.get_ydata(), expected["mean_distance"])
            for line in fig.axes[0].get_lines()
            if len(line.get_ydata()) == len(expected)
        )
    # the full-pathway grouped distance at the main threshold is what curves.parquet holds
    main = grouped[(grouped.domain == "math") & (grouped.layer == -1) & (grouped.threshold == 0.7)].sort_values("step")
    np.testing.assert_allclose(main["mean_distance"], _domain(tables)["pathway_distance"])


def test_fig06_and_fig13_plot_the_curves(tables):
    fig = paper_a.fig06_consistency(tables["curves"])
    for ax, column in zip(fig.axes, ("consistency", "mean_cosine")):
        for domain in ("code", "math"):
            expected = _domain(tables, domain)[column].to_numpy()
            assert any(np.allclose(line.get_ydata(), expected) for line in ax.get_lines() if len(line.get_ydata()) == 6)
    fig = paper_a.fig13_entropy_vs_distance(tables["curves"])
    offsets = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    expected = tables["curves"][["entropy", "pathway_distance"]].to_numpy()
    np.testing.assert_allclose(np.sort(offsets, axis=0), np.sort(expected, axis=0))


def test_fig07_plots_the_window_and_reports_r2(tables):
    fig = paper_a.fig07_regression(tables["curves"], {"math": 200, "code": 200})
    math = tables["curves"].query("domain == 'math' and step >= 200")
    ax = fig.axes[0]  # pathway distance
    scatter = next(c for c in ax.collections if c.get_label().startswith("math"))
    np.testing.assert_allclose(scatter.get_offsets(), math[["pathway_distance", "accuracy"]].to_numpy())
    # the memorized groups' distance falls with the checkpoint while accuracy rises: R² as np.corrcoef²
    r2 = np.corrcoef(math["pathway_distance"], math["accuracy"])[0, 1] ** 2
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"math R²={r2:.2f}" in labels


def test_empty_tables_give_a_labelled_panel():
    fig = paper_a.fig12_cross_domain(pd.DataFrame(columns=["ckpt", "step", "domain_a", "domain_b", "mean_distance", "n_pairs"]))
    assert fig.axes[0].texts[0].get_text() == "no domain pairs"


def test_save_figure_writes_png_and_pdf(tmp_path, tables):
    save_figure(paper_a.fig08_theory(tables["theory"]), tmp_path / "fig08_theory.png")
    assert (tmp_path / "fig08_theory.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "fig08_theory.pdf").read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig08_theory.pdf", "fig08_theory.png"]  # no temp files left
    with pytest.raises(ValueError, match="png"):
        save_figure(paper_a.fig08_theory(tables["theory"]), tmp_path / "x.pdf")


def test_write_paper_a_figures_from_files(tmp_path, tables):
    paths = {}
    for name in ("curves", "samples", "distances", "groups", "ablation", "cross"):
        paths[name] = tmp_path / f"{name}.parquet"
        tables[name].to_parquet(paths[name])
    pd.DataFrame({"domain": ["code", "math"], "window_start_step": [200, 200]}).to_csv(tmp_path / "corr.csv", index=False)
    out = tmp_path / "figs"
    cfg = study_cfg()
    cfg["figures"]["dpi"] = 40  # small PNGs keep the test fast
    written = paper_a.write_paper_a_figures(
        cfg,
        paths["curves"],
        paths["samples"],
        paths["distances"],
        paths["cross"],
        paths["groups"],
        paths["ablation"],
        tmp_path / "corr.csv",
        out,
    )
    assert [p.stem for p in written] == PAPER_A_FIGURES
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.{e}" for n in PAPER_A_FIGURES for e in ("png", "pdf"))
