"""The mini study over pretraining seeds: one workflow run per seed, one table.

Each seed in ``pretrain.seeds`` runs the mini study's analysis targets (``SEED_TARGETS``)
through the project's own Snakefile in its own working directory,
``<out>/seed_<s>/results/...``, with ``pretrain.seed: s`` laid over the given config
files; nothing else changes (the world, its seed and every other setting stay fixed).
With the repository's own config, the seed ``pretrain.seed`` is the default workflow
itself: it runs (or is found up to date) in the repository, and its ``results/`` enter
the table.
The gather reads only the pipeline's own tables, so every number is the one the
default workflow reports for that seed:

- ``seeds.csv``: per (seed, domain): final test accuracy, the delay rule of
  ``results/tables/onset.csv`` (training loss over all training samples settled
  ``delay_checkpoints`` before test accuracy first passes half its final value), ε and
  its memorized fraction (``memorization.parquet``'s calibration), the last checkpoint's
  per-token routing entropy (``pretrain/monitor.parquet``), and Table 1's Pearson r and
  sign per metric (``tables/correlations.csv``);
- ``checkpoints.csv``: per (seed, domain, step): accuracy, the training loss over all
  training samples, pathway distance, per-layer distances, C_i, the raw cosine (from
  ``metrics/curves.parquet`` and ``metrics/distances.parquet`` through
  :func:`grokpath.curves.aggregate_distances`), and what moves the distance
  (:func:`grokpath.pathways.pathway_drift` on the training samples' pathways);
- ``summary.md``: ranges over seeds, and which conclusions hold in every seed; then the
  controls across seeds (:func:`controls_markdown`): per metric and domain, Table 1's r with
  its CI in each seed, the partial r given log(step) and the first-difference r
  (``tables/controls.csv``), the control domain's r, the verdicts, and whether the sign
  of r holds in every seed;
- ``controls.csv`` (every seed's ``tables/controls.csv`` with a seed column) and
  ``controls_vs_accuracy.png``/``.pdf``: each metric against test accuracy, the
  generalizing domains beside the control domain (:mod:`grokpath.figures.controls`).

A study whose domains include the skills world's (config/skills.yaml) also runs each seed's
skill-pair test (``tables/skill_pairs_skills*.csv``) and gathers it into ``skill_pairs.csv``
and ``skill_pairs_summary.csv`` (with a seed column).

Run: ``python -m grokpath.seeds_study --cores 2`` (seeds from ``pretrain.seeds``, or
``--seeds 0 1 2``; another study: ``--configfile config/skills.yaml --out results/seeds_skills``).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from grokpath.config import deep_merge, validate
from grokpath.curves import aggregate_distances, distance_weighting, memorization_group_sizes, resolve_threshold
from grokpath.figures.common import save_figure
from grokpath.io import read_metadata, write_text
from grokpath.pathways import pathway_drift
from grokpath.samples import read_samples, read_table

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
POLL_SECONDS = 0.5  # how often the seed runs are checked for an end
SEED_TARGETS = [
    "results/tables/onset.csv",
    "results/tables/correlations.csv",
    "results/metrics/curves.parquet",
    "results/pretrain/monitor.parquet",
    "results/tables/controls.csv",
    "results/tables/controls_checkpoints.csv",
]
TABLE1 = ["pathway_distance", "consistency", "mean_cosine", "train_loss"]
# rows of the controls table across seeds: Table 1's metrics, then the distance's own controls
CONTROL_ROWS = [*TABLE1, "distance_per_char", "within_minus_between"]
FIGURE_METRICS = ["pathway_distance", "distance_per_char", "within_minus_between", "mean_cosine"]


def seed_dir(out: Path | str, seed: int, home: tuple[int, Path] | None = None) -> Path:
    """Working directory of ``seed``'s workflow: ``<out>/seed_<s>``, or ``home[1]`` (the
    repository, whose ``results/`` are the default workflow's) for the seed ``home[0]``."""
    if home is not None and seed == home[0]:
        return Path(home[1])
    return Path(out) / f"seed_{seed}"


