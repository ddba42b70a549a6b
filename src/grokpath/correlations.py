"""Table 1 of paper A: Pearson / Spearman between test accuracy and each metric, per domain.

Correlations use only the checkpoints of the sustained-rise window (:mod:`grokpath.rise`);
with fewer than ``min_checkpoints`` there, all checkpoints are used and ``restricted`` is
False. Point estimates come from ``curves.parquet`` (:mod:`grokpath.curves` says which
samples each metric averages over).

Beyond the paper, each correlation gets a percentile bootstrap CI (:mod:`grokpath.bootstrap`)
that resamples exactly the samples the point estimate averages over, from ``samples.parquet``:
- test samples, for accuracy;
- all validation samples, for validation loss;
- the training samples of ``analysis.sample_group``, for training loss (and its moving
  average, recomputed from the resampled series), consistency, raw cosine, entropy and
  pathway distance: one resample shared by these metrics, drawn within each memorization
  group (t*) so every group keeps its size.
Pathway distance under a resample is recomputed per group from the Levenshtein matrix of
the group's pathway strings, as the mean over pairs of distinct draws, and the groups are
combined with ``analysis.distance_weighting`` as the point estimate is. With every count 1
this is the point estimate; the table is only written when it matches distances.parquet,
so the CI brackets the same samples and pairs. Each sample set has its own seeded stream;
one resample is used at every checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from tqdm import tqdm

from grokpath.bootstrap import (
    pair_counts,
    percentile_ci,
    resample_counts,
    stratified_counts,
    weighted_means,
    weighted_pair_mean,
)
from grokpath.curves import (
    DISTANCE_COLUMNS,
    GROUP_PREFIX,
    combine_groups,
    describe_samples,
    distance_weighting,
    group_rows,
    main_distance_rows,
    memorization_group,
    moving_average,
    resolve_threshold,
)
from grokpath.io import write_text
from grokpath.rise import rise_window
from grokpath.samples import read_samples, read_table, sample_matrix
from grokpath.seeds import domain_rng

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
WEIGHTING_TEXT = {
    "equal": "mean of the memorization groups' all-pairs means, each group weighted equally",
    "pairs": "mean of the memorization groups' all-pairs means, each group weighted by its pairs",
    "samples": "mean of the memorization groups' all-pairs means, each group weighted by its samples",
    "pooled": "one all-pairs mean over the whole group",
}


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
    """Pearson r of each row pair of two (n_boot × n) arrays (scipy); NaN for constant or non-finite rows."""
    if x.shape[1] < MIN_POINTS:
        return np.full(x.shape[0], np.nan)
    constant = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0) | ~np.isfinite(x).all(1) | ~np.isfinite(y).all(1)
    r = np.full(x.shape[0], np.nan)
    if (~constant).any():
        r[~constant] = stats.pearsonr(x[~constant], y[~constant], axis=1).statistic
    return r


def rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    bad = ~(np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1))
    r = rowwise_pearson(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))
    r[bad] = np.nan
    return r


def distance_matrix(strings: list[str], level: str) -> np.ndarray:
    """All-pairs Levenshtein matrix of pathway strings at ``pathways.level`` (integers, as float64)."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    from grokpath.pathways import as_level

    seqs = as_level(list(strings), level)
    return process.cdist(seqs, seqs, scorer=Levenshtein.distance, workers=1, dtype=np.int64).astype(float)


def _strata(members: pd.DataFrame) -> pd.Series:
    """Per training sample: its memorization group label, or ``not memorized``."""
    first = members.drop_duplicates("sample_id").set_index("sample_id")
    memorized = first["memorized"].fillna(False).astype(bool) & first["t_star_step"].notna()
    return pd.Series(
        [memorization_group(t) if m else "not memorized" for m, t in zip(memorized, first["t_star_step"])], index=first.index
    )


def resampling_units(cfg: dict) -> dict[str, str]:
    """What each metric's bootstrap resamples (besides the test samples of accuracy)."""
    described = describe_samples(cfg)
    within = " within each memorization group" if cfg["analysis"]["sample_group"] == "memorized" else ""
    units = {m: described[m] + within for m in METRICS if m != "validation_loss"}
    units["validation_loss"] = described["validation_loss"]
    return units


