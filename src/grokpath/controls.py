"""Controls beside Table 1: time, length, drift, other domains, and a memorize-only domain.

Table 1 (:mod:`grokpath.correlations`) correlates each metric with test accuracy over
checkpoints. Over a window where accuracy rises steadily, anything monotone in time
correlates with it. This module asks what is left once time, pathway length and
per-layer spread are accounted for. It reads the metric tables only (``curves.parquet``,
``samples.parquet``, ``distances.parquet``, ``cross_distances.parquet``) and writes three
tables beside Table 1.

Per (domain, checkpoint), ``controls_checkpoints.csv``, over the same samples and pairs as
the plain pathway distance (the ``analysis.sample_group`` training samples; pairs inside
each memorization group t*, groups combined with ``analysis.distance_weighting``, exactly
as :mod:`grokpath.curves`; the reproduced distance must equal curves.parquet's):

- ``pathway_length``: characters of the pathway string; ``experts_per_layer``: experts
  kept per layer (means over the samples of each group, groups combined like the distance);
- ``distance_per_char``: mean over pairs of lev(a, b) / max(len a, len b), on the strings
  the distance compares (``pathways.level``);
- ``layer_sum_distance``: mean over pairs of Σ_ℓ lev(a_ℓ, b_ℓ), the distance that adds up
  over layers; ``additivity`` = pathway_distance ÷ layer_sum_distance (≤ 1 up to the
  layer separators: aligning layer by layer is one alignment of the whole strings);
- ``permuted_distance``: the plain distance after permuting, inside each group, each
  layer's expert lists across samples, independently per layer (mean over
  ``analysis.controls.n_permutations`` seeded permutations); ``permutation_shift`` =
  pathway_distance − permuted_distance. For ``layer_sum_distance`` the permutation changes
  nothing, by construction (every layer keeps its multiset of lists, so every layer's sum
  over pairs is the same): a small shift says the plain distance sees per-layer
  concentration, not whole routes shared across layers (docs/CONTROLS.md);
- ``within_pooled`` (distances.parquet's all-pairs row of the sample group),
  ``between_distance`` (mean over all pairs of one of this domain's group samples and one
  of any other domain's group samples, :func:`grokpath.pathways.cross_distance`),
  ``within_minus_between``, ``within_over_between``; ``cross_distance_all`` is fig. 12's
  all-samples cross-domain distance from cross_distances.parquet, averaged over this
  domain's pairs with every other domain (weighted by pairs);
- ``entropy_pair_r``: Pearson r over the distance's pairs between a pair's routing entropy
  (the mean of its two samples' entropies; our reading of paper A, appendix E.5, r = 0.24
  there) and the pair's distance.

Per (domain, metric), ``controls.csv``: for each Table 1 metric, each column above that is a
time series, and log(step) itself (the time baseline), over the sustained-rise window
Table 1 uses (:func:`grokpath.rise.rise_window`; without one, all checkpoints, and
``restricted`` is False) and over all checkpoints:

- ``pearson``: plain r with test accuracy (Table 1's number for Table 1's metrics);
- ``partial``: the partial correlation given log(step): Pearson r of the residuals of metric
  and accuracy after each is regressed by least squares on (1, log step). It needs 4
  checkpoints (with 3 the residuals lie on one line and r is ±1);
- ``diff``: Pearson r of first differences between consecutive checkpoints (Δmetric
  against Δaccuracy); needs 4 checkpoints (3 differences);
- ``partial_lo``/``partial_hi``: a percentile bootstrap CI of the window's partial r, from
  the resampled series Table 1's bootstrap draws (:func:`grokpath.correlations.bootstrap_series`,
  the same samples and seeds). Only Table 1's metrics have resampled series; the new
  columns would need their own resampling of pathway pairs, so their CI is left empty.
- ``r_time``: r of the metric with log(step) over all checkpoints, and ``change`` its last
  minus its first finite value: how the metric moves with time.

The verdict (per metric, the same in each of its rows), with the rule
``analysis.controls.verdict`` (min_abs_r_time ρ, min_change_ratio κ): the generalizing
domains are those other than the control domain (``analysis.controls.control_domain``)
whose final test accuracy is above ``analysis.delay.min_final_accuracy``. Let t_G be the
median of their ``r_time`` and t_C the control domain's; c_G the median of their
|change| and c_C the control's. The metric

- *does not separate generalization from memorization* when it moves in the control domain
  as in the generalizing ones: sign t_C = sign t_G, |t_C| ≥ ρ and c_C ≥ κ·c_G;
- *separates* when it trends in the generalizing domains (|t_G| ≥ ρ) and not so in control;
- is *undetermined* otherwise: no control domain, no generalizing domain, undefined in the
  control domain, or no trend with time in the generalizing domains (|t_G| < ρ).

log(step) itself always "does not separate": that row checks the rule.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from grokpath.bootstrap import percentile_ci
from grokpath.correlations import METRICS as TABLE1_METRICS
from grokpath.correlations import (
    MIN_POINTS,
    bootstrap_series,
    check_distance_inputs,
    correlate,
    distance_matrix,
    rowwise_pearson,
    window_cells,
)
from grokpath.curves import (
    DISTANCE_COLUMNS,
    GROUP_PREFIX,
    combine_groups,
    distance_weighting,
    group_rows,
    main_distance_rows,
    memorization_group,
    resolve_threshold,
)
from grokpath.io import write_text
from grokpath.pathways import as_level, cross_distance
from grokpath.rise import rise_window
from grokpath.samples import read_samples, read_table, require
from grokpath.seeds import domain_rng

log = logging.getLogger(__name__)

PARTIAL_MIN_POINTS = MIN_POINTS + 1  # a line through 3 points leaves residuals on one line: r = ±1
PERMUTATION_STREAM = 7  # domain_rng stream of the layer permutations (bootstrap streams are 1-4)

# per-checkpoint columns that enter controls.csv as metrics, with their labels
CHECKPOINT_METRICS = {
    "pathway_length": "pathway length (characters)",
    "experts_per_layer": "experts kept per layer",
    "distance_per_char": "distance per character (longer string)",
    "permuted_distance": "distance, layers permuted across samples (null)",
    "between_distance": "distance to other domains' samples",
    "within_minus_between": "within − between",
    "within_over_between": "within ÷ between",
}
METRICS = {"log_step": "log(step) (time baseline)", **TABLE1_METRICS, **CHECKPOINT_METRICS}
CHECKPOINT_COLUMNS = [
    "domain",
    "ckpt",
    "step",
    "revision_sha",
    "log_step",
    "accuracy",
    "n_samples",
    "n_distance_groups",
    "pathway_distance",
    "pathway_length",
    "experts_per_layer",
    "distance_per_char",
    "layer_sum_distance",
    "additivity",
    "permuted_distance",
    "permutation_shift",
    "within_pooled",
    "between_distance",
    "within_minus_between",
    "within_over_between",
    "cross_distance_all",
    "entropy_pair_r",
    "n_entropy_pairs",
]
COLUMNS = [
    "domain",
    "metric",
    "control_domain",
    "generalizes",
    "window_start_step",
    "restricted",
    "n_window",
    "pearson",
    "partial",
    "partial_lo",
    "partial_hi",
    "diff",
    "n_all",
    "pearson_all",
    "partial_all",
    "diff_all",
    "r_time",
    "change",
    "verdict",
    "verdict_reason",
    "n_boot",
]
DOES_NOT_SEPARATE = "does not separate generalization from memorization"
SEPARATES = "separates"
UNDETERMINED = "undetermined"


# ---------------------------------------------------------------- correlations under control
def partial_correlation(x, y, z) -> float:
    """Pearson r of x and y after regressing each on (1, z) by least squares; NaN under 4 finite points."""
    x, y, z = (np.asarray(a, dtype=float) for a in (x, y, z))
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    if keep.sum() < PARTIAL_MIN_POINTS:
        return float("nan")
    return float(rowwise_partial(x[keep][None, :], y[keep][None, :], z[keep])[0])


def rowwise_partial(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Partial r given z of each row pair of two (n_boot × n) arrays; NaN where undefined."""
    z = np.asarray(z, dtype=float)
    if z.size < PARTIAL_MIN_POINTS or not np.isfinite(z).all():
        return np.full(x.shape[0], np.nan)
    design = np.column_stack([np.ones_like(z), z])
    both = np.vstack([x, y]).T  # (n, 2 n_boot): one least-squares solve for every column
    finite = np.isfinite(both).all(axis=0)
    residual = np.full_like(both, np.nan)
    if finite.any():
        coef, *_ = np.linalg.lstsq(design, both[:, finite], rcond=None)
        residual[:, finite] = both[:, finite] - design @ coef
    rx, ry = residual[:, : x.shape[0]].T, residual[:, x.shape[0] :].T
    # a series that is a line in z leaves rounding noise, not a residual: no partial r
    scale = np.maximum(np.abs(np.nan_to_num(np.vstack([x, y]))).max(axis=1), 1.0)
    flat = (np.abs(np.nan_to_num(np.vstack([rx, ry]))).max(axis=1) <= 1e-9 * scale).reshape(2, -1).any(axis=0)
    r = rowwise_pearson(np.nan_to_num(rx), np.nan_to_num(ry))
    r[flat | ~np.isfinite(rx).all(axis=1) | ~np.isfinite(ry).all(axis=1)] = np.nan
    return r


