"""Candidate averages: the stores of fp32 running averages a `WeightAverager` keeps.

A store holds one or more lists of fp32 buffers (one buffer per averaged tensor) and
offers named candidates behind one interface:

- ``fold(sources, step)``: fold a snapshot (fp32 tensors, in the buffers' order) in;
- ``names()``: the candidates that hold at least one snapshot;
- ``write(name, targets)``: write a candidate into tensors (cast to their dtype);
- ``materialize(name)``: a candidate as new fp32 tensors;
- ``records()``, ``slots()`` / ``load_slot()``: what is recorded and checkpointed.

`WindowMeans` keeps one uniform mean per window of the averaging phase; its candidates
are the suffix averages (``swa``: every snapshot; ``swa_from{s}``: the snapshots taken at
steps ``>= s``). A snapshot changes only the current window's mean, so any number of
windows costs one update per snapshot. `ExponentialMean` keeps one bias-corrected EMA.
`PowerFunctionMeans` keeps power-function EMAs (EDM2, `hf_swa.averaging.power_ema_math`), ``pema_{σ_rel}``,
updated on their own clock (every optimizer step from the start of training).
"""

from __future__ import annotations

import bisect
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .names import MAIN_CANDIDATE
from .power_ema_math import check_stds, power_function_beta, std_to_exp
from .strategies import ExponentialAverage, UniformAverage

#: A regular expression every candidate's name matches (``swa``, ``swa_from{s}``, ``ema_{d}``, ``pema_{σ}``,
#: ``bema``), for telling the candidates' metric keys (``eval_swa_from75_loss``) apart.
CANDIDATE_NAME_PATTERN = rf"{MAIN_CANDIDATE}_from\d+|{MAIN_CANDIDATE}|p?ema_[0-9.e+-]+|bema"

BufferFactory = Callable[[], List[torch.Tensor]]


def ema_candidate_name(decay: float) -> str:
    """``ema_0.9`` for decay 0.9: the name of an EMA candidate.

    >>> ema_candidate_name(0.99), ema_candidate_name(0.999)
    ('ema_0.99', 'ema_0.999')
    """
    return f"ema_{decay:g}"


def power_ema_candidate_name(std: float) -> str:
    """``pema_0.05`` for width σ_rel 0.05: the name of a power-EMA candidate.

    >>> power_ema_candidate_name(0.05), power_ema_candidate_name(0.1)
    ('pema_0.05', 'pema_0.1')
    """
    return f"pema_{std:g}"


class _RunningMean:
    """One fp32 running average of a list of tensors, with a strategy's weights."""

    def __init__(self, buffers: List[torch.Tensor], strategy):
        self.buffers = buffers
        self.strategy = strategy
        self.n_averaged = 0

    @torch.no_grad()
    def fold(self, sources: List[torch.Tensor]) -> None:
        weight = self.strategy.weight(self.n_averaged)
        if weight == 1.0:  # the first snapshot: an exact copy
            torch._foreach_copy_(self.buffers, sources)
        else:
            torch._foreach_lerp_(self.buffers, sources, weight)
        self.n_averaged += 1


