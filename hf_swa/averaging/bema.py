"""BEMA: the bias-corrected exponential moving average of Block & Zhang (2025), as TRL's `BEMACallback` computes it.

With θ_t the weights after optimizer step t, θ₀ the weights at step ``update_after`` (τ) and
``x_t = lag + multiplier * t`` (ρ + γ t), every ``update_freq`` steps after τ:

- the EMA: ``ema ← (1 − β_t) ema + β_t θ_t`` with ``β_t = x_t^(−ema_power)``;
- BEMA: ``θ'_t = ema + α_t (θ_t − θ₀)`` with ``α_t = x_t^(−bias_power)``.

The defaults are TRL's (``ema_power=0.5``, ``bias_power=0.2``, ``lag=10``, ``multiplier=1.0``,
``update_after=0``, ``update_freq=400``). At τ the EMA and θ₀ take the weights; with τ = 0 that
is the start of training (step 0). TRL writes θ'_t into a copy of the model at every update;
here the store keeps θ₀, the EMA and the last θ_t (three fp32 buffers per averaged tensor, on
the averages' device and, under FSDP2/ZeRO-3, of this rank's shard only) and forms θ'_t when
the candidate is read, with TRL's arithmetic. It is checkpointed, so a resumed run continues
the same BEMA bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import torch

BEMA_CANDIDATE = "bema"


@dataclass(frozen=True)
class BEMASettings:
    """TRL's `BEMACallback` parameters (its defaults), checked up front.

    >>> BEMASettings().ema_beta(90), BEMASettings().bias_alpha(0)
    (0.1, 0.6309573444801932)
    """

    ema_power: float = 0.5
    bias_power: float = 0.2
    lag: int = 10
    multiplier: float = 1.0
    update_after: int = 0
    update_freq: int = 400

    def __post_init__(self) -> None:
        for name in ("ema_power", "bias_power", "multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"swa_bema_{name}={value!r}: must be a finite number >= 0 (TRL's BEMA parameter).")
        for name, least in (("lag", 0), ("update_after", 0), ("update_freq", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"swa_bema_{name}={value!r}: must be an int >= {least} (TRL's BEMA parameter).")
        if self.lag == 0 and self.multiplier == 0:
            raise ValueError("swa_bema_lag=0 with swa_bema_multiplier=0 makes BEMA's decay 0^-p: set either above 0.")

    def ema_beta(self, step: int) -> float:
        """β_t = (ρ + γ t)^(−κ), TRL's ``_ema_beta`` (with its ``min_ema_multiplier`` at its default 0)."""
        return max((self.lag + self.multiplier * step) ** (-self.ema_power), 0.0)

    def bias_alpha(self, step: int) -> float:
        """α_t = (ρ + γ t)^(−η), TRL's ``_bema_alpha``."""
        return (self.lag + self.multiplier * step) ** (-self.bias_power)

    def is_anchor_step(self, step: int) -> bool:
        return step == self.update_after

    def is_update_step(self, step: int) -> bool:
        return step > self.update_after and (step - self.update_after) % self.update_freq == 0

    def first_update_step(self) -> int:
        return self.update_after + self.update_freq

    def check_updates_within(self, max_steps: int) -> None:
        """Refuse a schedule whose first update comes after the last step (BEMA would never be a candidate)."""
        if self.first_update_step() > max_steps:
            raise ValueError(
                f"swa_bema: BEMA starts at step swa_bema_update_after={self.update_after} and updates every "
                f"swa_bema_update_freq={self.update_freq} steps, so it would first update at step "
                f"{self.first_update_step()}, after the last step ({max_steps}). Lower swa_bema_update_freq "
                "(e.g. 1) or swa_bema_update_after, or train longer."
            )

    def to_dict(self) -> dict:
        return asdict(self)


class _Buffers:
    """One list of fp32 buffers with its count and the step of its last write (a checkpointed slot)."""

    def __init__(self, buffers: List[torch.Tensor]):
        self.buffers = buffers
        self.n_averaged = 0
        self.last_step = 0


