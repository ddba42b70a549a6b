"""Paper B figures (Huang et al. 2024, circuits competition). Tables in, matplotlib figures out.

``regimes`` is results/circuits/regimes.parquet (one row per run), ``curves`` the
concatenated run files (one row per run and logged step). No file I/O here.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from grokpath.circuits.columns import RUN_KEYS  # noqa: E402

REGIME_ORDER = ["progression", "grokking", "semi-grokking", "ungrokking", "undetermined"]
REGIME_COLORS = dict(zip(REGIME_ORDER, ["#4c72b0", "#55a868", "#dd8452", "#c44e52", "#8c8c8c"]))


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this study", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def majority_regime(regimes: pd.DataFrame) -> pd.DataFrame:
    """Per (d_h, D) cell: the most common label and its share of seeds."""
    rows = []
    for (d_h, D), cell in regimes.groupby(["d_h", "n_train"]):
        counts = cell["label"].astype(str).value_counts()
        rows.append({"d_h": d_h, "n_train": D, "label": counts.index[0], "share": counts.iloc[0] / len(cell)})
    return pd.DataFrame(rows, columns=["d_h", "n_train", "label", "share"])


def phase_diagram(regimes: pd.DataFrame) -> plt.Figure:
    """Fig 1: regimes over (d_h, D), with the D_crit and D_mem estimates per d_h."""
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    if regimes.empty:
        _empty(ax, "grid runs")
        return fig
    cells = majority_regime(regimes)
    sns.scatterplot(
        data=cells,
        x="d_h",
        y="n_train",
        hue="label",
        s=220,
        marker="s",
        hue_order=[r for r in REGIME_ORDER if r in set(cells["label"])],
        palette=REGIME_COLORS,
        ax=ax,
    )
    for row in cells.itertuples():
        if row.share < 1:
            ax.annotate(f"{row.share:.0%}", (row.d_h, row.n_train), xytext=(9, 6), textcoords="offset points", fontsize=7)
    per_dh = regimes.groupby("d_h")[["d_crit", "d_mem"]].first().reset_index()
    if per_dh["d_crit"].notna().any():
        ax.plot(per_dh["d_h"], per_dh["d_crit"], "k--", marker="o", label="D_crit (val acc ≥ level)")
    if per_dh["d_mem"].notna().any():
        ax.plot(per_dh["d_h"], per_dh["d_mem"], "k:", marker="^", label="D_mem (capacity)")
    values = pd.concat([regimes["n_train"], per_dh["d_crit"], per_dh["d_mem"]]).dropna()
    pad = 0.08 * (values.max() - values.min() + 1)
    ax.set_ylim(values.min() - pad, values.max() + pad)
    ax.set(xlabel="hidden size d_h", ylabel="training pairs D", title="Regimes (majority over seeds; % = its share)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _pick_examples(regimes: pd.DataFrame) -> dict[str, pd.Series]:
    """One run per regime: the one closest to its regime's median final val accuracy."""
    out = {}
    for label in REGIME_ORDER:
        runs = regimes[regimes["label"].astype(str) == label]
        if not runs.empty:
            med = runs["final_val_acc"].median()
            out[label] = runs.iloc[int(np.argmin((runs["final_val_acc"] - med).abs().to_numpy()))]
    return out


def _run_curve(curves: pd.DataFrame, run: pd.Series) -> pd.DataFrame:
    mask = np.ones(len(curves), bool)
    for key in RUN_KEYS:
        mask &= (curves[key] == run[key]).to_numpy()
    return curves[mask].sort_values("step")


def example_runs(curves: pd.DataFrame, regimes: pd.DataFrame) -> plt.Figure:
    """Fig 2: train and val accuracy of one example run per regime."""
    examples = _pick_examples(regimes)
    n = max(1, len(examples))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3), sharey=True, squeeze=False, layout="constrained")
    if not examples:
        _empty(axes[0, 0], "classified runs")
        return fig
    for ax, (label, run) in zip(axes[0], examples.items()):
        c = _run_curve(curves, run)
        steps = c["step"].clip(lower=1)
        ax.plot(steps, c["train_acc"], label="train", color="#4c72b0")
        ax.plot(steps, c["val_acc"], label="val", color="#c44e52")
        ax.set(xscale="log", xlabel="step", title=f"{label}\nd_h={run['d_h']}, D={run['n_train']}, seed={run['seed']}")
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=7)
    return fig