def first_difference_correlation(x, y) -> float:
    """Pearson r of consecutive-checkpoint differences (Δx against Δy); NaN under 3 finite differences."""
    dx, dy = np.diff(np.asarray(x, dtype=float)), np.diff(np.asarray(y, dtype=float))
    return correlate(dx, dy)[0]


def log_steps(steps) -> np.ndarray:
    """log(step); NaN for a step ≤ 0 (such a checkpoint drops out of every time-controlled number)."""
    steps = np.asarray(steps, dtype=float)
    out = np.full(steps.shape, np.nan)
    np.log(steps, out=out, where=steps > 0)
    return out


# ---------------------------------------------------------------- the distance decomposed
def _upper(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.triu_indices(matrix.shape[0], k=1)]


def split_layers(strings: list[str]) -> list[list[str]]:
    """Per pathway string, its layers' expert lists (``"3,1-5"`` -> ``["3,1", "5"]``); one layer count for all."""
    layers = [s.split("-") for s in strings]
    counts = {len(parts) for parts in layers}
    if len(counts) > 1:
        raise ValueError(f"pathway strings have different numbers of layers {sorted(counts)}; expected one routed-layer count")
    return layers


def experts_per_layer(strings: list[str]) -> np.ndarray:
    """Per string: the mean number of experts kept per layer."""
    return np.array([np.mean([len(layer.split(",")) for layer in layers]) for layers in split_layers(strings)], dtype=float)


def per_character_matrix(strings: list[str], level: str = "char") -> np.ndarray:
    """lev(a, b) / max(len a, len b) of all pairs, on the strings the distance compares at ``level``."""
    lengths = np.array([len(s) for s in as_level(list(strings), level)], dtype=float)
    longer = np.maximum.outer(lengths, lengths)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(longer > 0, distance_matrix(strings, level) / longer, 0.0)


