"""Grid cells of the circuits sweeps: which runs the config asks for, and one cell's job.

A cell is (task, n_layers, d_h, D, split_ffn): all ``circuits.n_seeds`` seeds of it
train in one process (batched). Snakemake fans the cells out as rule wildcards, or, with
``circuits.one_job``, trains them all in one job (``train_sweep``).

- ``add`` / ``square``: D = training pairs; the grids are ``circuits.grids.<name>``.
- ``memorize``: the capacity runs, D = P^2 (all pairs, random symmetric labels).
- ``mix`` / ``mix_split``: the emergence runs, D = number of random-label
  subtraction pairs added to ``circuits.emergence.n_add`` addition pairs;
  ``mix_split`` uses the split FFN.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from grokpath.io import config_hash, provenance, write_frame

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

CELL_TASKS = ("add", "square", "memorize", "mix", "mix_split")


def seeds_of(circuits: dict) -> list[int]:
    return [int(circuits["seed"]) + i for i in range(int(circuits["n_seeds"]))]


def grid_cells(circuits: dict) -> list[tuple[str, int, int]]:
    """(task, d_h, D) of every 1-layer grid run: the union of all grids plus the capacity runs."""
    P = int(circuits["P"])
    cells = set()
    for name, grid in circuits["grids"].items():
        if grid["task"] not in ("add", "square"):
            raise ValueError(f"circuits.grids.{name}.task must be add or square, got '{grid['task']}'")
        for D in grid["D"]:
            if not 0 < D < P * P:
                raise ValueError(f"circuits.grids.{name}.D value {D} must be in 1..{P * P - 1} (P={P})")
            cells.update((grid["task"], int(d_h), int(D)) for d_h in grid["d_h"])
    cells.update(("memorize", int(d_h), P * P) for d_h in circuits["capacity"]["d_h"])
    return sorted(cells)


def emergence_cells(circuits: dict) -> list[tuple[str, int, int, int]]:
    """(task, n_layers, d_h, n_sub) of every emergence run."""
    em = circuits["emergence"]
    P = int(circuits["P"])
    if not 0 < em["n_add"] < P * P:
        raise ValueError(f"circuits.emergence.n_add={em['n_add']} must be in 1..{P * P - 1}")
    tasks = ["mix_split" if split else "mix" for split in em["split_ffn"]]
    return sorted({(t, int(L), int(d_h), int(n_sub)) for t in tasks for L, d_h in em["sizes"] for n_sub in em["n_sub"]})


def sweep_runs(circuits: dict, runs_dir: Path | str) -> list[tuple[dict, Path]]:
    """Every cell of the sweep: ``train_cell``'s arguments and its run file under ``runs_dir``."""
    runs_dir = Path(runs_dir)
    cells = [({"task": t, "d_h": d_h, "D": D}, runs_dir / t / f"dh{d_h}_D{D}.parquet") for t, d_h, D in grid_cells(circuits)]
    cells += [
        ({"task": t, "n_layers": L, "d_h": d_h, "D": D}, runs_dir / t / f"L{L}_dh{d_h}_D{D}.parquet")
        for t, L, d_h, D in emergence_cells(circuits)
    ]
    return cells


def train_sweep(circuits: dict, runs: list[Path], threads: int | None = None) -> None:
    """Train every cell of the sweep in this process, one after the other (``circuits.one_job``).

    ``runs``: the run files the rule declares, ``<runs_dir>/<task>/<cell>.parquet`` (``sweep_runs``).
    """
    from tqdm import tqdm

    cells = sweep_runs(circuits, Path(runs[0]).parent.parent) if runs else []
    if sorted(str(out) for _, out in cells) != sorted(str(p) for p in runs):
        raise ValueError(f"circuits_sweep: the run files {[str(p) for p in runs][:3]}... are not the sweep's cells")
    for cell, out in tqdm(cells, desc="circuits sweep", unit="cell"):
        log.info("cell %s -> %s", cell, out)
        train_cell(circuits, out=out, threads=threads, **cell)


