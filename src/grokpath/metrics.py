"""Paper A per-sample metrics, file to file: read trace / eval Parquet, call the metric
functions, write the metric tables. One function per rule; paths come from the rule.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from grokpath import consistency as consistency_lib
from grokpath import matching, memorization, onset, pathways
from grokpath.data import read_split, split_path
from grokpath.io import provenance, read_metadata, write_frame

log = logging.getLogger(__name__)

_SHAPE_KEYS = (("L", "K"), ("n_layers", "n_experts"), ("num_hidden_layers", "num_experts"))

# The per-domain tables that metrics_gather (or run_metrics_study) concatenates over domains.
METRIC_TABLES = ("memorization", "memorization_ablation", "pathways", "distances", "consistency", "onset", "groups")


def pathway_splits(section: dict) -> list[str]:
    """The splits whose pathways are written: ``pathways.splits`` and the distance split, in order."""
    return list(dict.fromkeys([*section["splits"], section["distance_split"]]))


# ---------------------------------------------------------------- reading
def read_trace(path: Path | str, columns: list[str] | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """A trace file as (frame without routing, routing (N, L, K) or None if not asked for).

    L and K come from the file metadata (``L``, ``K``); a nested list<list> column
    carries its own shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trace file not found: {path}")
    table = pq.read_table(path, columns=columns)
    want_routing = "routing" in table.column_names
    frame = table.drop(["routing"]).to_pandas() if want_routing else table.to_pandas()
    for col in ("ckpt", "step", "sample_id"):
        if columns is None or col in columns:
            if col not in frame.columns:
                raise ValueError(f"trace file {path} lacks column '{col}'")
    if "sample_id" in frame.columns:
        frame["sample_id"] = frame["sample_id"].astype(str)
    if not want_routing:
        return frame, None
    routing_col = table.column("routing").combine_chunks()
    if pa.types.is_list(routing_col.type.value_type) or pa.types.is_fixed_size_list(routing_col.type.value_type):
        values = routing_col.flatten()
        n_layers = len(values) // max(len(routing_col), 1)
        flat = values.flatten().to_numpy(zero_copy_only=False)
    else:
        flat = routing_col.flatten().to_numpy(zero_copy_only=False)
        meta = read_metadata(path)
        shape = next(((int(meta[a]), int(meta[b])) for a, b in _SHAPE_KEYS if a in meta and b in meta), None)
        if shape is None:
            raise ValueError(f"trace file {path}: metadata lacks L and K, so the routing column cannot be shaped")
        n_layers = shape[0]
        if len(flat) != len(routing_col) * shape[0] * shape[1]:
            raise ValueError(
                f"trace file {path}: routing has {len(flat) // max(len(routing_col), 1)} values per sample, metadata says L×K = {shape[0]}×{shape[1]}"
            )
    n = len(routing_col)
    if n == 0:
        raise ValueError(f"trace file {path} has no samples")
    routing = np.asarray(flat, dtype=np.float32).reshape(n, n_layers, -1)
    return frame, routing


def _read_traces(
    paths: list[Path], domain: str, columns: list[str] | None = None
) -> list[tuple[pd.DataFrame, np.ndarray | None]]:
    out = []
    for path in paths:
        frame, routing = read_trace(path, columns)
        if "domain" in frame.columns and not (frame["domain"].astype(str) == domain).all():
            raise ValueError(f"trace file {path} holds samples of another domain than '{domain}'")
        out.append((frame, routing))
    return out


def _ckpt_steps(frames: list[pd.DataFrame]) -> dict[int, str]:
    """step -> ckpt name, checked consistent across files."""
    step_to_ckpt: dict[int, str] = {}
    for frame in frames:
        for step, ckpt in frame[["step", "ckpt"]].drop_duplicates().itertuples(index=False):
            if step_to_ckpt.setdefault(int(step), str(ckpt)) != str(ckpt):
                raise ValueError(f"step {step} is both checkpoint '{step_to_ckpt[int(step)]}' and '{ckpt}'")
    return step_to_ckpt


def _step_shas(frames: list[pd.DataFrame]) -> dict[int, str | None]:
    """step -> the checkpoint's revision_sha (None where the files carry none)."""
    out: dict[int, str | None] = {}
    for frame in frames:
        columns = ["step", "revision_sha"] if "revision_sha" in frame.columns else ["step"]
        for row in frame[columns].drop_duplicates().itertuples(index=False):
            sha = getattr(row, "revision_sha", None)
            out[int(row.step)] = None if pd.isna(sha) else str(sha)
    return out