def layer_sum_matrix(strings: list[str], level: str = "char") -> np.ndarray:
    """Σ over layers of the Levenshtein distance of each layer's part: the distance that adds up over layers."""
    layers = split_layers(strings)
    total = np.zeros((len(strings), len(strings)))
    for k in range(len(layers[0]) if layers else 0):
        total += distance_matrix([parts[k] for parts in layers], level)
    return total


def permute_layers(strings: list[str], rng: np.random.Generator) -> list[str]:
    """Each layer's expert lists permuted across the samples, independently per layer."""
    layers = split_layers(strings)
    if not layers:
        return []
    columns = [[parts[k] for parts in layers] for k in range(len(layers[0]))]
    shuffled = [[column[i] for i in rng.permutation(len(column))] for column in columns]
    return ["-".join(parts) for parts in zip(*shuffled)]


def pair_entropy_correlation(distances: np.ndarray, entropy: np.ndarray) -> float:
    """Pearson r over pairs i < j between (e_i + e_j) / 2 and d(i, j)."""
    entropy = np.asarray(entropy, dtype=float)
    return correlate(_upper((entropy[:, None] + entropy[None, :]) / 2.0), _upper(distances))[0]


def group_controls(strings: list[str], entropy, level: str, n_permutations: int, rng: np.random.Generator) -> dict:
    """One group's pair means (over i < j) and sample means: the parts each checkpoint row combines."""
    distance = distance_matrix(strings, level)
    permuted = [_upper(distance_matrix(permute_layers(strings, rng), level)).mean() for _ in range(n_permutations)]
    return {
        "pathway_distance": _upper(distance).mean(),
        "distance_per_char": _upper(per_character_matrix(strings, level)).mean(),
        "layer_sum_distance": _upper(layer_sum_matrix(strings, level)).mean(),
        "permuted_distance": float(np.mean(permuted)) if permuted else np.nan,
        "pathway_length": float(np.mean([len(s) for s in strings])),
        "experts_per_layer": float(experts_per_layer(strings).mean()),
        "pairs": (_upper(np.add.outer(entropy, entropy) / 2.0), _upper(distance)),
    }


GROUP_VALUES = [
    "pathway_distance",
    "distance_per_char",
    "layer_sum_distance",
    "permuted_distance",
    "pathway_length",
    "experts_per_layer",
]


def checkpoint_decomposition(
    members: pd.DataFrame, weighting: str, level: str, n_permutations: int, rng: np.random.Generator
) -> dict:
    """The distance decomposed at one (domain, checkpoint), over ``members`` (one row per sample:
    sample_id, pathway, entropy, t_star_step), grouped and weighted as the plain distance."""
    members = members.sort_values("sample_id", kind="stable")
    if weighting == "pooled":
        groups = {"pooled": members}
    else:
        labels = members["t_star_step"].map(lambda t: memorization_group(t) if pd.notna(t) else None)
        groups = {label: part for label, part in members.groupby(labels, sort=True) if str(label).startswith(GROUP_PREFIX)}
    parts, pairs, sizes = [], [], []
    for part in groups.values():
        if len(part) < 2:
            continue  # no pair: no row in distances.parquet either
        parts.append(group_controls(part["pathway"].tolist(), part["entropy"].to_numpy(float), level, n_permutations, rng))
        pairs.append(len(part) * (len(part) - 1) / 2)
        sizes.append(len(part))
    out = {"n_samples": int(sum(sizes)), "n_distance_groups": len(parts)}
    if not parts:
        return out | {name: np.nan for name in GROUP_VALUES} | {"entropy_pair_r": np.nan, "n_entropy_pairs": 0}
    pairs_arr, sizes_arr = np.asarray(pairs, float), np.asarray(sizes, float)
    for name in GROUP_VALUES:
        values = np.array([p[name] for p in parts], dtype=float)
        out[name] = float(values[0]) if weighting == "pooled" else float(combine_groups(values, pairs_arr, sizes_arr, weighting))
    entropy_pairs = np.concatenate([p["pairs"][0] for p in parts])
    distance_pairs = np.concatenate([p["pairs"][1] for p in parts])
    out["entropy_pair_r"] = correlate(entropy_pairs, distance_pairs)[0]
    out["n_entropy_pairs"] = int(len(distance_pairs))
    return out


def _cross_all(cross: pd.DataFrame, domain: str, ckpt: str) -> float:
    """Fig. 12's all-samples distance between ``domain`` and every other domain at ``ckpt`` (pair-weighted)."""
    at = cross[(cross["ckpt"] == ckpt) & ((cross["domain_a"] == domain) | (cross["domain_b"] == domain))]
    at = at[np.isfinite(at["mean_distance"].astype(float)) & (at["n_pairs"] > 0)]
    if at.empty:
        return np.nan
    return float(np.average(at["mean_distance"].astype(float), weights=at["n_pairs"].astype(float)))


