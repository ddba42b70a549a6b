"""Paper A's per-checkpoint curves (``curves.parquet``), one row per (domain, ckpt).

Everything but the pathway distance comes from ``samples.parquet``:
- accuracy: mean ``correct`` over the domain's test samples;
- train_loss, consistency, mean_cosine, entropy: means over one training-sample group,
  ``analysis.sample_group`` (default the memorized samples, as the paper does), so the
  losses and the routing metrics describe the same samples; train_loss_ma is the trailing
  moving average of that train_loss;
- validation_loss: the validation set has no memorization groups, so it is the mean over
  *all* validation samples;
- train_loss_all: the mean over all training samples (not in Table 1; it says when training
  as a whole has converged, e.g. for the delay criterion and paper B's regime labels).

Pathway distance comes from ``distances.parquet`` (full pathway, main threshold). The
paper reports the mean over all pairs inside one memorization group (the ``t*=<step>``
groups); a (domain, checkpoint) gets the mean of those per-group means, weighted by
``analysis.distance_weighting`` (our choice of default, ``equal``):
- ``equal``: every group with a pair counts once;
- ``pairs``: by its number of pairs (= one mean over all within-group pairs);
- ``samples``: by its number of samples;
- ``pooled``: not per group, one all-pairs mean over the whole memorized group (pairs
  with different t* included).
Groups of one sample have no pair and do not enter. For ``sample_group`` ``all`` or
``not_memorized`` there are no memorization groups and the distance is that group's
all-pairs mean.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from grokpath.io import provenance, write_frame
from grokpath.samples import read_samples, read_table, require

log = logging.getLogger(__name__)

GROUPS = ("all", "memorized", "not_memorized")
DISTANCE_COLUMNS = ["ckpt", "step", "domain", "group", "threshold", "layer", "mean_distance", "n_pairs", "sampled"]
GROUP_PREFIX = "t*="
COLUMNS = [
    "domain",
    "ckpt",
    "step",
    "revision_sha",
    "accuracy",
    "n_test",
    "train_loss",
    "train_loss_ma",
    "train_loss_all",
    "validation_loss",
    "pathway_distance",
    "n_distance_groups",
    "consistency",
    "mean_cosine",
    "entropy",
    "n_group",
    "n_memorized_new",
    "n_memorized",
    "fraction_memorized",
    "cumulative_accuracy",
]


# ---------------------------------------------------------------- settings
def resolve_threshold(cfg: dict) -> float:
    """Pathway threshold of the main setting: analysis.distance_threshold, else pathways.threshold."""
    value = cfg["analysis"].get("distance_threshold")
    if value is None:
        value = cfg.get("pathways", {}).get("threshold")
    if value is None:
        raise ValueError("analysis.distance_threshold is null and pathways.threshold is not set: no main pathway threshold")
    return float(value)


def distance_weighting(cfg: dict) -> str:
    """The weighting in effect: ``analysis.distance_weighting``, or ``pooled`` without memorization groups."""
    weighting = cfg["analysis"]["distance_weighting"]
    return weighting if cfg["analysis"]["sample_group"] == "memorized" else "pooled"


def describe_samples(cfg: dict) -> dict[str, str]:
    """Which samples each metric averages over (table metadata)."""
    group = {
        "memorized": "memorized training samples",
        "not_memorized": "not-memorized training samples",
        "all": "all training samples",
    }[cfg["analysis"]["sample_group"]]
    return {
        "accuracy": "all test samples",
        "validation_loss": "all validation samples",
        "train_loss_all": "all training samples",
        **{m: group for m in ("train_loss", "train_loss_ma", "consistency", "mean_cosine", "entropy", "pathway_distance")},
    }


def group_rows(samples: pd.DataFrame, group: str) -> pd.DataFrame:
    """The training rows of ``group`` (analysis.sample_group)."""
    if group not in GROUPS:
        raise ValueError(f"analysis.sample_group must be one of {GROUPS}, got '{group}'")
    train = samples[samples["split"] == "train"]
    if group == "all":
        return train
    memorized = train["memorized"].fillna(False).astype(bool)
    return train[memorized if group == "memorized" else ~memorized]


def memorization_group(t_star_step) -> str:
    """The distances.parquet label of a memorized sample's group."""
    return f"{GROUP_PREFIX}{int(t_star_step)}"


