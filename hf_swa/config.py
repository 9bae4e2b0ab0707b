"""`SWAConfig`: when and how to average, validated up front."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Union

ANNEAL_STRATEGIES = ("cos", "linear")
AVERAGING_STRATEGIES = ("uniform", "ema")


def parse_swa_start(value: Union[str, int, float]) -> Union[int, float]:
    """Turn a `swa_start` setting into an int step or a float fraction.

    An int (or a string of digits such as ``"100"``) is an optimizer step; a float
    (or a string with a decimal point such as ``"0.75"`` or ``"1.0"``) is a fraction
    of the total optimizer steps.

    >>> parse_swa_start("0.75"), parse_swa_start("100"), parse_swa_start(1.0)
    (0.75, 100, 1.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"swa_start must be a fraction in (0, 1] or a step >= 1, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"swa_start must be a fraction in (0, 1] such as 0.75 or an optimizer step >= 1 such as 100, got {value!r}"
        ) from None


@dataclass
class SWAConfig:
    """Settings of Stochastic Weight Averaging.

    Args:
        swa_start: when averaging starts. A float ``0 < f <= 1`` is a fraction of the
            total optimizer steps (start step ``max(1, ceil(f * max_steps))``); an int
            ``>= 1`` is an optimizer step (transformers counts ``global_step`` from 1).
        swa_freq: fold a snapshot into the average every ``swa_freq`` optimizer steps
            from the start step on (the start step itself is the first snapshot).
        swa_lr: if set, from the start step the learning rate anneals to ``swa_lr`` and
            holds there. If ``None`` the Trainer's schedule runs unchanged.
        swa_anneal_steps: optimizer steps over which the LR anneals to ``swa_lr``
            (0 = jump to ``swa_lr`` at the start step).
        swa_anneal_strategy: ``"cos"`` or ``"linear"``.
        swa_device: where the fp32 averages live (``None``: beside each parameter;
            ``"cpu"``: in host memory, pinned when CUDA is available).
        strategy: ``"uniform"`` (the SWA mean of all snapshots) or ``"ema"``.
        ema_decay: decay of the ``"ema"`` strategy, in ``(0, 1)``.

    Example:
        >>> from hf_swa import SWAConfig
        >>> config = SWAConfig(swa_start=0.75, swa_freq=10, swa_lr=2e-5)
        >>> config.start_step(max_steps=1000)
        750
        >>> config.is_snapshot_step(760, max_steps=1000), config.is_snapshot_step(765, max_steps=1000)
        (True, False)
    """

    swa_start: Union[int, float] = 0.75
    swa_freq: int = 1
    swa_lr: Optional[float] = None
    swa_anneal_steps: int = 0
    swa_anneal_strategy: str = "cos"
    swa_device: Optional[str] = None
    strategy: str = "uniform"
    ema_decay: float = 0.999

    def __post_init__(self) -> None:
        self.swa_start = parse_swa_start(self.swa_start)
        if isinstance(self.swa_start, float):
            if not (0.0 < self.swa_start <= 1.0) or math.isnan(self.swa_start):
                raise ValueError(
                    f"swa_start={self.swa_start!r}: as a float it is a fraction of the training steps and must be "
                    "in (0, 1] (e.g. 0.75); pass an int (e.g. 100) for an absolute optimizer step"
                )
        elif self.swa_start < 1:
            raise ValueError(
                f"swa_start={self.swa_start!r}: as an int it is an optimizer step and must be >= 1 "
                "(transformers counts global_step from 1); use a float in (0, 1] for a fraction"
            )
        if isinstance(self.swa_freq, bool) or not isinstance(self.swa_freq, int) or self.swa_freq < 1:
            raise ValueError(f"swa_freq={self.swa_freq!r}: must be an int >= 1 (optimizer steps between snapshots)")
        if self.swa_lr is not None and not (self.swa_lr > 0 and math.isfinite(self.swa_lr)):
            raise ValueError(f"swa_lr={self.swa_lr!r}: must be a finite number > 0, or None to keep the schedule")
        if isinstance(self.swa_anneal_steps, bool) or not isinstance(self.swa_anneal_steps, int) or self.swa_anneal_steps < 0:
            raise ValueError(f"swa_anneal_steps={self.swa_anneal_steps!r}: must be an int >= 0 (0 = jump to swa_lr)")
        if self.swa_anneal_strategy not in ANNEAL_STRATEGIES:
            raise ValueError(
                f"swa_anneal_strategy={self.swa_anneal_strategy!r}: must be one of {', '.join(ANNEAL_STRATEGIES)}"
            )
        if self.strategy not in AVERAGING_STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r}: must be one of {', '.join(AVERAGING_STRATEGIES)}")
        if not (0.0 < self.ema_decay < 1.0):
            raise ValueError(f"ema_decay={self.ema_decay!r}: must be in (0, 1)")

    def start_step(self, max_steps: int) -> int:
        """The first optimizer step whose weights are averaged; checks it is within training."""
        if isinstance(self.swa_start, float):
            step = max(1, math.ceil(self.swa_start * max_steps))
        else:
            step = self.swa_start
        if max_steps > 0 and step > max_steps:
            raise ValueError(
                f"swa_start={self.swa_start!r} is step {step}, past the end of training (max_steps={max_steps}): "
                "no weights would be averaged. Lower swa_start or train longer."
            )
        return step

    def is_snapshot_step(self, global_step: int, max_steps: int) -> bool:
        """Whether the weights after optimizer step `global_step` are folded into the average."""
        start = self.start_step(max_steps)
        return global_step >= start and (global_step - start) % self.swa_freq == 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SWAConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
