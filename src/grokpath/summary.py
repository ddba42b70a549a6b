"""The end-of-run summary the workflow prints (the Snakefile's ``onsuccess``).

:func:`run_summary` reads the finished tables and returns a short text: the report command,
where the main tables and figures are, one line per domain (final test accuracy, delayed
generalization by :func:`grokpath.world.criterion.grokking_criterion` on ``curves.parquet``,
the pathway distance's r and partial r given log step from ``tables/controls.csv``), and the
verdict of each signal the pathway monitor records (:mod:`grokpath.monitor`) from the
controls table. It never raises: a table that is missing or unreadable gets a line naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

REPORT_COMMAND = ".venv/bin/snakemake --cores all --report results/report.html"
TABLES = {
    "tables/correlations.md": "Table 1",
    "tables/controls.md": "its controls for time, length and drift",
    "tables/onset.csv": "onset of the sustained rise, delay",
}
FIGURES = ["figures/paper_a/", "figures/paper_b/"]
# the signals grokpath.monitor records during training, in controls.csv's metric names
MONITOR_METRICS = {
    "pathway_distance": "pathway distance",
    "consistency": "pathway consistency C_i",
    "mean_cosine": "raw routing cosine",
}


def _read(path: Path, problems: list[str]) -> pd.DataFrame | None:
    if not path.is_file():
        problems.append(f"missing: {path}")
        return None
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as err:  # a summary must not fail the run: name the file instead
        problems.append(f"unreadable: {path} ({type(err).__name__}: {err})")
        return None


def _fmt(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:+.2f}"


def _delays(curves: pd.DataFrame, rule: dict) -> dict[str, dict]:
    from grokpath.world.criterion import grokking_criterion

    frame = curves.rename(columns={"accuracy": "test_accuracy"})
    frame = frame.dropna(subset=["train_loss_all", "test_accuracy"])
    verdicts = grokking_criterion(
        frame, "train_loss_all", delta=rule["delta"], min_gap=rule["min_gap"], min_final_accuracy=rule["min_final_accuracy"]
    )
    return {row.domain: row._asdict() for row in verdicts.itertuples(index=False)}


def run_summary(results_dir: Path | str = "results", cfg: dict | None = None) -> str:
    """The end-of-run text (module doc); ``cfg`` supplies ``analysis.delay`` (schema defaults without it)."""
    results = Path(results_dir)
    if cfg is None:
        from grokpath.config import validate

        cfg = validate({})
    problems: list[str] = []
    lines = ["grokpath: the run finished.", f"Report: {REPORT_COMMAND}"]
    lines.append("Tables: " + "; ".join(f"{results / t} ({what})" for t, what in TABLES.items()))
    problems += [f"missing: {results / t}" for t in TABLES if not (results / t).is_file()]
    lines.append("Figures: " + ", ".join(str(results / f) for f in FIGURES))

    curves = _read(results / "metrics" / "curves.parquet", problems)
    controls = _read(results / "tables" / "controls.csv", problems)
    delays: dict[str, dict] = {}
    if curves is not None:
        try:
            delays = _delays(curves, cfg["analysis"]["delay"])
        except Exception as err:
            problems.append(f"delay criterion failed on {results / 'metrics' / 'curves.parquet'} ({type(err).__name__}: {err})")
    control = cfg["analysis"].get("controls", {}).get("control_domain")
    domains = sorted(set(delays) | (set(controls["domain"]) if controls is not None else set()))
    if domains:
        lines.append(
            "Per domain (delay: grokking_criterion on training loss and test accuracy; distance r with accuracy, and given log step):"
        )
    for domain in domains:
        parts = [f"  {domain}{' (memorize-only)' if domain == control else ''}:"]
        if domain in delays:
            d = delays[domain]
            parts.append(f"final test accuracy {d['final_test_accuracy']:.2f};")
            gap = d["gap_checkpoints"]
            if d["groks"]:
                parts.append(f"delayed generalization: yes ({int(gap)} checkpoints after the loss settled);")
            elif pd.isna(gap):
                parts.append("delayed generalization: no (accuracy never above half its final value);")
            else:
                parts.append(
                    f"delayed generalization: no (gap {int(gap)} checkpoints, final accuracy {d['final_test_accuracy']:.2f});"
                )
        if controls is not None:
            row = controls[(controls["domain"] == domain) & (controls["metric"] == "pathway_distance")]
            if len(row):
                r = row.iloc[0]
                parts.append(f"distance r {_fmt(r['pearson'])}, partial r {_fmt(r['partial'])}")
        lines.append(" ".join(parts))
    if controls is not None:
        lines.append(f"Monitor verdict (controls.csv, beside the memorize-only domain '{control}'):")
        for metric, label in MONITOR_METRICS.items():
            row = controls[controls["metric"] == metric]
            if len(row):
                lines.append(f"  {label}: {row['verdict'].iloc[0]} ({row['verdict_reason'].iloc[0]})")
            else:
                lines.append(f"  {label}: not in {results / 'tables' / 'controls.csv'}")
    lines += problems
    return "\n".join(lines)
