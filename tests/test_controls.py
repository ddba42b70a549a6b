"""Controls beside Table 1 (grokpath.controls) against values computed by hand on small inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grokpath.config import validate
from grokpath.controls import (
    DOES_NOT_SEPARATE,
    SEPARATES,
    UNDETERMINED,
    checkpoint_controls,
    checkpoint_decomposition,
    experts_per_layer,
    first_difference_correlation,
    layer_sum_matrix,
    log_steps,
    pair_entropy_correlation,
    partial_correlation,
    per_character_matrix,
    permute_layers,
    rowwise_partial,
    verdict,
)
from grokpath.correlations import distance_matrix

# four 2-layer pathways; pairwise Levenshtein worked out by hand (see each test)
ROUTES = ["1-2,3", "1,2-3", "0-3", "1-2"]


def upper(matrix):
    return matrix[np.triu_indices(len(matrix), k=1)]


# ---------------------------------------------------------------- time
def test_partial_correlation_by_hand():
    # z = 0..3; x and y regressed on (1, z): slopes 4/5 and 2/5, residuals
    # rx = (-0.3, -0.1, 1.1, -0.7), ry = (0.1, -0.3, 0.3, -0.1): Σ rx·ry = 0.4, Σ rx² = 1.8, Σ ry² = 0.2 -> r = 0.4 / 0.6
    z, x, y = [0, 1, 2, 3], [0, 1, 3, 2], [0, 0, 1, 1]
    assert partial_correlation(x, y, z) == pytest.approx(2 / 3, abs=1e-12)
    # the textbook formula from the three plain r gives the same: (r_xy − r_xz r_yz) / sqrt((1 − r_xz²)(1 − r_yz²))
    r_xy, r_xz, r_yz = 2 / np.sqrt(5), 0.8, 2 / np.sqrt(5)
    assert partial_correlation(x, y, z) == pytest.approx((r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz**2) * (1 - r_yz**2)))
    # log(step) against itself leaves no residual: no partial r, not a rounding-noise ±1
    t = np.log([25.0, 50.0, 100.0, 200.0, 400.0])
    assert np.isnan(partial_correlation(t, [0.1, 0.2, 0.5, 0.7, 0.9], t))
    # 3 checkpoints: residuals of a fitted line lie on one line, so the partial r is undefined
    assert np.isnan(partial_correlation([0, 1, 3], [0, 0, 1], [0, 1, 2]))
    # a NaN checkpoint drops out of all three series
    assert partial_correlation([*x, np.nan], [*y, 5.0], [*z, 4]) == pytest.approx(2 / 3)


def test_rowwise_partial_matches_the_single_series():
    rng = np.random.default_rng(0)
    x, y, z = rng.normal(size=(3, 6)), rng.normal(size=(3, 6)), np.log(np.arange(1.0, 7.0))
    r = rowwise_partial(x, y, z)
    assert r == pytest.approx([partial_correlation(a, b, z) for a, b in zip(x, y)])


def test_first_difference_correlation_by_hand():
    # Δx = (1, 2, −1, 3), Δy = (2, 1, 0, 3): centred cross sum 5.5, sums of squares 8.75 and 5
    x, y = [0, 1, 3, 2, 5], [0, 2, 3, 3, 6]
    assert first_difference_correlation(x, y) == pytest.approx(5.5 / np.sqrt(8.75 * 5))
    assert np.isnan(first_difference_correlation([0, 1, 2], [0, 1, 3]))  # 2 differences: no r


def test_log_steps_drop_step_zero():
    out = log_steps([0, 1, np.e])
    assert np.isnan(out[0]) and out[1:] == pytest.approx([0.0, 1.0])


# ---------------------------------------------------------------- length
def test_length_and_distance_per_character_by_hand():
    strings = ["1-2", "1-3", "1,0-2"]
    # lev: (1-2, 1-3) = 1 substitution; (1-2, 1,0-2) = insert ",0"; (1-3, 1,0-2) = insert ",0" + substitute 3 -> 2
    assert upper(distance_matrix(strings, "char")).tolist() == [1, 2, 3]
    # divided by the longer string: 1/3, 2/5, 3/5
    assert upper(per_character_matrix(strings)) == pytest.approx([1 / 3, 2 / 5, 3 / 5])
    assert experts_per_layer(strings).tolist() == [1.0, 1.0, 1.5]
    # at the expert level each expert is one symbol: lengths 3, 3, 4 and lev 1, 1, 2
    assert upper(per_character_matrix(strings, "expert")) == pytest.approx([1 / 3, 1 / 4, 2 / 4])


def test_decomposition_of_one_checkpoint_by_hand():
    members = pd.DataFrame(
        {
            "sample_id": ["a", "b", "c", "d", "e"],
            "pathway": ["1-2", "1-3", "1,0-2", "0-2", "0-3"],
            "entropy": [1.0, 2.0, 3.0, 1.0, 1.5],
            "t_star_step": [10, 10, 10, 20, 20],  # two memorization groups
        }
    )
    rng = np.random.default_rng(0)
    equal = checkpoint_decomposition(members, "equal", "char", 3, rng)
    # group t*=10: mean lev (1 + 2 + 3) / 3 = 2; group t*=20: lev(0-2, 0-3) = 1; equal weights -> 1.5
    assert equal["pathway_distance"] == pytest.approx(1.5)
    assert equal["distance_per_char"] == pytest.approx(((1 / 3 + 2 / 5 + 3 / 5) / 3 + 1 / 3) / 2)
    assert equal["pathway_length"] == pytest.approx((11 / 3 + 3) / 2)
    assert equal["n_samples"] == 5 and equal["n_distance_groups"] == 2
    # 4 pairs: pair entropies (1.5, 2, 2.5) with lev (1, 2, 3) and 1.25 with lev 1
    assert equal["entropy_pair_r"] == pytest.approx(np.corrcoef([1.5, 2.0, 2.5, 1.25], [1, 2, 3, 1])[0, 1])
    pairs = checkpoint_decomposition(members, "pairs", "char", 3, rng)
    assert pairs["pathway_distance"] == pytest.approx((3 * 2 + 1 * 1) / 4)  # by pairs: 3 and 1
    pooled = checkpoint_decomposition(members, "pooled", "char", 3, rng)
    assert pooled["pathway_distance"] == pytest.approx(upper(distance_matrix(members["pathway"].tolist(), "char")).mean())
    # a group of one sample has no pair and does not enter
    alone = checkpoint_decomposition(members.assign(t_star_step=[10, 10, 10, 20, 30]), "equal", "char", 3, rng)
    assert alone["pathway_distance"] == pytest.approx(2.0) and alone["n_samples"] == 3


# ---------------------------------------------------------------- what the distance can see
def test_layer_sum_and_additivity_by_hand():
    # layer 0 lists 1 | 1,2 | 0 | 1 -> pair lev 2, 1, 0, 3, 2, 1 (sum 9); layer 1 lists 2,3 | 3 | 3 | 2 -> 2, 2, 2, 0, 1, 1 (sum 8)
    assert upper(layer_sum_matrix(ROUTES)).tolist() == [4, 3, 2, 3, 3, 2]
    # the whole strings align across the layer boundary: lev(1-2,3 ; 1,2-3) = 2 swaps of '-' and ',', not 4
    assert upper(distance_matrix(ROUTES, "char")).tolist() == [2, 3, 2, 3, 3, 2]
    assert upper(distance_matrix(ROUTES, "char")).mean() / upper(layer_sum_matrix(ROUTES)).mean() == pytest.approx(15 / 17)


@pytest.mark.parametrize("seed", range(8))
def test_permuting_layers_leaves_the_layer_sum_mean_unchanged(seed):
    permuted = permute_layers(ROUTES, np.random.default_rng(seed))
    for k in range(2):  # every layer keeps its lists, only who carries them changes
        assert sorted(s.split("-")[k] for s in permuted) == sorted(s.split("-")[k] for s in ROUTES)
    assert upper(layer_sum_matrix(permuted)).sum() == 17  # = 9 + 8: a per-layer sum over all pairs
    assert len(set(permuted)) <= len(ROUTES)


def test_permutation_can_move_the_plain_distance():
    # swapping layer 1 between the first two routes gives "1-3", "1,2-2,3": lev 4 instead of 2, the layer sum stays 4
    swapped = ["1-3", "1,2-2,3", "0-3", "1-2"]
    assert upper(distance_matrix(swapped, "char")).sum() != upper(distance_matrix(ROUTES, "char")).sum()
    assert upper(layer_sum_matrix(swapped)).sum() == 17
    found = {tuple(permute_layers(ROUTES, np.random.default_rng(s))) for s in range(200)}
    assert tuple(swapped) in found  # the permutation reaches it


def test_pair_entropy_correlation_by_hand():
    d = np.array([[0, 1, 4], [1, 0, 2], [4, 2, 0]], float)
    e = np.array([0.0, 1.0, 3.0])
    # pairs (0,1), (0,2), (1,2): entropies 0.5, 1.5, 2 against distances 1, 4, 2
    assert pair_entropy_correlation(d, e) == pytest.approx(np.corrcoef([0.5, 1.5, 2.0], [1, 4, 2])[0, 1])


# ---------------------------------------------------------------- between domains
def _tiny_study():
    """Two domains at one checkpoint: two memorized samples each (one t* group) and one not memorized."""
    rows = []
    for domain, routes in (("alpha", ["1-2", "1-3", "3-3"]), ("beta", ["1,0-2", "0-2", "2-2"])):
        for i, route in enumerate(routes):
            memorized = i < 2
            rows.append(
                {
                    "domain": domain,
                    "ckpt": "step10",
                    "step": 10,
                    "split": "train",
                    "sample_id": f"{domain}{i}",
                    "pathway": route,
                    "entropy": 1.0 + i,
                    "memorized": memorized,
                    "t_star_step": 5 if memorized else None,
                    "loss": 0.1,
                }
            )
    samples = pd.DataFrame(rows).astype({"t_star_step": "Int64"})
    curves = pd.DataFrame(
        {"domain": ["alpha", "beta"], "ckpt": "step10", "step": 10, "accuracy": [0.5, 0.1], "pathway_distance": [1.0, 2.0]}
    )
    distances = pd.DataFrame(
        {
            "ckpt": "step10",
            "step": 10,
            "domain": ["alpha", "beta"],
            "group": "memorized",
            "threshold": 0.7,
            "layer": -1,
            "mean_distance": [1.0, 2.0],
            "n_pairs": 1,
            "sampled": False,
        }
    )
    cross = pd.DataFrame(
        {"ckpt": ["step10"], "step": [10], "domain_a": ["alpha"], "domain_b": ["beta"], "mean_distance": [2.25], "n_pairs": [9]}
    )
    return curves, samples, distances, cross


def test_between_domain_baseline_by_hand():
    curves, samples, distances, cross = _tiny_study()
    curves = curves.assign(revision_sha=["abc123", "abc123"])
    table = checkpoint_controls(validate({}), curves, samples, distances, cross).set_index("domain")
    assert table.loc["alpha", "revision_sha"] == "abc123"  # each checkpoint row names its hub commit
    # alpha's memorized 1-2, 1-3 against beta's memorized 1,0-2, 0-2: lev 2, 1, 3, 2 -> 2 (the not-memorized 2-2 is out)
    assert table.loc["alpha", "between_distance"] == pytest.approx(2.0)
    assert table.loc["alpha", "within_pooled"] == 1.0  # distances.parquet's all-pairs row of the group
    assert table.loc["alpha", "within_minus_between"] == pytest.approx(-1.0)
    assert table.loc["alpha", "within_over_between"] == pytest.approx(0.5)
    assert table.loc["beta", "between_distance"] == pytest.approx(2.0)  # symmetric with one other domain
    assert table.loc["beta", "within_minus_between"] == pytest.approx(0.0)
    assert table.loc["alpha", "cross_distance_all"] == 2.25  # fig 12's all-samples number, as given
    assert table.loc["alpha", "pathway_distance"] == 1.0 and table.loc["beta", "pathway_distance"] == 2.0


def test_a_distance_from_other_settings_is_refused():
    curves, samples, distances, cross = _tiny_study()
    with pytest.raises(ValueError, match="alpha step10: pathway distance"):
        checkpoint_controls(validate({}), curves.assign(pathway_distance=[1.5, 2.0]), samples, distances, cross)


# ---------------------------------------------------------------- the verdict
RULE = {"min_abs_r_time": 0.5, "min_change_ratio": 0.5}


def test_verdict_rule():
    gen = ["math", "code"]
    change = {"math": -10.0, "code": -6.0, "control": -5.0}
    # control falls with time as the generalizing domains do, by 5 of their median 8: does not separate
    assert verdict({"math": -0.9, "code": -0.8, "control": -0.7}, change, "control", gen, RULE)[0] == DOES_NOT_SEPARATE
    # the same trend but a quarter of the change: separates
    small = {**change, "control": -2.0}
    assert verdict({"math": -0.9, "code": -0.8, "control": -0.7}, small, "control", gen, RULE)[0] == SEPARATES
    # opposite sign, or no trend in control: separates
    assert verdict({"math": -0.9, "code": -0.8, "control": 0.7}, change, "control", gen, RULE)[0] == SEPARATES
    assert verdict({"math": -0.9, "code": -0.8, "control": -0.2}, change, "control", gen, RULE)[0] == SEPARATES
    # no trend in the generalizing domains, no control, undefined in control: undetermined
    assert verdict({"math": 0.1, "code": -0.2, "control": -0.9}, change, "control", gen, RULE)[0] == UNDETERMINED
    assert verdict({"math": -0.9, "code": -0.8}, change, None, gen, RULE)[0] == UNDETERMINED
    assert verdict({"math": -0.9, "code": -0.8, "control": np.nan}, change, "control", gen, RULE)[0] == UNDETERMINED
    assert verdict({"control": -0.9}, change, "control", [], RULE)[0] == UNDETERMINED


# ---------------------------------------------------------------- the end-of-run summary
def test_run_summary_names_what_is_missing(tmp_path):
    from grokpath.summary import REPORT_COMMAND, run_summary

    text = run_summary(tmp_path / "results")  # nothing there: no exception, every missing file named
    assert REPORT_COMMAND in text
    for name in ("metrics/curves.parquet", "tables/controls.csv", "tables/correlations.md"):
        assert f"missing: {tmp_path / 'results' / name}" in text


def test_run_summary_per_domain_lines(tmp_path):
    from grokpath.summary import run_summary

    results = tmp_path / "results"
    (results / "metrics").mkdir(parents=True)
    (results / "tables").mkdir()
    steps = [10, 20, 30, 40, 50]
    curves = pd.DataFrame(
        {
            "domain": ["math"] * 5 + ["control"] * 5,
            "step": steps * 2,
            # math: loss settled from step 20, accuracy above half its final 0.9 at step 40: a gap of 2 checkpoints
            "train_loss_all": [1.0, 0.01, 0.01, 0.01, 0.01] * 2,
            "accuracy": [0.0, 0.0, 0.1, 0.8, 0.9] + [0.05] * 5,
        }
    )
    curves.to_parquet(results / "metrics" / "curves.parquet")
    pd.DataFrame(
        {
            "domain": ["math", "control", "math", "control"],
            "metric": ["pathway_distance"] * 2 + ["consistency"] * 2,
            "pearson": [-0.9, np.nan, 0.5, np.nan],
            "partial": [-0.2, np.nan, 0.1, np.nan],
            "verdict": [DOES_NOT_SEPARATE] * 2 + [SEPARATES] * 2,
            "verdict_reason": ["same trend"] * 2 + ["control flat"] * 2,
        }
    ).to_csv(results / "tables" / "controls.csv", index=False)
    text = run_summary(results, validate({}))
    lines = text.splitlines()
    math = next(line for line in lines if line.strip().startswith("math:"))
    assert "final test accuracy 0.90" in math and "delayed generalization: yes (2 checkpoints" in math
    assert "distance r -0.90, partial r -0.20" in math
    control = next(line for line in lines if line.strip().startswith("control (memorize-only):"))
    assert "final test accuracy 0.05" in control and "delayed generalization: no" in control
    assert f"pathway distance: {DOES_NOT_SEPARATE} (same trend)" in text
    assert "pathway consistency C_i: separates (control flat)" in text
    assert "raw routing cosine: not in" in text
    assert f"missing: {results / 'tables' / 'onset.csv'}" in text
