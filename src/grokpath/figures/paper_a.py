"""Paper A's figures. Each ``figNN_*`` function takes tables (DataFrames) and returns a matplotlib Figure.

Panels are per domain unless said otherwise. :func:`write_paper_a_figures` reads the tables and
saves every figure of :data:`grokpath.figures.PAPER_A_FIGURES` (through :mod:`.common`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats

from grokpath.figures import PAPER_A_FIGURES
from grokpath.figures.common import empty_panel, facets, save_figure

log = logging.getLogger(__name__)


def _domains(frame: pd.DataFrame, column: str = "domain") -> list[str]:
    return sorted(frame[column].dropna().unique()) if column in frame and len(frame) else []


def _per_domain(frame: pd.DataFrame, style, sharey: bool = False):
    domains = _domains(frame)
    fig, axes = facets(len(domains), style, sharey=sharey)
    if not domains:
        empty_panel(axes[0], "no data")
    return fig, list(zip(domains, axes))


def _r_squared(x: np.ndarray, y: np.ndarray) -> float:
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return float("nan")
    return float(stats.pearsonr(x[keep], y[keep]).statistic ** 2)


def _twin_legend(ax, twin, **kwargs) -> None:
    """One legend for an axis and its twin (seaborn would draw two that overlap)."""
    handles, labels = [], []
    for a in (ax, twin):
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
        if a.get_legend() is not None:
            a.get_legend().remove()
    if handles:
        ax.legend(handles, labels, fontsize=6, **kwargs)


def fig01_memorized_vs_accuracy(curves: pd.DataFrame, style: dict | None = None):
    """Bars: training samples newly memorized at each checkpoint; line: cumulative test accuracy."""
    fig, panels = _per_domain(curves, style)
    for domain, ax in panels:
        c = curves[curves["domain"] == domain].sort_values("step")
        width = 0.6 * float(np.min(np.diff(c["step"]))) if len(c) > 1 else 1.0
        ax.bar(c["step"], c["n_memorized_new"], width=width, color="tab:blue", alpha=0.6, label="memorized at t*")
        ax.set(title=domain, xlabel="step", ylabel="samples memorized")
        twin = ax.twinx()
        cumulative = c["cumulative_accuracy"] if c["cumulative_accuracy"].notna().any() else c["accuracy"]
        twin.plot(c["step"], cumulative, "o-", color="tab:red", label="cumulative accuracy")
        twin.set(ylabel="cumulative test accuracy", ylim=(0, 1.05))
        twin.grid(False)
        _twin_legend(ax, twin, loc="upper left")
    return fig


def fig02_group_pairs(groups: pd.DataFrame, style: dict | None = None):
    """Hungarian-matched (training group t*, test group t#) pairs; above the diagonal = delayed generalization."""
    fig, axes = facets(1, style)
    ax = axes[0]
    if groups.empty:
        empty_panel(ax, "no matched groups")
        return fig
    sns.scatterplot(data=groups, x="train_group_step", y="test_group_step", hue="domain", size="similarity", ax=ax)
    lo = float(min(groups["train_group_step"].min(), groups["test_group_step"].min()))
    hi = float(max(groups["train_group_step"].max(), groups["test_group_step"].max()))
    ax.plot([lo, hi], [lo, hi], "--", color="0.5", lw=1, label="no delay")
    ax.set(xlabel="memorization step t* (training group)", ylabel="generalization step t# (test group)")
    ax.legend(fontsize=6, loc="best")
    return fig


def fig04_distance_loss(
    curves: pd.DataFrame, distances: pd.DataFrame | None = None, threshold: float | None = None, style: dict | None = None
):
    """Pathway distance of the memorized samples (quadratic fit) and training loss over checkpoints.

    Thin grey lines: the memorization groups ``t*=<step>`` of ``distances`` (full pathway, ``threshold``).
    """
    fig, panels = _per_domain(curves, style)
    for domain, ax in panels:
        c = curves[curves["domain"] == domain].sort_values("step")
        if distances is not None and not distances.empty:
            d = distances[
                (distances["domain"] == domain)
                & (distances["layer"] == -1)
                & distances["group"].astype(str).str.startswith("t*=")
            ]
            if threshold is not None:
                d = d[np.isclose(d["threshold"].astype(float), threshold)]
            for _, g in d.groupby("group"):
                g = g.sort_values("step")
                ax.plot(g["step"], g["mean_distance"], color="0.7", lw=0.8)
        keep = c["pathway_distance"].notna()
        ax.plot(c.loc[keep, "step"], c.loc[keep, "pathway_distance"], "o", color="tab:blue", label="distance")
        if keep.sum() >= 3:
            coef = np.polyfit(c.loc[keep, "step"].astype(float), c.loc[keep, "pathway_distance"], deg=2)
            grid = np.linspace(c["step"].min(), c["step"].max(), 100)
            ax.plot(grid, np.polyval(coef, grid), "-", color="tab:blue", label="quadratic fit")
        ax.set(title=domain, xlabel="step", ylabel="pathway distance")
        twin = ax.twinx()
        twin.plot(c["step"], c["train_loss"], "s--", color="tab:orange", ms=3, label="training loss")
        twin.set(ylabel="training loss")
        twin.grid(False)
        _twin_legend(ax, twin, loc="best")
    return fig


def fig05_per_layer_distance(distances: pd.DataFrame, threshold: float, style: dict | None = None):
    """Per-layer pathway distance over checkpoints (lines: layers, dark = deep).

    ``distances``: the analysis group's distances (:func:`grokpath.curves.aggregate_distances`).
    """
    d = distances[(distances["layer"] >= 0) & np.isclose(distances["threshold"].astype(float), threshold)]
    fig, panels = _per_domain(d, style)
    for domain, ax in panels:
        sns.lineplot(
            data=d[d["domain"] == domain], x="step", y="mean_distance", hue="layer", palette="viridis", marker="o", ax=ax
        )
        ax.set(title=domain, xlabel="step", ylabel="per-layer distance")
        ax.legend(title="layer", fontsize=6, ncol=2)
    return fig


def fig06_consistency(curves: pd.DataFrame, style: dict | None = None):
    """Pathway consistency C_i (paper's formula) and the raw consecutive-layer cosine over checkpoints."""
    fig, axes = facets(2, style)
    for ax, column, label in ((axes[0], "consistency", "consistency C_i"), (axes[1], "mean_cosine", "raw routing cosine")):
        if curves[column].notna().any():
            sns.lineplot(data=curves, x="step", y=column, hue="domain", marker="o", ax=ax)
        else:
            empty_panel(ax, f"no {label}")
        ax.set(xlabel="step", ylabel=label)
    return fig


REGRESSION_METRICS = {
    "pathway_distance": "pathway distance",
    "consistency": "consistency C_i",
    "train_loss": "training loss",
    "validation_loss": "validation loss",
}


def fig07_regression(curves: pd.DataFrame, window_start: dict | None = None, style: dict | None = None):
    """Accuracy against each metric over the sustained-rise window, linear fit per domain, R² in the legend."""
    frame = curves
    if window_start:
        frame = curves[curves["step"] >= curves["domain"].map(window_start).fillna(-np.inf)]
    fig, axes = facets(len(REGRESSION_METRICS), style)
    palette = dict(zip(_domains(frame), sns.color_palette(n_colors=max(1, len(_domains(frame))))))
    for ax, (column, label) in zip(axes, REGRESSION_METRICS.items()):
        for domain, color in palette.items():
            c = frame[frame["domain"] == domain]
            x, y = c[column].to_numpy(dtype=float), c["accuracy"].to_numpy(dtype=float)
            r2 = _r_squared(x, y)
            ax.scatter(x, y, color=color, s=14, label=f"{domain} R²={r2:.2f}" if np.isfinite(r2) else f"{domain} R²=n/a")
            keep = np.isfinite(x) & np.isfinite(y)
            if np.isfinite(r2):
                coef = np.polyfit(x[keep], y[keep], deg=1)
                grid = np.linspace(x[keep].min(), x[keep].max(), 20)
                ax.plot(grid, np.polyval(coef, grid), color=color, lw=1)
        ax.set(xlabel=label, ylabel="test accuracy")
        ax.legend(fontsize=6)
    return fig


def fig09_threshold_ablation(distances: pd.DataFrame, style: dict | None = None):
    """Full-pathway distance over checkpoints for each routing threshold (the analysis group's distances)."""
    d = distances[distances["layer"] == -1]
    fig, panels = _per_domain(d, style)
    for domain, ax in panels:
        sns.lineplot(
            data=d[d["domain"] == domain], x="step", y="mean_distance", hue="threshold", palette="crest", marker="o", ax=ax
        )
        ax.set(title=domain, xlabel="step", ylabel="pathway distance")
        ax.legend(title="threshold", fontsize=6)
    return fig


def _ablation(ablation: pd.DataFrame, parameter: str, style):
    a = ablation[ablation["parameter"] == parameter]
    fig, panels = _per_domain(a, style)
    for domain, ax in panels:
        sns.lineplot(data=a[a["domain"] == domain], x="step", y="fraction", hue=parameter, palette="flare", marker="o", ax=ax)
        ax.set(title=domain, xlabel="step", ylabel="fraction memorized")
        ax.legend(title=parameter, fontsize=6)
    return fig


def fig10_epsilon_ablation(ablation: pd.DataFrame, style: dict | None = None):
    """Fraction of training samples memorized by each checkpoint, for each ε."""
    return _ablation(ablation, "epsilon", style)


def fig11_delta_ablation(ablation: pd.DataFrame, style: dict | None = None):
    """Fraction of training samples memorized by each checkpoint, for each δ."""
    return _ablation(ablation, "delta", style)


def fig12_cross_domain(cross: pd.DataFrame, style: dict | None = None):
    """Mean pathway distance between samples of two different domains, over checkpoints."""
    fig, axes = facets(1, style)
    c = cross[cross["domain_a"] != cross["domain_b"]].assign(pair=lambda f: f["domain_a"] + "–" + f["domain_b"])
    if c.empty:
        empty_panel(axes[0], "no domain pairs")
    else:
        sns.lineplot(data=c, x="step", y="mean_distance", hue="pair", marker="o", ax=axes[0])
        axes[0].legend(fontsize=6)
    axes[0].set(xlabel="step", ylabel="cross-domain distance")
    return fig


def fig13_entropy_vs_distance(curves: pd.DataFrame, style: dict | None = None):
    """Routing entropy against pathway distance, one point per (domain, checkpoint); pooled Pearson r."""
    fig, axes = facets(1, style)
    ax = axes[0]
    sns.scatterplot(data=curves, x="entropy", y="pathway_distance", hue="domain", ax=ax)
    x, y = curves["entropy"].to_numpy(dtype=float), curves["pathway_distance"].to_numpy(dtype=float)
    r2 = _r_squared(x, y)
    keep = np.isfinite(x) & np.isfinite(y)
    r = float(stats.pearsonr(x[keep], y[keep]).statistic) if np.isfinite(r2) else float("nan")
    ax.set(
        xlabel="routing entropy", ylabel="pathway distance", title=f"pooled r = {r:.2f}" if np.isfinite(r) else "pooled r = n/a"
    )
    return fig


def fig08_theory(theory: pd.DataFrame, style: dict | None = None):
    """Synthetic MoE: (a) effective dimension and distance over training; (b) distance against effective dimension."""
    fig, axes = facets(2, style)
    ax = axes[0]
    sns.lineplot(
        data=theory, x="step", y="effective_dimension", color="tab:purple", ax=ax, errorbar=("pi", 100), label="effective dim."
    )
    ax.set(xlabel="training step", ylabel="effective dimension Tr(H(H+λI)⁻¹)")
    twin = ax.twinx()
    sns.lineplot(
        data=theory, x="step", y="pathway_distance", color="tab:green", ax=twin, errorbar=("pi", 100), label="pathway distance"
    )
    twin.set(ylabel="pathway edit distance")
    twin.grid(False)
    _twin_legend(ax, twin, loc="upper right")
    ax = axes[1]
    sns.scatterplot(
        data=theory, x="effective_dimension", y="pathway_distance", hue="step", style="seed", palette="viridis", ax=ax, s=18
    )
    r2 = _r_squared(theory["effective_dimension"].to_numpy(float), theory["pathway_distance"].to_numpy(float))
    ax.set(xlabel="effective dimension", ylabel="pathway edit distance", title=f"R² = {r2:.2f}" if np.isfinite(r2) else "")
    ax.legend(fontsize=6, ncol=2)
    return fig


def write_paper_a_figures(
    cfg: dict,
    curves_path: Path,
    samples_path: Path,
    distances_path: Path,
    cross_distances_path: Path,
    groups_path: Path,
    ablation_path: Path,
    correlations_path: Path,
    out_dir: Path,
) -> list[Path]:
    """Read the tables and save every figure of PAPER_A_FIGURES as ``out_dir/<name>.{png,pdf}``."""
    from grokpath.curves import (
        DISTANCE_COLUMNS,
        aggregate_distances,
        distance_weighting,
        memorization_group_sizes,
        resolve_threshold,
    )
    from grokpath.samples import read_table

    style = cfg.get("figures")
    threshold = resolve_threshold(cfg)
    curves = read_table(curves_path)
    distances = read_table(distances_path, DISTANCE_COLUMNS)
    sizes = memorization_group_sizes(read_table(samples_path, ["domain", "split", "sample_id", "memorized", "t_star_step"]))
    group_distances = aggregate_distances(distances, sizes, cfg["analysis"]["sample_group"], distance_weighting(cfg))
    correlations = pd.read_csv(correlations_path)
    window_start = correlations.groupby("domain")["window_start_step"].first().to_dict()
    ablation = read_table(ablation_path)
    makers = {
        "fig01_memorized_vs_accuracy": lambda: fig01_memorized_vs_accuracy(curves, style=style),
        "fig02_group_pairs": lambda: fig02_group_pairs(read_table(groups_path), style=style),
        "fig04_distance_loss": lambda: fig04_distance_loss(curves, distances, threshold, style=style),
        "fig05_per_layer_distance": lambda: fig05_per_layer_distance(group_distances, threshold, style=style),
        "fig06_consistency": lambda: fig06_consistency(curves, style=style),
        "fig07_regression": lambda: fig07_regression(curves, window_start, style=style),
        "fig09_threshold_ablation": lambda: fig09_threshold_ablation(group_distances, style=style),
        "fig10_epsilon_ablation": lambda: fig10_epsilon_ablation(ablation, style=style),
        "fig11_delta_ablation": lambda: fig11_delta_ablation(ablation, style=style),
        "fig12_cross_domain": lambda: fig12_cross_domain(read_table(cross_distances_path), style=style),
        "fig13_entropy_vs_distance": lambda: fig13_entropy_vs_distance(curves, style=style),
    }
    written = []
    for name in PAPER_A_FIGURES:
        path = Path(out_dir) / f"{name}.png"
        save_figure(makers[name](), path, style)
        written.append(path)
        log.info("figure %s", path)
    return written