def checkpoint_controls(
    cfg: dict,
    curves: pd.DataFrame,
    samples: pd.DataFrame,
    distances: pd.DataFrame,
    cross: pd.DataFrame,
    threads: int = 1,
) -> pd.DataFrame:
    """One row per (domain, checkpoint) of ``CHECKPOINT_COLUMNS`` (module doc)."""
    analysis, section = cfg["analysis"], cfg.get("pathways", {})
    controls = analysis["controls"]
    group, weighting, threshold = analysis["sample_group"], distance_weighting(cfg), resolve_threshold(cfg)
    level = section.get("level", "char")
    require(
        samples, ["domain", "ckpt", "split", "sample_id", "pathway", "entropy", "memorized", "t_star_step"], "samples.parquet"
    )
    require(cross, ["ckpt", "domain_a", "domain_b", "mean_distance", "n_pairs"], "cross_distances.parquet")
    pooled = main_distance_rows(distances, threshold)
    pooled = pooled[pooled["group"] == group].set_index(["domain", "ckpt"])["mean_distance"]
    members_all = group_rows(samples, group).dropna(subset=["pathway"]).drop_duplicates(["domain", "ckpt", "sample_id"])
    cross_kwargs = {
        "max_pairs": section.get("max_pairs"),
        "seed": section.get("seed", 0),
        "level": level,
        "block_rows": section.get("block_rows", 256),
        "workers": threads,
    }
    rows = []
    for row in curves.sort_values(["domain", "step"], kind="stable").itertuples():
        domain, ckpt, step = row.domain, row.ckpt, int(row.step)
        at = members_all[members_all["ckpt"] == ckpt]
        mine = at[at["domain"] == domain]
        rng = domain_rng(int(controls["seed"]), domain, PERMUTATION_STREAM, step)
        parts = checkpoint_decomposition(mine, weighting, level, int(controls["n_permutations"]), rng)
        expected = float(row.pathway_distance)
        if not np.isclose(parts["pathway_distance"], expected, rtol=1e-9, atol=1e-9, equal_nan=True):
            raise ValueError(
                f"{domain} {ckpt}: pathway distance from samples.parquet's strings ({parts['pathway_distance']}) differs from "
                f"curves.parquet's ({expected}); the metric tables come from different runs or settings"
            )
        others = at[at["domain"] != domain]["pathway"].tolist()
        between = cross_distance(mine["pathway"].tolist(), others, **cross_kwargs)[0] if len(mine) and others else np.nan
        within = float(pooled.get((domain, ckpt), np.nan))
        with np.errstate(invalid="ignore", divide="ignore"):
            rows.append(
                {
                    "domain": domain,
                    "ckpt": ckpt,
                    "step": step,
                    "revision_sha": getattr(row, "revision_sha", None),  # the hub commit; None for local checkpoints
                    "log_step": float(log_steps([step])[0]),
                    "accuracy": float(row.accuracy),
                    **parts,
                    "additivity": parts["pathway_distance"] / parts["layer_sum_distance"],
                    "permutation_shift": parts["pathway_distance"] - parts["permuted_distance"],
                    "within_pooled": within,
                    "between_distance": float(between),
                    "within_minus_between": within - between,
                    "within_over_between": within / between if between else np.nan,
                    "cross_distance_all": _cross_all(cross, domain, ckpt),
                }
            )
        log.info("controls %s %s: %d samples in %d groups", domain, ckpt, parts["n_samples"], parts["n_distance_groups"])
    frame = pd.DataFrame(rows, columns=CHECKPOINT_COLUMNS)
    return frame.astype({"step": "int64", "n_samples": "int64", "n_distance_groups": "int64", "n_entropy_pairs": "int64"})


# ---------------------------------------------------------------- the table and its verdicts
def control_domain(cfg: dict, domains: list[str]) -> str | None:
    """The memorize-only domain of this study, or None when the config names none or it is absent."""
    name = cfg["analysis"]["controls"]["control_domain"]
    return name if name in domains else None


def verdict(r_time: dict, change: dict, control: str | None, generalizing: list[str], rule: dict) -> tuple[str, str]:
    """(verdict, reason) of one metric from its per-domain r with log step and change (module doc)."""
    rho, kappa = float(rule["min_abs_r_time"]), float(rule["min_change_ratio"])
    if control is None:
        return UNDETERMINED, "no control domain in this study"
    moving = [d for d in generalizing if np.isfinite(r_time.get(d, np.nan))]
    if not moving:
        return UNDETERMINED, "no generalizing domain with this metric"
    t_c, c_c = r_time.get(control, np.nan), abs(change.get(control, np.nan))
    if not (np.isfinite(t_c) and np.isfinite(c_c)):
        return UNDETERMINED, "undefined in the control domain"
    t_g = float(np.median([r_time[d] for d in moving]))
    c_g = float(np.median([abs(change[d]) for d in moving]))
    ratio = c_c / c_g if c_g > 0 else (np.inf if c_c > 0 else np.nan)
    reason = f"r(log step): control {t_c:+.2f}, generalizing median {t_g:+.2f}; |change| control ÷ generalizing {ratio:.2f}"
    if abs(t_g) < rho:
        return UNDETERMINED, reason + f"; no trend with time in the generalizing domains (|{t_g:.2f}| < {rho:g})"
    if np.sign(t_c) == np.sign(t_g) and abs(t_c) >= rho and ratio >= kappa:
        return DOES_NOT_SEPARATE, reason
    return SEPARATES, reason


def _last_minus_first(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1] - finite[0]) if finite.size >= 2 else np.nan


