"""The selection split: which training rows are held out to choose among the candidates on.

Selection should score the candidates on rows that look like the data the model will meet. Rows
carved one by one from the training rows are in-distribution; when the model will meet new
documents, authors, sources or years, hold out whole groups instead, so that the selection sees
the same kind of shift (``groups``). Either way the split is seeded and stratified by label where
the data allow it. It works on plain lists, so it serves ``datasets``, pandas and lists alike.

Example:
    >>> labels = ["pos", "neg"] * 10
    >>> groups = [f"author{i // 4}" for i in range(20)]  # 5 authors, 4 rows each
    >>> train, select = selection_split(0.2, labels=labels, groups=groups, seed=0)
    >>> len(train), len(select), sorted({groups[i] for i in select})
    (16, 4, ['author2'])
    >>> set(groups[i] for i in train) & set(groups[i] for i in select)
    set()
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Hashable, List, Optional, Sequence, Tuple

__all__ = ["selection_split", "check_share"]


def check_share(share: float, name: str = "share") -> None:
    """Refuse a selection share outside (0, 1); `name` is how the caller's user sets it (e.g. a flag).

    >>> check_share(0.2)
    >>> check_share(1.0, "--swa_select_split")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --swa_select_split 1.0: must be a share of the training rows in (0, 1), e.g. 0.2 ...
    """
    if not 0.0 < share < 1.0:
        raise ValueError(
            f"{name} {share}: must be a share of the training rows in (0, 1), e.g. 0.2 to hold out 20% of them to "
            "choose among the SWA candidates on."
        )


def _check(share: float, labels: Optional[Sequence], groups: Optional[Sequence]) -> int:
    """The number of rows; raises on a share outside (0, 1), no rows, or columns of different lengths."""
    check_share(share)
    lengths = {len(column) for column in (labels, groups) if column is not None}
    if not lengths:
        raise ValueError("Pass labels, groups or both: the split needs to know the rows.")
    if len(lengths) > 1:
        raise ValueError(f"labels and groups have different lengths {sorted(lengths)}: one entry per row each.")
    return lengths.pop()


def _distance(counts: Counter, target: dict) -> float:
    return sum(abs(counts.get(label, 0) - wanted) for label, wanted in target.items())


def _by_groups(share: float, labels: Sequence, groups: Sequence, seed: int) -> List[int]:
    """Whole groups, in a seeded order, each taken when it brings the held-out label counts closer to
    ``share`` of each label's count (so the split is about `share` of the rows, stratified where it can be)."""
    members = defaultdict(list)
    for row, group in enumerate(groups):
        members[group].append(row)
    if len(members) < 2:
        raise ValueError(f"{len(members)} group: holding out whole groups needs at least 2 of them.")
    order = sorted(members, key=repr)
    random.Random(seed).shuffle(order)
    target = {label: share * count for label, count in Counter(labels).items()}
    held, counts = [], Counter()
    for group in order:
        added = counts + Counter(labels[row] for row in members[group])
        if _distance(added, target) < _distance(counts, target):
            held.append(group)
            counts = added
    if not held:  # every group alone overshoots the target: the one that comes closest
        held = [min(order, key=lambda g: _distance(Counter(labels[row] for row in members[g]), target))]
    if len(held) == len(members):  # a share this large swallows every group: keep the last one for training
        held.pop()
    return sorted(row for group in held for row in members[group])


def _by_rows(share: float, labels: Sequence, seed: int) -> List[int]:
    """`share` of each label's rows, at least one each, seeded."""
    rows_of = defaultdict(list)
    for row, label in enumerate(labels):
        rows_of[label].append(row)
    rng, held = random.Random(seed), []
    for label in sorted(rows_of, key=repr):
        rows = rows_of[label]
        rng.shuffle(rows)
        take = min(len(rows) - 1, max(1, round(share * len(rows))))
        held += rows[:take]
    if not held:
        raise ValueError("Every label has a single row: there is nothing to hold out for the selection.")
    return sorted(held)


def selection_split(
    share: float,
    labels: Optional[Sequence[Hashable]] = None,
    groups: Optional[Sequence[Hashable]] = None,
    seed: int = 0,
) -> Tuple[List[int], List[int]]:
    """``(train_rows, select_rows)``: row numbers, increasing, that together are every row once.

    Args:
        share: about this share of the rows is held out for the selection, in (0, 1).
        labels: one label per row; each label's rows are split by `share` where possible. Leave unset
            for regression targets.
        groups: one group per row (a document, author, source, year). Whole groups are held out, so no
            group has rows on both sides.
        seed: the same seed gives the same split.

    Raises:
        ValueError: for a share outside (0, 1), columns of different lengths, fewer than 2 groups, or
            too few rows to give both sides one.
    """
    n = _check(share, labels, groups)
    labels = list(labels) if labels is not None else [None] * n
    held = _by_groups(share, labels, list(groups), seed) if groups is not None else _by_rows(share, labels, seed)
    held_set = set(held)
    return [row for row in range(n) if row not in held_set], held
