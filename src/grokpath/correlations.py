"""Table 1 of paper A: Pearson / Spearman between test accuracy and each metric, per domain.

Correlations use only the checkpoints of the sustained-rise window (see
:mod:`grokpath.analysis`); with fewer than ``min_checkpoints`` there, all checkpoints
are used and ``restricted`` is False. Point estimates come from ``curves.parquet``.

Beyond the paper, each correlation gets a percentile bootstrap CI: per replicate the
test, training, validation and group samples are resampled with replacement (one
resample per sample set, used at every checkpoint), every per-checkpoint value is
recomputed from the resampled per-sample tables (the training-loss moving average from
the resampled loss series), and the correlation is recomputed over the same window.
Pathway distance is recomputed as the mean over pairs of distinct drawn samples of the
precomputed Levenshtein matrix (at most ``bootstrap.max_distance_samples`` group samples,
drawn once with the seed).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from grokpath.analysis import (
    EVAL_COLUMNS,
    TRACE_COLUMNS,
    domain_rng,
    group_sample_ids,
    moving_average,
    percentile_ci,
    read_table,
    read_tables,
    resample_counts,
    rise_window,
    sample_matrix,
    weighted_means,
    weighted_pair_mean,
)
from grokpath.io import write_text

log = logging.getLogger(__name__)

# metric column in curves.parquet -> row label of Table 1
METRICS = {
    "pathway_distance": "pathway distance",
    "consistency": "pathway consistency C_i",
    "mean_cosine": "raw routing cosine",
    "train_loss": "training loss",
    "train_loss_ma": "training loss (moving avg)",
    "validation_loss": "validation loss",
    "entropy": "routing entropy",
}
MIN_POINTS = 3  # a correlation over fewer checkpoints is reported as NaN


def correlate(x, y) -> tuple[float, float, float, float]:
    """(pearson, pearson_p, spearman, spearman_p) over the finite pairs; NaN when undefined."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < MIN_POINTS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return (np.nan,) * 4
    pearson = stats.pearsonr(x, y)
    spearman = stats.spearmanr(x, y)
    return float(pearson.statistic), float(pearson.pvalue), float(spearman.statistic), float(spearman.pvalue)


def rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of two (n_boot × n) arrays; NaN for constant or non-finite rows."""
    if x.shape[1] < MIN_POINTS:
        return np.full(x.shape[0], np.nan)
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=1) / np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))
    return np.clip(r, -1.0, 1.0)


def rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    bad = ~(np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1))
    r = rowwise_pearson(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))
    r[bad] = np.nan
    return r


def _distance_matrices(strings: pd.DataFrame, ckpts: list[str], ids: list[str], level: str) -> list[np.ndarray | None]:
    """Per checkpoint, the Levenshtein matrix among ``ids`` (None if a sample lacks a pathway there)."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    try:  # the metrics stage's level mapping ("char" / "expert"), so distances match its table
        from grokpath.pathways import as_level
    except ImportError:  # pragma: no cover - only before pathways.py exists
        def as_level(values, level="char"):
            if level != "char":
                raise ValueError(f"pathways.level '{level}' needs grokpath.pathways")
            return list(values)

    out = []
    for ckpt in ckpts:
        at = strings[strings["ckpt"] == ckpt].drop_duplicates("sample_id").set_index("sample_id")["pathway"]
        at = at.reindex(ids)
        if at.isna().any() or len(ids) < 2:
            out.append(None)
            continue
        seqs = as_level([str(s) for s in at], level)
        out.append(process.cdist(seqs, seqs, scorer=Levenshtein.distance, workers=1, dtype=np.int64).astype(float))
    return out


def bootstrap_series(
    cfg: dict,
    domain: str,
    ckpts: list[str],
    evals: pd.DataFrame,
    traces: pd.DataFrame,
    memorization: pd.DataFrame,
    consistency: pd.DataFrame,
    pathways: pd.DataFrame,
) -> dict[str, np.ndarray]:
    """Resampled per-checkpoint series, each (n_boot × n_ckpt): accuracy and every metric."""
    analysis = cfg["analysis"]
    boot = analysis["bootstrap"]
    n_boot, seed = int(boot["n"]), int(boot["seed"])
    out: dict[str, np.ndarray] = {}

    correct, test_ids = sample_matrix(evals.assign(correct=evals["correct"].astype(float)), ckpts, "correct")
    out["accuracy"] = weighted_means(correct, resample_counts(domain_rng(seed, domain, 1), len(test_ids), n_boot))

    for stream, (split, name) in enumerate([("train", "train_loss"), ("validation", "validation_loss")], start=2):
        rows = traces[traces["split"] == split]
        if rows.empty:
            out[name] = np.full((n_boot, len(ckpts)), np.nan)
            continue
        loss, ids = sample_matrix(rows, ckpts, "loss")
        out[name] = weighted_means(loss, resample_counts(domain_rng(seed, domain, stream), len(ids), n_boot))
    out["train_loss_ma"] = moving_average(out["train_loss"], int(analysis["moving_average_window"]), axis=1)

    # the routing metrics share one resample of the group's training samples
    cons = consistency[consistency["split"] == "train"]
    paths = pathways[pathways["split"] == cfg.get("pathways", {}).get("distance_split", "train")]
    group = group_sample_ids(memorization, domain, analysis["sample_group"])
    ids = sorted(set(cons["sample_id"].astype(str)) | set(paths["sample_id"].astype(str)))
    if group is not None:
        ids = [i for i in ids if i in group]
    group_counts = resample_counts(domain_rng(seed, domain, 4), len(ids), n_boot)
    for column, frame in (("consistency", cons), ("mean_cosine", cons), ("entropy", paths)):
        values, _ = sample_matrix(frame.assign(sample_id=frame["sample_id"].astype(str)), ckpts, column, ids)
        out[column] = weighted_means(values, group_counts)

    cap = int(boot["max_distance_samples"])
    if len(ids) > cap:
        pick = np.sort(domain_rng(seed, domain, 5).choice(len(ids), size=cap, replace=False))
        dist_ids = [ids[i] for i in pick]
        dist_counts = resample_counts(domain_rng(seed, domain, 6), cap, n_boot)
    else:
        dist_ids, dist_counts = ids, group_counts
    level = cfg.get("pathways", {}).get("level", "char")
    matrices = _distance_matrices(paths.assign(sample_id=paths["sample_id"].astype(str)), ckpts, dist_ids, level)
    out["pathway_distance"] = np.stack(
        [weighted_pair_mean(m, dist_counts) if m is not None else np.full(n_boot, np.nan) for m in matrices], axis=1
    )
    return out


