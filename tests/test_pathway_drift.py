"""pathway_drift: distance to each sample's first-checkpoint pathway and pathway sharing, by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from grokpath.pathways import pathway_drift


def _frame(rows):
    return pd.DataFrame(rows, columns=["domain", "split", "step", "sample_id", "pathway"])


def test_drift_and_sharing_by_hand():
    frame = _frame(
        [
            # step 10: a and b share "1,2-3", c is on "0-3" (two distinct pathways, modal share 2/3)
            ("math", "train", 10, "a", "1,2-3"),
            ("math", "train", 10, "b", "1,2-3"),
            ("math", "train", 10, "c", "0-3"),
            # step 20: a unchanged (0); b "1,2-3" -> "2-3" drops "1," (2 edits); c "0-3" -> "0-1" (1 edit)
            ("math", "train", 20, "a", "1,2-3"),
            ("math", "train", 20, "b", "2-3"),
            ("math", "train", 20, "c", "0-1"),
        ]
    )
    got = pathway_drift(frame).set_index("step")
    assert got.loc[10, "drift_from_first"] == 0.0
    assert got.loc[20, "drift_from_first"] == pytest.approx((0 + 2 + 1) / 3)
    assert got.loc[10, "n_distinct"] == 2 and got.loc[20, "n_distinct"] == 3
    assert got.loc[10, "modal_share"] == pytest.approx(2 / 3)
    assert got.loc[20, "modal_share"] == pytest.approx(1 / 3)
    assert (got["n_samples"] == 3).all()


def test_expert_level_counts_one_edit_per_expert():
    frame = _frame([("code", "train", 1, "a", "10,2"), ("code", "train", 5, "a", "11,2")])
    # char level: "10" -> "11" is one character; expert level: expert 10 -> 11 is one expert
    # "10,2" -> "2": 3 characters but 1 expert
    assert pathway_drift(frame)["drift_from_first"].tolist() == [0.0, 1.0]
    frame2 = _frame([("code", "train", 1, "a", "10,2"), ("code", "train", 5, "a", "2")])
    assert pathway_drift(frame2)["drift_from_first"].tolist() == [0.0, 3.0]
    assert pathway_drift(frame2, level="expert")["drift_from_first"].tolist() == [0.0, 1.0]


def test_domains_and_splits_are_separate_and_late_samples_are_skipped():
    frame = _frame(
        [
            ("math", "train", 1, "a", "1"),
            ("math", "train", 2, "a", "2"),
            ("math", "train", 2, "z", "7"),  # not at the first checkpoint: counted in sharing, not drift
            ("code", "train", 3, "a", "5"),
            ("code", "train", 4, "a", "5"),
        ]
    )
    got = pathway_drift(frame)
    math2 = got[(got.domain == "math") & (got.step == 2)].iloc[0]
    assert math2.drift_from_first == 1.0 and math2.n_distinct == 2 and math2.n_samples == 2
    assert got[got.domain == "code"]["drift_from_first"].tolist() == [0.0, 0.0]


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="pathway"):
        pathway_drift(pd.DataFrame({"domain": [], "split": [], "step": [], "sample_id": []}))
