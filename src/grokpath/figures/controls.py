"""The controls' figure: a metric against test accuracy, generalizing domains beside the memorize-only one.

Takes a table and returns a matplotlib Figure (no file I/O); the seeds study saves it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from grokpath.figures.common import empty_panel, facets

LABELS = {
    "pathway_distance": "pathway distance",
    "distance_per_char": "distance per character",
    "within_minus_between": "within − between",
    "consistency": "consistency C_i",
    "mean_cosine": "raw routing cosine",
    "pathway_length": "pathway length",
}


def metric_vs_accuracy(checkpoints: pd.DataFrame, metrics: list[str], control_domain: str | None, style: dict | None = None):
    """One row of panels per metric, one column per domain (the control domain last): the metric against
    test accuracy over checkpoints, one line per seed in checkpoint order.

    ``checkpoints``: columns seed, domain, step, accuracy and each of ``metrics``. In the control domain
    accuracy stays near chance, so a metric that moves there moves without any generalization.
    """
    domains = sorted(d for d in checkpoints["domain"].dropna().unique() if d != control_domain)
    if control_domain in set(checkpoints["domain"]):
        domains.append(control_domain)
    metrics = [m for m in metrics if m in checkpoints.columns]
    fig, axes = facets(max(len(domains), 1) * max(len(metrics), 1), style, ncols=max(len(domains), 1), sharex=True)
    if not domains or not metrics:
        empty_panel(axes[0], "no data")
        return fig
    seeds = sorted(checkpoints["seed"].unique())
    palette = dict(zip(seeds, sns.color_palette("colorblind", len(seeds))))
    for i, metric in enumerate(metrics):
        for j, domain in enumerate(domains):
            ax = axes[i * len(domains) + j]
            part = checkpoints[checkpoints["domain"] == domain].sort_values(["seed", "step"])
            if part[metric].notna().sum() == 0:
                empty_panel(ax, "no values")
                continue
            for seed, run in part.groupby("seed", sort=True):
                ax.plot(run["accuracy"], run[metric], "o-", ms=3, lw=1, color=palette[seed], label=f"seed {seed}")
                last = run.dropna(subset=["accuracy", metric]).tail(1)
                ax.plot(last["accuracy"], last[metric], "s", ms=5, color=palette[seed])  # the last checkpoint
            title = f"{domain} (memorize-only)" if domain == control_domain else domain
            ax.set(title=title if i == 0 else "", xlabel="test accuracy" if i == len(metrics) - 1 else "")
            ax.set_ylabel(LABELS.get(metric, metric) if j == 0 else "")
            ax.set_xlim(-0.05, 1.05)
            if i == 0 and j == 0 and len(seeds) > 1:
                ax.legend(fontsize=6)
            values = part[metric].to_numpy(dtype=float)
            if np.isfinite(values).any():
                ax.margins(y=0.1)
    return fig