def moving_average(values: np.ndarray, window: int, axis: int = -1) -> np.ndarray:
    """Trailing moving average over checkpoints (the first ones average what exists so far)."""
    values = np.asarray(values, dtype=float)
    moved = np.moveaxis(values, axis, 0)
    smooth = pd.DataFrame(moved.reshape(moved.shape[0], -1)).rolling(window, min_periods=1).mean().to_numpy()
    return np.moveaxis(smooth.reshape(moved.shape), 0, axis)


# ---------------------------------------------------------------- pathway distance over groups
def combine_groups(means, n_pairs, n_samples, weighting: str) -> np.ndarray:
    """Weighted mean of per-group distances over the last axis; groups with a NaN mean do not enter.

    ``means`` and ``n_pairs`` are (..., G); ``n_samples`` is (G,). NaN when no group enters.
    """
    means = np.asarray(means, dtype=float)
    if weighting == "equal":
        weights = np.ones_like(means)
    elif weighting == "pairs":
        weights = np.broadcast_to(np.asarray(n_pairs, dtype=float), means.shape)
    elif weighting == "samples":
        weights = np.broadcast_to(np.asarray(n_samples, dtype=float), means.shape)
    else:
        raise ValueError(f"per-group weighting must be one of equal, pairs, samples; got '{weighting}'")
    weights = np.where(np.isfinite(means) & (weights > 0), weights, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights * np.nan_to_num(means)).sum(axis=-1) / weights.sum(axis=-1)


