"""Figure style and the one writer: PNG + PDF, atomically, beside each other."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on workers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from grokpath.io import atomic_path  # noqa: E402

DEFAULT_STYLE = {"dpi": 150, "context": "paper", "panel_width": 3.2, "panel_height": 2.6}


def style_of(style: dict | None) -> dict:
    return {**DEFAULT_STYLE, **(style or {})}


def facets(n_panels: int, style: dict | None = None, ncols: int | None = None, sharex: bool = False, sharey: bool = False):
    """A figure with ``n_panels`` axes in a grid (unused grid cells removed); returns (fig, axes list)."""
    s = style_of(style)
    sns.set_theme(context=s["context"], style="whitegrid")
    n_panels = max(1, n_panels)
    ncols = ncols or min(n_panels, 4)
    nrows = int(np.ceil(n_panels / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(s["panel_width"] * ncols, s["panel_height"] * nrows),
        sharex=sharex,
        sharey=sharey,
        squeeze=False,
        layout="constrained",
    )
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        fig.delaxes(ax)
    return fig, flat[:n_panels]


def empty_panel(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def save_figure(fig, png_path: Path | str, style: dict | None = None) -> None:
    """Write ``<name>.png`` and ``<name>.pdf`` atomically, then close the figure."""
    png_path = Path(png_path)
    if png_path.suffix != ".png":
        raise ValueError(f"figure path must end in .png (the PDF goes beside it): {png_path}")
    s = style_of(style)
    for path, fmt in ((png_path, "png"), (png_path.with_suffix(".pdf"), "pdf")):
        with atomic_path(path, f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=s["dpi"])
    plt.close(fig)
