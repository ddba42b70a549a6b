"""Generalization onset (paper A).

t#_j is the earliest checkpoint t from which test sample j stays correct: over the
checkpoints t, t+1, ..., T the mean accuracy is above ``min_accuracy`` and there are at
most ``max_errors`` errors. With ``require_correct_at_onset`` (our choice, default on)
j must also be correct at t itself, so the onset never sits on a wrong answer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grokpath.memorization import sample_step_matrix


def correctness_matrix(samples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long (sample_id, step, correct) frame to (sample_ids (M,), steps (C,), correct (M, C) bool)."""
    sample_ids, steps, wide = sample_step_matrix(samples, "correct", "eval samples", "eval result")
    return sample_ids, steps, wide.to_numpy(dtype=bool)


def onset_index(
    correct: np.ndarray, min_accuracy: float = 0.8, max_errors: int = 1, require_correct_at_onset: bool = True
) -> np.ndarray:
    """Per sample, the index of its onset checkpoint t#, or -1 if it never generalizes."""
    correct = np.asarray(correct, dtype=bool)
    n_ckpt = correct.shape[1]
    # suffix sums over t..T
    n_correct = np.flip(np.cumsum(np.flip(correct, axis=1), axis=1), axis=1)
    n_remaining = np.arange(n_ckpt, 0, -1)
    ok = (n_correct / n_remaining > min_accuracy) & (n_remaining - n_correct <= max_errors)
    if require_correct_at_onset:
        ok &= correct
    return np.where(ok.any(axis=1), ok.argmax(axis=1), -1)


def onset_steps(
    samples: pd.DataFrame, min_accuracy: float = 0.8, max_errors: int = 1, require_correct_at_onset: bool = True
) -> pd.DataFrame:
    """t# per test sample: (sample_id, generalized, t_hash_step)."""
    sample_ids, steps, correct = correctness_matrix(samples)
    index = onset_index(correct, min_accuracy, max_errors, require_correct_at_onset)
    return pd.DataFrame(
        {
            "sample_id": sample_ids.astype(str),
            "generalized": index >= 0,
            "t_hash_step": pd.array([int(steps[k]) if k >= 0 else None for k in index], dtype="Int64"),
        }
    )