def group_distance(
    strings: pd.Series, ids: list[str], strata: list[str], counts: np.ndarray, weighting: str, level: str = "char"
) -> np.ndarray:
    """Pathway distance of one checkpoint under each resample (n_boot,); ``counts`` over ``ids``."""
    at = strings.reindex(ids)
    if at.isna().any():
        return np.full(counts.shape[0], np.nan)
    if weighting == "pooled":
        return weighted_pair_mean(distance_matrix(at.tolist(), level), counts)
    strata = np.asarray(strata, dtype=object)
    labels = [g for g in sorted(set(strata)) if g.startswith(GROUP_PREFIX)]
    means, pairs, sizes = [], [], []
    for label in labels:
        columns = np.flatnonzero(strata == label)
        block = counts[:, columns]
        if len(columns) < 2:
            continue  # no pair: no row in distances.parquet either
        means.append(weighted_pair_mean(distance_matrix(at.iloc[columns].tolist(), level), block))
        pairs.append(pair_counts(block))
        sizes.append(len(columns))
    if not means:
        return np.full(counts.shape[0], np.nan)
    return combine_groups(np.stack(means, axis=1), np.stack(pairs, axis=1), np.asarray(sizes, float), weighting)


def bootstrap_series(cfg: dict, domain: str, ckpts: list[str], samples: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Resampled per-checkpoint series, each (n_boot × n_ckpt): accuracy and every metric.

    Also returns the pathway distance with every count 1 (n_ckpt,), to check against the point estimate.
    """
    analysis = cfg["analysis"]
    boot = analysis["bootstrap"]
    n_boot, seed = int(boot["n"]), int(boot["seed"])
    out: dict[str, np.ndarray] = {}

    tests = samples[samples["split"] == "test"]
    correct, test_ids = sample_matrix(tests.assign(correct=tests["correct"].astype(float)), ckpts, "correct")
    out["accuracy"] = weighted_means(correct, resample_counts(domain_rng(seed, domain, 1), len(test_ids), n_boot))

    validation = samples[samples["split"] == "validation"]
    if validation.empty:
        out["validation_loss"] = np.full((n_boot, len(ckpts)), np.nan)
    else:
        loss, ids = sample_matrix(validation, ckpts, "loss")
        out["validation_loss"] = weighted_means(loss, resample_counts(domain_rng(seed, domain, 3), len(ids), n_boot))

    # the group's metrics share one resample of its training samples, drawn within memorization groups
    members = group_rows(samples, analysis["sample_group"])
    strata = _strata(members).sort_index(kind="stable")
    if analysis["sample_group"] != "memorized":
        strata[:] = "one stratum"  # no memorization groups to keep: plain resampling
    ids = list(strata.index)
    counts = stratified_counts(domain_rng(seed, domain, 4), list(strata), n_boot)
    for column in ("train_loss", "consistency", "mean_cosine", "entropy"):
        values, _ = sample_matrix(members, ckpts, "loss" if column == "train_loss" else column, ids)
        out[column] = weighted_means(values, counts)
    out["train_loss_ma"] = moving_average(out["train_loss"], int(analysis["moving_average_window"]), axis=1)

    weighting, level = distance_weighting(cfg), cfg.get("pathways", {}).get("level", "char")
    ones = np.ones((1, len(ids)))
    distance, point = [], []
    for ckpt in ckpts:
        strings = members[members["ckpt"] == ckpt].drop_duplicates("sample_id").set_index("sample_id")["pathway"]
        strings = strings.astype(object).where(strings.notna(), None)
        both = group_distance(strings, ids, list(strata), np.vstack([ones, counts]), weighting, level)
        point.append(both[0])
        distance.append(both[1:])
    out["pathway_distance"] = np.stack(distance, axis=1) if ckpts else np.zeros((n_boot, 0))
    return out, np.asarray(point, dtype=float)


def check_distance_inputs(cfg: dict, distances: pd.DataFrame) -> None:
    """The bootstrap recomputes distances from pathways.parquet's strings: they must be what the point estimate used."""
    threshold, strings_at = resolve_threshold(cfg), cfg.get("pathways", {}).get("threshold")
    if strings_at is not None and not np.isclose(threshold, float(strings_at)):
        raise ValueError(
            f"analysis.distance_threshold ({threshold}) differs from pathways.threshold ({strings_at}), the threshold of "
            "the pathway strings Table 1's bootstrap resamples: set analysis.distance_threshold: null"
        )
    rows = main_distance_rows(distances, threshold)
    used = (
        rows[rows["group"].astype(str).str.startswith(GROUP_PREFIX)]
        if distance_weighting(cfg) != "pooled"
        else rows[rows["group"] == cfg["analysis"]["sample_group"]]
    )
    sampled = used[used["sampled"].astype(bool)]
    if not sampled.empty:
        first = sampled.iloc[0]
        raise ValueError(
            f"distances.parquet: group '{first['group']}' of {first['domain']} at {first['ckpt']} was computed from sampled "
            "pairs (pathways.max_pairs); Table 1's bootstrap resamples all pairs of the point estimate: set pathways.max_pairs: null"
        )


def correlation_table(cfg: dict, curves: pd.DataFrame, samples: pd.DataFrame, distances: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per (domain, metric) with r, ρ, their CIs, the window and the samples used."""
    analysis = cfg["analysis"]
    rule, level = analysis["sustained_rise"], float(analysis["bootstrap"]["ci"])
    check_distance_inputs(cfg, distances)
    described, units = describe_samples(cfg), resampling_units(cfg)
    rows = []
    for domain, c in tqdm(curves.groupby("domain", observed=True, sort=True), desc="Table 1 bootstrap", unit="domain"):
        c = c.sort_values("step", kind="stable")
        ckpts, steps, accuracy = list(c["ckpt"]), c["step"].to_numpy(), c["accuracy"].to_numpy(dtype=float)
        mask, restricted = rise_window(steps, accuracy, rule)
        series, point = bootstrap_series(cfg, domain, ckpts, samples[samples["domain"] == domain])
        expected = c["pathway_distance"].to_numpy(dtype=float)
        if not np.allclose(point, expected, rtol=1e-9, atol=1e-9, equal_nan=True):
            bad = int(np.flatnonzero(~np.isclose(point, expected, rtol=1e-9, atol=1e-9, equal_nan=True))[0])
            raise ValueError(
                f"{domain} {ckpts[bad]}: pathway distance from pathways.parquet's strings ({point[bad]}) differs from "
                f"distances.parquet's ({expected[bad]}); the two metric tables come from different runs or settings"
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
                    "samples": described[metric],
                    "resampled": units[metric] + "; test samples",
                }
            )
        log.info(
            "correlations %s: window from step %d (%d checkpoints, restricted=%s)", domain, steps[mask][0], mask.sum(), restricted
        )
    return pd.DataFrame(rows)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"


def correlations_markdown(table: pd.DataFrame, cfg: dict) -> str:
    """Table 1 layout: metrics as rows, domains as columns, cells ``r [lo, hi] / ρ [lo, hi]``."""
    domains = list(dict.fromkeys(table["domain"]))
    ci = f"{100 * float(cfg['analysis']['bootstrap']['ci']):g}%"
    described = describe_samples(cfg)
    lines = [
        f"Pearson r / Spearman ρ between test accuracy and each metric, bootstrap {ci} CIs in brackets.",
        (
            f"Training loss and the routing metrics are over {described['train_loss']}; validation loss over "
            f"{described['validation_loss']}. Pathway distance: {WEIGHTING_TEXT[distance_weighting(cfg)]} "
            "(analysis.distance_weighting). The bootstrap resamples the samples each value averages over."
        ),
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
    lines.append("| checkpoints | " + " | ".join(window_cells(table, domains, "n_checkpoints")) + " |")
    return "\n".join(lines) + "\n"


def window_cells(table: pd.DataFrame, domains: list[str], n_column: str) -> list[str]:
    """One Markdown cell per domain: where its correlation window starts and how many checkpoints it holds."""
    cells = []
    for domain in domains:
        r = table[table["domain"] == domain].iloc[0]
        mark = "" if r.restricted else " (no sustained-rise window: all checkpoints)"
        cells.append(f"from step {int(r.window_start_step)}, n = {int(r[n_column])}{mark}")
    return cells


def write_correlations(
    cfg: dict, curves_path: Path, samples_path: Path, distances_path: Path, out_csv: Path, out_md: Path
) -> pd.DataFrame:
    table = correlation_table(
        cfg, read_table(curves_path), read_samples(samples_path), read_table(distances_path, DISTANCE_COLUMNS)
    )
    write_text(table.to_csv(index=False), out_csv)
    write_text(correlations_markdown(table, cfg), out_md)
    return table
