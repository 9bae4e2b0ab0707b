"""Reading a model's averaged weights for an update: matched to the averages, checked finite, as fp32.

`ModelWeights` is the read side of `hf_swa.averaging.averager.WeightAverager`'s hot path. Per update it

- finds the model's averaged tensors (this rank's part). The first read of a model matches its
  parameters by name (`averaged_parameters`: a walk over the module tree and a regex per name);
  later reads of the same model reuse those parameters after a check per tensor that it is still
  trainable and of the same shape, so a step costs no module walk. Sharded models (FSDP2 swaps
  its parameters between shards and full tensors, ZeRO-3 gathers) are matched on every read;
- checks them for NaN/inf in one multi-tensor reduction per device (`all_finite`; under
  sharding all ranks agree, in one scalar all-reduce);
- hands them over as fp32 tensors on the averages' device: the weights themselves, or staging
  copies (bf16/fp16 weights, or averages on another device) in buffers allocated once.
"""

from __future__ import annotations

import weakref
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from . import distributed
from .parameters import averaged_parameters, local_tensor, mismatch_message


def all_finite(tensors: List[torch.Tensor]) -> bool:
    """Whether every element of `tensors` is finite: one fp32 norm per tensor (one multi-tensor pass and one
    host sync per device), confirmed element by element only when a norm is not finite.

    >>> all_finite([torch.ones(3), torch.zeros(2)]), all_finite([torch.ones(3), torch.tensor([0.0, float("-inf")])])
    (True, False)
    """
    by_device: Dict[torch.device, List[torch.Tensor]] = {}
    for tensor in tensors:
        by_device.setdefault(tensor.device, []).append(tensor)
    if all(bool(torch.stack(_norms(group)).isfinite().all()) for group in by_device.values()):
        return True
    # A norm can overflow for large finite weights: confirm element by element.
    return all(bool(t.isfinite().all()) for t in tensors)


def _norms(tensors: List[torch.Tensor]) -> List[torch.Tensor]:
    try:
        return list(torch._foreach_norm(tensors, 2, dtype=torch.float32))
    except TypeError:  # pragma: no cover - a torch whose _foreach_norm takes no dtype
        return [t.sum(dtype=torch.float32) for t in tensors]


class ModelWeights:
    """A model's averaged tensors, read for updates (see the module docstring).

    Args:
        names: the averaged parameters' names, in the averages' order.
        averages: one fp32 buffer per name (the shapes and device the weights are read into).
        tensors: the model's tensors now (their dtypes and devices fix which need staging).
        new_buffer: ``new_buffer(like, dtype)`` allocates a staging buffer beside the averages.
        sharded: each rank holds a part of the parameters (all ranks then agree on the check).
        reshard: puts FSDP2 modules back to their shards before a read (``None``: no FSDP2).

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> averages = [torch.zeros(1, 2), torch.zeros(1)]
        >>> weights = ModelWeights(["weight", "bias"], averages, averages, lambda like, dtype: torch.zeros_like(like))
        >>> [tuple(t.shape) for t in weights.fp32_if_finite(model)]
        [(1, 2), (1,)]
    """

    def __init__(
        self,
        names: List[str],
        averages: List[torch.Tensor],
        tensors: List[torch.Tensor],
        new_buffer: Callable[[torch.Tensor, torch.dtype], torch.Tensor],
        sharded: bool = False,
        reshard: Optional[Callable[[nn.Module], None]] = None,
    ):
        self.names, self.averages, self.sharded, self.reshard = names, averages, sharded, reshard
        # Tensors folded in directly (fp32, on the averages' device) or through a staging buffer allocated once.
        self.staging: Dict[int, torch.Tensor] = {
            i: new_buffer(t, torch.float32)
            for i, (t, a) in enumerate(zip(tensors, averages))
            if not (t.dtype == torch.float32 and t.device == a.device)
        }
        self._matched: Optional[Tuple[weakref.ref, List[torch.Tensor]]] = None  # (model, its parameters)

    def matched_parameters(self, model: nn.Module) -> List[Tuple[str, torch.Tensor]]:
        """``(name, parameter)`` of the model's averaged parameters; refuses a model with other ones."""
        if self.reshard is not None:
            self.reshard(model)
        named = averaged_parameters(model)
        names = [name for name, _ in named]
        if names != self.names:
            raise ValueError(mismatch_message(self.names, names, "the averager was built for", "this model has"))
        return named

    def tensors(self, model: nn.Module) -> List[torch.Tensor]:
        """The model's averaged tensors (this rank's part), in the averages' order; refuses another model."""
        if self._matched is not None and self._matched[0]() is model:
            params = self._matched[1]
            if all(p.requires_grad and p.shape == a.shape for p, a in zip(params, self.averages)):
                return [p.detach() for p in params]
        params = [p for _, p in self.matched_parameters(model)]
        tensors = [local_tensor(p) for p in params]
        for name, tensor, average in zip(self.names, tensors, self.averages):
            if tensor.shape != average.shape:
                raise ValueError(
                    f"Parameter {name!r} has shape {tuple(tensor.shape)} but its average has {tuple(average.shape)}: "
                    "the averager was built for another model (or another sharding)."
                )
        # Plain parameters only: FSDP2 swaps shards and full tensors, ZeRO-3 keeps its partition aside.
        plain = not self.sharded and self.reshard is None
        plain = plain and all(type(p) is nn.Parameter and not hasattr(p, "ds_tensor") for p in params)
        self._matched = (weakref.ref(model), params) if plain else None
        return tensors

    def fp32(self, tensors: List[torch.Tensor]) -> List[torch.Tensor]:
        """The weights as fp32 tensors on the averages' devices: themselves or their staging copies."""
        if not self.staging:
            return tensors
        buffers = list(self.staging.values())
        weights = [tensors[i] for i in self.staging]
        torch._foreach_copy_(buffers, weights, non_blocking=True)
        if any(t.is_cuda for t in weights) and buffers[0].device.type == "cpu":
            torch.cuda.current_stream().synchronize()
        return [self.staging.get(i, t) for i, t in enumerate(tensors)]

    def fp32_if_finite(self, model: nn.Module, check: bool = True) -> Optional[List[torch.Tensor]]:
        """The model's weights as fp32 sources, or ``None`` when `check` finds NaN/inf in them."""
        tensors = self.tensors(model)
        if check:
            finite = all_finite(tensors)
            if self.sharded:  # all ranks must agree, to keep the counters equal
                finite = distributed.all_ranks(finite)
            if not finite:
                return None
        return self.fp32(tensors)
