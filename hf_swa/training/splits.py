"""The selection split: which training rows are held out to choose among the candidates on.

Selection should score the candidates on rows that look like the data the model will meet. Rows
carved one by one from the training rows are in-distribution; when the model will meet new
documents, authors, sources or years, hold out whole groups instead, so that the selection sees
the same kind of shift (``groups``). Either way the split is seeded and stratified by label where
the data allow it. It works on plain lists, so it serves ``datasets``, pandas and lists alike.

The share held out is as close to the share asked as whole rows (or whole groups) allow; a split
that cannot come within `SHARE_TOLERANCE` of it is refused rather than training on a much smaller
set than asked (`held_out_share` gives the share a split holds out, for the records).

Example:
    >>> labels = ["pos", "neg"] * 10
    >>> groups = [f"author{i // 4}" for i in range(20)]  # 5 authors, 4 rows each
    >>> train, select = selection_split(0.2, labels=labels, groups=groups, seed=0)
    >>> len(train), len(select), len({groups[i] for i in select}), held_out_share(train, select)
    (16, 4, 1, 0.2)
    >>> set(groups[i] for i in train) & set(groups[i] for i in select)
    set()
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections import Counter, defaultdict
from typing import Hashable, List, Optional, Sequence, Tuple

__all__ = ["selection_split", "check_share", "held_out_share", "SHARE_TOLERANCE", "MAX_SHARE"]

logger = logging.getLogger(__name__)

#: The held-out share may differ from the share asked by at most this much (0.05: 15% to 25% for 0.2), or by one
#: row where there are fewer than 20 rows; beyond that `selection_split` refuses.
SHARE_TOLERANCE = 0.05
#: The largest share held out: above it the selection would take more rows than training does.
MAX_SHARE = 0.5
# Swaps the label balancing of the group split tries at most (about a second of Python).
_SEARCH_BUDGET = 50_000


def check_share(share: float, name: str = "share") -> None:
    """Refuse a selection share outside (0, `MAX_SHARE`]; `name` is how the caller's user sets it (e.g. a flag).

    A share above one half holds out more rows than it trains on: it is refused, not warned about, because it is
    almost always the share *kept* typed for the share held out (0.9 for 0.1), and a run trained on a tenth of its
    rows is compute spent on the wrong question.

    >>> check_share(0.2)
    >>> check_share(1.0, "--swa_select_split")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --swa_select_split 1.0: must be a share of the training rows in (0, 1), e.g. 0.2 ...
    >>> check_share(0.9, "--swa_select_split")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --swa_select_split 0.9 holds out more rows than it trains on ... pass --swa_select_split 0.1.
    """
    if not 0.0 < share < 1.0:
        raise ValueError(
            f"{name} {share}: must be a share of the training rows in (0, 1), e.g. 0.2 to hold out 20% of them to "
            "choose among the SWA candidates on."
        )
    if share > MAX_SHARE:
        raise ValueError(
            f"{name} {share} holds out more rows than it trains on (it is the share held out to choose on, at most "
            f"{MAX_SHARE}): to train on {share:.0%} of the rows and choose on the rest, pass "
            f"{name} {round(1 - share, 6)}."
        )


def held_out_share(train: Sequence, select: Sequence) -> float:
    """The share of the rows a split holds out, rounded to 4 places (what the records say)."""
    return round(len(select) / (len(train) + len(select)), 4)


def _check(share: float, labels: Optional[Sequence], groups: Optional[Sequence]) -> int:
    """The number of rows; raises on a share outside (0, 1), no rows, or columns of different lengths."""
    check_share(share)
    lengths = {len(column) for column in (labels, groups) if column is not None}
    if not lengths:
        raise ValueError("Pass labels, groups or both: the split needs to know the rows.")
    if len(lengths) > 1:
        raise ValueError(f"labels and groups have different lengths {sorted(lengths)}: one entry per row each.")
    return lengths.pop()


def _tolerance_rows(n: int) -> float:
    """How many rows the held-out count may be off the share asked: `SHARE_TOLERANCE` of them, at least one."""
    return max(SHARE_TOLERANCE * n, 1)


def _nearest_total(sizes: list, target: float) -> List[int]:
    """The indices of a subset of `sizes` (not empty, not all) whose sum is nearest `target` (the lower on a tie):
    a subset-sum pass over the reachable totals up to the tolerance above `target`, as bits of one integer, each
    total remembering the size that first reached it, so that following those back gives the subset; the order of
    `sizes` decides among equal subsets. When no total is that low, the smallest size alone."""
    total = sum(sizes)
    cap = min(total - 1, math.floor(target + _tolerance_rows(total)))
    reach, first_by, mask = 1, {}, (1 << (cap + 1)) - 1
    for index, size in enumerate(sizes):
        new = (reach << size) & mask & ~reach
        if not new:
            continue
        reach |= new
        low = (new & -new).bit_length() - 1  # new totals come in a narrow band: walk it from its lowest bit
        new >>= low
        while new:
            bit = new & -new
            first_by[low + bit.bit_length() - 1] = index
            new ^= bit
    if not first_by:
        return [min(range(len(sizes)), key=sizes.__getitem__)]
    best = min(first_by, key=lambda s: (abs(s - target), s))
    chosen = []
    while best:
        chosen.append(first_by[best])
        best -= sizes[first_by[best]]
    return chosen


class _LabelBalance:
    """Whole groups swapped while that brings each label's held-out count nearer `share` of its rows without
    moving the held-out total off the share (first improvement, at most `_SEARCH_BUDGET` moves tried)."""

    def __init__(self, share: float, labels: Sequence, members: dict):
        self.counts = {g: Counter(labels[row] for row in rows) for g, rows in members.items()}
        self.target = {label: share * count for label, count in Counter(labels).items()}

    def change(self, counts: Counter, drop, add) -> Tuple[int, float]:
        """``(held-out rows added, change of the labels' distance to their targets)`` for a swap."""
        delta = Counter(self.counts[add])
        delta.subtract(self.counts[drop])
        change = 0.0
        for label, step in delta.items():
            now, want = counts.get(label, 0), self.target[label]
            change += abs(now + step - want) - abs(now - want)
        return sum(delta.values()), change

    def improve(self, held: set, order: list) -> set:
        counts, budget = Counter(), _SEARCH_BUDGET
        for group in held:
            counts.update(self.counts[group])
        while budget > 0:
            inside, outside = [g for g in order if g in held], [g for g in order if g not in held]
            swaps = ((g, h) for g in inside for h in outside)
            for drop, add in itertools.islice(swaps, budget):
                budget -= 1
                rows, change = self.change(counts, drop, add)
                if rows == 0 and change < -1e-9:
                    held = (held - {drop}) | {add}
                    counts.update(self.counts[add])
                    counts.subtract(self.counts[drop])
                    break
            else:
                return held
        return held


def _by_groups(share: float, labels: Sequence, groups: Sequence, seed: int) -> List[int]:
    """Whole groups, seeded: the held-out total nearest `share` of the rows that whole groups allow (an exact
    subset-sum search, so a large group met first cannot block a closer combination), then balanced by label."""
    members = defaultdict(list)
    for row, group in enumerate(groups):
        members[group].append(row)
    if len(members) < 2:
        raise ValueError(f"{len(members)} group: holding out whole groups needs at least 2 of them.")
    order = sorted(members, key=repr)
    random.Random(seed).shuffle(order)
    held = {order[i] for i in _nearest_total([len(members[g]) for g in order], share * len(groups))}
    if len(set(labels)) > 1:
        held = _LabelBalance(share, labels, members).improve(held, order)
    return sorted(row for group in held for row in members[group])


def _by_rows(share: float, labels: Sequence, seed: int) -> List[int]:
    """round(`share` × rows) rows, seeded, stratified: each label gets its share rounded down, and the rows left go
    to the labels with the largest remainders (ties in a seeded order); one row of each label stays in training."""
    rows_of = defaultdict(list)
    for row, label in enumerate(labels):
        rows_of[label].append(row)
    rng = random.Random(seed)
    names = sorted(rows_of, key=repr)
    for label in names:
        rng.shuffle(rows_of[label])
    quota = {label: share * len(rows_of[label]) for label in names}
    take = {label: min(len(rows_of[label]) - 1, math.floor(quota[label])) for label in names}
    wanted = min(len(labels) - 1, max(1, math.floor(share * len(labels) + 0.5)))
    ties = {label: rng.random() for label in names}
    for label in sorted(names, key=lambda name: (take[name] - quota[name], ties[name])):
        if sum(take.values()) >= wanted:
            break
        if take[label] < len(rows_of[label]) - 1:
            take[label] += 1
    held = [row for label in names for row in rows_of[label][: take[label]]]
    if not held:
        raise ValueError("Every label has a single row: there is nothing to hold out for the selection.")
    return sorted(held)


def _check_tolerance(share: float, held: int, n: int, groups: Optional[Sequence]) -> None:
    """Refuse a split whose held-out share is more than `SHARE_TOLERANCE` (or one row) off `share`."""
    if abs(held - share * n) <= _tolerance_rows(n):
        return
    what = f"whole groups (the largest has {max(Counter(groups).values())} rows)" if groups is not None else "rows"
    raise ValueError(
        f"holding out {what} gives {held} of {n} rows ({held / n:.0%}), more than {SHARE_TOLERANCE:.0%} off the "
        f"share asked ({share:.0%}): hold out smaller groups (or more of them), ask for a share near {held / n:.2f}, "
        "or give the selection rows of your own."
    )


def selection_split(
    share: float,
    labels: Optional[Sequence[Hashable]] = None,
    groups: Optional[Sequence[Hashable]] = None,
    seed: int = 0,
) -> Tuple[List[int], List[int]]:
    """``(train_rows, select_rows)``: row numbers, increasing, that together are every row once.

    Args:
        share: the share of the rows held out for the selection, in (0, `MAX_SHARE`]. Rows: round(share × rows)
            exactly, unless each label keeping a training row prevents it. Groups: the combination of whole
            groups found nearest it (a seeded search). Either way within `SHARE_TOLERANCE` (5 points; one row
            below 20 rows), or refused.
        labels: one label per row; each label's rows are split by `share` where possible. Leave unset
            for regression targets.
        groups: one group per row (a document, author, source, year). Whole groups are held out, so no
            group has rows on both sides.
        seed: the same seed gives the same split.

    Raises:
        ValueError: for a share outside (0, `MAX_SHARE`], columns of different lengths, fewer than 2 groups,
            too few rows to give both sides one, or a held-out share more than the tolerance off `share`.
    """
    n = _check(share, labels, groups)
    labels = list(labels) if labels is not None else [None] * n
    held = _by_groups(share, labels, list(groups), seed) if groups is not None else _by_rows(share, labels, seed)
    _check_tolerance(share, len(held), n, groups)
    held_set = set(held)
    logger.info(
        "Selection split: %d of %d rows held out (%.1f%%; %.1f%% asked).",
        len(held),
        n,
        100 * len(held) / n,
        100 * share,
    )
    return [row for row in range(n) if row not in held_set], held
