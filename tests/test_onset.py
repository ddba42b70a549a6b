"""Generalization onset t# on hand-made correctness tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grokpath.metrics import run_onset
from grokpath.onset import onset_index, onset_steps


def index(rows, **kwargs) -> list[int]:
    return onset_index(np.array(rows, dtype=bool), **kwargs).tolist()


def test_onset_stays_correct():
    # t=0: 4/5 = 0.8 is not above 0.8; t=1: 4/4
    assert index([[0, 1, 1, 1, 1]]) == [1]


def test_at_most_one_error_is_allowed():
    row = [[0, 1, 1, 1, 0, 1, 1]]  # from t=1: 5/6 = 0.83 > 0.8 with one error
    assert index(row) == [1]
    assert index(row, max_errors=0) == [5]


def test_two_errors_are_too_many_even_above_min_accuracy():
    row = [[1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1]]  # t=0: 9/11 = 0.82 but 2 errors; t=2: 8/9, 1 error
    assert index(row) == [2]


def test_require_correct_at_onset():
    row = [[0, 1, 1, 1, 1, 1, 1]]  # t=0: 6/7 = 0.86 with one error
    assert index(row, require_correct_at_onset=False) == [0]
    assert index(row, require_correct_at_onset=True) == [1]


def test_never_generalizes():
    assert index([[1, 0, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0]]) == [-1, -1]


def test_onset_steps_frame_and_missing_row():
    samples = pd.DataFrame({"sample_id": ["p"] * 3 + ["q"] * 3, "step": [5, 10, 15] * 2, "correct": [0, 1, 1, 0, 0, 0]}).astype(
        {"correct": bool}
    )
    frame = onset_steps(samples)
    assert frame["generalized"].tolist() == [True, False]
    assert frame["t_hash_step"].iloc[0] == 10 and pd.isna(frame["t_hash_step"].iloc[1])
    with pytest.raises(ValueError, match="'q' at step 15"):
        onset_steps(samples.iloc[:-1])


def test_run_onset_file_to_file(tmp_path):
    paths = []
    for step, correct in ((100, [False, True]), (200, [True, True]), (300, [True, False])):
        path = tmp_path / f"step{step:06d}" / "samples.parquet"
        path.parent.mkdir()
        pd.DataFrame(
            {
                "ckpt": f"step{step:06d}",
                "step": step,
                "domain": ["math", "math", "code"],
                "sample_id": ["m0", "m1", "c0"],
                "correct": [*correct, True],
                "response": "",
                "target": "",
                "revision_sha": f"sha{step}",
            }
        ).to_parquet(path)
        paths.append(path)
    out = tmp_path / "onset.parquet"
    run_onset({"onset": {"min_accuracy": 0.8, "max_errors": 1, "require_correct_at_onset": True}}, "math", paths, out)
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["domain", "sample_id", "generalized", "t_hash_step", "t_hash_ckpt", "t_hash_revision_sha"]
    # m0: [0, 1, 1] -> 200; m1: [1, 1, 0] -> t=0 2/3, t=1 1/2, t=2 0/1: never
    assert frame.set_index("sample_id")["t_hash_ckpt"].to_dict()["m0"] == "step000200"
    assert frame.set_index("sample_id")["t_hash_revision_sha"].to_dict()["m0"] == "sha200"
    assert frame["generalized"].tolist() == [True, False]
