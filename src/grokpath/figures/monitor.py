"""Fig. 0 (ours, beyond the paper): the online monitor over pretraining steps."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from grokpath.figures.common import facets, save_figure

PANELS = [
    ("probe_loss", "probe loss (train texts)"),
    ("pathway_distance", "mean pathway distance"),
    ("consistency", "pathway consistency $C_i$"),
    ("mean_cosine", "mean consecutive-layer cosine"),
]


def monitor_figure(monitor: pd.DataFrame, style: dict | None = None):
    """One panel per monitored quantity, one line per domain, against the pretraining step."""
    if monitor.empty:
        raise ValueError("monitor table is empty: pretraining saved no checkpoint with the monitor on")
    fig, axes = facets(len(PANELS), style, ncols=len(PANELS))
    for ax, (column, label) in zip(axes, PANELS):
        sns.lineplot(data=monitor, x="step", y=column, hue="domain", marker="o", ax=ax, legend=ax is axes[-1])
        ax.set_ylabel(label)
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1, 1), fontsize=7, title_fontsize=7)
    return fig


def write_monitor_figure(monitor_path: Path, png: Path, style: dict | None = None) -> None:
    """Fig. 0 from results/pretrain/monitor.parquet, as ``png`` with its PDF beside it."""
    save_figure(monitor_figure(pd.read_parquet(monitor_path), style), png, style)
