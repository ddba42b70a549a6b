"""The long per-sample table of paper A's analysis (``results/metrics/samples.parquet``).

One row per (domain, checkpoint, split, sample), built once from the traces (losses; the
big routing column is not read), the eval samples (correctness) and the per-sample metric
tables. Every later analysis step (curves, Table 1, onset) reads this table only.

Columns: domain, ckpt, step, revision_sha (from the traces; null when the checkpoint has
none, e.g. the mini world), split (train | validation | test), sample_id, loss (train and
validation: mean token NLL from the traces; test: null), correct (test only), memorized
and t_star_step (train only: memorization at the last checkpoint), t_hash_step (test only:
generalization onset, null = never), consistency, mean_cosine (where consistency.parquet
has the split), entropy and pathway (where pathways.parquet has the split; the pathway at
``pathways.threshold``). Rows are sorted by domain, split, step, sample_id.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from grokpath.io import provenance, write_frame

log = logging.getLogger(__name__)

TRACE_COLUMNS = ["sample_id", "domain", "split", "ckpt", "step", "revision_sha", "loss"]
EVAL_COLUMNS = ["ckpt", "step", "domain", "sample_id", "correct"]
MEMORIZATION_COLUMNS = ["domain", "sample_id", "memorized", "t_star_step"]
ONSET_COLUMNS = ["domain", "sample_id", "t_hash_step"]
CONSISTENCY_COLUMNS = ["ckpt", "domain", "split", "sample_id", "consistency", "mean_cosine"]
PATHWAY_COLUMNS = ["ckpt", "domain", "split", "sample_id", "pathway", "entropy"]
COLUMNS = [
    "domain",
    "ckpt",
    "step",
    "revision_sha",
    "split",
    "sample_id",
    "loss",
    "correct",
    "memorized",
    "t_star_step",
    "t_hash_step",
    "consistency",
    "mean_cosine",
    "entropy",
    "pathway",
]
SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}


# ---------------------------------------------------------------- reading
def require(frame: pd.DataFrame, columns: list[str], name: str) -> pd.DataFrame:
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


def read_samples(path: Path | str) -> pd.DataFrame:
    return read_table(path, COLUMNS)


def sample_matrix(
    frame: pd.DataFrame, ckpts: list[str], value: str, ids: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """(checkpoint × sample) matrix of ``value``; a sample missing at a checkpoint is NaN."""
    wide = frame.pivot_table(index="ckpt", columns="sample_id", values=value, aggfunc="mean", observed=True, dropna=False)
    if ids is not None:
        wide = wide.reindex(columns=ids)
    wide = wide.reindex(index=ckpts)
    return wide.to_numpy(dtype=float), [str(c) for c in wide.columns]


def _strings(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Key columns as plain strings (traces store dictionary strings; joins need one dtype)."""
    return frame.astype({c: str for c in columns if c in frame.columns})


# ---------------------------------------------------------------- the table
def build_samples(
    traces: pd.DataFrame,
    evals: pd.DataFrame,
    memorization: pd.DataFrame,
    onset: pd.DataFrame,
    consistency: pd.DataFrame,
    pathways: pd.DataFrame,
) -> pd.DataFrame:
    """Join the per-sample inputs into the long table (module doc)."""
    require(traces, TRACE_COLUMNS, "traces")
    require(evals, EVAL_COLUMNS, "eval samples")
    require(memorization, MEMORIZATION_COLUMNS, "memorization.parquet")
    require(onset, ONSET_COLUMNS, "onset.parquet")
    require(consistency, CONSISTENCY_COLUMNS, "consistency.parquet")
    require(pathways, PATHWAY_COLUMNS, "pathways.parquet")
    keys = ["domain", "ckpt", "split", "sample_id"]

    traces = _strings(traces[TRACE_COLUMNS], ["sample_id", "domain", "split", "ckpt"])
    duplicated = traces.duplicated(keys)
    if duplicated.any():
        first = traces.loc[duplicated, keys].iloc[0].to_dict()
        raise ValueError(f"traces: sample {first} appears more than once")
    sha = traces.groupby("ckpt", observed=True)["revision_sha"].agg(lambda s: s.dropna().unique())
    for ckpt, values in sha.items():
        if len(values) > 1:
            raise ValueError(f"traces of checkpoint {ckpt} disagree on revision_sha: {sorted(values)}")
    revision = {ckpt: (values[0] if len(values) else None) for ckpt, values in sha.items()}

    tests = _strings(evals[EVAL_COLUMNS], ["ckpt", "domain", "sample_id"]).assign(split="test")
    tests["correct"] = tests["correct"].astype("boolean")
    tests["revision_sha"] = tests["ckpt"].map(revision).astype(object)
    table = pd.concat([traces.assign(correct=pd.array([pd.NA] * len(traces), dtype="boolean")), tests], ignore_index=True)

    mem = _strings(memorization[MEMORIZATION_COLUMNS], ["domain", "sample_id"]).assign(split="train")
    mem["memorized"] = mem["memorized"].astype("boolean")
    table = table.merge(mem, on=["domain", "split", "sample_id"], how="left")
    ons = _strings(onset[ONSET_COLUMNS], ["domain", "sample_id"]).assign(split="test")
    table = table.merge(ons, on=["domain", "split", "sample_id"], how="left")
    for frame, columns in ((consistency, ["consistency", "mean_cosine"]), (pathways, ["entropy", "pathway"])):
        frame = _strings(frame[keys + columns], keys).drop_duplicates(keys)
        table = table.merge(frame, on=keys, how="left")

    table = table.astype(
        {
            "step": "int64",
            "loss": "float64",
            "t_star_step": "Int64",
            "t_hash_step": "Int64",
            "consistency": "float64",
            "mean_cosine": "float64",
            "entropy": "float64",
        }
    )
    table = table.astype({"revision_sha": "string", "pathway": "string"})  # typed even when all null (mini world)
    table = table.assign(_split=table["split"].map(SPLIT_ORDER))
    table = table.sort_values(["domain", "_split", "step", "sample_id"], kind="stable").drop(columns="_split")
    return table[COLUMNS].reset_index(drop=True)


def write_samples(
    trace_paths: list[Path],
    eval_paths: list[Path],
    memorization_path: Path,
    onset_path: Path,
    consistency_path: Path,
    pathways_path: Path,
    out_path: Path,
) -> pd.DataFrame:
    """Read the traces (without routing), evals and metric tables once; write ``samples.parquet``."""
    table = build_samples(
        read_tables(trace_paths, TRACE_COLUMNS),
        read_tables(eval_paths, EVAL_COLUMNS),
        read_table(memorization_path, MEMORIZATION_COLUMNS),
        read_table(onset_path, ONSET_COLUMNS),
        read_table(consistency_path, CONSISTENCY_COLUMNS),
        read_table(pathways_path, PATHWAY_COLUMNS),
    )
    write_frame(table, out_path, metadata=provenance())
    log.info(
        "samples: %d rows (%d domains, %d checkpoints) -> %s",
        len(table),
        table["domain"].nunique(),
        table["ckpt"].nunique(),
        out_path,
    )
    return table