def _at_steps(mapping: dict, steps) -> pd.arrays.StringArray:
    """``mapping`` looked up at each step (null where the step is null or unknown), as strings."""
    return pd.array([mapping.get(int(s)) if pd.notna(s) else None for s in steps], dtype="string")


# ---------------------------------------------------------------- memorization
def run_memorization(cfg: dict, domain: str, train_traces: list[Path], out: Path, ablation_out: Path) -> None:
    section = cfg["memorization"]
    epsilon = memorization.domain_epsilon(section, domain)
    frames = [frame for frame, _ in _read_traces(train_traces, domain, ["sample_id", "ckpt", "step", "revision_sha", "loss"])]
    step_to_ckpt, step_to_sha = _ckpt_steps(frames), _step_shas(frames)
    losses = pd.concat(frames, ignore_index=True)
    log.info("memorization %s: %d samples × %d checkpoints", domain, losses["sample_id"].nunique(), len(step_to_ckpt))
    frame, record = memorization.memorization_steps(
        losses, epsilon, section["delta"], section["epsilon_step"], tuple(section["target_fraction"])
    )
    frame.insert(0, "domain", domain)
    frame.insert(4, "t_star_ckpt", _at_steps(step_to_ckpt, frame["t_star_step"]))
    frame.insert(5, "t_star_revision_sha", _at_steps(step_to_sha, frame["t_star_step"]))
    log.info(
        "memorization %s: ε=%s (%s), %.1f%% memorized, in band: %s",
        domain,
        record["epsilon"],
        record["mode"],
        100 * record["fraction"],
        record["in_band"],
    )
    write_frame(frame, out, metadata={"calibration": {domain: record}, **provenance()})

    ablation = memorization.ablation_grid(
        losses,
        memorization.ablation_epsilons(section, record["epsilon"]),
        section["ablation_deltas"],
        record["epsilon"],
        section["delta"],
    )
    ablation.insert(0, "domain", domain)
    ablation.insert(4, "ckpt", ablation["step"].map(step_to_ckpt))
    ablation["revision_sha"] = _at_steps(step_to_sha, ablation["step"])
    columns = ["domain", "parameter", "epsilon", "delta", "ckpt", "step", "n_memorized", "fraction", "revision_sha"]
    write_frame(ablation[columns], ablation_out, metadata=provenance())


# ---------------------------------------------------------------- pathways + distances
def distance_groups(memorized: pd.DataFrame) -> dict[str, set[str]]:
    """Sample ids per distance group: all, memorized, not_memorized, t*=<step> (memorization at T)."""
    groups = {
        "all": set(memorized["sample_id"]),
        "memorized": set(memorized.loc[memorized["memorized"], "sample_id"]),
        "not_memorized": set(memorized.loc[~memorized["memorized"], "sample_id"]),
    }
    for step, part in memorized.loc[memorized["memorized"]].groupby("t_star_step"):
        groups[f"t*={int(step)}"] = set(part["sample_id"])
    return groups


DISTANCE_COLUMNS = [
    "ckpt",
    "step",
    "domain",
    "group",
    "threshold",
    "layer",
    "mean_distance",
    "n_pairs",
    "sampled",
    "revision_sha",
]


def _revision_sha(frame: pd.DataFrame) -> str | None:
    """The checkpoint's revision sha recorded in a trace file (None when it has none)."""
    if "revision_sha" not in frame.columns:
        return None
    values = frame["revision_sha"].dropna().unique()
    if len(values) > 1:
        raise ValueError(f"trace file mixes revision_sha values {sorted(map(str, values))}")
    return str(values[0]) if len(values) else None


def _distance_kwargs(section: dict, threads: int) -> dict:
    return {
        "max_pairs": section["max_pairs"],
        "seed": section["seed"],
        "level": section["level"],
        "block_rows": section["block_rows"],
        "workers": threads,
    }


