"""Averaging strategies: how much weight snapshot ``n + 1`` gets in the running average.

Each is a small object with ``weight(n_averaged)`` (the `lerp` weight of the next
snapshot; 1.0 means "copy") and ``to_dict()`` (saved with checkpoints, compared on
resume). `WeightAverager` folds snapshots in with ``avg += weight * (w - avg)``.
"""

from __future__ import annotations

from typing import Union


class UniformAverage:
    """The SWA mean: snapshot ``n + 1`` enters with weight ``1 / (n + 1)``."""

    name = "uniform"

    def weight(self, n_averaged: int) -> float:
        return 1.0 / (n_averaged + 1)

    def to_dict(self) -> dict:
        return {"name": self.name}


class ExponentialAverage:
    """An exponential moving average: ``avg = decay * avg + (1 - decay) * w`` after the first snapshot."""

    name = "ema"

    def __init__(self, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay={decay!r}: must be in (0, 1)")
        self.decay = decay

    def weight(self, n_averaged: int) -> float:
        return 1.0 if n_averaged == 0 else 1.0 - self.decay

    def to_dict(self) -> dict:
        return {"name": self.name, "decay": self.decay}


def make_strategy(strategy: Union[str, UniformAverage, ExponentialAverage], ema_decay: float = 0.999):
    """Build an averaging strategy from its name (``"uniform"`` or ``"ema"``) or pass one through."""
    if not isinstance(strategy, str):
        return strategy
    if strategy == "uniform":
        return UniformAverage()
    if strategy == "ema":
        return ExponentialAverage(ema_decay)
    raise ValueError(f"strategy={strategy!r}: must be 'uniform' or 'ema'")
