"""Averaging strategies: how much weight snapshot ``n + 1`` gets in a running average.

Each is a small object with ``weight(n_averaged)`` (the `lerp` weight of the next
snapshot; 1.0 means "copy") and ``to_dict()`` (saved with checkpoints, compared on
resume). A running average folds snapshots in with ``avg += weight * (w - avg)``.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Union


def check_ema_decay(decay: float, setting: str = "ema decay") -> float:
    """The one check of an EMA decay: a number strictly between 0 and 1.

    >>> check_ema_decay(0.9)
    0.9
    """
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay < 1.0 or math.isnan(decay):
        raise ValueError(f"{setting}={decay!r}: an EMA decay must be a number in (0, 1), e.g. 0.9 or 0.99")
    return float(decay)


def check_ema_decays(decays: Sequence[float]) -> List[float]:
    """The one check of EMA candidate decays: each in (0, 1), none twice.

    >>> check_ema_decays([0.9, 0.99])
    [0.9, 0.99]
    """
    checked = [check_ema_decay(d, "swa_ema_decays") for d in decays]
    if len(set(checked)) != len(checked):
        raise ValueError(f"swa_ema_decays={list(decays)!r}: each decay may appear once")
    return checked


class UniformAverage:
    """The SWA mean: snapshot ``n + 1`` enters with weight ``1 / (n + 1)``.

    >>> [UniformAverage().weight(n) for n in range(3)]
    [1.0, 0.5, 0.3333333333333333]
    """

    name = "uniform"

    def weight(self, n_averaged: int) -> float:
        return 1.0 / (n_averaged + 1)

    def to_dict(self) -> dict:
        return {"name": self.name}


class ExponentialAverage:
    """A bias-corrected exponential moving average with decay ``d``.

    Snapshot ``n + 1`` (``n`` already folded in) enters with weight
    ``(1 - d) / (1 - d ** (n + 1))``, as Adam corrects its moments: the first snapshot
    is copied, early snapshots are averaged almost uniformly, and the weight tends to
    ``1 - d``. The result is ``sum_i d ** (n - i) w_i / sum_i d ** (n - i)``.

    >>> ema = ExponentialAverage(0.5)
    >>> [round(ema.weight(n), 4) for n in range(4)]
    [1.0, 0.6667, 0.5714, 0.5333]
    """

    name = "ema"

    def __init__(self, decay: float = 0.999):
        self.decay = check_ema_decay(decay)

    def weight(self, n_averaged: int) -> float:
        return (1.0 - self.decay) / (1.0 - self.decay ** (n_averaged + 1))

    def to_dict(self) -> dict:
        return {"name": self.name, "decay": self.decay, "bias_corrected": True}


def make_strategy(strategy: Union[str, UniformAverage, ExponentialAverage], ema_decay: float = 0.999):
    """Build an averaging strategy from its name (``"uniform"`` or ``"ema"``) or pass one through."""
    if not isinstance(strategy, str):
        return strategy
    if strategy == "uniform":
        return UniformAverage()
    if strategy == "ema":
        return ExponentialAverage(ema_decay)
    raise ValueError(f"strategy={strategy!r}: must be 'uniform' or 'ema'")
