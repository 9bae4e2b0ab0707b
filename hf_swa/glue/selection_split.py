"""Rows held out of training to choose among the SWA candidates on (``--swa_select_split``).

A share ``F`` of the training rows is held out: for classification each class gives
``round(F × its rows)`` of them (a stratified split), for regression ``round(F × rows)``
rows are drawn at random. Which rows depends only on the data, ``F`` and the seed, so a
baseline run (``--no_swa``) given the same split and seed trains on exactly the rows the
SWA run trains on. Rounding is half up.

Example:
    >>> labels = ["pos"] * 6 + ["neg"] * 4
    >>> held_out = selection_rows(labels, share=0.5, seed=0)
    >>> sorted(labels[i] for i in held_out)
    ['neg', 'neg', 'pos', 'pos', 'pos']
    >>> held_out == selection_rows(labels, share=0.5, seed=0)
    True
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence
from typing import Optional

__all__ = ["SELECT_SPLIT", "SELECT_ROWS_FILE", "check_share", "selection_rows", "split_rows"]

#: The name of the held-out split among the data set's splits.
SELECT_SPLIT = "swa_select"
#: Written beside a run's results: the share, the seed and the numbers of the rows held out.
SELECT_ROWS_FILE = "swa_select_rows.json"


def check_share(share: Optional[float]) -> None:
    """``--swa_select_split`` is unset or a share of the training rows in (0, 1)."""
    if share is not None and not (0.0 < share < 1.0):
        raise ValueError(
            f"--swa_select_split {share}: must be a share of the training rows in (0, 1), e.g. 0.2 to hold out "
            "20% of them for choosing among the SWA candidates; leave it unset to train on every row."
        )


def _held_out_count(share: float, rows: int) -> int:
    return math.floor(share * rows + 0.5)


def selection_rows(labels: Sequence[Optional[Hashable]], share: float, seed: int) -> list[int]:
    """The indices (increasing) of the rows to hold out; ``labels`` are the classes, ``None`` for regression.

    Raises:
        ValueError: the share is outside (0, 1), a class would have no row held out, or no
            row left to train on.
    """
    check_share(share)
    rng = random.Random(seed)
    if labels and all(label is None for label in labels):  # regression: one group
        groups = {None: list(range(len(labels)))}
    else:
        groups = {}
        for index, label in enumerate(labels):
            groups.setdefault(label, []).append(index)
    held_out = []
    for label in sorted(groups, key=str):
        indices = groups[label]
        count = _held_out_count(share, len(indices))
        what = "rows" if label is None else f"rows of class {label!r}"
        if count == 0:
            raise ValueError(
                f"--swa_select_split {share} holds out no row of the {len(indices)} training {what}: the selection "
                f"data needs at least one. Raise --swa_select_split to at least {0.5 / len(indices):.3g}, or train "
                "on more rows."
            )
        if count == len(indices):
            raise ValueError(
                f"--swa_select_split {share} holds out all {len(indices)} training {what}, leaving none to train "
                "on. Lower --swa_select_split, or train on more rows."
            )
        rng.shuffle(indices)
        held_out.extend(indices[:count])
    return sorted(held_out)


def split_rows(n_rows: int, held_out: Sequence[int]) -> list[int]:
    """The rows to train on: every row of ``range(n_rows)`` not held out, in order.

    >>> split_rows(5, [1, 3])
    [0, 2, 4]
    """
    excluded = set(held_out)
    return [i for i in range(n_rows) if i not in excluded]