class BiasCorrectedEMA:
    """The BEMA candidate ``bema``, behind the candidate-store interface (`hf_swa.averaging.candidates`).

    ``fold(sources, step)`` takes the weights after optimizer step ``step``: at ``update_after``
    they become θ₀ and the EMA's start, on each update step they update the EMA, and other
    steps are ignored (`wants` says which steps matter, so the caller skips the rest).

    Example:
        >>> import torch
        >>> bema = BiasCorrectedEMA(lambda: [torch.zeros(1)], BEMASettings(update_freq=1))
        >>> for step, value in [(0, 0.0), (1, 1.0), (2, 2.0)]:
        ...     bema.fold([torch.tensor([value])], step)
        >>> beta1, beta2 = 11 ** -0.5, 12 ** -0.5
        >>> ema = (0 * (1 - beta1) + beta1 * 1.0) * (1 - beta2) + beta2 * 2.0
        >>> round(bema.materialize("bema")[0].item(), 5) == round(ema + 12 ** -0.2 * (2.0 - 0.0), 5)
        True
    """

    kind = "bema"

    def __init__(self, new_buffers, settings: Optional[BEMASettings] = None, name: str = BEMA_CANDIDATE):
        self.schedule = settings or BEMASettings()
        self.name = name
        self.anchor = _Buffers(new_buffers())  # θ₀
        self.ema = _Buffers(new_buffers())
        self.last = _Buffers(new_buffers())  # θ_t of the last update

    @property
    def n_updates(self) -> int:
        return self.ema.n_averaged if self.anchor.n_averaged else 0

    def wants(self, step: int) -> bool:
        """Whether the weights after ``step`` change this store (the anchor step, or an update step once anchored)."""
        if self.schedule.is_anchor_step(step):
            return True
        return self.anchor.n_averaged > 0 and self.schedule.is_update_step(step)

    @torch.no_grad()
    def fold(self, sources: List[torch.Tensor], step: Optional[int] = None) -> None:
        if step is None or not self.wants(step):
            return
        if self.schedule.is_anchor_step(step):
            torch._foreach_copy_(self.anchor.buffers, sources)
            torch._foreach_copy_(self.ema.buffers, sources)
            self.anchor.n_averaged, self.anchor.last_step = 1, step
            self.ema.n_averaged = self.last.n_averaged = 0
            return
        torch._foreach_lerp_(self.ema.buffers, sources, self.schedule.ema_beta(step))
        torch._foreach_copy_(self.last.buffers, sources)
        for slot in (self.ema, self.last):
            slot.n_averaged += 1
            slot.last_step = step

    def names(self) -> List[str]:
        return [self.name] if self.n_updates > 0 else []

    def _check(self, name: str) -> None:
        if name != self.name or self.n_updates == 0:
            raise KeyError(name)

    @torch.no_grad()
    def write(self, name: str, targets: List[torch.Tensor]) -> None:
        self._check(name)
        alpha = self.schedule.bias_alpha(self.last.last_step)
        for target, anchor, ema, last in zip(targets, self.anchor.buffers, self.ema.buffers, self.last.buffers):
            target.copy_(ema + alpha * (last - anchor))  # TRL: ema + alpha * (θ_t − θ₀); one tensor at a time

    def materialize(self, name: str) -> List[torch.Tensor]:
        self._check(name)
        out = [torch.empty_like(b) for b in self.ema.buffers]
        self.write(name, out)
        return out

    def records(self) -> List[dict]:
        if not self.n_updates:
            return []
        return [
            {"name": self.name, "kind": self.kind, "start_step": self.anchor.last_step, "step": self.last.last_step}
            | {"n_averaged": self.n_updates, **self.schedule.to_dict()}
        ]

    def slots(self) -> Dict[str, _Buffers]:
        return {f"{self.name}_anchor": self.anchor, f"{self.name}_ema": self.ema, f"{self.name}_last": self.last}

    def settings(self) -> dict:
        return {"kind": self.kind, "name": self.name, **self.schedule.to_dict()}