class WindowMeans:
    """Uniform means of consecutive windows of snapshots; candidates are the suffix averages.

    Args:
        new_buffers: makes one list of zeroed fp32 buffers (called once per window).
        starts: the first step of each window, increasing (``None``: one window).

    Example:
        >>> import torch
        >>> means = WindowMeans(lambda: [torch.zeros(1)], starts=[10, 20])
        >>> for step, value in [(10, 1.0), (15, 2.0), (20, 6.0), (25, 8.0)]:
        ...     means.fold([torch.tensor([value])], step)
        >>> means.names()
        ['swa', 'swa_from20']
        >>> [means.materialize(name)[0].item() for name in means.names()]
        [4.25, 7.0]
    """

    kind = "window_mean"

    def __init__(self, new_buffers: BufferFactory, starts: Optional[Sequence[int]] = None):
        self.starts = list(starts) if starts else [None]
        if len(self.starts) > 1 and any(b <= a for a, b in zip(self.starts, self.starts[1:])):
            raise ValueError(f"window starts must increase, got {self.starts}")
        self.windows = [_RunningMean(new_buffers(), UniformAverage()) for _ in self.starts]

    def window_of(self, step: Optional[int]) -> int:
        if len(self.starts) == 1:
            return 0
        if step is None:
            raise ValueError("With several windows, update(model, step=...) needs the optimizer step.")
        return max(0, bisect.bisect_right(self.starts, step) - 1)

    def fold(self, sources: List[torch.Tensor], step: Optional[int] = None) -> None:
        self.windows[self.window_of(step)].fold(sources)

    def _name(self, index: int) -> str:
        return MAIN_CANDIDATE if index == 0 else f"{MAIN_CANDIDATE}_from{self.starts[index]}"

    def _suffix_from(self, index: int) -> List[_RunningMean]:
        """The windows from `index` on that hold a snapshot."""
        return [w for w in self.windows[index:] if w.n_averaged > 0]

    def _suffix(self, name: str) -> List[_RunningMean]:
        for index in range(len(self.windows)):
            if self._name(index) == name:
                return self._suffix_from(index)
        raise KeyError(name)

    def _filled(self) -> List[int]:
        """The window indexes whose suffix candidate holds at least one snapshot."""
        return [i for i in range(len(self.windows)) if self._suffix_from(i)]

    def names(self) -> List[str]:
        return [self._name(i) for i in self._filled()]

    def n_averaged(self, name: str = MAIN_CANDIDATE) -> int:
        return sum(w.n_averaged for w in self._suffix(name))

    @torch.no_grad()
    def write(self, name: str, targets: List[torch.Tensor]) -> None:
        windows = self._suffix(name)
        if len(windows) == 1:
            torch._foreach_copy_(targets, windows[0].buffers)
            return
        total = sum(w.n_averaged for w in windows)
        shares = [w.n_averaged / total for w in windows]
        for i, target in enumerate(targets):  # one tensor at a time: memory stays near one parameter
            combined = windows[0].buffers[i] * shares[0]
            for window, share in zip(windows[1:], shares[1:]):
                combined.add_(window.buffers[i], alpha=share)
            target.copy_(combined)

    def materialize(self, name: str) -> List[torch.Tensor]:
        windows = self._suffix(name)
        if len(windows) == 1:
            return windows[0].buffers
        out = [torch.empty_like(b) for b in windows[0].buffers]
        self.write(name, out)
        return out

    def records(self) -> List[dict]:
        return [
            {
                "name": self._name(i),
                "kind": self.kind,
                "start_step": self.starts[i],
                "n_averaged": sum(w.n_averaged for w in self._suffix_from(i)),
            }
            for i in self._filled()
        ]

    def slots(self) -> Dict[str, _RunningMean]:
        """The checkpointed running means by slot key (``window0``, ``window1``, ...)."""
        return {f"window{i}": window for i, window in enumerate(self.windows)}

    def settings(self) -> dict:
        return {"kind": self.kind, "starts": self.starts}


class ExponentialMean:
    """One bias-corrected exponential moving average of the snapshots (see `ExponentialAverage`).

    Example:
        >>> import torch
        >>> ema = ExponentialMean(lambda: [torch.zeros(1)], decay=0.5)
        >>> for value in (1.0, 2.0, 4.0):
        ...     ema.fold([torch.tensor([value])])
        >>> ema.materialize("ema_0.5")[0].item()  # (1 * 0.25 + 2 * 0.5 + 4 * 1) / (0.25 + 0.5 + 1)
        3.0
    """

    kind = "ema"

    def __init__(self, new_buffers: BufferFactory, decay: float, name: Optional[str] = None):
        self.strategy = ExponentialAverage(decay)
        self.decay = self.strategy.decay
        self.name = name or ema_candidate_name(self.decay)
        self.mean = _RunningMean(new_buffers(), self.strategy)

    def fold(self, sources: List[torch.Tensor], step: Optional[int] = None) -> None:
        self.mean.fold(sources)

    def names(self) -> List[str]:
        return [self.name] if self.mean.n_averaged > 0 else []

    def n_averaged(self, name: Optional[str] = None) -> int:
        return self.mean.n_averaged

    def _check(self, name: str) -> None:
        if name != self.name:
            raise KeyError(name)

    @torch.no_grad()
    def write(self, name: str, targets: List[torch.Tensor]) -> None:
        self._check(name)
        torch._foreach_copy_(targets, self.mean.buffers)

    def materialize(self, name: str) -> List[torch.Tensor]:
        self._check(name)
        return self.mean.buffers

    def records(self) -> List[dict]:
        if self.mean.n_averaged == 0:
            return []
        return [{"name": self.name, "kind": self.kind, "decay": self.decay, "n_averaged": self.mean.n_averaged}]

    def slots(self) -> Dict[str, _RunningMean]:
        return {self.name: self.mean}

    def settings(self) -> dict:
        return {"kind": self.kind, "decay": self.decay, "name": self.name}


class _PowerMean:
    """One fp32 power-function EMA: its buffers, its update count and the step of its last update."""

    def __init__(self, buffers: List[torch.Tensor], gamma: float):
        self.buffers = buffers
        self.gamma = gamma
        self.n_averaged = 0
        self.last_step = 0  # t of the last update; 0: none yet (training time starts at t = 0)

    @torch.no_grad()
    def fold(self, sources: List[torch.Tensor], step: int) -> None:
        beta = power_function_beta(self.gamma, step, step - self.last_step)
        if beta == 0.0:  # the first update (Δt = t): an exact copy
            torch._foreach_copy_(self.buffers, sources)
        else:
            torch._foreach_lerp_(self.buffers, sources, 1.0 - beta)
        self.n_averaged += 1
        self.last_step = step


