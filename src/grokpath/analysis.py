"""Paper A join: per-(domain, checkpoint) curves, the sustained-rise window, and onset.

``curves.parquet`` has one row per (domain, ckpt) with test accuracy, losses and the
per-checkpoint routing metrics. The routing metrics describe one training-sample group
(``analysis.sample_group``, default the memorized samples, as the paper does).

Sustained rise (our rule; the paper only says "after accuracy starts its sustained rise"):
with accuracy a_0..a_T over checkpoints, gain G = a_T - min(a) and level
L = min(a) + rise_fraction * G, the rise *crosses* at the earliest checkpoint c such that
a_j >= L for every j >= c. The window starts at c, or at c - 1 (the foot of the rise,
the last checkpoint before it) when ``include_foot``. If G < min_gain there is no rise.

Bootstrap (here and in :mod:`grokpath.correlations`): checkpoints are fixed and samples
are resampled with replacement. The same samples are scored at every checkpoint, so one
resample of a sample set is used at all checkpoints (it redraws the data set, not the
training run).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from grokpath.io import provenance, write_frame, write_text

log = logging.getLogger(__name__)

GROUPS = ("all", "memorized", "not_memorized")
TRACE_COLUMNS = ["sample_id", "domain", "split", "ckpt", "step", "loss"]
EVAL_COLUMNS = ["ckpt", "step", "domain", "sample_id", "correct"]


# ---------------------------------------------------------------- reading inputs
def _require(frame: pd.DataFrame, columns: list[str], name: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; has {list(frame.columns)}")
    return frame


def read_table(path: Path | str, columns: list[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input table not found: {path}")
    if columns is not None:
        have = set(pq.read_schema(path).names)
        missing = [c for c in columns if c not in have]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
    return pd.read_parquet(path, columns=columns)


def read_tables(paths: list[Path | str], columns: list[str]) -> pd.DataFrame:
    """Concatenate per-checkpoint Parquet files, reading only ``columns`` (traces hold big routing lists)."""
    if not paths:
        raise ValueError("no input files given")
    return pd.concat([read_table(p, columns) for p in paths], ignore_index=True)


# ---------------------------------------------------------------- settings
def resolve_threshold(cfg: dict) -> float:
    """Pathway threshold of the main setting: analysis.distance_threshold, else pathways.threshold."""
    value = cfg["analysis"].get("distance_threshold")
    if value is None:
        value = cfg.get("pathways", {}).get("threshold")
    if value is None:
        raise ValueError("analysis.distance_threshold is null and pathways.threshold is not set: no main pathway threshold")
    return float(value)


def group_sample_ids(memorization: pd.DataFrame, domain: str, group: str) -> set[str] | None:
    """Training sample ids of ``group`` in ``domain``; None means all samples."""
    if group not in GROUPS:
        raise ValueError(f"analysis.sample_group must be one of {GROUPS}, got '{group}'")
    if group == "all":
        return None
    rows = memorization[memorization["domain"] == domain]
    keep = rows["memorized"].astype(bool) if group == "memorized" else ~rows["memorized"].astype(bool)
    return set(rows.loc[keep, "sample_id"].astype(str))


def _in_group(frame: pd.DataFrame, memorization: pd.DataFrame, group: str) -> pd.DataFrame:
    if group == "all":
        return frame
    parts = []
    for domain, rows in frame.groupby("domain", observed=True):
        ids = group_sample_ids(memorization, domain, group)
        parts.append(rows[rows["sample_id"].astype(str).isin(ids)])
    return pd.concat(parts, ignore_index=True) if parts else frame.iloc[:0]


def moving_average(values: np.ndarray, window: int, axis: int = -1) -> np.ndarray:
    """Trailing moving average over checkpoints (the first ones average what exists so far)."""
    values = np.asarray(values, dtype=float)
    frame = pd.DataFrame(np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1))
    smooth = frame.rolling(window, min_periods=1).mean().to_numpy()
    return np.moveaxis(smooth.reshape(np.moveaxis(values, axis, 0).shape), 0, axis)


# ---------------------------------------------------------------- the join
def build_curves(
    cfg: dict,
    traces: pd.DataFrame,
    evals: pd.DataFrame,
    memorization: pd.DataFrame,
    distances: pd.DataFrame,
    consistency: pd.DataFrame,
    pathways: pd.DataFrame,
    onset: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (domain, ckpt): accuracy, losses and the group's routing metrics."""
    analysis = cfg["analysis"]
    group = analysis["sample_group"]
    threshold = resolve_threshold(cfg)
    _require(traces, TRACE_COLUMNS, "traces")
    _require(evals, EVAL_COLUMNS, "eval samples")
    _require(memorization, ["domain", "sample_id", "memorized", "t_star_step"], "memorization.parquet")
    _require(distances, ["ckpt", "domain", "group", "threshold", "layer", "mean_distance"], "distances.parquet")
    _require(consistency, ["ckpt", "domain", "split", "sample_id", "consistency", "mean_cosine"], "consistency.parquet")
    _require(pathways, ["ckpt", "domain", "split", "sample_id", "entropy"], "pathways.parquet")

    keys = ["domain", "ckpt"]
    acc = (
        evals.assign(correct=evals["correct"].astype(float))
        .groupby(keys + ["step"], observed=True)
        .agg(accuracy=("correct", "mean"), n_test=("correct", "size"))
        .reset_index()
    )
    loss = traces.groupby(keys + ["split"], observed=True)["loss"].mean().unstack("split")
    loss = loss.reindex(columns=["train", "validation"]).rename(columns={"train": "train_loss", "validation": "validation_loss"})
    steps = traces.groupby(keys, observed=True)["step"].first().rename("trace_step")
    base = pd.concat([loss, steps], axis=1).reset_index()
    base.columns.name = None
    curves = acc.merge(base, on=keys, how="outer")
    curves["step"] = curves["step"].fillna(curves["trace_step"]).astype("int64")
    curves = curves.drop(columns="trace_step")

    dist = distances[
        (distances["group"] == group) & (distances["layer"] == -1) & np.isclose(distances["threshold"].astype(float), threshold)
    ]
    known_group = group in {"all", "memorized", "not_memorized"} or group.startswith("t*=")
    known_threshold = np.isclose(distances["threshold"].astype(float), threshold).any()
    if dist.empty and not distances.empty and known_group and known_threshold:
        # a legitimate but empty group (e.g. nothing memorized in a short run): NaN, not a failure
        log.warning("distances.parquet has no rows for group '%s' at threshold %s: pathway_distance is NaN", group, threshold)
    elif dist.empty and not distances.empty:
        raise ValueError(
            f"distances.parquet has no rows for group '{group}', layer -1, threshold {threshold}; "
            f"groups {sorted(distances['group'].unique())[:8]}, thresholds {sorted(distances['threshold'].unique())}"
        )
    curves = curves.merge(dist[keys + ["mean_distance"]].rename(columns={"mean_distance": "pathway_distance"}), on=keys, how="left")

    cons = _in_group(consistency[consistency["split"] == "train"], memorization, group)
    cons = cons.groupby(keys, observed=True)[["consistency", "mean_cosine"]].mean()  # pandas mean skips NaN (guarded C_i)
    curves = curves.merge(cons.reset_index(), on=keys, how="left")
    ent = _in_group(pathways[pathways["split"] == "train"], memorization, group)
    curves = curves.merge(ent.groupby(keys, observed=True)["entropy"].mean().reset_index(), on=keys, how="left")

    curves = curves.sort_values(["domain", "step"], kind="stable").reset_index(drop=True)
    window = int(analysis["moving_average_window"])
    curves["train_loss_ma"] = curves.groupby("domain", observed=True)["train_loss"].transform(
        lambda s: s.rolling(window, min_periods=1).mean()
    )

    # memorized samples per checkpoint (t* == step) and cumulative (t* <= step)
    mem = memorization[memorization["memorized"].astype(bool)].dropna(subset=["t_star_step"])
    new = mem.groupby(["domain", "t_star_step"], observed=True).size()
    curves["n_memorized_new"] = [int(new.get((d, s), 0)) for d, s in zip(curves["domain"], curves["step"])]
    curves["n_memorized"] = curves.groupby("domain", observed=True)["n_memorized_new"].cumsum()
    n_train = memorization.groupby("domain", observed=True).size()
    curves["fraction_memorized"] = curves["n_memorized"] / curves["domain"].map(n_train).astype(float)

    # cumulative accuracy (fig. 1): fraction of test samples whose onset t# is at or before the step
    if onset is not None and not onset.empty:
        _require(onset, ["domain", "sample_id", "generalized", "t_hash_step"], "onset.parquet")
        cum = []
        for d, s in zip(curves["domain"], curves["step"]):
            rows = onset[onset["domain"] == d]
            hit = rows["generalized"].astype(bool) & (rows["t_hash_step"].astype(float) <= s)
            cum.append(float(hit.mean()) if len(rows) else np.nan)
        curves["cumulative_accuracy"] = cum
    else:
        curves["cumulative_accuracy"] = np.nan
    columns = [
        "domain", "ckpt", "step", "accuracy", "n_test", "train_loss", "train_loss_ma", "validation_loss",
        "pathway_distance", "consistency", "mean_cosine", "entropy",
        "n_memorized_new", "n_memorized", "fraction_memorized", "cumulative_accuracy",
    ]
    return curves[columns]


