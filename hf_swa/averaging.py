"""The averaging engine: fp32 running averages of a model's trainable weights.

Knows tensors and modules only (nothing of `Trainer`, GLUE or the Hub).
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Dict, Iterator, List, Optional, Tuple, Union

import torch
from torch import nn

from . import distributed
from .strategies import ExponentialAverage, UniformAverage, make_strategy

logger = logging.getLogger(__name__)

# Prefixes that wrappers (DDP, FSDP, activation checkpointing, torch.compile) add to parameter names.
_WRAPPER_PREFIX = re.compile(r"(^module\.)|(_fsdp_wrapped_module\.)|(_checkpoint_wrapped_module\.)|(_orig_mod\.)")


def clean_parameter_name(name: str) -> str:
    """Drop the prefixes that DDP/FSDP/checkpointing/compile wrappers add to a parameter name.

    >>> clean_parameter_name("module.bert._fsdp_wrapped_module.embeddings.word_embeddings.weight")
    'bert.embeddings.word_embeddings.weight'
    """
    return _WRAPPER_PREFIX.sub("", name)


def local_tensor(param: torch.Tensor) -> torch.Tensor:
    """The part of `param` this process holds: a DTensor's local shard, a ZeRO-3 partition, or the tensor itself."""
    if hasattr(param, "ds_tensor"):  # DeepSpeed ZeRO-3: param.data is empty, the partition lives in ds_tensor
        return param.ds_tensor
    if hasattr(param, "_local_tensor"):  # torch DTensor (FSDP2, tensor parallel)
        return param._local_tensor
    return param.detach()


def averaged_parameters(model: nn.Module) -> List[Tuple[str, torch.Tensor]]:
    """The parameters SWA averages: each trainable floating-point parameter once.

    Tied weights (GPT-2's ``lm_head.weight`` and ``transformer.wte.weight``) are one
    tensor and appear once. Frozen parameters and buffers are left out.

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    >>> model[1].weight.requires_grad_(False)  # doctest: +ELLIPSIS
    Parameter...
    >>> [name for name, _ in averaged_parameters(model)]
    ['0.weight', '0.bias', '1.bias']
    """
    seen = set()
    selected = []
    for name, param in model.named_parameters():
        if id(param) in seen or not param.requires_grad or not param.is_floating_point():
            continue
        seen.add(id(param))
        selected.append((clean_parameter_name(name), param))
    return selected