def run_pathways(
    cfg: dict,
    domain: str,
    traces: list[Path],
    memorization_path: Path,
    pathways_out: Path,
    distances_out: Path,
    threads: int = -1,
) -> None:
    section = cfg["pathways"]
    threshold, crossing = section["threshold"], section["include_crossing"]
    distance_kwargs = _distance_kwargs(section, threads)
    thresholds = sorted({threshold, *section["ablation_thresholds"]})
    memorized = pd.read_parquet(memorization_path)
    memorized = memorized.loc[memorized["domain"] == domain]
    if memorized.empty:
        raise ValueError(f"{memorization_path} has no samples of domain '{domain}'")
    groups = distance_groups(memorized)

    pathway_rows, distance_rows = [], []
    for path in tqdm(traces, desc=f"pathways {domain}", unit="file"):
        ((frame, routing),) = _read_traces([path], domain)
        split = str(frame["split"].iloc[0]) if "split" in frame.columns else Path(path).stem.split("_")[-1]
        ckpt, step = str(frame["ckpt"].iloc[0]), int(frame["step"].iloc[0])
        revision_sha = _revision_sha(frame)
        strings = pathways.pathway_strings(routing, threshold, crossing)
        pathway_rows.append(
            pd.DataFrame(
                {
                    "ckpt": ckpt,
                    "step": step,
                    "domain": domain,
                    "split": split,
                    "sample_id": frame["sample_id"].to_numpy(),
                    "pathway": strings,
                    "n_experts_total": pathways.n_experts_total(routing, threshold, crossing).astype(np.int32),
                    "entropy": pathways.routing_entropy(routing),
                    "revision_sha": pd.array([revision_sha] * len(frame), dtype="string"),
                }
            )
        )
        if split != section["distance_split"]:
            continue
        ids = frame["sample_id"].to_numpy()
        unknown = set(ids) - groups["all"]
        if unknown:
            raise ValueError(f"{path}: sample '{sorted(unknown)[0]}' has no memorization row in {memorization_path}")
        members = {group: np.isin(ids, list(ids_in)) for group, ids_in in groups.items()}
        members = {group: mask for group, mask in members.items() if mask.sum() >= 2}
        by_threshold = {  # every group from one pass over the pairs, per threshold and per layer
            t: pathways.group_mean_distances(
                strings if t == threshold else pathways.pathway_strings(routing, t, crossing), members, **distance_kwargs
            )
            for t in thresholds
        }
        per_layer = pathways.layer_strings(routing, threshold, crossing)
        layer_index = read_metadata(path).get("layers") or list(range(routing.shape[1]))  # real decoder-layer indices
        by_layer = [
            pathways.group_mean_distances([sample[layer] for sample in per_layer], members, **distance_kwargs)
            for layer in range(routing.shape[1])
        ]
        for group in members:
            for t, results in by_threshold.items():
                distance_rows.append((ckpt, step, domain, group, t, -1, *results[group], revision_sha))
            for layer, results in zip(layer_index, by_layer):
                distance_rows.append((ckpt, step, domain, group, threshold, layer, *results[group], revision_sha))
        log.info("pathways %s %s: %d samples, %d distance rows so far", domain, ckpt, len(ids), len(distance_rows))

    meta = {"pathways": section, **provenance()}
    write_frame(pd.concat(pathway_rows, ignore_index=True), pathways_out, metadata=meta)
    distances = pd.DataFrame(distance_rows, columns=DISTANCE_COLUMNS).astype(
        {
            "step": "int64",
            "threshold": "float64",
            "layer": "int64",
            "n_pairs": "int64",
            "sampled": "bool",
            "revision_sha": "string",
        }
    )
    write_frame(distances, distances_out, metadata=meta)


def run_cross_distances(cfg: dict, pathway_files: list[Path], out: Path, threads: int = -1) -> None:
    """Mean distance between the pathways of two domains, per checkpoint (fig. 12)."""
    section = cfg["pathways"]
    distance_kwargs = _distance_kwargs(section, threads)
    frames = []
    for path in pathway_files:
        frame = pd.read_parquet(path)
        missing = [c for c in ("ckpt", "step", "domain", "split", "pathway") if c not in frame.columns]
        if missing:
            raise ValueError(f"pathways file {path} lacks column '{missing[0]}'")
        frames.append(frame.assign(revision_sha=frame["revision_sha"] if "revision_sha" in frame.columns else None))
    table = pd.concat(frames, ignore_index=True)
    table = table.loc[table["split"] == section["distance_split"]]
    domains = list(dict.fromkeys(table["domain"]))
    rows = []
    for (ckpt, step), at_ckpt in table.groupby(["ckpt", "step"], sort=True):
        by_domain = {d: part["pathway"].tolist() for d, part in at_ckpt.groupby("domain")}
        revision_sha = _revision_sha(at_ckpt)
        for i, a in enumerate(domains):
            for b in domains[i + 1 :]:
                if a in by_domain and b in by_domain:
                    mean, n_pairs, sampled = pathways.cross_distance(by_domain[a], by_domain[b], **distance_kwargs)
                    rows.append((ckpt, int(step), a, b, mean, n_pairs, sampled, revision_sha))
    log.info("cross distances: %d (checkpoint, domain pair) rows over domains %s", len(rows), domains)
    frame = pd.DataFrame(
        rows, columns=["ckpt", "step", "domain_a", "domain_b", "mean_distance", "n_pairs", "sampled", "revision_sha"]
    )
    frame = frame.astype({"revision_sha": "string"})
    write_frame(frame.sort_values(["step", "domain_a", "domain_b"], ignore_index=True), out, metadata=provenance())