def correlation_table(
    cfg: dict,
    curves: pd.DataFrame,
    evals: pd.DataFrame,
    traces: pd.DataFrame,
    memorization: pd.DataFrame,
    consistency: pd.DataFrame,
    pathways: pd.DataFrame,
) -> pd.DataFrame:
    """Long table: one row per (domain, metric) with r, ρ, their CIs and the window used."""
    analysis = cfg["analysis"]
    rule, level = analysis["sustained_rise"], float(analysis["bootstrap"]["ci"])
    rows = []
    for domain, c in curves.groupby("domain", observed=True, sort=True):
        c = c.sort_values("step")
        ckpts, steps, accuracy = list(c["ckpt"]), c["step"].to_numpy(), c["accuracy"].to_numpy(dtype=float)
        mask, restricted = rise_window(steps, accuracy, rule)
        series = bootstrap_series(
            cfg,
            domain,
            ckpts,
            evals[evals["domain"] == domain],
            traces[traces["domain"] == domain],
            memorization[memorization["domain"] == domain],
            consistency[consistency["domain"] == domain],
            pathways[pathways["domain"] == domain],
        )
        for metric in METRICS:
            x = c[metric].to_numpy(dtype=float)
            pearson, pearson_p, spearman, spearman_p = correlate(x[mask], accuracy[mask])
            cols = mask & np.isfinite(x) & np.isfinite(accuracy)
            bx, by = series[metric][:, cols], series["accuracy"][:, cols]
            p_lo, p_hi = percentile_ci(rowwise_pearson(bx, by), level)
            s_lo, s_hi = percentile_ci(rowwise_spearman(bx, by), level)
            rows.append(
                {
                    "domain": domain,
                    "metric": metric,
                    "pearson": pearson,
                    "pearson_lo": p_lo,
                    "pearson_hi": p_hi,
                    "spearman": spearman,
                    "spearman_lo": s_lo,
                    "spearman_hi": s_hi,
                    "n_checkpoints": int(cols.sum()),
                    "window_start_step": int(steps[mask][0]),
                    "restricted": bool(restricted),
                    "pearson_p": pearson_p,
                    "spearman_p": spearman_p,
                    "n_boot": int(analysis["bootstrap"]["n"]),
                }
            )
        log.info("correlations %s: window from step %d (%d checkpoints, restricted=%s)", domain, steps[mask][0], mask.sum(), restricted)
    return pd.DataFrame(rows)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"


def correlations_markdown(table: pd.DataFrame, ci: float = 0.95) -> str:
    """Table 1 layout: metrics as rows, domains as columns, cells ``r [lo, hi] / ρ [lo, hi]``."""
    domains = list(dict.fromkeys(table["domain"]))
    level = f"{100 * ci:g}%"
    lines = [
        f"Pearson r / Spearman ρ between test accuracy and each metric, bootstrap {level} CIs in brackets.",
        "",
        "| metric | " + " | ".join(domains) + " |",
        "|---|" + "---|" * len(domains),
    ]
    for metric, label in METRICS.items():
        cells = []
        for domain in domains:
            row = table[(table["domain"] == domain) & (table["metric"] == metric)]
            if row.empty:
                cells.append("")
                continue
            r = row.iloc[0]
            cells.append(
                f"{_fmt(r.pearson)} [{_fmt(r.pearson_lo, 2)}, {_fmt(r.pearson_hi, 2)}] / "
                f"{_fmt(r.spearman)} [{_fmt(r.spearman_lo, 2)}, {_fmt(r.spearman_hi, 2)}]"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    window = []
    for domain in domains:
        r = table[table["domain"] == domain].iloc[0]
        mark = "" if r.restricted else " (no sustained-rise window: all checkpoints)"
        window.append(f"from step {int(r.window_start_step)}, n = {int(r.n_checkpoints)}{mark}")
    lines.append("| checkpoints | " + " | ".join(window) + " |")
    return "\n".join(lines) + "\n"


def write_correlations(
    cfg: dict,
    curves_path: Path,
    trace_paths: list[Path],
    eval_paths: list[Path],
    memorization_path: Path,
    consistency_path: Path,
    pathways_path: Path,
    out_csv: Path,
    out_md: Path,
) -> pd.DataFrame:
    table = correlation_table(
        cfg,
        read_table(curves_path),
        read_tables(eval_paths, EVAL_COLUMNS),
        read_tables(trace_paths, TRACE_COLUMNS),
        read_table(memorization_path, ["domain", "sample_id", "memorized"]),
        read_table(consistency_path, ["ckpt", "domain", "split", "sample_id", "consistency", "mean_cosine"]),
        read_table(pathways_path, ["ckpt", "domain", "split", "sample_id", "pathway", "entropy"]),
    )
    write_text(table.to_csv(index=False), out_csv)
    write_text(correlations_markdown(table, float(cfg["analysis"]["bootstrap"]["ci"])), out_md)
    return table