class WeightAverager:
    """fp32 running averages of a model's trainable floating-point parameters.

    One update is a single multi-tensor pass (``torch._foreach_lerp_``) that allocates
    nothing: for fp32 parameters on the averages' device it reads the average and the
    weight and writes the average (12 bytes a parameter). Parameters in another dtype
    (bf16/fp16) or on another device first go through staging buffers allocated once.
    The model is never deep-copied.

    Sharded models (FSDP2 ``fully_shard``, DeepSpeed ZeRO-3): each rank averages the
    shard it holds (`local_tensor`), with no gather per step; `sharded` is then True and
    `hf_swa.distributed.full_averages` gathers the full averages, only to save. Under
    DDP and ZeRO-1/2 every rank averages the same full weights and holds the same averages.

    Args:
        model: the model whose weights are averaged (fixes the set of averaged tensors).
        device: where the averages live; ``None`` keeps each beside its parameter,
            ``"cpu"`` keeps them in host memory (pinned when CUDA is available).
        strategy: ``"uniform"`` (SWA), ``"ema"``, or a strategy object with ``weight(n)``.
        ema_decay: decay for ``strategy="ema"``.
        skip_non_finite: check each snapshot and skip (and count) one that holds NaN/inf.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from hf_swa import WeightAverager
        >>> model = nn.Linear(2, 1)
        >>> averager = WeightAverager(model)
        >>> for value in (1.0, 2.0, 6.0):
        ...     with torch.no_grad():
        ...         _ = model.weight.fill_(value)
        ...     averager.update(model)
        True
        True
        True
        >>> averager.n_averaged
        3
        >>> with averager.averaged_weights(model):
        ...     print(model.weight.tolist())
        [[3.0, 3.0]]
        >>> model.weight.tolist()
        [[6.0, 6.0]]
    """

    def __init__(
        self,
        model: nn.Module,
        device: Optional[Union[str, torch.device]] = None,
        strategy: Union[str, UniformAverage, ExponentialAverage] = "uniform",
        ema_decay: float = 0.999,
        skip_non_finite: bool = True,
    ):
        distributed.check_supported(model)
        self._has_fsdp2 = bool(distributed.fsdp2_modules(model))
        self._reshard(model)
        named = averaged_parameters(model)
        if not named:
            raise ValueError(
                "The model has no trainable floating-point parameters, so there is nothing to average. "
                "Unfreeze some parameters (requires_grad=True) or do not use SWA for this model."
            )
        self.strategy = make_strategy(strategy, ema_decay)
        self.device = torch.device(device) if device is not None else None
        self.skip_non_finite = skip_non_finite
        self.names = [name for name, _ in named]
        self.n_averaged = 0
        self.n_skipped = 0
        self._in_model = False
        self._backup: Optional[List[torch.Tensor]] = None

        # Each rank holds a different part of these parameters (FSDP2 shard / ZeRO-3 partition).
        self.sharded = any(distributed.is_sharded_parameter(p) for _, p in named)
        tensors = [local_tensor(p) for _, p in named]
        self._averages = [self._new_buffer(t, torch.float32) for t in tensors]
        # Indexes of tensors folded in directly (fp32, same device) vs through a staging buffer.
        self._direct = [i for i, t in enumerate(tensors) if self._is_direct(t, self._averages[i])]
        self._staged = [i for i, t in enumerate(tensors) if not self._is_direct(t, self._averages[i])]
        self._staging = [self._new_buffer(tensors[i], torch.float32) for i in self._staged]

    # ---------------------------------------------------------------- helpers
    def _pin(self) -> bool:
        return self.device is not None and self.device.type == "cpu" and torch.cuda.is_available()

    def _new_buffer(self, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        device = self.device if self.device is not None else like.device
        return torch.zeros(like.shape, dtype=dtype, device=device, pin_memory=self._pin())

    @staticmethod
    def _is_direct(tensor: torch.Tensor, average: torch.Tensor) -> bool:
        return tensor.dtype == torch.float32 and tensor.device == average.device

    def _reshard(self, model: nn.Module) -> None:
        # FSDP2 leaves the root's parameters unsharded after a forward without backward (evaluation).
        if self._has_fsdp2:
            distributed.reshard(distributed.fsdp2_modules(model))

    def matched_parameters(self, model: nn.Module) -> List[Tuple[str, torch.Tensor]]:
        """``(name, parameter)`` of the model's averaged parameters, in the order of the averages.

        Refuses a model whose averaged parameters differ from the one the averager was built for.
        """
        self._reshard(model)
        named = averaged_parameters(model)
        names = [name for name, _ in named]
        if names != self.names:
            raise ValueError(_mismatch_message(self.names, names, "the averager was built for", "this model has"))
        return named

    def _tensors(self, model: nn.Module) -> List[torch.Tensor]:
        """The model's averaged tensors (this rank's part), in the order of the averages; refuses another model."""
        names = self.names
        tensors = [local_tensor(p) for _, p in self.matched_parameters(model)]
        for name, tensor, average in zip(names, tensors, self._averages):
            if tensor.shape != average.shape:
                raise ValueError(
                    f"Parameter {name!r} has shape {tuple(tensor.shape)} but its average has {tuple(average.shape)}: "
                    "the averager was built for another model (or another sharding)."
                )
        return tensors

    def _agree(self, flag: bool) -> bool:
        return distributed.all_ranks(flag) if self.sharded else flag

    @staticmethod
    def _all_finite(tensors: List[torch.Tensor]) -> bool:
        # One read of the weights: a sum is NaN/inf when an element is (and one host sync per device).
        by_device: Dict[torch.device, List[torch.Tensor]] = {}
        for tensor in tensors:
            by_device.setdefault(tensor.device, []).append(tensor.sum(dtype=torch.float32))
        if all(bool(torch.stack(sums).isfinite().all()) for sums in by_device.values()):
            return True
        # A sum can overflow for large finite weights: confirm element by element.
        return all(bool(t.isfinite().all()) for t in tensors)

    # ---------------------------------------------------------------- averaging
    @torch.no_grad()
    def update(self, model: nn.Module) -> bool:
        """Fold the model's current weights into the averages.

        Returns ``False`` (and counts it in ``n_skipped``, with a warning) when the
        snapshot holds NaN or inf and ``skip_non_finite`` is set; the averages are then
        untouched.
        """
        tensors = self._tensors(model)
        # Sharded: each rank checks its own shard, and all ranks must agree to keep the counters equal.
        if self.skip_non_finite and not self._agree(self._all_finite(tensors)):
            self.n_skipped += 1
            logger.warning(
                "SWA: skipped a snapshot with NaN/inf weights (%d skipped so far); the average is unchanged.",
                self.n_skipped,
            )
            return False
        weight = self.strategy.weight(self.n_averaged)
        direct_avg = [self._averages[i] for i in self._direct]
        direct_new = [tensors[i] for i in self._direct]
        staged_avg = [self._averages[i] for i in self._staged]
        staged_new = [tensors[i] for i in self._staged]
        if weight == 1.0:  # first snapshot: exact copy
            if direct_avg:
                torch._foreach_copy_(direct_avg, direct_new)
            if staged_avg:
                torch._foreach_copy_(staged_avg, staged_new)
        else:
            if direct_avg:
                torch._foreach_lerp_(direct_avg, direct_new, weight)
            if staged_avg:
                torch._foreach_copy_(self._staging, staged_new, non_blocking=True)
                if any(t.is_cuda for t in staged_new) and self._staging[0].device.type == "cpu":
                    torch.cuda.current_stream().synchronize()
                torch._foreach_lerp_(staged_avg, self._staging, weight)
        self.n_averaged += 1
        return True

    def averages(self) -> Dict[str, torch.Tensor]:
        """The fp32 averages by (cleaned) parameter name (the tensors themselves, not copies)."""
        return dict(zip(self.names, self._averages))

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's weights with the averages (cast to each parameter's dtype)."""
        self._require_snapshot()
        torch._foreach_copy_(self._tensors(model), self._averages)
        self._written(model)

    # ---------------------------------------------------------------- swapping
    @property
    def holds_averages(self) -> bool:
        """True while `swap_in` has put the averages into the model (live weights kept aside)."""
        return self._in_model

    @torch.no_grad()
    def swap_in(self, model: nn.Module) -> None:
        """Put the averages into the model, keeping the live weights aside bit-exactly."""
        self._require_snapshot()
        if self._in_model:
            return
        tensors = self._tensors(model)
        if self._backup is None:
            self._backup = [self._new_buffer(t, t.dtype) for t in tensors]
        torch._foreach_copy_(self._backup, tensors)
        torch._foreach_copy_(tensors, self._averages)
        self._in_model = True
        self._written(model)

    @torch.no_grad()
    def swap_out(self, model: nn.Module) -> None:
        """Put the live weights kept by `swap_in` back into the model."""
        if not self._in_model:
            return
        torch._foreach_copy_(self._tensors(model), self._backup)
        self._in_model = False
        self._written(model)

    def _written(self, model: nn.Module) -> None:
        # ZeRO-3 keeps small parameters gathered: re-gather them from the partitions just written.
        if self.sharded:
            distributed.refresh_gathered(p for _, p in averaged_parameters(model))

    @contextlib.contextmanager
    def averaged_weights(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block the model holds the averages; the live weights come back after, even on error."""
        if self._in_model:
            yield model
            return
        self.swap_in(model)
        try:
            yield model
        finally:
            self.swap_out(model)

    @contextlib.contextmanager
    def live_weights(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block the model holds its live weights, even if the averages were swapped in."""
        if not self._in_model:
            yield model
            return
        self.swap_out(model)
        try:
            yield model
        finally:
            self.swap_in(model)

    def release_live_weights(self) -> None:
        """Forget the live weights kept by `swap_in` (the model keeps the averages)."""
        self._in_model = False
        self._backup = None

    def _require_snapshot(self) -> None:
        if self.n_averaged == 0:
            raise RuntimeError("No snapshot has been averaged yet: call update(model) first.")

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Averages (fp32 tensors by name) and counters, for checkpoints."""
        return {
            "averages": self.averages(),
            "n_averaged": self.n_averaged,
            "n_skipped": self.n_skipped,
            "strategy": self.strategy.to_dict(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore averages and counters; refuses state written for another model or strategy."""
        averages = state["averages"]
        if list(averages) != self.names and set(averages) != set(self.names):
            raise ValueError(_mismatch_message(list(averages), self.names, "the saved SWA state has", "this model has"))
        for name, average in zip(self.names, self._averages):
            saved = averages[name]
            if saved.shape != average.shape:
                raise ValueError(
                    f"SWA state for {name!r} has shape {tuple(saved.shape)} but this model's parameter has "
                    f"{tuple(average.shape)}: the state was saved for another model."
                )
        if state.get("strategy", self.strategy.to_dict()) != self.strategy.to_dict():
            raise ValueError(
                f"SWA state was saved with strategy {state['strategy']} but this averager uses "
                f"{self.strategy.to_dict()}: use the same strategy to resume."
            )
        for name, average in zip(self.names, self._averages):
            average.copy_(averages[name])
        self.n_averaged = int(state["n_averaged"])
        self.n_skipped = int(state.get("n_skipped", 0))


def _mismatch_message(expected: List[str], found: List[str], expected_label: str, found_label: str) -> str:
    missing = [n for n in expected if n not in set(found)]
    unexpected = [n for n in found if n not in set(expected)]

    def show(names: List[str]) -> str:
        return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")

    parts = [f"Parameters differ: {expected_label} {len(expected)} averaged parameters, {found_label} {len(found)}."]
    if missing:
        parts.append(f"Only in the first: {show(missing)}.")
    if unexpected:
        parts.append(f"Only in the second: {show(unexpected)}.")
    if not missing and not unexpected:
        parts.append("Same names in another order.")
    parts.append("SWA state must come from the same model with the same trainable parameters.")
    return " ".join(parts)
