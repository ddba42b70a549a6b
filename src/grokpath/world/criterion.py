"""Does a mini-world run grok? The delayed-generalization criterion, per domain.

A domain shows delayed generalization when its training loss has settled (stays
within ``delta`` of its final value from some checkpoint on) at least
``min_gap`` checkpoints before its test accuracy first exceeds half its final
value, and the final test accuracy is above ``min_final_accuracy`` (so the rise
is real, not noise around zero).
"""

from __future__ import annotations

import pandas as pd

__all__ = ["grokking_criterion"]


def _domain_verdict(curve: pd.DataFrame, loss_column: str, delta: float, min_gap: int, min_final_accuracy: float) -> dict:
    curve = curve.sort_values("step").reset_index(drop=True)
    loss, accuracy = curve[loss_column].to_numpy(), curve["test_accuracy"].to_numpy()
    settled = abs(loss - loss[-1]) <= delta
    # first checkpoint from which the loss stays settled (the last one always is)
    converged = next(i for i in range(len(curve)) if settled[i:].all())
    above = [i for i in range(len(curve)) if accuracy[i] > accuracy[-1] / 2]
    onset = above[0] if above and accuracy[-1] > 0 else None
    gap = None if onset is None else onset - converged
    return {
        "loss_settled_at": int(curve["step"].iloc[converged]),
        "accuracy_half_at": None if onset is None else int(curve["step"].iloc[onset]),
        "gap_checkpoints": gap,
        "final_loss": float(loss[-1]),
        "final_test_accuracy": float(accuracy[-1]),
        "groks": bool(gap is not None and gap >= min_gap and accuracy[-1] > min_final_accuracy),
    }


def grokking_criterion(
    curves: pd.DataFrame,
    loss_column: str = "train_loss",
    delta: float = 0.05,
    min_gap: int = 2,
    min_final_accuracy: float = 0.5,
) -> pd.DataFrame:
    """One row per domain of ``curves`` (columns domain, step, ``loss_column``, test_accuracy).

    Columns: domain, loss_settled_at, accuracy_half_at, gap_checkpoints (None when
    accuracy never passes half its final value), final_loss, final_test_accuracy, groks.
    """
    missing = {"domain", "step", loss_column, "test_accuracy"} - set(curves.columns)
    if missing:
        raise ValueError(f"grokking_criterion: curves lack column(s) {sorted(missing)}")
    rows = [
        {"domain": domain, **_domain_verdict(curve, loss_column, delta, min_gap, min_final_accuracy)}
        for domain, curve in curves.groupby("domain", sort=False)
    ]
    return pd.DataFrame(rows)