def controls_table(cfg: dict, curves: pd.DataFrame, checkpoints: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """One row per (domain, metric) of ``COLUMNS`` (module doc)."""
    analysis = cfg["analysis"]
    rule, level = analysis["sustained_rise"], float(analysis["bootstrap"]["ci"])
    domains = sorted(curves["domain"].unique())
    control = control_domain(cfg, domains)
    series = curves.merge(
        checkpoints[["domain", "ckpt", "log_step", *CHECKPOINT_METRICS]], on=["domain", "ckpt"], how="left", validate="1:1"
    )
    rows, generalizing = [], []
    for domain, c in series.groupby("domain", sort=True):
        c = c.sort_values("step", kind="stable")
        steps, accuracy, time = c["step"].to_numpy(), c["accuracy"].to_numpy(float), c["log_step"].to_numpy(float)
        mask, restricted = rise_window(steps, accuracy, rule)
        final = float(accuracy[np.isfinite(accuracy)][-1]) if np.isfinite(accuracy).any() else np.nan
        generalizes = domain != control and final > float(analysis["delay"]["min_final_accuracy"])
        if generalizes:
            generalizing.append(domain)
        boot, _ = bootstrap_series(cfg, domain, list(c["ckpt"]), samples[samples["domain"] == domain])
        window = mask & np.isfinite(time)
        for metric in METRICS:
            x = c[metric].to_numpy(float)
            lo = hi = np.nan
            if metric in boot:
                cols = window & np.isfinite(x) & np.isfinite(accuracy)
                lo, hi = percentile_ci(rowwise_partial(boot[metric][:, cols], boot["accuracy"][:, cols], time[cols]), level)
            rows.append(
                {
                    "domain": domain,
                    "metric": metric,
                    "control_domain": domain == control,
                    "generalizes": generalizes,
                    "window_start_step": int(steps[mask][0]),
                    "restricted": bool(restricted),
                    "n_window": int((mask & np.isfinite(x) & np.isfinite(accuracy)).sum()),
                    "pearson": correlate(x[mask], accuracy[mask])[0],
                    "partial": partial_correlation(x[mask], accuracy[mask], time[mask]),
                    "partial_lo": lo,
                    "partial_hi": hi,
                    "diff": first_difference_correlation(x[mask], accuracy[mask]),
                    "n_all": int((np.isfinite(x) & np.isfinite(accuracy)).sum()),
                    "pearson_all": correlate(x, accuracy)[0],
                    "partial_all": partial_correlation(x, accuracy, time),
                    "diff_all": first_difference_correlation(x, accuracy),
                    "r_time": correlate(x, time)[0],
                    "change": _last_minus_first(x),
                    "n_boot": int(analysis["bootstrap"]["n"]) if metric in boot else 0,
                }
            )
    table = pd.DataFrame(rows)
    for _, part in table.groupby("metric", sort=False):
        r_time = dict(zip(part["domain"], part["r_time"]))
        change = dict(zip(part["domain"], part["change"]))
        text, reason = verdict(r_time, change, control, generalizing, analysis["controls"]["verdict"])
        table.loc[part.index, "verdict"] = text
        table.loc[part.index, "verdict_reason"] = reason
    return table[COLUMNS]


# ---------------------------------------------------------------- markdown
def _fmt(value, digits: int = 2) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:+.{digits}f}"