def skill_targets(cfg: dict) -> list[str]:
    """The skill-pair tables of a study with the skills world's domain (none otherwise)."""
    from grokpath.world.skills import DOMAIN

    if cfg["checkpoints"]["source"] != "mini" or DOMAIN not in cfg["domains"]:
        return []
    return [f"results/tables/skill_pairs_{DOMAIN}.csv", f"results/tables/skill_pairs_{DOMAIN}_summary.csv"]


def snakemake_command(repo: Path, workdir: Path, configfiles: list[Path], cores: int, extra_targets: list[str] = ()) -> list[str]:
    """One seed's workflow: the project's Snakefile, run in ``workdir`` over ``configfiles``."""
    return [  # targets first: --quiet and --configfile take several values
        str(Path(sys.executable).with_name("snakemake")),
        *SEED_TARGETS,
        *extra_targets,
        "--snakefile",
        str(repo / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        str(cores),
        "--quiet",
        "rules",
        "--configfile",
        *[str(p) for p in configfiles],
    ]


def run_seeds(
    seeds: list[int],
    out: Path,
    configfiles: list[Path],
    cores: int,
    concurrent: int = 1,
    repo: Path = REPO,
    home: tuple[int, Path] | None = None,
    extra_targets: list[str] = (),
) -> None:
    """Run every seed's workflow (``concurrent`` at a time, ``cores`` each); raise if one fails.

    With ``home`` the seed ``home[0]`` runs in ``home[1]`` without an overlay: there the
    targets are the default workflow's own outputs (nothing to do when it has run)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo / "src"), os.environ.get("PYTHONPATH")]))}
    pending, running, failed = list(seeds), {}, []
    while pending or running:
        while pending and len(running) < concurrent:
            seed = pending.pop(0)
            workdir = seed_dir(out, seed, home)
            logdir = seed_dir(out, seed)
            logdir.mkdir(parents=True, exist_ok=True)
            files = list(configfiles)
            if workdir == logdir:
                overlay = workdir / "seed.yaml"
                overlay.write_text(yaml.safe_dump({"pretrain": {"seed": int(seed)}}))
                files.append(overlay.resolve())
            command = snakemake_command(repo, workdir.resolve(), files, cores, extra_targets)
            log.info("seed %d: %s", seed, " ".join(command))
            logfile = open(logdir / "snakemake.log", "w")  # noqa: SIM115 (closed when the run ends)
            running[seed] = (subprocess.Popen(command, cwd=repo, env=env, stdout=logfile, stderr=subprocess.STDOUT), logfile)
        for seed, (proc, logfile) in list(running.items()):
            if proc.poll() is not None:
                logfile.close()
                del running[seed]
                if proc.returncode != 0:
                    failed.append(seed)
                log.info("seed %d: workflow exit %d", seed, proc.returncode)
        if running and (len(running) >= concurrent or not pending):
            time.sleep(POLL_SECONDS)  # any seed's end frees a slot, not only the first one's
    if failed:
        raise RuntimeError(f"seed workflow(s) {failed} failed; see {out}/seed_<s>/snakemake.log")


# ---------------------------------------------------------------- one seed's tables
def seed_rows(cfg: dict, results: Path, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-domain row, per-checkpoint rows) of one seed's ``results`` directory."""
    onset = pd.read_csv(results / "tables" / "onset.csv")
    corr = pd.read_csv(results / "tables" / "correlations.csv")
    curves = read_table(results / "metrics" / "curves.parquet")
    calibration = read_metadata(results / "metrics" / "memorization.parquet").get("calibration", {})
    monitor = pd.read_parquet(results / "pretrain" / "monitor.parquet")
    last = monitor[monitor["step"] == monitor["step"].max()].set_index("domain")

    per_domain = []
    for row in onset.itertuples():
        d = row.domain
        record = {
            "seed": seed,
            "domain": d,
            "final_accuracy": row.final_accuracy,
            "delay_checkpoints": row.delay_checkpoints,
            "delayed_generalization": bool(row.delayed_generalization),
            "loss_settled_step": row.loss_settled_step,
            "accuracy_half_step": row.accuracy_half_step,
            "epsilon": calibration.get(d, {}).get("epsilon", np.nan),
            "fraction_memorized": calibration.get(d, {}).get("fraction", np.nan),
            "token_entropy_final": float(last.loc[d, "token_entropy"])
            if d in last.index and "token_entropy" in last.columns
            else np.nan,
        }
        for metric in TABLE1:
            r = corr[(corr["domain"] == d) & (corr["metric"] == metric)]
            value = float(r["pearson"].iloc[0]) if len(r) else np.nan
            record[f"r_{metric}"] = value
            record[f"sign_{metric}"] = "" if not np.isfinite(value) else ("+" if value > 0 else "−")
        per_domain.append(record)

    samples = read_samples(results / "metrics" / "samples.parquet")
    distances = read_table(results / "metrics" / "distances.parquet")
    threshold = resolve_threshold(cfg)
    layers = distances[np.isclose(distances["threshold"].astype(float), threshold) & (distances["layer"] >= 0)]
    per_layer = aggregate_distances(
        layers, memorization_group_sizes(samples), cfg["analysis"]["sample_group"], distance_weighting(cfg)
    )
    per_layer = per_layer.pivot_table(index=["domain", "step"], columns="layer", values="mean_distance")
    per_layer.columns = [f"distance_layer{int(c)}" for c in per_layer.columns]

    paths = pd.concat(
        [pd.read_parquet(p) for p in sorted((results / "metrics" / "domains").glob("*/pathways.parquet"))], ignore_index=True
    )
    drift = pathway_drift(paths[paths["split"] == "train"], level=cfg["pathways"]["level"])
    keep = ["domain", "step", "accuracy", "train_loss_all", "pathway_distance", "consistency", "mean_cosine", "entropy"]
    checkpoints = (
        curves[keep]
        .merge(per_layer.reset_index(), on=["domain", "step"], how="left")
        .merge(drift.drop(columns=["split"]), on=["domain", "step"], how="left")
        .assign(seed=seed)
    )
    return pd.DataFrame(per_domain), checkpoints[["seed", *[c for c in checkpoints.columns if c != "seed"]]]


# ---------------------------------------------------------------- the summary
def _range(values: pd.Series, fmt: str = "{:.2f}") -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    lo, hi = values.min(), values.max()
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}–{fmt.format(hi)}"