# ---------------------------------------------------------------- consistency
def run_consistency(cfg: dict, domain: str, traces: list[Path], router_weights: list[Path], out: Path) -> None:
    """Router weights are paired with trace files by directory (traces/<ckpt>/router_weights.npy)."""
    guard = cfg["consistency"]["guard_min_max_cosine"]
    weights_by_dir = {Path(p).parent: Path(p) for p in router_weights}
    missing = [str(t) for t in traces if Path(t).parent not in weights_by_dir]
    if missing:
        raise FileNotFoundError(f"no router_weights.npy given beside trace file {missing[0]}")
    rows = []
    for path in tqdm(traces, desc=f"consistency {domain}", unit="file"):
        weights_path = weights_by_dir[Path(path).parent]
        if not weights_path.is_file():
            raise FileNotFoundError(f"router weights not found: {weights_path}")
        router = np.load(weights_path)
        ((frame, routing),) = _read_traces([path], domain)
        if routing.shape[1:] != router.shape[:2]:
            raise ValueError(f"{path}: routing has L, K = {routing.shape[1:]} but {weights_path} has {router.shape[:2]}")
        scores = consistency_lib.routing_consistency(routing, router, guard)
        split = str(frame["split"].iloc[0]) if "split" in frame.columns else Path(path).stem.split("_")[-1]
        rows.append(
            pd.DataFrame(
                {
                    "ckpt": frame["ckpt"].astype(str).to_numpy(),
                    "step": frame["step"].astype("int64").to_numpy(),
                    "domain": domain,
                    "split": split,
                    "sample_id": frame["sample_id"].to_numpy(),
                    **scores,
                    "revision_sha": pd.array([_revision_sha(frame)] * len(frame), dtype="string"),
                }
            )
        )
        log.info("consistency %s %s: %d samples, %d guarded", domain, split, len(frame), int(scores["guarded"].sum()))
    write_frame(pd.concat(rows, ignore_index=True), out, metadata={"consistency": cfg["consistency"], **provenance()})


# ---------------------------------------------------------------- onset + groups
def run_onset(cfg: dict, domain: str, eval_samples: list[Path], out: Path) -> None:
    section = cfg["onset"]
    frames = []
    for path in eval_samples:
        if not Path(path).is_file():
            raise FileNotFoundError(f"eval samples not found: {path}")
        frame = pd.read_parquet(path, columns=["ckpt", "step", "domain", "sample_id", "correct", "revision_sha"])
        frames.append(frame.loc[frame["domain"] == domain])
    samples = pd.concat(frames, ignore_index=True)
    if samples.empty:
        raise ValueError(f"no eval samples of domain '{domain}' in {[str(p) for p in eval_samples]}")
    samples["sample_id"] = samples["sample_id"].astype(str)
    step_to_ckpt = _ckpt_steps([samples])
    frame = onset.onset_steps(samples, section["min_accuracy"], section["max_errors"], section["require_correct_at_onset"])
    frame.insert(0, "domain", domain)
    frame["t_hash_ckpt"] = _at_steps(step_to_ckpt, frame["t_hash_step"])
    frame["t_hash_revision_sha"] = _at_steps(_step_shas([samples]), frame["t_hash_step"])
    log.info("onset %s: %d of %d test samples generalize", domain, int(frame["generalized"].sum()), len(frame))
    write_frame(frame, out, metadata={"onset": section, **provenance()})


def _read_texts(path: Path, field: str) -> pd.DataFrame:
    records = read_split(path, require=("sample_id", field))
    return pd.DataFrame({"sample_id": [r["sample_id"] for r in records], "text": [r[field] for r in records]})


