"""The seeds study: one workflow per seed in its own directory, and the summary's ranges and checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from grokpath import seeds_study
from grokpath.config import validate
from grokpath.seeds_study import SEED_TARGETS, TABLE1, seed_dir, snakemake_command, summary_markdown


def test_schema_default_is_one_seed():
    assert validate({})["pretrain"]["seeds"] == [0]


def test_command_runs_the_project_snakefile_in_the_seed_directory(tmp_path):
    repo = Path("/repo")
    cmd = snakemake_command(repo, seed_dir(tmp_path, 3), [repo / "config/config.yaml", tmp_path / "seed.yaml"], 2)
    assert cmd[1 : 1 + len(SEED_TARGETS)] == SEED_TARGETS  # targets before the many-valued options
    assert cmd[cmd.index("--snakefile") + 1] == "/repo/Snakefile"
    assert cmd[cmd.index("--directory") + 1] == str(tmp_path / "seed_3")
    assert cmd[cmd.index("--configfile") + 1 :] == ["/repo/config/config.yaml", str(tmp_path / "seed.yaml")]
    assert cmd[cmd.index("--cores") + 1] == "2"


def _per_domain(seed, acc, delayed, entropy, r_distance):
    rows = []
    for d, a, g, e, r in zip(["code", "math"], acc, delayed, entropy, r_distance):
        row = {
            "seed": seed,
            "domain": d,
            "final_accuracy": a,
            "delay_checkpoints": 3 if g else 0,
            "delayed_generalization": g,
            "epsilon": 0.001 * (seed + 1),
            "token_entropy_final": e,
        }
        for m in TABLE1:
            value = r if m == "pathway_distance" else -0.5
            row[f"r_{m}"] = value
            row[f"sign_{m}"] = "+" if value > 0 else "−"
        rows.append(row)
    return rows


def test_summary_ranges_and_checks_by_hand():
    per_domain = pd.DataFrame(
        _per_domain(0, [0.9, 0.85], [True, True], [1.0, 1.2], [0.4, -0.3])
        + _per_domain(1, [0.95, 0.7], [True, False], [1.1, 1.5], [0.6, 0.2])
    )
    checkpoints = pd.DataFrame(
        {
            "seed": [0, 0, 1, 1] * 2,
            "domain": ["code"] * 4 + ["math"] * 4,
            "step": [10, 20] * 4,
            **{c: np.arange(8.0) for c in ["pathway_distance", "drift_from_first", "n_distinct", "consistency", "mean_cosine"]},
        }
    )
    text = summary_markdown(per_domain, checkpoints, {"min_accuracy": 0.8, "min_delayed": 2, "max_entropy": 1.456})
    assert "| code | 0.90–0.95 | 3 | 2/2 | 0.0010–0.0020 | 1.00–1.10 | 0.40–0.60 |" in text
    assert "| math | 0.70–0.85 | 0–3 | 1/2 |" in text
    # code's distance rows: first checkpoint 0 (seed 0) and 2 (seed 1), last 1 and 3
    assert "| code | 0.00–2.00 → 1.00–3.00 |" in text
    assert "| final test accuracy ≥ 0.8 in every domain | 1/2 |" in text  # seed 1's math is 0.70
    assert "| delayed generalization in ≥ 2 domains | 1/2 |" in text
    assert "(0.7 · log K) in every domain | 1/2 |" in text  # seed 1's math entropy 1.5 > 1.456
    # code keeps a + sign for distance in both seeds, math flips
    assert "sign of r(pathway_distance, accuracy) the same in every seed: code |" in text
    assert "sign of r(consistency, accuracy) the same in every seed: code, math |" in text


def test_the_default_seed_is_the_default_workflow(tmp_path):
    home = (0, Path("/repo"))
    assert seed_dir(tmp_path, 0, home) == Path("/repo")  # its results/ are the default run's
    assert seed_dir(tmp_path, 1, home) == tmp_path / "seed_1"
    assert seed_dir(tmp_path, 0) == tmp_path / "seed_0"


@pytest.mark.e2e
def test_gather_reads_the_pipelines_own_tables(smoke_run, tmp_path):
    """One seed's rows from a real smoke run equal the pipeline's tables they come from."""
    from conftest import REPO

    from grokpath.config import deep_merge
    from grokpath.io import read_metadata
    from grokpath.seeds_study import gather

    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = validate(deep_merge(base, yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())))
    per_domain, checkpoints = gather(cfg, [0], tmp_path, home=(0, smoke_run))
    results = smoke_run / "results"
    onset = pd.read_csv(results / "tables" / "onset.csv").set_index("domain")
    corr = pd.read_csv(results / "tables" / "correlations.csv").set_index(["domain", "metric"])
    calibration = read_metadata(results / "metrics" / "memorization.parquet")["calibration"]
    assert sorted(per_domain["domain"]) == sorted(cfg["domains"])
    for row in per_domain.itertuples():
        assert row.final_accuracy == onset.loc[row.domain, "final_accuracy"]
        assert row.epsilon == calibration[row.domain]["epsilon"]
        r = corr.loc[(row.domain, "pathway_distance"), "pearson"]
        assert row.r_pathway_distance == r or (np.isnan(r) and np.isnan(row.r_pathway_distance))
    curves = pd.read_parquet(results / "metrics" / "curves.parquet")
    assert len(checkpoints) == len(curves)
    merged = checkpoints.merge(curves, on=["domain", "step"], suffixes=("", "_curves"))
    np.testing.assert_array_equal(merged["accuracy"], merged["accuracy_curves"])
    first = checkpoints[checkpoints["step"] == checkpoints["step"].min()]
    assert (first["drift_from_first"] == 0).all()  # every pathway equals itself at the first checkpoint
    assert {f"distance_layer{i}" for i in range(cfg["pretrain"]["num_layers"])} <= set(checkpoints.columns)
    assert (tmp_path / "seeds.csv").is_file() and (tmp_path / "checkpoints.csv").is_file()
    assert (tmp_path / "summary.md").read_text().startswith("Seeds 0 ")
    # the controls across seeds: seed 0's rows are the run's own controls.csv
    across = pd.read_csv(tmp_path / "controls.csv")
    own = pd.read_csv(results / "tables" / "controls.csv")
    assert (across["seed"] == 0).all() and len(across) == len(own)
    np.testing.assert_array_equal(across["partial"], own["partial"])
    distance = across[(across["metric"] == "pathway_distance") & ~across["control_domain"]]
    summary = (tmp_path / "summary.md").read_text()
    for row in distance.itertuples():
        assert f"| pathway_distance | {row.domain} | s0: " in summary


def test_a_seed_starts_as_soon_as_any_running_seed_ends(tmp_path, monkeypatch):
    """Two slots, seed 0 slow: seed 2 takes seed 1's slot when seed 1 ends, not seed 0's."""
    import sys
    import time

    starts = tmp_path / "starts"
    starts.mkdir()

    def command(repo, workdir, configfiles, cores, extra_targets=()):
        seed = int(Path(workdir).name.removeprefix("seed_"))
        seconds = 3.0 if seed == 0 else 0.2
        script = (
            f"import pathlib, time; pathlib.Path({str(starts)!r}, '{seed}').write_text(repr(time.time())); time.sleep({seconds})"
        )
        return [sys.executable, "-c", script]

    monkeypatch.setattr(seeds_study, "snakemake_command", command)
    t0 = time.time()
    seeds_study.run_seeds([0, 1, 2], tmp_path / "out", [], cores=1, concurrent=2)
    started = {int(p.name): float(p.read_text()) for p in starts.iterdir()}
    assert sorted(started) == [0, 1, 2]
    assert started[2] - t0 < 2.0, started  # seed 0 still runs until t0 + 3 s
    assert time.time() - t0 < 5.0