def summary_markdown(per_domain: pd.DataFrame, checkpoints: pd.DataFrame, targets: dict) -> str:
    """Ranges over seeds per domain, and which conclusions hold in every seed."""
    seeds = sorted(per_domain["seed"].unique())
    lines = [f"Seeds {', '.join(map(str, seeds))} (ranges are min–max over seeds).", ""]
    lines += [
        "| domain | final test acc. | delay (ckpts) | delayed in | ε | final per-token entropy | "
        + " | ".join(f"r {m}" for m in TABLE1)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(TABLE1),
    ]
    for d, g in per_domain.groupby("domain", sort=True):
        cells = [
            d,
            _range(g["final_accuracy"]),
            _range(g["delay_checkpoints"].astype(float), "{:.0f}"),
            f"{int(g['delayed_generalization'].sum())}/{len(g)}",
            _range(g["epsilon"], "{:.4f}"),
            _range(g["token_entropy_final"]),
            *[_range(g[f"r_{m}"]) for m in TABLE1],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per checkpoint (first → last, ranges over seeds):", ""]
    cols = ["pathway_distance", "drift_from_first", "n_distinct", "consistency", "mean_cosine"]
    lines += ["| domain | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for d, g in checkpoints.groupby("domain", sort=True):
        first = g[g["step"] == g["step"].min()]
        last = g[g["step"] == g["step"].max()]
        lines.append("| " + " | ".join([d, *[f"{_range(first[c])} → {_range(last[c])}" for c in cols]]) + " |")

    by_seed = per_domain.groupby("seed")
    checks = {
        f"final test accuracy ≥ {targets['min_accuracy']} in every domain": by_seed["final_accuracy"].min()
        >= targets["min_accuracy"],
        f"delayed generalization in ≥ {targets['min_delayed']} domains": by_seed["delayed_generalization"].sum()
        >= targets["min_delayed"],
        f"final per-token entropy ≤ {targets['max_entropy']:.3f} (0.7 · log K) in every domain": by_seed[
            "token_entropy_final"
        ].max()
        <= targets["max_entropy"],
    }
    for metric in TABLE1:
        signs = per_domain.pivot(index="seed", columns="domain", values=f"sign_{metric}")
        same = [d for d in signs.columns if signs[d].nunique() == 1 and signs[d].iloc[0]]
        checks[f"sign of r({metric}, accuracy) the same in every seed: {', '.join(same) or 'no domain'}"] = pd.Series(
            [bool(same)] * len(signs)
        )
    lines += ["", "| conclusion | seeds where it holds |", "|---|---|"]
    for text, held in checks.items():
        lines.append(f"| {text} | {int(held.sum())}/{len(held)} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the controls across seeds
def seed_controls(results: Path, seed: int) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(controls.csv with Table 1's CI columns joined, controls_checkpoints.csv) of one seed; None without them."""
    paths = [results / "tables" / name for name in ("controls.csv", "controls_checkpoints.csv", "correlations.csv")]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        log.warning("seed %d: no %s; the controls across seeds leave this seed out", seed, missing[0])
        return None
    corr = pd.read_csv(paths[2])[["domain", "metric", "pearson_lo", "pearson_hi"]]
    controls = pd.read_csv(paths[0]).merge(corr, on=["domain", "metric"], how="left").assign(seed=seed)
    return controls, pd.read_csv(paths[1]).assign(seed=seed)


def _sign(value: float) -> str:
    return "" if not np.isfinite(value) else ("+" if value > 0 else "−")


def _r_ci(row) -> str:
    text = "n/a" if not np.isfinite(row.pearson) else f"{row.pearson:+.2f}"
    if np.isfinite(row.pearson_lo) and np.isfinite(row.pearson_hi):
        text += f" [{row.pearson_lo:+.2f}, {row.pearson_hi:+.2f}]"
    return f"s{row.seed}: {text}"


def controls_markdown(controls: pd.DataFrame) -> str:
    """One table across seeds: per metric and (non-control) domain, r [CI] per seed and its controls."""
    seeds = sorted(controls["seed"].unique())
    control = controls.loc[controls["control_domain"].astype(bool), "domain"]
    control = control.iloc[0] if len(control) else None
    lines = [
        f"Controls across seeds {', '.join(map(str, seeds))} (each seed's tables/controls.csv; docs/CONTROLS.md). "
        "r: Table 1's Pearson r with test accuracy [bootstrap CI] per seed, over its sustained-rise window; partial r "
        "given log(step) and r of first differences: min–max over seeds; control: the same r in the memorize-only "
        f"domain ({control or 'none in this study'}); verdict: seeds per verdict; distance per character and "
        "within − between are the distance's own controls, as rows. Sign holds: the sign of r is the same in every seed.",
        "",
        "| metric | domain | r [CI] per seed | partial r | Δ-r | control's r | verdict | sign holds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for metric in CONTROL_ROWS:
        rows = controls[controls["metric"] == metric]
        if rows.empty:
            continue
        in_control = rows[rows["domain"] == control]["pearson"] if control else pd.Series(dtype=float)
        verdicts = rows.drop_duplicates(["seed"])["verdict"].value_counts()
        verdict_text = "; ".join(f"{v} {n}/{len(seeds)}" for v, n in verdicts.items())
        for domain, g in rows[rows["domain"] != control].groupby("domain", sort=True):
            g = g.sort_values("seed")
            signs = {_sign(v) for v in g["pearson"]}
            holds = "yes" if len(signs) == 1 and "" not in signs and len(g) == len(seeds) else "no"
            lines.append(
                f"| {metric} | {domain} | {'; '.join(_r_ci(r) for r in g.itertuples())} | {_range(g['partial'])} | "
                f"{_range(g['diff'])} | {_range(in_control)} | {verdict_text} | {holds} |"
            )
    return "\n".join(lines) + "\n"


def gather(cfg: dict, seeds: list[int], out: Path, home: tuple[int, Path] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    parts = [seed_rows(cfg, seed_dir(out, s, home) / "results", s) for s in seeds]
    per_domain = pd.concat([p[0] for p in parts], ignore_index=True)
    checkpoints = pd.concat([p[1] for p in parts], ignore_index=True)
    write_text(per_domain.to_csv(index=False), out / "seeds.csv")
    write_text(checkpoints.to_csv(index=False), out / "checkpoints.csv")
    k = cfg["pretrain"]["num_experts"]
    targets = {"min_accuracy": 0.8, "min_delayed": 3, "max_entropy": 0.7 * float(np.log(k))}
    summary = summary_markdown(per_domain, checkpoints, targets)
    found = [c for c in (seed_controls(seed_dir(out, s, home) / "results", s) for s in seeds) if c is not None]
    if found:
        controls = pd.concat([c[0] for c in found], ignore_index=True)
        decomposition = pd.concat([c[1] for c in found], ignore_index=True)
        write_text(controls.to_csv(index=False), out / "controls.csv")
        summary += "\n" + controls_markdown(controls)
        figure_data = checkpoints.merge(
            decomposition[["seed", "domain", "step", *[m for m in FIGURE_METRICS if m not in checkpoints.columns]]],
            on=["seed", "domain", "step"],
            how="left",
        )
        from grokpath.figures.controls import metric_vs_accuracy

        control = cfg["analysis"]["controls"]["control_domain"]
        save_figure(
            metric_vs_accuracy(figure_data, FIGURE_METRICS, control, cfg.get("figures")),
            out / "controls_vs_accuracy.png",
            cfg.get("figures"),
        )
    from grokpath.world.skills import DOMAIN

    for name, source in (
        ("skill_pairs", f"skill_pairs_{DOMAIN}.csv"),
        ("skill_pairs_summary", f"skill_pairs_{DOMAIN}_summary.csv"),
    ):
        paths = {s: seed_dir(out, s, home) / "results" / "tables" / source for s in seeds}
        tables = [pd.read_csv(path).assign(seed=s) for s, path in paths.items() if path.is_file()]
        if tables:
            write_text(pd.concat(tables, ignore_index=True).to_csv(index=False), out / f"{name}.csv")
    write_text(summary, out / "summary.md")
    return per_domain, checkpoints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, nargs="+", default=[REPO / "config" / "config.yaml"])
    parser.add_argument("--seeds", type=int, nargs="+", help="default: pretrain.seeds")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "seeds")
    parser.add_argument("--cores", type=int, default=2, help="cores of each seed's workflow")
    parser.add_argument("--concurrent", type=int, default=1, help="seed workflows at once")
    parser.add_argument("--gather-only", action="store_true", help="only rebuild the tables from existing seed runs")
    parser.add_argument(
        "--separate-default",
        action="store_true",
        help="run pretrain.seed in <out>/seed_<s> too (default: with the repository's config it is the default "
        "workflow's own results/, run or reused in the repository)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    merged: dict = {}
    for path in args.configfile:
        merged = deep_merge(merged, yaml.safe_load(path.read_text()) or {})
    cfg = validate(merged)
    seeds = args.seeds or list(cfg["pretrain"]["seeds"])
    configfiles = [p.resolve() for p in args.configfile]
    default = configfiles == [(REPO / "config" / "config.yaml").resolve()]
    home = (int(cfg["pretrain"]["seed"]), REPO) if default and not args.separate_default else None
    if not args.gather_only:
        run_seeds(seeds, args.out, configfiles, args.cores, args.concurrent, home=home, extra_targets=skill_targets(cfg))
    gather(cfg, seeds, args.out, home)
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
