"""The selection split: whole groups or stratified rows, seeded, every row on exactly one side."""

from collections import Counter

import pytest

from hf_swa import selection_split


def _labels_and_groups(n_groups=12, rows=(3, 5, 8)):
    labels, groups = [], []
    for g in range(n_groups):
        for r in range(rows[g % len(rows)]):
            labels.append("abc"[(g + r) % 3])
            groups.append(f"doc{g}")
    return labels, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_are_held_out_whole(seed):
    labels, groups = _labels_and_groups()
    train, select = selection_split(0.25, labels=labels, groups=groups, seed=seed)
    assert sorted(train + select) == list(range(len(labels)))  # every row once
    assert train == sorted(train) and select == sorted(select)
    assert not {groups[i] for i in train} & {groups[i] for i in select}
    # About a quarter of the rows, and every label on the selection side.
    assert abs(len(select) - 0.25 * len(labels)) <= max(Counter(groups).values())
    assert {labels[i] for i in select} == set(labels)


def test_same_seed_same_split_other_seed_other_groups():
    labels, groups = _labels_and_groups()
    first = selection_split(0.25, labels=labels, groups=groups, seed=3)
    assert selection_split(0.25, labels=labels, groups=groups, seed=3) == first
    chosen = {frozenset(groups[i] for i in selection_split(0.25, labels, groups, seed=s)[1]) for s in range(6)}
    assert len(chosen) > 1


def test_rows_are_stratified_by_label():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    train, select = selection_split(0.2, labels=labels, seed=5)
    assert Counter(labels[i] for i in select) == {"a": 12, "b": 6, "c": 2}
    assert sorted(train + select) == list(range(100))
    assert selection_split(0.2, labels=labels, seed=6)[1] != select


def test_groups_without_labels():
    groups = [i // 10 for i in range(100)]
    train, select = selection_split(0.3, groups=groups, seed=0)
    assert len(select) == 30 and len({groups[i] for i in select}) == 3


def test_a_share_that_swallows_every_group_keeps_one_for_training():
    train, select = selection_split(0.9, labels=[0, 1, 0, 1], groups=["x", "x", "y", "y"], seed=0)
    assert len(train) == 2 and len(select) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(share=0.0, labels=[0, 1]), "in \\(0, 1\\)"),
        (dict(share=1.0, labels=[0, 1]), "in \\(0, 1\\)"),
        (dict(share=0.5), "Pass labels, groups or both"),
        (dict(share=0.5, labels=[0, 1], groups=["a"]), "different lengths"),
        (dict(share=0.5, labels=[0, 1], groups=["a", "a"]), "at least 2"),
        (dict(share=0.5, labels=[0, 1]), "single row"),
    ],
)
def test_bad_input_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        selection_split(**kwargs)


def test_one_large_group_is_not_held_out_for_a_small_share():
    # One source of 80 rows and ten of 2: a 20% split holds out small groups, never the large one, on any seed.
    groups = ["big"] * 80 + [f"small{i // 2}" for i in range(20)]
    labels = [i % 2 for i in range(100)]
    for seed in range(50):
        train, select = selection_split(0.2, labels=labels, groups=groups, seed=seed)
        assert "big" not in {groups[i] for i in select} and 10 <= len(select) <= 30


def test_groups_that_each_overshoot_give_the_one_closest_to_the_share():
    groups = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    train, select = selection_split(0.1, groups=groups, seed=0)
    assert {groups[i] for i in select} == {"c"} and len(train) == 80