def run_groups(
    cfg: dict,
    domain: str,
    memorization_path: Path,
    onset_path: Path,
    train_texts: Path,
    test_texts: Path,
    out: Path,
    threads: int | None = None,
) -> None:
    section = cfg["matching"]
    if threads:
        import torch  # MiniLM runs on torch; keep it to the job's threads

        torch.set_num_threads(threads)
    memorized = pd.read_parquet(memorization_path)
    memorized = memorized.loc[(memorized["domain"] == domain) & memorized["memorized"]]
    generalized = pd.read_parquet(onset_path)
    generalized = generalized.loc[(generalized["domain"] == domain) & generalized["generalized"]]
    train = memorized.merge(_read_texts(train_texts, section["text_field"]), on="sample_id", how="left")
    test = generalized.merge(_read_texts(test_texts, section["text_field"]), on="sample_id", how="left")
    for name, part, path in (("train", train, train_texts), ("test", test, test_texts)):
        if part["text"].isna().any():
            raise ValueError(f"{name} sample '{part.loc[part['text'].isna(), 'sample_id'].iloc[0]}' has no text in {path}")
    log.info("groups %s: %d memorized train samples, %d generalized test samples", domain, len(train), len(test))
    frame = matching.matched_groups(train, test, section["backend"], section["batch_size"])
    frame.insert(0, "domain", domain)
    frame = frame.astype(
        {
            "train_group_step": "int64",
            "test_group_step": "int64",
            "n_train": "int64",
            "n_test": "int64",
            "similarity": "float64",
            "delay_steps": "int64",
            "backend": "string",
        }
    )
    write_frame(frame, out, metadata={"matching": section, **provenance()})


# ---------------------------------------------------------------- gather
def gather(inputs: list[Path], out: Path) -> None:
    """Concatenate per-domain tables into one (metadata of the inputs merged)."""
    frames, meta = [], {}
    for path in inputs:
        frames.append(pd.read_parquet(path))
        for key, value in read_metadata(path).items():
            if isinstance(value, dict) and isinstance(meta.get(key), dict):
                meta[key] = {**meta[key], **value}
            else:
                meta.setdefault(key, value)
    frames = [f for f in frames if not f.empty] or frames[:1]
    log.info("gathered %d rows from %d files into %s", sum(len(f) for f in frames), len(inputs), out)
    write_frame(pd.concat(frames, ignore_index=True), out, metadata=meta)


# ---------------------------------------------------------------- one job for a small study
def run_metrics_study(
    cfg: dict,
    trace_dirs: list[Path],
    eval_samples: list[Path],
    router_weights: list[Path],
    metrics_dir: Path,
    threads: int = -1,
) -> None:
    """Every per-domain metric of every domain, the gathers and the cross distances, in one process.

    The files and their contents are those of the per-domain rules (``metrics_dir/domains/<domain>/``,
    then ``metrics_dir/<table>.parquet``): for a study whose metric jobs take less time than
    starting Python and importing their libraries, as the mini study's do.
    """
    metrics_dir = Path(metrics_dir)
    domains = list(cfg["domains"])

    def domain_traces(domain: str, splits: list[str]) -> list[Path]:
        return [Path(d) / f"{domain}_{split}.parquet" for d in trace_dirs for split in splits]

    for domain in tqdm(domains, desc="metrics", unit="domain"):
        out = metrics_dir / "domains" / domain
        memorized = out / "memorization.parquet"
        run_memorization(cfg, domain, domain_traces(domain, ["train"]), memorized, out / "memorization_ablation.parquet")
        run_pathways(
            cfg,
            domain,
            domain_traces(domain, pathway_splits(cfg["pathways"])),
            memorized,
            out / "pathways.parquet",
            out / "distances.parquet",
            threads,
        )
        run_consistency(
            cfg, domain, domain_traces(domain, cfg["consistency"]["splits"]), router_weights, out / "consistency.parquet"
        )
        run_onset(cfg, domain, eval_samples, out / "onset.parquet")
        train_texts, test_texts = (Path(split_path(cfg["domains"], domain, split)) for split in ("train", "test"))
        # one torch thread, as the per-domain rule's default: MiniLM's sums depend on the thread count
        run_groups(cfg, domain, memorized, out / "onset.parquet", train_texts, test_texts, out / "groups.parquet", 1)
    for table in METRIC_TABLES:
        gather([metrics_dir / "domains" / d / f"{table}.parquet" for d in domains], metrics_dir / f"{table}.parquet")
    pathway_files = [metrics_dir / "domains" / d / "pathways.parquet" for d in domains]
    run_cross_distances(cfg, pathway_files, metrics_dir / "cross_distances.parquet", threads)
