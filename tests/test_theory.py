"""Fig. 8's synthetic MoE: effective dimension by hand, determinism, and the documented relation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grokpath.config import validate
from grokpath.theory import effective_dimension, run_theory, run_theory_seed


def small_theory(**over) -> dict:
    theory = validate(
        {"analysis": {"theory": {"n_samples": 120, "steps": 240, "log_every": 40, "lr": 0.01, "n_seeds": 1, **over}}}
    )
    return theory["analysis"]["theory"]


def test_effective_dimension_hand_values():
    # one layer, one expert (gates all 1): the kernel is X Xᵀ / n; X = 2 orthogonal unit rows -> eigenvalues 1/2, 1/2
    x = np.eye(2)
    gates = np.ones((2, 1, 1))
    # trace-normalized eigenvalues 0.5, 0.5; λ = 0.5 -> 2 × 0.5 / 1.0 = 1
    assert effective_dimension(gates, x, ridge=0.5) == pytest.approx(1.0)
    # shared routing cannot exceed rank(X): identical inputs -> one direction
    same = np.ones((4, 3))
    assert effective_dimension(np.full((4, 2, 4), 0.25), same, ridge=1e-9) == pytest.approx(1.0, abs=1e-6)
    # sample-specific one-hot routing on identical inputs: kernel diagonal -> 4 directions
    onehot = np.eye(4)[:, None, :].repeat(2, axis=1)
    assert effective_dimension(onehot, same, ridge=1e-9) == pytest.approx(4.0, abs=1e-6)


def test_theory_is_deterministic_and_structured_routing_lowers_both():
    theory = small_theory()
    first = run_theory_seed(theory, 0)
    pd.testing.assert_frame_equal(first, run_theory_seed(theory, 0))
    assert first["step"].tolist() == [0, 40, 80, 120, 160, 200, 240]
    start, end = first.iloc[0], first.iloc[-1]
    assert end["routing_loss"] < start["routing_loss"]
    assert end["mean_top_gate"] > start["mean_top_gate"]
    # the documented relation: both fall as routing becomes structured, and move together
    assert end["effective_dimension"] < 0.8 * start["effective_dimension"]
    assert end["pathway_distance"] < 0.5 * start["pathway_distance"]
    assert end["within_cluster_distance"] < end["pathway_distance"]
    r = np.corrcoef(first["effective_dimension"], first["pathway_distance"])[0, 1]
    assert r > 0.8


def test_run_theory_stacks_seeds():
    table = run_theory(small_theory(n_seeds=2, steps=40))
    assert sorted(table["seed"].unique()) == [0, 1] and len(table) == 4