def _num(value, digits: int = 2) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def controls_markdown(table: pd.DataFrame, checkpoints: pd.DataFrame, cfg: dict) -> str:
    """The controls beside Table 1: per metric and domain, plain r, partial r, Δ-r; the verdict rule; the decomposition."""
    rule = cfg["analysis"]["controls"]["verdict"]
    domains = list(dict.fromkeys(table["domain"]))
    control = control_domain(cfg, domains)
    ci = f"{100 * float(cfg['analysis']['bootstrap']['ci']):g}%"
    lines = [
        "Controls beside Table 1 (grokpath.controls; docs/CONTROLS.md). Each cell: plain r with test accuracy / "
        f"partial r given log(step) [bootstrap {ci} CI, Table 1's metrics only] / r of first differences (Δmetric vs "
        "Δaccuracy), over Table 1's window. — : undefined (partial r and Δ-r need 4 checkpoints).",
        "",
        "| metric | " + " | ".join(f"{d}{' (memorize-only)' if d == control else ''}" for d in domains) + " | verdict |",
        "|---|" + "---|" * len(domains) + "---|",
    ]
    for metric, label in METRICS.items():
        part = table[table["metric"] == metric].set_index("domain")
        if part.empty:
            continue
        cells = []
        for d in domains:
            r = part.loc[d]
            ci_text = f" [{_fmt(r.partial_lo)}, {_fmt(r.partial_hi)}]" if np.isfinite(r.partial_lo) else ""
            cells.append(f"{_fmt(r.pearson)} / {_fmt(r.partial)}{ci_text} / {_fmt(r['diff'])}")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {part['verdict'].iloc[0]} |")
    lines.append("| checkpoints | " + " | ".join(window_cells(table, domains, "n_window")) + " | |")

    lines += [
        "",
        "Over all checkpoints: plain r / partial r / Δ-r with accuracy, and r with log(step) (how the metric moves with time).",
        "",
        "| metric | " + " | ".join(domains) + " |",
        "|---|" + "---|" * len(domains),
    ]
    for metric, label in METRICS.items():
        part = table[table["metric"] == metric].set_index("domain")
        if part.empty:
            continue
        cells = [
            f"{_fmt(part.loc[d].pearson_all)} / {_fmt(part.loc[d].partial_all)} / {_fmt(part.loc[d].diff_all)}; "
            f"time {_fmt(part.loc[d].r_time)}"
            for d in domains
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    generalizing = sorted(table.loc[table["generalizes"].astype(bool), "domain"].unique())
    lines += [
        "",
        f"Verdict rule (analysis.controls.verdict: min_abs_r_time ρ = {rule['min_abs_r_time']:g}, min_change_ratio "
        f"κ = {rule['min_change_ratio']:g}). Control domain: {control or 'none in this study'}; generalizing domains (not "
        "control, final test accuracy above analysis.delay.min_final_accuracy): "
        f"{', '.join(generalizing) or 'none'}. With t = r(metric, log step) over all checkpoints and c = |last − first|, "
        "t_G and c_G the medians over the generalizing domains: a metric *does not separate generalization from "
        "memorization* when sign t_control = sign t_G, |t_control| ≥ ρ and c_control ≥ κ·c_G (it moves in the "
        "memorize-only domain as where accuracy rises); it *separates* when |t_G| ≥ ρ and the control does not; "
        "otherwise *undetermined*. log(step) itself checks the rule.",
        "",
        "| metric | verdict | why |",
        "|---|---|---|",
    ]
    for metric, label in METRICS.items():
        part = table[table["metric"] == metric]
        if not part.empty:
            lines.append(f"| {label} | {part['verdict'].iloc[0]} | {part['verdict_reason'].iloc[0]} |")

    cols = {
        "pathway_distance": "distance",
        "pathway_length": "length",
        "experts_per_layer": "experts/layer",
        "distance_per_char": "per char",
        "permuted_distance": "permuted",
        "additivity": "additivity",
        "within_pooled": "within (pooled)",
        "between_distance": "between",
        "within_minus_between": "within − between",
        "entropy_pair_r": "pair entropy r",
    }
    lines += [
        "",
        "The distance decomposed, first → last checkpoint (controls_checkpoints.csv): length in characters, distance per "
        "character of the longer string, the plain distance after permuting each layer's expert lists across samples "
        "(per layer, independently), additivity = distance ÷ Σ per-layer distances, within (all pairs of the group) "
        "against between (this domain's group samples against every other domain's), and the per-pair routing entropy "
        "against pair distance r (paper A appendix E.5: 0.24).",
        "",
        "| domain | " + " | ".join(cols.values()) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for d, g in checkpoints.groupby("domain", sort=True):
        g = g.sort_values("step")
        first, last = g.iloc[0], g.iloc[-1]
        digits = {"distance_per_char": 3, "additivity": 3, "entropy_pair_r": 2}
        lines.append(
            f"| {d} | "
            + " | ".join(f"{_num(first[c], digits.get(c, 1))} → {_num(last[c], digits.get(c, 1))}" for c in cols)
            + " |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- file to file
def write_controls(
    cfg: dict,
    curves_path: Path,
    samples_path: Path,
    distances_path: Path,
    cross_distances_path: Path,
    out_csv: Path,
    out_md: Path,
    out_checkpoints: Path,
    threads: int = 1,
) -> pd.DataFrame:
    """Read the metric tables, write controls.csv, controls.md and controls_checkpoints.csv."""
    curves = read_table(curves_path)
    samples = read_samples(samples_path)
    distances = read_table(distances_path, DISTANCE_COLUMNS)
    check_distance_inputs(cfg, distances)  # the same pairs as Table 1, or no table
    checkpoints = checkpoint_controls(cfg, curves, samples, distances, read_table(cross_distances_path), threads)
    table = controls_table(cfg, curves, checkpoints, samples)
    write_text(checkpoints.to_csv(index=False), out_checkpoints)
    write_text(table.to_csv(index=False), out_csv)
    write_text(controls_markdown(table, checkpoints, cfg), out_md)
    return table


# ---------------------------------------------------------------- skill pairs: the ground-truth test
# A domain whose records carry ``skills`` (grokpath.world.skills) says which samples SHOULD share a
# route. Per checkpoint, the pathway distance of pairs that share a skill is set against that of pairs
# that share none (docs/RESULTS_SKILLS.md).
SKILL_VIEWS = ("distance", "distance_per_char")  # the plain Levenshtein distance and its per-character view
SKILL_PAIR_COLUMNS = [
    "domain",
    "positions",
    "view",
    "ckpt",
    "step",
    "log_step",
    "accuracy",
    "n_samples",
    "n_share",
    "n_none",
    "mean_all",
    "mean_share",
    "mean_none",
    "gap",
    "gap_lo",
    "gap_hi",
    "n_boot",
]
SKILL_SUMMARY_COLUMNS = ["domain", "positions", "view", "metric", "n", "pearson", "partial", "diff", "r_time", "first", "last"]


def shared_skill_matrix(skills: list[list[str]]) -> np.ndarray:
    """(N, N) bool: samples i and j (i ≠ j) have at least one skill in common; the diagonal is False."""
    sets = [set(s) for s in skills]
    names = sorted(set().union(*sets)) if sets else []
    onehot = np.array([[name in s for name in names] for s in sets], dtype=float).reshape(len(sets), len(names))
    share = (onehot @ onehot.T) > 0
    np.fill_diagonal(share, False)
    return share


def skill_pair_means(
    distances: np.ndarray, share: np.ndarray, weights: np.ndarray | None = None, eligible: np.ndarray | None = None
) -> dict:
    """Mean distance over pairs i < j that share a skill, that share none, and over all pairs.

    ``weights`` (n_boot, N) are bootstrap counts: a pair of distinct samples i, j then counts
    w_i·w_j times (pairs of a sample with its own copies are left out); the values become arrays
    (n_boot,). ``eligible`` (N, N) bool limits the pairs (default: every i ≠ j; the step units of
    one sample are left out of each other's pairs). ``gap`` = mean_none − mean_share: positive when
    pairs that share a skill route closer.
    """
    n = distances.shape[0]
    off = ~np.eye(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool) & ~np.eye(n, dtype=bool)
    share = share & off
    none = off & ~share
    w = np.ones((1, n)) if weights is None else np.asarray(weights, dtype=float)

    def quad(matrix: np.ndarray) -> np.ndarray:  # Σ_{i≠j} w_i w_j matrix_ij, per row of w
        return ((w @ matrix) * w).sum(axis=1)

    with np.errstate(invalid="ignore", divide="ignore"):
        n_share, n_none, n_all = quad(share.astype(float)), quad(none.astype(float)), quad(off.astype(float))
        out = {
            "mean_share": quad(np.where(share, distances, 0.0)) / n_share,
            "mean_none": quad(np.where(none, distances, 0.0)) / n_none,
            "mean_all": quad(np.where(off, distances, 0.0)) / n_all,
            "n_share": n_share / 2,
            "n_none": n_none / 2,
        }
    out["gap"] = out["mean_none"] - out["mean_share"]
    if weights is None:
        out = {k: float(v[0]) for k, v in out.items()}
    return out


def skill_pairs_checkpoints(
    pathways_by_ckpt: dict[tuple[str, int], pd.DataFrame],
    skills: dict[str, list[str]],
    accuracy: dict[int, float],
    level: str,
    n_boot: int,
    ci: float,
    rng: np.random.Generator,
    samples: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Per checkpoint and view, the pair means and the gap with a percentile bootstrap CI over samples.

    ``pathways_by_ckpt`` maps (ckpt, step) to a frame with sample_id, pathway; the same samples
    at every checkpoint, and one resample of them for all checkpoints (so the CIs of two
    checkpoints are draws of the same samples). With ``samples`` (unit id -> sample id), the rows
    are units of samples (the steps of ``traces.positions: steps``): pairs of one sample's units
    are left out, and the bootstrap resamples samples, each with all its units.
    """
    frames = {
        key: frame.sort_values("sample_id", kind="stable").reset_index(drop=True) for key, frame in pathways_by_ckpt.items()
    }
    ids = next(iter(frames.values()))["sample_id"].tolist() if frames else []
    missing = [s for s in ids if s not in skills]
    if missing:
        raise ValueError(f"sample '{missing[0]}' has no skill labels ({len(missing)} such samples)")
    share = shared_skill_matrix([skills[s] for s in ids])
    owner = [s if samples is None else samples[s] for s in ids]
    clusters, unit_cluster = np.unique(owner, return_inverse=True)
    eligible = None if samples is None else unit_cluster[:, None] != unit_cluster[None, :]
    weights = None
    if ids:
        per_sample = rng.multinomial(len(clusters), np.full(len(clusters), 1.0 / len(clusters)), size=n_boot)
        weights = per_sample[:, unit_cluster]
    rows = []
    for (ckpt, step), frame in sorted(frames.items(), key=lambda kv: kv[0][1]):
        if frame["sample_id"].tolist() != ids:
            raise ValueError(f"checkpoint {ckpt}: the pathway samples differ from the other checkpoints'")
        strings = frame["pathway"].tolist()
        for view in SKILL_VIEWS:
            matrix = distance_matrix(strings, level) if view == "distance" else per_character_matrix(strings, level)
            point = skill_pair_means(matrix, share, eligible=eligible)
            draws = skill_pair_means(matrix, share, weights, eligible)["gap"]
            lo, hi = percentile_ci(draws, ci)
            rows.append(
                {
                    "view": view,
                    "ckpt": ckpt,
                    "step": int(step),
                    "log_step": float(log_steps([step])[0]),
                    "accuracy": accuracy.get(int(step), np.nan),
                    "n_samples": len(ids),
                    **point,
                    "gap_lo": lo,
                    "gap_hi": hi,
                    "n_boot": int(n_boot),
                }
            )
    return pd.DataFrame(rows)


def skill_pairs_summary(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """Per (domain, positions, view) and metric (gap, mean_all: the paper's plain distance over the same
    samples): r with test accuracy over checkpoints, the partial r given log(step), the first-difference r,
    r with log(step), and the first and last values."""
    rows = []
    for (domain, positions, view), part in checkpoints.groupby(["domain", "positions", "view"], sort=False):
        part = part.sort_values("step")
        accuracy, log_step = part["accuracy"].to_numpy(float), part["log_step"].to_numpy(float)
        for metric in ("gap", "mean_all"):
            values = part[metric].to_numpy(float)
            rows.append(
                {
                    "domain": domain,
                    "positions": positions,
                    "view": view,
                    "metric": metric,
                    "n": int(np.isfinite(values).sum()),
                    "pearson": correlate(values, accuracy)[0],
                    "partial": partial_correlation(values, accuracy, log_step),
                    "diff": first_difference_correlation(values, accuracy),
                    "r_time": correlate(values, log_step)[0],
                    "first": float(values[0]) if len(values) else np.nan,
                    "last": float(values[-1]) if len(values) else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=SKILL_SUMMARY_COLUMNS)


def skill_pairs_markdown(checkpoints: pd.DataFrame, summary: pd.DataFrame) -> str:
    lines = [
        "# Skill pairs: do samples that share a skill route closer as test accuracy rises?",
        "",
        "gap = mean distance of pairs that share no skill − of pairs that share one (positive: sharing pairs are closer);",
        "mean_all = the paper's plain distance over the same samples. r over checkpoints with test accuracy: plain,",
        "partial given log(step), and of first differences.",
        "",
        "| domain | positions | view | metric | pearson | partial | diff | r_time | first → last |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in summary.iterrows():
        lines.append(
            f"| {r['domain']} | {r['positions']} | {r['view']} | {r['metric']} | {_num(r['pearson'])} | {_num(r['partial'])} "
            f"| {_num(r['diff'])} | {_num(r['r_time'])} | {_num(r['first'], 3)} → {_num(r['last'], 3)} |"
        )
    lines += [
        "",
        "| domain | positions | view | step | accuracy | mean_share | mean_none | gap [CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in checkpoints.iterrows():
        lines.append(
            f"| {r['domain']} | {r['positions']} | {r['view']} | {r['step']} | {_num(r['accuracy'])} | {_num(r['mean_share'], 3)} "
            f"| {_num(r['mean_none'], 3)} | {_num(r['gap'], 3)} [{_num(r['gap_lo'], 3)}, {_num(r['gap_hi'], 3)}] |"
        )
    return "\n".join(lines) + "\n"


def _trace_routing(path: Path, column: str) -> tuple[pd.DataFrame, np.ndarray]:
    """sample_id, ckpt, step and one routing column (N, L, K) of a trace file (L, K from its metadata).
    A list column (``routing_steps``) gives one row per (sample, step), numbered in ``unit``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from grokpath.io import read_metadata

    names = pq.read_schema(path).names
    if column not in names:
        raise ValueError(f"trace file {path} lacks column '{column}' (traces.positions)")
    table = pq.read_table(path, columns=["sample_id", "ckpt", "step", column])
    meta = read_metadata(path)
    values = table.column(column).combine_chunks()
    frame = table.drop([column]).to_pandas()
    frame["sample_id"] = frame["sample_id"].astype(str)
    if pa.types.is_list(values.type):  # a (variable-length) list of fixed-size distributions per sample
        counts = values.value_lengths().to_numpy(zero_copy_only=False)
        frame = frame.loc[np.repeat(frame.index.to_numpy(), counts)].reset_index(drop=True)
        frame["unit"] = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, int)
        values = values.flatten()
    flat = values.flatten().to_numpy(zero_copy_only=False)
    return frame, np.asarray(flat, dtype=np.float32).reshape(len(frame), int(meta["L"]), int(meta["K"]))


def read_skill_labels(path: Path) -> dict[str, list[str]]:
    """sample_id -> skills of a world JSONL; every record must carry a ``skills`` list of strings."""
    from grokpath.data import DataError, iter_jsonl

    labels = {}
    for line_no, record in iter_jsonl(path):
        skills = record.get("skills")
        if not isinstance(skills, list) or not all(isinstance(s, str) for s in skills):
            raise DataError(f"{path}:{line_no}: field 'skills' missing or not a list of strings")
        labels[str(record["sample_id"])] = skills
    return labels


def _step_labels(
    frame: pd.DataFrame, units: list[str], skills: dict[str, list[str]], path
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Per step unit (``units``, one per row of ``frame``): the one skill that step applies, and the sample
    it belongs to. A sample must have one step per skill."""
    counts = frame.groupby("sample_id")["unit"].size()
    for sample_id, n in counts.items():
        if sample_id not in skills:
            raise ValueError(f"sample '{sample_id}' has no skill labels")
        if n != len(skills[sample_id]):
            raise ValueError(f"{path}: sample '{sample_id}' has {n} steps traced but {len(skills[sample_id])} skills")
    rows = list(zip(units, frame["sample_id"], frame["unit"]))
    return {unit: [skills[s][k]] for unit, s, k in rows}, {unit: s for unit, s, _ in rows}


def write_skill_pairs(
    cfg: dict,
    domain: str,
    records_path: Path,
    trace_paths: list[Path],
    curves_path: Path,
    out_csv: Path,
    out_summary: Path,
    out_md: Path,
) -> pd.DataFrame:
    """The pair test for ``domain`` at every traced position (traces.positions); writes the per-checkpoint
    table, its summary and a Markdown rendering. Samples: the domain's training samples, at most
    ``analysis.skill_pairs.max_samples`` (a seeded draw, the same at every checkpoint)."""
    from grokpath.pathways import pathway_strings

    section, pathways_cfg, analysis = cfg["analysis"]["skill_pairs"], cfg["pathways"], cfg["analysis"]
    skills = read_skill_labels(records_path)
    curves = read_table(curves_path)
    curves = curves[curves["domain"] == domain]
    accuracy = dict(zip(curves["step"].astype(int), curves["accuracy"].astype(float)))
    rng = domain_rng(section["seed"], domain)
    keep = None
    tables = []
    for positions in cfg["traces"]["positions"]:
        column = "routing" if positions == "mean" else f"routing_{positions}"
        by_ckpt, labels, samples = {}, skills, None
        for path in trace_paths:
            frame, routing = _trace_routing(Path(path), column)
            strings = pathway_strings(routing, pathways_cfg["threshold"], pathways_cfg["include_crossing"])
            frame = frame.assign(pathway=strings).sort_values("sample_id", kind="stable")
            if keep is None:
                ids = frame["sample_id"].drop_duplicates().to_numpy()
                n = min(len(ids), section["max_samples"])
                keep = set(ids[np.sort(rng.choice(len(ids), size=n, replace=False))])
            frame = frame[frame["sample_id"].isin(keep)]
            if "unit" in frame:  # one row per step: labelled by the skill that step applies
                units = [f"{s}#{u}" for s, u in zip(frame["sample_id"], frame["unit"])]
                labels, samples = _step_labels(frame, units, skills, path)
                frame = frame.assign(sample_id=units)
            by_ckpt[str(frame["ckpt"].iloc[0]), int(frame["step"].iloc[0])] = frame
        boot_rng = domain_rng(analysis["bootstrap"]["seed"], domain, 5)  # the same resample for every position
        part = skill_pairs_checkpoints(
            by_ckpt, labels, accuracy, pathways_cfg["level"], section["n_boot"], analysis["bootstrap"]["ci"], boot_rng, samples
        )
        tables.append(part.assign(domain=domain, positions=positions))
    checkpoints = pd.concat(tables, ignore_index=True)[SKILL_PAIR_COLUMNS]
    summary = skill_pairs_summary(checkpoints)
    write_text(checkpoints.to_csv(index=False), out_csv)
    write_text(summary.to_csv(index=False), out_summary)
    write_text(skill_pairs_markdown(checkpoints, summary), out_md)
    return checkpoints
