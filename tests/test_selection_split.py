"""The selection split: whole groups or stratified rows, seeded, every row on exactly one side."""

import logging
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


def test_half_the_groups_holds_one_out_and_keeps_one_for_training():
    train, select = selection_split(0.5, labels=[0, 1, 0, 1], groups=["x", "x", "y", "y"], seed=0)
    assert len(train) == 2 and len(select) == 2


@pytest.mark.parametrize("groups", [None, ["x", "x", "y", "y"] * 3])
def test_a_share_above_one_half_is_refused_with_the_share_kept_named(groups):
    # 0.9 on 10 rows used to train on 2 rows without a word: the share kept typed for the share held out.
    with pytest.raises(ValueError, match=r"share 0.9 holds out more rows than it trains on .* pass share 0.1"):
        selection_split(0.9, labels=[0, 1] * 6, groups=groups, seed=0)


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


def test_groups_that_each_overshoot_the_tolerance_are_refused():
    groups = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    with pytest.raises(ValueError, match=r"gives 20 of 100 rows \(20%\), more than 5% off the share asked \(10%\)"):
        selection_split(0.1, groups=groups, seed=0)
    train, select = selection_split(0.2, groups=groups, seed=0)  # the closest group, when within the tolerance
    assert {groups[i] for i in select} == {"c"} and len(train) == 80


def _best_reachable(sizes, share):
    """The held-out row count nearest share x rows over every combination of whole groups (brute force)."""
    total, target = sum(sizes), share * sum(sizes)
    sums = {
        sum(s for s, bit in zip(sizes, f"{mask:0{len(sizes)}b}") if bit == "1")
        for mask in range(1, 2 ** len(sizes) - 1)
    }
    return min(sums, key=lambda x: abs(x - target)), total


@pytest.mark.parametrize("sizes", [[38, 6, 6, 6, 44], [30, 9, 9, 9, 9, 34], [25, 25, 5, 5, 5, 5, 30]])
def test_a_large_group_met_first_does_not_block_a_closer_combination(sizes):
    # The greedy pass alone held out 38% of [38, 6, 6, 6, 44] at 0.2 on some seeds, where 18% is reachable.
    groups = [g for g, size in enumerate(sizes) for _ in range(size)]
    best, total = _best_reachable(sizes, 0.2)
    for seed in range(40):
        train, select = selection_split(0.2, groups=groups, seed=seed)
        assert abs(len(select) - 0.2 * total) == abs(best - 0.2 * total), (seed, len(select))


def test_rows_hold_out_the_share_asked_when_every_label_has_two_rows():
    # One row of each label used to be held out at least: 100 labels x 2 rows at 0.1 held out 50%.
    labels = [i // 2 for i in range(200)]
    for seed in range(5):
        train, select = selection_split(0.1, labels=labels, seed=seed)
        assert len(select) == 20 and len({labels[i] for i in select}) == 20
        assert not {labels[i] for i in select} - {labels[i] for i in train}  # every held-out label also trains
    from hf_swa.training.splits import held_out_share

    assert held_out_share(train, select) == 0.1


def test_rows_round_the_total_not_each_label():
    # Ten labels of 3 rows at 0.2: 0.6 rows each rounds up to 1 each (30% held out); the total, 6, is what is asked.
    labels = [i // 3 for i in range(30)]
    train, select = selection_split(0.2, labels=labels, seed=0)
    assert len(select) == 6 and max(Counter(labels[i] for i in select).values()) == 1


def test_the_share_held_out_is_logged_beside_the_share_asked(caplog):
    groups = [g for g, size in enumerate([38, 6, 6, 6, 44]) for _ in range(size)]
    with caplog.at_level(logging.INFO, logger="hf_swa"):
        selection_split(0.2, groups=groups, seed=0)
    assert "Selection split: 18 of 100 rows held out (18.0%; 20.0% asked)." in caplog.text