def val_acc_vs_data(regimes: pd.DataFrame) -> plt.Figure:
    """Fig 3: final val accuracy against D, one line per d_h (95% CI over seeds)."""
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    if regimes.empty:
        _empty(ax, "grid runs")
        return fig
    sns.lineplot(
        data=regimes, x="n_train", y="final_val_acc", hue="d_h", marker="o", errorbar=("ci", 95), palette="viridis", ax=ax
    )
    ax.set(xlabel="training pairs D", ylabel="final val accuracy", ylim=(-0.03, 1.03))
    return fig


def capacity(memorize: pd.DataFrame) -> plt.Figure:
    """Fig 4: memorization capacity (random symmetric labels, all pairs) against d_h."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), layout="constrained")
    if memorize.empty:
        _empty(axes[0], "capacity runs")
        return fig
    table = memorize.assign(memorized=memorize["final_train_acc"] * memorize["n_train"])
    sns.lineplot(data=table, x="d_h", y="final_train_acc", marker="o", errorbar=("ci", 95), ax=axes[0])
    axes[0].set(xlabel="hidden size d_h", ylabel="train accuracy (random labels)", ylim=(-0.03, 1.03))
    sns.lineplot(data=table, x="d_h", y="memorized", marker="o", errorbar=("ci", 95), ax=axes[1])
    axes[1].set(xlabel="hidden size d_h", ylabel="pairs memorized = D_mem")
    return fig


def double_descent(regimes: pd.DataFrame, task_label: str) -> plt.Figure:
    """Figs 6-7: final val accuracy against d_h, one line per D (95% CI over seeds)."""
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    if regimes.empty:
        _empty(ax, "double-descent runs")
        return fig
    sns.lineplot(data=regimes, x="d_h", y="final_val_acc", hue="n_train", marker="o", errorbar=("ci", 95), palette="crest", ax=ax)
    ax.set(xlabel="hidden size d_h", ylabel="final val accuracy", ylim=(-0.03, 1.03), title=task_label)
    ax.legend(title="D", fontsize=7)
    return fig


def emergence(mix: pd.DataFrame) -> plt.Figure:
    """Fig 8: addition val accuracy in the addition + random-label mix against model size."""
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    if mix.empty:
        _empty(ax, "emergence runs")
        return fig
    sns.lineplot(data=mix, x="n_params", y="final_val_acc", hue="n_sub", marker="o", errorbar=("ci", 95), palette="flare", ax=ax)
    ax.set(xscale="log", xlabel="parameters", ylabel="addition val accuracy", ylim=(-0.03, 1.03))
    ax.legend(title="random-label pairs", fontsize=7)
    return fig


def split_ffn(mix: pd.DataFrame) -> plt.Figure:
    """Fig 10: dense vs split FFN (half the MLP per task) in the multi-task mix."""
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    if mix.empty:
        _empty(ax, "emergence runs")
        return fig
    table = mix.assign(ffn=np.where(mix["split_ffn"], "split FFN", "dense FFN"))
    sns.lineplot(data=table, x="n_params", y="final_val_acc", hue="ffn", style="n_sub", marker="o", errorbar=("ci", 95), ax=ax)
    ax.set(xscale="log", xlabel="parameters", ylabel="addition val accuracy", ylim=(-0.03, 1.03))
    return fig


def param_norm(curves: pd.DataFrame, regimes: pd.DataFrame) -> plt.Figure:
    """Fig 9: parameter norm and val accuracy over training, one example run per regime."""
    examples = _pick_examples(regimes)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    if not examples:
        _empty(ax, "classified runs")
        return fig
    acc_ax = ax.twinx()
    for label, run in examples.items():
        c = _run_curve(curves, run)
        steps = c["step"].clip(lower=1)
        ax.plot(steps, c["param_norm"], color=REGIME_COLORS[label], label=f"{label} (d_h={run['d_h']}, D={run['n_train']})")
        acc_ax.plot(steps, c["val_acc"], color=REGIME_COLORS[label], ls=":", alpha=0.7)
    ax.set(xscale="log", xlabel="step", ylabel="parameter norm (solid)")
    acc_ax.set(ylabel="val accuracy (dotted)", ylim=(-0.03, 1.03))
    ax.legend(fontsize=7, loc="upper left")
    return fig
