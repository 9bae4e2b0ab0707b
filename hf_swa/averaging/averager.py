"""The averaging engine: fp32 running averages of a model's trainable weights.

Knows tensors and modules only (nothing of `Trainer`, GLUE or the Hub).
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import distributed
from .bema import BEMASettings, BiasCorrectedEMA
from .candidates import MAIN_CANDIDATE, ExponentialMean, PowerFunctionMeans, ReconstructedCandidates, WindowMeans
from .parameters import (  # noqa: F401  (averaged_parameters, clean_parameter_name, local_tensor: public here too)
    averaged_parameters,
    clean_parameter_name,
    local_tensor,
    require_averaged_parameters,
)
from .sources import ModelWeights, all_finite  # noqa: F401  (all_finite: public here too)
from .state import check_saved_state
from .strategies import ExponentialAverage, UniformAverage, check_ema_decays, make_strategy
from .swapping import WeightSwapping

logger = logging.getLogger(__name__)


class WeightAverager(WeightSwapping):
    """fp32 running averages of a model's trainable floating-point parameters.

    One update is a single multi-tensor pass (``torch._foreach_lerp_``) that allocates
    nothing: for fp32 parameters on the averages' device it reads the average and the
    weight and writes the average (12 bytes a parameter). Parameters in another dtype
    (bf16/fp16) or on another device first go through staging buffers allocated once.
    The model is never deep-copied.

    Besides the main average (``swa``) it keeps candidates (`hf_swa.averaging.candidates`): with
    ``window_starts`` the averaging phase is split into windows, one uniform mean each,
    and ``swa_from{s}`` averages the snapshots from step ``s`` on (one update per
    snapshot whatever the number of windows); each decay in ``ema_decays`` adds a
    bias-corrected EMA ``ema_{d}`` (one more update each). Each width in ``power_ema_stds``
    adds a power-function EMA ``pema_{σ_rel}`` (EDM2), fed by `update_power_emas` on its own
    clock: every optimizer step from the first, whatever the averaging phase.

    Sharded models (FSDP2, ZeRO-3): each rank averages its shard (`local_tensor`), with no gather
    per step (`sharded`); `distributed.full_averages` gathers them, only to save. Under DDP and
    ZeRO-1/2 every rank averages the same full weights and holds the same averages.

    Args:
        model: the model whose weights are averaged (fixes the set of averaged tensors).
        device: where the averages live; ``None`` keeps each beside its parameter,
            ``"cpu"`` keeps them in host memory (pinned when CUDA is available).
        strategy: ``"uniform"`` (SWA), ``"ema"``, or a strategy object with ``weight(n)``.
        ema_decay: decay for ``strategy="ema"``.
        skip_non_finite: check each snapshot and skip (and count) one that holds NaN/inf.
        window_starts: the first step of each window of the main (uniform) average;
            `update` then needs the step.
        ema_decays: one EMA candidate per decay.
        power_ema_stds: one power-function EMA per relative width σ_rel (``0 < σ_rel < 0.289``).
        bema: keep the BEMA candidate ``bema`` (`hf_swa.averaging.bema`, TRL's `BEMACallback`) with these
            `BEMASettings` (``True``: TRL's defaults), fed by `update_bema` every optimizer step.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from hf_swa import WeightAverager
        >>> model = nn.Linear(2, 1)
        >>> averager = WeightAverager(model, window_starts=[1, 3], ema_decays=[0.5])
        >>> for step, value in enumerate((1.0, 2.0, 6.0), start=1):
        ...     with torch.no_grad():
        ...         _ = model.weight.fill_(value)
        ...     _ = averager.update(model, step=step)
        >>> averager.n_averaged, averager.candidate_names()
        (3, ['swa', 'swa_from3', 'ema_0.5'])
        >>> with averager.averaged_weights(model):  # swa: the mean of 1, 2 and 6
        ...     print(model.weight.tolist())
        [[3.0, 3.0]]
        >>> model.weight.tolist()  # the live weights are back
        [[6.0, 6.0]]
    """

    def __init__(
        self,
        model: nn.Module,
        device: Optional[Union[str, torch.device]] = None,
        strategy: Union[str, UniformAverage, ExponentialAverage] = "uniform",
        ema_decay: float = 0.999,
        skip_non_finite: bool = True,
        window_starts: Optional[Sequence[int]] = None,
        ema_decays: Sequence[float] = (),
        power_ema_stds: Sequence[float] = (),
        bema: Union[None, bool, BEMASettings] = None,
    ):
        distributed.check_supported(model)
        self._has_fsdp2 = bool(distributed.fsdp2_modules(model))
        self._reshard(model)
        named = require_averaged_parameters(model)
        self.strategy = make_strategy(strategy, ema_decay)
        self.device = torch.device(device) if device is not None else None
        self.skip_non_finite = skip_non_finite
        self.names = [name for name, _ in named]
        self.n_averaged = 0
        self.n_skipped = 0

        # Each rank holds a different part of these parameters (FSDP2 shard / ZeRO-3 partition).
        self.sharded = any(distributed.is_sharded_parameter(p) for _, p in named)
        tensors = [local_tensor(p) for _, p in named]

        def new_buffers() -> List[torch.Tensor]:
            return [self._new_buffer(t, torch.float32) for t in tensors]

        self.stores = [self._main_store(new_buffers, window_starts)]
        self.stores += [ExponentialMean(new_buffers, decay) for decay in check_ema_decays(ema_decays)]
        self.power_emas = PowerFunctionMeans(new_buffers, power_ema_stds) if power_ema_stds else None
        if bema is True:
            bema = BEMASettings()
        self.bema = BiasCorrectedEMA(new_buffers, bema) if bema else None
        like = next(iter(self.stores[0].slots().values())).buffers
        self.reconstructed = ReconstructedCandidates(like)
        reshard = self._reshard if self._has_fsdp2 else None
        self.weights = ModelWeights(self.names, like, tensors, self._new_buffer, self.sharded, reshard)

    def _main_store(self, new_buffers, window_starts):
        if isinstance(self.strategy, UniformAverage):
            return WindowMeans(new_buffers, window_starts)
        if window_starts is not None and len(window_starts) > 1:
            raise ValueError("Windows split a uniform average: use strategy='uniform' with several windows.")
        if isinstance(self.strategy, ExponentialAverage):
            return ExponentialMean(new_buffers, self.strategy.decay, name=MAIN_CANDIDATE)
        raise ValueError(f"strategy={self.strategy!r}: must be 'uniform', 'ema', UniformAverage or ExponentialAverage")

    def _pin(self) -> bool:
        return self.device is not None and self.device.type == "cpu" and torch.cuda.is_available()

    def _new_buffer(self, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        device = self.device if self.device is not None else like.device
        return torch.zeros(like.shape, dtype=dtype, device=device, pin_memory=self._pin())

    def _reshard(self, model: nn.Module) -> None:
        # FSDP2 leaves the root's parameters unsharded after a forward without backward (evaluation).
        if self._has_fsdp2:
            distributed.reshard(distributed.fsdp2_modules(model))

    def matched_parameters(self, model: nn.Module) -> List[Tuple[str, torch.Tensor]]:
        """``(name, parameter)`` of the model's averaged parameters, in the order of the averages.

        Refuses a model whose averaged parameters differ from the one the averager was built for.
        """
        return self.weights.matched_parameters(model)

    def _tensors(self, model: nn.Module) -> List[torch.Tensor]:
        """The model's averaged tensors (this rank's part), in the order of the averages; refuses another model."""
        return self.weights.tensors(model)

    # ---------------------------------------------------------------- averaging
    @torch.no_grad()
    def update(self, model: nn.Module, step: Optional[int] = None) -> bool:
        """Fold the model's current weights into every candidate average.

        `step`: the optimizer step of the snapshot, which picks its window (needed with several
        windows). Returns ``False`` (counted in ``n_skipped``, with a warning) when the snapshot
        holds NaN or inf and ``skip_non_finite`` is set; the averages are then untouched.
        """
        return self._fold(model, step, snapshot=True, clocked=False)

    @torch.no_grad()
    def update_power_emas(self, model: nn.Module, step: int) -> bool:
        """Fold the weights after optimizer step ``step`` (t = 0: the start of training) into the power EMAs.

        Call it every optimizer step from the first (``Δt``: the steps since the last update). NaN/inf
        weights are skipped (``skip_non_finite``), ``False`` returned, and the next update spans them.
        """
        if self.power_emas is None:
            raise RuntimeError("This averager keeps no power EMAs: build it with power_ema_stds=[...].")
        return self._fold(model, step, snapshot=False, clocked=True, bema=False)

    @torch.no_grad()
    def update_bema(self, model: nn.Module, step: int) -> bool:
        """Fold the weights after optimizer step ``step`` (0: the start of training) into BEMA, if it takes them.

        Call it every optimizer step (and at step 0 when ``update_after`` is 0): the anchor step
        ``update_after`` sets θ₀, then every ``update_freq`` steps update it; other steps cost nothing.
        Returns whether the weights were folded in (NaN/inf weights are skipped, with a warning).
        """
        if self.bema is None:
            raise RuntimeError("This averager keeps no BEMA: build it with bema=True or bema=BEMASettings(...).")
        return self._fold(model, step, snapshot=False, clocked=False, bema=True)

    @torch.no_grad()
    def update_step(self, model: nn.Module, step: int, snapshot: bool) -> bool:
        """After optimizer step ``step``: fold the weights, read and checked once, into every average that takes them.

        The snapshot averages when `snapshot` (as `update`), the power EMAs (every step, as
        `update_power_emas`) and BEMA on its schedule (as `update_bema`). A step none of them takes
        costs nothing. Returns ``False`` when the weights held NaN/inf (``skip_non_finite``): then
        nothing is folded, and a snapshot is counted in ``n_skipped``.
        """
        return self._fold(model, step, snapshot=snapshot, clocked=True, bema=True)

    def _fold(self, model: nn.Module, step: Optional[int], snapshot: bool, clocked: bool, bema: bool = False) -> bool:
        stores = list(self.stores) if snapshot else []
        if clocked and self.power_emas is not None and (step is None or step != 0):  # t = 0: the start, no update
            stores.append(self.power_emas)
        if bema and self.bema is not None and self.bema.wants(step):
            stores.append(self.bema)
        if not stores:
            return False
        sources = self.weights.fp32_if_finite(model, check=self.skip_non_finite)
        if sources is None:
            if snapshot:
                self.n_skipped += 1
                logger.warning("SWA: skipped a snapshot with NaN/inf weights (%d skipped so far).", self.n_skipped)
            else:
                logger.warning("SWA: power EMAs and BEMA skipped the NaN/inf weights of step %s.", step)
            return False
        for store in stores:
            store.fold(sources, step)
        if snapshot:
            self.n_averaged += 1
        return True

    # ---------------------------------------------------------------- candidates
    @property
    def keeps_power_emas(self) -> bool:
        """Whether this averager keeps running power EMAs (``power_ema_stds``)."""
        return self.power_emas is not None

    def power_ema_records(self) -> List[dict]:
        """A record per running power EMA that holds an update (name, std, gamma, step, n_averaged)."""
        return self.power_emas.records() if self.power_emas is not None else []

    @property
    def power_ema_last_step(self) -> int:
        """The optimizer step of the power EMAs' last update (0: none yet, or no power EMAs)."""
        return self.power_emas.last_step if self.power_emas is not None else 0

    def add_candidate(self, name: str, tensors: Sequence[torch.Tensor], record: dict) -> None:
        """Add a candidate computed elsewhere (fp32 copies of `tensors`, in the order of `names`), e.g. a power
        EMA reconstructed after training. It is not training state: not checkpointed, not compared on resume."""
        if name in self.candidate_names() and name not in self.reconstructed.names():
            raise ValueError(f"Candidate {name!r} exists already: a running average has that name.")
        self.reconstructed.add(name, tensors, record)

    @property
    def candidate_stores(self) -> list:  # the main store, the EMAs, the power EMAs if any, the reconstructed ones
        clocked = [store for store in (self.power_emas, self.bema) if store is not None]
        return self.stores + clocked + [self.reconstructed]

    def candidate_names(self) -> List[str]:
        """The candidates holding at least one snapshot: ``swa``, the later window starts, the EMAs, the power EMAs."""
        return [name for store in self.candidate_stores for name in store.names()]

    def candidates(self) -> List[dict]:
        """A record per candidate: name, kind, ``n_averaged``, start step (windows, EMAs), decay, width, last step."""
        start = self.stores[0].records()[0].get("start_step") if self.stores[0].names() else None
        records = [record for store in self.candidate_stores for record in store.records()]
        for record in records:
            if record["kind"] == "ema":  # power EMAs average every step from the first: no start step
                record.setdefault("start_step", start)
        return records

    def _store(self, name: str):
        for store in self.candidate_stores:
            if name in store.names():
                return store
        known = self.candidate_names()
        raise KeyError(f"No candidate average named {name!r}; the candidates are {known or 'none yet'}.")

    def averages(self, name: str = MAIN_CANDIDATE) -> Dict[str, torch.Tensor]:
        """A candidate's fp32 averages by (cleaned) parameter name (``swa``: the main average).

        A candidate held in one buffer is returned as those tensors themselves, not copies.
        """
        self.require_snapshot()
        return dict(zip(self.names, self._store(name).materialize(name)))

    def require_snapshot(self) -> None:
        """Raise unless some candidate holds a snapshot (the check before reading or writing one)."""
        if self.n_averaged == 0 and not self.candidate_names():
            raise RuntimeError("No snapshot has been averaged yet: call update(model) first.")

    def allocated_tensors(self) -> List[torch.Tensor]:
        """The tensors the averager allocated: every running average's fp32 buffers and the staging buffers."""
        return [t for mean in self._slots().values() for t in mean.buffers] + list(self.weights.staging.values())

    def nbytes(self) -> int:
        """Bytes the averager holds: every candidate's fp32 averages plus the staging buffers."""
        return sum(t.numel() * t.element_size() for t in self.allocated_tensors())

    # ---------------------------------------------------------------- state
    def _slots(self) -> Dict[str, object]:
        return {key: mean for store in self.candidate_stores for key, mean in store.slots().items()}

    def settings(self) -> List[dict]:
        """How the candidates are laid out (window starts, decays), compared on resume."""
        return [store.settings() for store in self.candidate_stores if store.settings() is not None]

    def state_dict(self) -> dict:
        """Averages (fp32 tensors by ``slot/name``), counters and layout, for checkpoints."""
        slots = self._slots()
        return {
            "averages": {
                f"{key}/{name}": tensor for key, mean in slots.items() for name, tensor in zip(self.names, mean.buffers)
            },
            "names": list(self.names),
            "slots": {key: mean.n_averaged for key, mean in slots.items()},
            "last_steps": {key: mean.last_step for key, mean in slots.items() if hasattr(mean, "last_step")},
            "n_averaged": self.n_averaged,
            "n_skipped": self.n_skipped,
            "strategy": self.strategy.to_dict(),
            "candidates": self.settings(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore averages and counters; refuses state written for another model, strategy or layout."""
        slots = self._slots()
        averages, counts = check_saved_state(state, self.names, slots, self.strategy.to_dict())
        for key, mean in slots.items():
            torch._foreach_copy_(mean.buffers, [averages[f"{key}/{name}"] for name in self.names])
            mean.n_averaged = int(counts[key])
            if hasattr(mean, "last_step"):
                mean.last_step = int(state.get("last_steps", {}).get(key, 0))
        self.n_averaged = int(state["n_averaged"])
        self.n_skipped = int(state.get("n_skipped", 0))