def write_curves(
    cfg: dict,
    trace_paths: list[Path],
    eval_paths: list[Path],
    memorization_path: Path,
    distances_path: Path,
    consistency_path: Path,
    pathways_path: Path,
    onset_path: Path | None,
    out_path: Path,
) -> pd.DataFrame:
    """Read the metric tables, join them, write ``curves.parquet``."""
    traces = read_tables(trace_paths, TRACE_COLUMNS)
    evals = read_tables(eval_paths, EVAL_COLUMNS)
    curves = build_curves(
        cfg,
        traces,
        evals,
        memorization=read_table(memorization_path),
        distances=read_table(distances_path),
        consistency=read_table(consistency_path, ["ckpt", "domain", "split", "sample_id", "consistency", "mean_cosine"]),
        pathways=read_table(pathways_path, ["ckpt", "domain", "split", "sample_id", "entropy"]),
        onset=read_table(onset_path) if onset_path else None,
    )
    write_frame(
        curves,
        out_path,
        metadata=provenance(sample_group=cfg["analysis"]["sample_group"], threshold=resolve_threshold(cfg)),
    )
    log.info("curves: %d rows (%d domains) -> %s", len(curves), curves["domain"].nunique(), out_path)
    return curves


# ---------------------------------------------------------------- sustained rise
def sustained_rise_start(accuracy, rule: dict) -> int | None:
    """Index of the first checkpoint of the sustained-rise window, or None without a rise (module doc)."""
    a = np.asarray(accuracy, dtype=float)
    if a.size == 0 or np.isnan(a).any():
        return None
    low = a.min()
    gain = a[-1] - low
    if gain < float(rule["min_gain"]):
        return None
    level = low + float(rule["rise_fraction"]) * gain
    below = np.flatnonzero(a < level)
    cross = int(below[-1]) + 1 if below.size else 0  # after the last dip below the level, it stays above
    return max(cross - 1, 0) if rule["include_foot"] else cross


