"""grokpath.step: a rule's names become its function's arguments; exit 0 / 2 (user) / 1 (bug)."""

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from snakemake.iocontainers import Namedlist

from grokpath.step import run_snakemake_job, run_step, snakemake_names, step_arguments


def write_tables(tmp_path):
    paths = []
    for domain, values in (("math", [1.0, 2.0]), ("code", [3.0])):
        path = tmp_path / f"{domain}.parquet"
        pd.DataFrame({"domain": domain, "x": values}).to_parquet(path)
        paths.append(str(path))
    return paths


def job(tmp_path, inputs, **params):
    """A job object shaped as Snakemake hands it to a script, from Snakemake's own containers."""
    return SimpleNamespace(
        rule="metrics_gather",
        wildcards=Namedlist(fromdict={"table": "onset"}),
        input=Namedlist(fromdict={"inputs": inputs}),
        output=Namedlist(fromdict={"out": str(tmp_path / "all.parquet")}),
        params=Namedlist(fromdict={"call": "grokpath.metrics:gather", **params}),
        threads=2,
        log=Namedlist([str(tmp_path / "logs" / "gather.log")]),
    )


def test_a_snakemake_job_runs_its_function_and_logs_the_call(tmp_path):
    paths = write_tables(tmp_path)
    assert run_snakemake_job(job(tmp_path, paths)) == 0
    table = pd.read_parquet(tmp_path / "all.parquet")
    assert table["domain"].tolist() == ["math", "math", "code"] and table["x"].tolist() == [1.0, 2.0, 3.0]
    log = (tmp_path / "logs" / "gather.log").read_text()
    # the wildcard 'table' and the job's threads are not parameters of gather: not passed
    assert f"grokpath.metrics.gather(inputs=[{Path(paths[0])!r}, {Path(paths[1])!r}], out={tmp_path / 'all.parquet'!r})" in log


def test_names_share_one_namespace(tmp_path):
    smk = job(tmp_path, write_tables(tmp_path), table="twice")
    with pytest.raises(ValueError, match="rule metrics_gather: 'table' is named twice"):
        snakemake_names(smk)


def test_values_take_the_annotated_types():
    from grokpath.circuits.sweep import train_cell
    from grokpath.contamination import run_contamination

    kwargs = step_arguments(
        train_cell, {"circuits": {}, "task": "add", "d_h": "8", "D": "40", "out": "r.parquet", "threads": 2, "rule": "x"}
    )
    assert kwargs == {"circuits": {}, "task": "add", "d_h": 8, "D": 40, "out": "r.parquet", "threads": 2}
    tests = {"math": ("m/test_unfiltered.jsonl", "m/test.jsonl")}
    kwargs = step_arguments(run_contamination, {"cfg": {}, "checkpoint_dir": "c", "ckpt": "s", "tests": tests, "scores_out": "o"})
    assert kwargs["tests"] == {"math": [Path("m/test_unfiltered.jsonl"), Path("m/test.jsonl")]}
    # a single file where the function takes a list
    from grokpath.metrics import gather

    assert step_arguments(gather, {"inputs": "a.parquet", "out": "b.parquet"}) == {
        "inputs": [Path("a.parquet")],
        "out": Path("b.parquet"),
    }


def test_a_missing_argument_is_a_bug_with_its_traceback(tmp_path):
    log = tmp_path / "step.log"
    assert run_step("grokpath.metrics:gather", {"inputs": write_tables(tmp_path)}, log) == 1
    text = log.read_text()
    assert "Traceback" in text
    assert "grokpath.metrics.gather needs out: name them as a wildcard, input, output or param of the rule" in text


def test_the_users_error_is_one_line(tmp_path):
    log = tmp_path / "step.log"
    missing = str(tmp_path / "absent.parquet")
    assert (
        run_step("grokpath.circuits.sweep:classify_paper_a_file", {"circuits": {}, "curves_path": missing, "out": "x"}, log) == 2
    )
    lines = log.read_text().splitlines()
    assert [line.split(" ", 3)[2] for line in lines] == ["INFO", "ERROR"]  # the call, then one error line
    assert missing in lines[1] and "Traceback" not in log.read_text()