class PowerFunctionMeans:
    """Power-function EMAs of the weights, one per width σ_rel (`hf_swa.averaging.power_ema_math`): ``pema_{σ_rel}``.

    ``fold(sources, step)`` takes the weights after optimizer step ``step`` and updates
    each EMA with ``β = (1 − Δt/t)^(γ + 1)``, ``t = step`` and ``Δt`` the steps since its
    previous update (``Δt = t`` for the first: a copy). Fold every optimizer step from the
    start of training, so that the EMA at step t weighs the run's weights by the power profile.

    Example:
        >>> import torch
        >>> emas = PowerFunctionMeans(lambda: [torch.zeros(1)], stds=[0.2])
        >>> g = emas.gammas[0]  # γ of σ_rel 0.2
        >>> round(g, 4)
        1.8262
        >>> for step in (1, 2, 3, 4):
        ...     emas.fold([torch.tensor([float(step)])], step)
        >>> # step k's weights carry the mass (k^(γ+1) − (k−1)^(γ+1)) / 4^(γ+1) of the power profile
        >>> profile = [(k ** (g + 1) - (k - 1) ** (g + 1)) / 4 ** (g + 1) for k in (1, 2, 3, 4)]
        >>> expected = sum(w * k for w, k in zip(profile, (1, 2, 3, 4)))
        >>> abs(emas.materialize("pema_0.2")[0].item() - expected) < 1e-6, round(expected, 4)
        (True, 3.3956)
    """

    kind = "power_ema"

    def __init__(self, new_buffers: BufferFactory, stds: Sequence[float]):
        self.stds = check_stds(stds)
        self.gammas = [float(std_to_exp(std)) for std in self.stds]
        names = [power_ema_candidate_name(std) for std in self.stds]
        self.means = {name: _PowerMean(new_buffers(), gamma) for name, gamma in zip(names, self.gammas)}

    @property
    def last_step(self) -> int:
        return max(mean.last_step for mean in self.means.values())

    def fold(self, sources: List[torch.Tensor], step: Optional[int] = None) -> None:
        if step is None or isinstance(step, bool) or int(step) != step or step <= self.last_step:
            raise ValueError(
                f"A power-EMA update needs the optimizer step t, increasing: got step={step!r} after "
                f"step {self.last_step}."
            )
        for mean in self.means.values():
            mean.fold(sources, int(step))

    def names(self) -> List[str]:
        return [name for name, mean in self.means.items() if mean.n_averaged > 0]

    def _mean(self, name: str) -> _PowerMean:
        if name not in self.means:
            raise KeyError(name)
        return self.means[name]

    def n_averaged(self, name: str) -> int:
        return self._mean(name).n_averaged

    @torch.no_grad()
    def write(self, name: str, targets: List[torch.Tensor]) -> None:
        torch._foreach_copy_(targets, self._mean(name).buffers)

    def materialize(self, name: str) -> List[torch.Tensor]:
        return self._mean(name).buffers

    def records(self) -> List[dict]:
        return [
            {"name": name, "kind": self.kind, "std": std, "gamma": mean.gamma}
            | {"step": mean.last_step, "n_averaged": mean.n_averaged}
            for (name, mean), std in zip(self.means.items(), self.stds)
            if mean.n_averaged > 0
        ]

    def slots(self) -> Dict[str, _PowerMean]:
        return dict(self.means)

    def settings(self) -> dict:
        return {"kind": self.kind, "stds": self.stds}


class ReconstructedCandidates:
    """Candidates computed after training and handed in whole, e.g. power EMAs reconstructed from snapshots.

    They are fp32 copies beside the running averages, not training state: they are not
    checkpointed and not compared on resume (``slots()`` is empty, ``settings()`` ``None``).

    Example:
        >>> import torch
        >>> added = ReconstructedCandidates([torch.zeros(2)])
        >>> added.add("pema_0.07", [torch.tensor([1.0, 2.0])], {"kind": "power_ema_posthoc", "std": 0.07})
        >>> added.names(), added.materialize("pema_0.07")[0].tolist()
        (['pema_0.07'], [1.0, 2.0])
    """

    kind = "power_ema_posthoc"

    def __init__(self, like: List[torch.Tensor]):
        self.like = like  # one fp32 buffer per averaged tensor: the shapes and device every candidate takes
        self.tensors: Dict[str, List[torch.Tensor]] = {}
        self.info: Dict[str, dict] = {}

    def add(self, name: str, tensors: Sequence[torch.Tensor], record: dict) -> None:
        shapes = [tuple(t.shape) for t in tensors]
        if shapes != [tuple(t.shape) for t in self.like]:
            raise ValueError(f"Candidate {name!r} does not match the averaged parameters' shapes.")
        self.tensors[name] = [t.to(device=b.device, dtype=torch.float32, copy=True) for t, b in zip(tensors, self.like)]
        self.info[name] = {"name": name, **record}

    def names(self) -> List[str]:
        return list(self.tensors)

    @torch.no_grad()
    def write(self, name: str, targets: List[torch.Tensor]) -> None:
        torch._foreach_copy_(targets, self.tensors[name])

    def materialize(self, name: str) -> List[torch.Tensor]:
        return self.tensors[name]

    def records(self) -> List[dict]:
        return [dict(record) for record in self.info.values()]

    def slots(self) -> dict:
        return {}

    def settings(self) -> None:
        return None