def rise_window(steps, accuracy, rule: dict) -> tuple[np.ndarray, bool]:
    """Boolean mask of the checkpoints to correlate over, and whether it is restricted.

    Fewer than ``min_checkpoints`` in the window (or no rise) falls back to all checkpoints.
    """
    start = sustained_rise_start(accuracy, rule)
    n = len(np.asarray(steps))
    if start is None or n - start < int(rule["min_checkpoints"]):
        return np.ones(n, dtype=bool), False
    mask = np.zeros(n, dtype=bool)
    mask[start:] = True
    return mask, True


# ---------------------------------------------------------------- bootstrap helpers
def sample_matrix(frame: pd.DataFrame, ckpts: list[str], value: str, ids: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """(checkpoint × sample) matrix of ``value``; a sample missing at a checkpoint is NaN."""
    wide = frame.pivot_table(index="ckpt", columns="sample_id", values=value, aggfunc="mean", observed=True, dropna=False)
    if ids is not None:
        wide = wide.reindex(columns=ids)
    wide = wide.reindex(index=ckpts)
    return wide.to_numpy(dtype=float), [str(c) for c in wide.columns]


def resample_counts(rng: np.random.Generator, n_items: int, n_boot: int) -> np.ndarray:
    """(n_boot × n_items) counts of each item in a resample of size n_items with replacement."""
    if n_items == 0:
        return np.zeros((n_boot, 0))
    draws = rng.integers(0, n_items, size=(n_boot, n_items))
    return np.stack([np.bincount(row, minlength=n_items) for row in draws]).astype(float)


def weighted_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """NaN-aware means of each checkpoint row under each resample: (n_boot × n_ckpt)."""
    present = np.isfinite(values)
    filled = np.where(present, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ filled.T) / (counts @ present.T.astype(float))


def weighted_pair_mean(distance: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean distance over pairs of distinct drawn items (a copy never pairs with itself): (n_boot,)."""
    pair_sum = np.einsum("bi,ij,bj->b", counts, distance, counts)  # the diagonal is 0
    total = counts.sum(axis=1)
    n_pairs = total**2 - (counts**2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pair_sum / n_pairs


def percentile_ci(values: np.ndarray, level: float, method: str = "linear") -> tuple[float, float]:
    """Percentile interval of the finite values (``inverted_cdf`` returns observed values)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [tail, 1.0 - tail], method=method)
    return float(lo), float(hi)


def domain_rng(seed: int, domain: str, stream: int = 0) -> np.random.Generator:
    """A generator fixed by (seed, domain, stream), independent of domain order."""
    import zlib

    return np.random.default_rng([int(seed), zlib.crc32(domain.encode()), int(stream)])


# ---------------------------------------------------------------- onset of the sustained rise
def onset_table(cfg: dict, evals: pd.DataFrame) -> pd.DataFrame:
    """Per domain: the sustained-rise start and its bootstrap CI over resampled test samples."""
    analysis = cfg["analysis"]
    rule, boot = analysis["sustained_rise"], analysis["bootstrap"]
    _require(evals, EVAL_COLUMNS, "eval samples")
    rows = []
    for domain, frame in evals.groupby("domain", observed=True):
        order = frame.groupby("ckpt", observed=True)["step"].first().sort_values()
        ckpts, steps = list(order.index), order.to_numpy()
        correct, ids = sample_matrix(frame.assign(correct=frame["correct"].astype(float)), ckpts, "correct")
        accuracy = np.nanmean(correct, axis=1)
        start = sustained_rise_start(accuracy, rule)
        counts = resample_counts(domain_rng(boot["seed"], domain, 1), len(ids), int(boot["n"]))
        boot_acc = weighted_means(correct, counts)
        boot_start = [sustained_rise_start(row, rule) for row in boot_acc]
        boot_steps = np.array([steps[s] if s is not None else np.nan for s in boot_start], dtype=float)
        lo, hi = percentile_ci(boot_steps, float(boot["ci"]), method="inverted_cdf")  # steps that exist
        rows.append(
            {
                "domain": domain,
                "onset_ckpt": ckpts[start] if start is not None else None,
                "onset_step": float(steps[start]) if start is not None else np.nan,
                "onset_lo_step": lo,
                "onset_hi_step": hi,
                "rise_found": start is not None,
                "boot_rise_fraction": float(np.isfinite(boot_steps).mean()),
                "n_boot": int(boot["n"]),
                "n_test": len(ids),
                "n_checkpoints": len(ckpts),
                "start_accuracy": float(accuracy[0]),
                "final_accuracy": float(accuracy[-1]),
            }
        )
        log.info("onset %s: step %s [%s, %s]", domain, rows[-1]["onset_step"], lo, hi)
    return pd.DataFrame(rows)


def write_onset(cfg: dict, eval_paths: list[Path], out_csv: Path) -> pd.DataFrame:
    table = onset_table(cfg, read_tables(eval_paths, EVAL_COLUMNS))
    write_text(table.to_csv(index=False), out_csv)
    return table


# ---------------------------------------------------------------- figures
PAPER_A_FIGURES = [
    "fig01_memorized_vs_accuracy",
    "fig02_group_pairs",
    "fig04_distance_loss",
    "fig05_per_layer_distance",
    "fig06_consistency",
    "fig07_regression",
    "fig09_threshold_ablation",
    "fig10_epsilon_ablation",
    "fig11_delta_ablation",
    "fig12_cross_domain",
    "fig13_entropy_vs_distance",
]


def write_paper_a_figures(
    cfg: dict,
    curves_path: Path,
    distances_path: Path,
    cross_distances_path: Path,
    groups_path: Path,
    ablation_path: Path,
    correlations_path: Path,
    out_dir: Path,
) -> list[Path]:
    """Read the tables and save every figure of :data:`PAPER_A_FIGURES` as ``out_dir/<name>.{png,pdf}``."""
    from grokpath.figures import paper_a
    from grokpath.figures.common import save_figure

    style = cfg.get("figures")
    group, threshold = cfg["analysis"]["sample_group"], resolve_threshold(cfg)
    curves = read_table(curves_path)
    distances = read_table(distances_path)
    correlations = pd.read_csv(correlations_path)
    window_start = correlations.groupby("domain")["window_start_step"].first().to_dict()
    ablation = read_table(ablation_path)
    makers = {
        "fig01_memorized_vs_accuracy": lambda: paper_a.fig01_memorized_vs_accuracy(curves, style=style),
        "fig02_group_pairs": lambda: paper_a.fig02_group_pairs(read_table(groups_path), style=style),
        "fig04_distance_loss": lambda: paper_a.fig04_distance_loss(curves, distances, threshold, style=style),
        "fig05_per_layer_distance": lambda: paper_a.fig05_per_layer_distance(distances, group, threshold, style=style),
        "fig06_consistency": lambda: paper_a.fig06_consistency(curves, style=style),
        "fig07_regression": lambda: paper_a.fig07_regression(curves, window_start, style=style),
        "fig09_threshold_ablation": lambda: paper_a.fig09_threshold_ablation(distances, group, style=style),
        "fig10_epsilon_ablation": lambda: paper_a.fig10_epsilon_ablation(ablation, style=style),
        "fig11_delta_ablation": lambda: paper_a.fig11_delta_ablation(ablation, style=style),
        "fig12_cross_domain": lambda: paper_a.fig12_cross_domain(read_table(cross_distances_path), style=style),
        "fig13_entropy_vs_distance": lambda: paper_a.fig13_entropy_vs_distance(curves, style=style),
    }
    written = []
    for name in PAPER_A_FIGURES:
        path = Path(out_dir) / f"{name}.png"
        save_figure(makers[name](), path, style)
        written.append(path)
        log.info("figure %s", path)
    return written
