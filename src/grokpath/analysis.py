"""Paper A's analysis stage in one process: the per-sample table, the onset table, the curves,
Table 1, its controls and paper A's figures, written to the same files as the stage's rules.

For a study whose analysis jobs take less time than starting Python and importing pandas,
scipy and matplotlib, as the mini study's do (rule ``analysis``); a larger study keeps a job
per table (rules ``samples``, ``onset_table``, ``curves``, ``correlations``, ``controls``,
``figures_paper_a``).
"""

from __future__ import annotations

from pathlib import Path

from grokpath.controls import write_controls
from grokpath.correlations import write_correlations
from grokpath.curves import write_curves
from grokpath.figures.paper_a import write_paper_a_figures
from grokpath.rise import write_onset
from grokpath.samples import write_samples


def run_analysis_study(
    cfg: dict,
    trace_paths: list[Path],
    eval_paths: list[Path],
    metrics_dir: Path,
    tables_dir: Path,
    figures_dir: Path,
    threads: int = 1,
) -> None:
    """Every analysis table and figure of paper A from the metrics stage's tables in ``metrics_dir``:
    ``metrics_dir/{samples,curves}.parquet``, ``tables_dir/{onset,correlations,controls,controls_checkpoints}``
    and the figures in ``figures_dir``, in the order the rules' inputs require."""
    metrics_dir, tables_dir = Path(metrics_dir), Path(tables_dir)
    samples, curves = metrics_dir / "samples.parquet", metrics_dir / "curves.parquet"
    distances, cross_distances = metrics_dir / "distances.parquet", metrics_dir / "cross_distances.parquet"
    write_samples(
        trace_paths,
        eval_paths,
        metrics_dir / "memorization.parquet",
        metrics_dir / "onset.parquet",
        metrics_dir / "consistency.parquet",
        metrics_dir / "pathways.parquet",
        samples,
    )
    write_onset(cfg, samples, tables_dir / "onset.csv")
    write_curves(cfg, samples, distances, curves)
    write_correlations(cfg, curves, samples, distances, tables_dir / "correlations.csv", tables_dir / "correlations.md")
    write_controls(
        cfg,
        curves,
        samples,
        distances,
        cross_distances,
        tables_dir / "controls.csv",
        tables_dir / "controls.md",
        tables_dir / "controls_checkpoints.csv",
        threads,
    )
    write_paper_a_figures(
        cfg,
        curves,
        samples,
        distances,
        cross_distances,
        metrics_dir / "groups.parquet",
        metrics_dir / "memorization_ablation.parquet",
        tables_dir / "correlations.csv",
        figures_dir,
    )
