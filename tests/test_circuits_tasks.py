"""Paper B tasks: labels, seeded disjoint splits, random-label symmetry, the multi-task mix."""

import numpy as np
import pytest

from grokpath.circuits.tasks import all_pairs, make_task, minus_token, plus_token, split_pairs, symmetric_random_labels


def test_labels_add_and_square_hand_computed():
    P = 7
    data = make_task("add", P, [0], 10)
    idx = 3 * P + 5  # a=3, b=5
    assert data.inputs[idx].tolist() == [3, plus_token(P), 5, P + 2]
    assert int(data.labels[0, idx]) == (3 + 5) % 7 == 1
    square = make_task("square", P, [0], 10)
    assert int(square.labels[0, idx]) == (8 * 8) % 7 == 1
    assert int(square.labels[0, 2 * P + 2]) == 16 % 7 == 2


def test_split_disjoint_covering_and_seeded():
    train, val = split_pairs(11, 40, seed=3)
    assert len(train) == 40 and len(val) == 121 - 40
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(range(121))
    again, _ = split_pairs(11, 40, seed=3)
    other, _ = split_pairs(11, 40, seed=4)
    assert np.array_equal(train, again)
    assert not np.array_equal(train, other)


def test_task_masks_disjoint_per_model_and_sizes():
    data = make_task("add", 13, [0, 1, 2], [30, 50, 30])
    assert data.train_mask.sum(1).tolist() == [30, 50, 30]
    assert not (data.train_mask & data.val_mask).any()
    assert (data.train_mask | data.val_mask).all()
    assert not np.array_equal(data.train_mask[0].numpy(), data.train_mask[2].numpy())  # seeds differ
    index, weight = data.train_index()
    assert index.shape == (3, 50) and weight.sum(1).tolist() == [30, 50, 30]


def test_random_labels_symmetric_seeded_and_varied():
    P = 17
    labels = symmetric_random_labels(P, seed=5).reshape(P, P)
    assert np.array_equal(labels, labels.T)
    assert labels.min() >= 0 and labels.max() < P
    assert len(np.unique(labels)) > P // 2
    assert np.array_equal(labels, symmetric_random_labels(P, seed=5).reshape(P, P))
    assert not np.array_equal(labels, symmetric_random_labels(P, seed=6).reshape(P, P))
    data = make_task("memorize", P, [5], P * P)
    assert data.train_mask.all() and not data.val_mask.any()
    pairs = all_pairs(P)
    assert np.array_equal(data.labels[0].numpy(), labels[pairs[:, 0], pairs[:, 1]])


def test_mix_adds_random_subtraction_with_its_own_token():
    P = 11
    data = make_task("mix", P, [0, 1], 40, n_sub=25)
    n = P * P
    assert data.inputs.shape == (2 * n, 4)
    assert (data.inputs[n:, 1] == minus_token(P)).all() and (data.inputs[:n, 1] == plus_token(P)).all()
    assert data.train_mask[:, :n].sum(1).tolist() == [40, 40]
    assert data.train_mask[:, n:].sum(1).tolist() == [25, 25]
    assert not data.val_mask[:, n:].any()  # validation is held-out addition only
    assert data.val_mask[:, :n].sum(1).tolist() == [n - 40, n - 40]
    sub = data.labels[0, n:].numpy().reshape(P, P)
    assert np.array_equal(sub, sub.T)
    assert data.is_minus[n:].all() and not data.is_minus[:n].any()


def test_bad_task_and_sizes_raise_naming_them():
    with pytest.raises(ValueError, match="unknown circuits task 'mul'"):
        make_task("mul", 7, [0], 10)
    with pytest.raises(ValueError, match=r"circuits grid D=50: must be in 1..49"):
        make_task("add", 7, [0], 50)
