"""Paper A's figure functions on small frames: a Figure with the expected axes; the writer's PNG + PDF."""
from __future__ import annotations

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from test_analysis import make_study, study_cfg

from grokpath.analysis import PAPER_A_FIGURES, build_curves, write_paper_a_figures
from grokpath.figures import paper_a
from grokpath.figures.common import save_figure


@pytest.fixture(scope="module")
def tables():
    study = make_study()
    curves = build_curves(study_cfg(), **study)
    steps = sorted(curves["step"].unique())
    groups = pd.DataFrame({"domain": ["math", "math", "code"], "train_group_step": [100, 200, 100], "test_group_step": [300, 400, 200],
                           "n_train": 3, "n_test": 4, "similarity": [0.5, 0.6, 0.4], "delay_steps": [200, 200, 100], "backend": "tfidf"})
    ablation = pd.DataFrame([{"domain": d, "parameter": p, "epsilon": e, "delta": 0.05 if p == "epsilon" else e / 40, "ckpt": f"s{s}",
                              "step": s, "n_memorized": i, "fraction": i / 10}
                             for d in ("math", "code") for p in ("epsilon", "delta") for e in (1.5, 2.0) for i, s in enumerate(steps)])
    ablation.loc[ablation.parameter == "delta", "epsilon"] = 1.5
    cross = pd.DataFrame({"ckpt": "x", "step": steps, "domain_a": "code", "domain_b": "math", "mean_distance": 10.0, "n_pairs": 9})
    theory = pd.DataFrame({"seed": 0, "step": [0, 10, 20, 30], "routing_loss": [4, 3, 2, 1.0], "effective_dimension": [40, 30, 22, 20.0],
                           "pathway_distance": [25, 15, 6, 4.0], "within_cluster_distance": [24, 12, 2, 0.0], "mean_top_gate": [0.4, 0.6, 0.8, 0.9]})
    return {"curves": curves, "distances": study["distances"], "groups": groups, "ablation": ablation, "cross": cross, "theory": theory}


CASES = {
    "fig01_memorized_vs_accuracy": (lambda t: paper_a.fig01_memorized_vs_accuracy(t["curves"]), 4),  # 2 domains + 2 twins
    "fig02_group_pairs": (lambda t: paper_a.fig02_group_pairs(t["groups"]), 1),
    "fig04_distance_loss": (lambda t: paper_a.fig04_distance_loss(t["curves"], t["distances"], 0.7), 4),
    "fig05_per_layer_distance": (lambda t: paper_a.fig05_per_layer_distance(t["distances"], "memorized", 0.7), 2),
    "fig06_consistency": (lambda t: paper_a.fig06_consistency(t["curves"]), 2),
    "fig07_regression": (lambda t: paper_a.fig07_regression(t["curves"], {"math": 200, "code": 200}), 4),
    "fig09_threshold_ablation": (lambda t: paper_a.fig09_threshold_ablation(t["distances"], "memorized"), 2),
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


def test_panels_are_per_domain_and_regression_reports_r2(tables):
    fig = paper_a.fig05_per_layer_distance(tables["distances"], "memorized", 0.7)
    assert [ax.get_title() for ax in fig.axes] == ["code", "math"]
    fig = paper_a.fig07_regression(tables["curves"], {"math": 200, "code": 200})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    # the memorized group's distance falls linearly per checkpoint while accuracy rises: R² as np.corrcoef²
    math = tables["curves"].query("domain == 'math' and step >= 200")
    r2 = np.corrcoef(math["pathway_distance"], math["accuracy"])[0, 1] ** 2
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
    for name in ("curves", "distances", "groups", "ablation", "cross"):
        paths[name] = tmp_path / f"{name}.parquet"
        tables[name].to_parquet(paths[name])
    pd.DataFrame({"domain": ["code", "math"], "window_start_step": [200, 200]}).to_csv(tmp_path / "corr.csv", index=False)
    out = tmp_path / "figs"
    cfg = study_cfg()
    cfg["figures"]["dpi"] = 40  # small PNGs keep the test fast
    written = write_paper_a_figures(cfg, paths["curves"], paths["distances"], paths["cross"], paths["groups"],
                                    paths["ablation"], tmp_path / "corr.csv", out)
    assert [p.stem for p in written] == PAPER_A_FIGURES
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.{e}" for n in PAPER_A_FIGURES for e in ("png", "pdf"))