def main_distance_rows(distances: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Full-pathway rows at the main threshold; a clear error when the threshold is absent."""
    require(distances, DISTANCE_COLUMNS, "distances.parquet")
    at = np.isclose(distances["threshold"].astype(float), threshold)
    if not distances.empty and not at.any():
        raise ValueError(
            f"distances.parquet has no rows at threshold {threshold} (analysis.distance_threshold / pathways.threshold); "
            f"thresholds {sorted(distances['threshold'].unique())}"
        )
    return distances[at & (distances["layer"] == -1)]


def aggregate_distances(distances: pd.DataFrame, group_sizes: pd.Series, group: str, weighting: str) -> pd.DataFrame:
    """Per (domain, ckpt, step, threshold, layer): the group's pathway distance (module doc).

    Columns domain, ckpt, step, threshold, layer, mean_distance, n_distance_groups.
    ``group_sizes``: samples per (domain, ``t*=<step>`` label), for ``samples`` weighting.
    """
    require(distances, DISTANCE_COLUMNS, "distances.parquet")
    keys = ["domain", "ckpt", "step", "threshold", "layer"]
    columns = keys + ["mean_distance", "n_distance_groups"]
    if weighting == "pooled":
        pooled = distances[distances["group"] == group]
        if pooled.empty and not distances.empty:
            log.warning("distances.parquet has no rows for group '%s': pathway_distance is NaN (a group of < 2 samples?)", group)
        return pooled.assign(n_distance_groups=1)[columns].reset_index(drop=True)
    per_group = distances[distances["group"].astype(str).str.startswith(GROUP_PREFIX)]
    if per_group.empty and not distances.empty:
        log.warning("distances.parquet has no memorization-group (t*=) rows: pathway_distance is NaN")
    out = []
    for key, g in per_group.groupby(keys, observed=True, sort=True):
        sizes = [group_sizes.get((key[0], label), 0) for label in g["group"]]
        value = combine_groups(g["mean_distance"].to_numpy(float), g["n_pairs"].to_numpy(float), sizes, weighting)
        out.append((*key, float(value), len(g)))
    return pd.DataFrame(out, columns=columns).astype({"step": "int64", "threshold": "float64", "layer": "int64"})


def checkpoint_distance(
    distances: pd.DataFrame, group_sizes: pd.Series, group: str, threshold: float, weighting: str
) -> pd.DataFrame:
    """Per (domain, ckpt): pathway_distance (full pathway, main threshold) and n_distance_groups."""
    rows = aggregate_distances(main_distance_rows(distances, threshold), group_sizes, group, weighting)
    return rows[["domain", "ckpt", "mean_distance", "n_distance_groups"]].rename(columns={"mean_distance": "pathway_distance"})


def memorization_group_sizes(samples: pd.DataFrame) -> pd.Series:
    """Memorized training samples per (domain, ``t*=<step>``)."""
    train = samples[(samples["split"] == "train") & samples["memorized"].fillna(False).astype(bool)]
    train = train.drop_duplicates(["domain", "sample_id"]).dropna(subset=["t_star_step"])
    labels = train["t_star_step"].map(memorization_group)
    return train.assign(group=labels).groupby(["domain", "group"]).size()


# ---------------------------------------------------------------- the join
def build_curves(cfg: dict, samples: pd.DataFrame, distances: pd.DataFrame) -> pd.DataFrame:
    """One row per (domain, ckpt): accuracy, losses and the group's routing metrics (module doc)."""
    analysis = cfg["analysis"]
    group, threshold, weighting = analysis["sample_group"], resolve_threshold(cfg), distance_weighting(cfg)
    keys = ["domain", "ckpt"]
    base = (
        samples.groupby(keys, observed=True, sort=True)
        .agg(step=("step", "first"), revision_sha=("revision_sha", "first"))
        .reset_index()
    )

    tests = samples[samples["split"] == "test"]
    acc = (
        tests.assign(correct=tests["correct"].astype(float))
        .groupby(keys, observed=True)
        .agg(accuracy=("correct", "mean"), n_test=("correct", "size"))
    )
    members = group_rows(samples, group)
    routing = members.groupby(keys, observed=True).agg(
        train_loss=("loss", "mean"),
        consistency=("consistency", "mean"),  # pandas mean skips NaN (guarded C_i)
        mean_cosine=("mean_cosine", "mean"),
        entropy=("entropy", "mean"),
        n_group=("sample_id", "size"),
    )
    validation = samples[samples["split"] == "validation"].groupby(keys, observed=True)["loss"].mean().rename("validation_loss")
    train_all = samples[samples["split"] == "train"].groupby(keys, observed=True)["loss"].mean().rename("train_loss_all")
    curves = base.join(acc, on=keys).join(routing, on=keys).join(train_all, on=keys).join(validation, on=keys)
    dist = checkpoint_distance(distances, memorization_group_sizes(samples), group, threshold, weighting)
    curves = curves.merge(dist, on=keys, how="left")

    curves = curves.sort_values(["domain", "step"], kind="stable").reset_index(drop=True)
    curves["revision_sha"] = curves["revision_sha"].astype("string")
    curves["n_test"] = curves["n_test"].fillna(0).astype("int64")
    curves["n_group"] = curves["n_group"].fillna(0).astype("int64")
    curves["n_distance_groups"] = curves["n_distance_groups"].fillna(0).astype("int64")
    window = int(analysis["moving_average_window"])
    curves["train_loss_ma"] = curves.groupby("domain", observed=True)["train_loss"].transform(
        lambda s: moving_average(s.to_numpy(), window)
    )

    # memorized samples per checkpoint (t* == step) and cumulative (t* <= step)
    train = samples[samples["split"] == "train"].drop_duplicates(["domain", "sample_id"])
    memorized = train[train["memorized"].fillna(False).astype(bool)].dropna(subset=["t_star_step"])
    new = memorized.groupby(["domain", "t_star_step"], observed=True).size()
    curves["n_memorized_new"] = [int(new.get((d, s), 0)) for d, s in zip(curves["domain"], curves["step"])]
    curves["n_memorized"] = curves.groupby("domain", observed=True)["n_memorized_new"].cumsum()
    n_train = train.groupby("domain", observed=True).size()
    curves["fraction_memorized"] = curves["n_memorized"] / curves["domain"].map(n_train).astype(float)

    # cumulative accuracy (fig. 1): fraction of test samples whose onset t# is at or before the step
    test_ids = tests.drop_duplicates(["domain", "sample_id"])
    onset = {
        d: rows["t_hash_step"].astype("Float64").to_numpy(dtype=float, na_value=np.nan) for d, rows in test_ids.groupby("domain")
    }
    curves["cumulative_accuracy"] = [
        float(np.mean(onset[d] <= s)) if d in onset and len(onset[d]) else np.nan
        for d, s in zip(curves["domain"], curves["step"])
    ]
    return curves[COLUMNS]


def curves_metadata(cfg: dict) -> dict:
    return provenance(
        sample_group=cfg["analysis"]["sample_group"],
        threshold=resolve_threshold(cfg),
        distance_weighting=distance_weighting(cfg),
        samples=describe_samples(cfg),
    )


def write_curves(cfg: dict, samples_path: Path, distances_path: Path, out_path: Path) -> pd.DataFrame:
    """Read samples.parquet and distances.parquet, join them, write ``curves.parquet``."""
    curves = build_curves(cfg, read_samples(samples_path), read_table(distances_path, DISTANCE_COLUMNS))
    write_frame(curves, out_path, metadata=curves_metadata(cfg))
    log.info("curves: %d rows (%d domains) -> %s", len(curves), curves["domain"].nunique(), out_path)
    return curves