def train_cell(
    circuits: dict, task: str, d_h: int, D: int, out: Path | str, n_layers: int = 1, threads: int | None = None
) -> None:
    """Train all seeds of one cell and write their curves to ``out`` (Parquet).

    ``threads``: the job's torch CPU threads, in place of ``circuits.train.threads``.
    """
    # torch only here: the workflow imports this module to name the cells' files
    from grokpath.circuits.model import ModelSpec, n_params
    from grokpath.circuits.tasks import make_task, vocab_size
    from grokpath.circuits.train import train_models

    if task not in CELL_TASKS:
        raise ValueError(f"unknown circuits cell task '{task}'; known: {', '.join(CELL_TASKS)}")
    P, train = int(circuits["P"]), circuits["train"]
    if threads:
        train = {**train, "threads": int(threads)}
    seeds = seeds_of(circuits)
    split_ffn = task == "mix_split"
    if task in ("mix", "mix_split"):
        n_add, n_sub = int(circuits["emergence"]["n_add"]), int(D)
        data = make_task("mix", P, seeds, n_add, n_sub=n_sub)
    else:
        n_add, n_sub = int(D), 0
        data = make_task(task, P, seeds, n_add)
    spec = ModelSpec(
        P=P,
        vocab=vocab_size(P),
        d_h=int(d_h),
        n_heads=int(train["n_heads"]),
        n_layers=int(n_layers),
        mlp_ratio=int(train["mlp_ratio"]),
        split_ffn=split_ffn,
        init_scale=float(train["init_scale"]),
    )
    curves, info = train_models(data, spec, seeds, train)
    curves["n_train"] = n_add  # D: the task's own training pairs (mix: the addition pairs)
    identity = {
        "task": task,
        "P": P,
        "d_h": int(d_h),
        "n_layers": int(n_layers),
        "split_ffn": split_ffn,
        "n_sub": n_sub,
        "n_params": n_params(spec),
    }
    for i, (k, v) in enumerate(identity.items()):
        curves.insert(i, k, v)
    write_frame(curves, out, metadata=provenance(circuits_config_hash=config_hash(circuits), **info))


# ---------------------------------------------------------------- classify + figures (file level)
def read_runs(paths: list[Path | str]) -> pd.DataFrame:
    import pandas as pd

    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"circuits run files not found: {missing[:3]}")
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def classify_files(circuits: dict, run_paths: list[Path | str], out: Path | str) -> None:
    from grokpath.circuits.regimes import classify_runs

    curves = read_runs(run_paths)
    regimes = classify_runs(curves, circuits["regimes"])
    counts = regimes["label"].value_counts().to_dict()
    log.info("regimes of %d runs: %s", len(regimes), {k: v for k, v in counts.items() if v})
    write_frame(regimes, out, metadata=provenance(regimes=circuits["regimes"], P=int(circuits["P"])))


def classify_paper_a_file(circuits: dict, curves_path: Path | str, out: Path | str) -> None:
    import pandas as pd

    from grokpath.circuits.regimes import classify_paper_a

    if not Path(curves_path).is_file():
        raise FileNotFoundError(f"paper A curves not found: {curves_path}")
    table = classify_paper_a(pd.read_parquet(curves_path), circuits["regimes"])
    log.info("paper A regimes: %s", dict(zip(table["task"], table["label"])))
    write_frame(table, out, metadata=provenance(regimes=circuits["regimes"]))


def grid_runs(regimes, grid: dict):
    """Rows of ``regimes`` that belong to one named grid (1-layer, its task, d_h and D)."""
    return regimes[
        (regimes["task"] == grid["task"])
        & (regimes["n_layers"] == 1)
        & regimes["d_h"].isin(grid["d_h"])
        & regimes["n_train"].isin(grid["D"])
    ]


def write_figures(
    circuits: dict, regimes_path: Path | str, run_paths: list[Path | str], outs: list[Path | str], style: dict | None = None
) -> None:
    """Render every requested paper-B figure; ``outs`` are .png paths named figNN_<name>.png (PDF beside)."""
    import pandas as pd
    import seaborn as sns

    from grokpath.figures import paper_b
    from grokpath.figures.common import save_figure, style_of

    sns.set_theme(context=style_of(style)["context"], style="whitegrid")
    regimes = pd.read_parquet(regimes_path)
    curves = read_runs(run_paths)
    grids = circuits["grids"]

    def grid(name):
        if name not in grids:
            raise ValueError(f"paper B figures need circuits.grids.{name}")
        return grid_runs(regimes, grids[name])

    emergence = regimes[regimes["task"].isin(["mix", "mix_split"])]
    builders = {
        "phase_diagram": lambda: paper_b.phase_diagram(grid("grokking")),
        "example_runs": lambda: paper_b.example_runs(curves, grid("grokking")),
        "val_acc_vs_data": lambda: paper_b.val_acc_vs_data(grid("grokking")),
        "capacity": lambda: paper_b.capacity(regimes[regimes["task"] == "memorize"]),
        "double_descent": lambda: paper_b.double_descent(grid("double_descent"), "(a + b) mod P"),
        "double_descent_square": lambda: paper_b.double_descent(grid("double_descent_square"), "(a + b)² mod P"),
        "emergence": lambda: paper_b.emergence(emergence[emergence["task"] == "mix"]),
        "param_norm": lambda: paper_b.param_norm(curves, grid("grokking")),
        "split_ffn": lambda: paper_b.split_ffn(emergence),
    }
    for out in outs:
        out = Path(out)
        name = out.stem.split("_", 1)[1] if out.stem.startswith("fig") else out.stem
        if name not in builders:
            raise ValueError(f"unknown paper B figure '{out.name}'; known names: {sorted(builders)}")
        fig = builders[name]()
        save_figure(fig, out, style)
        log.info("wrote %s (+ .pdf)", out)
