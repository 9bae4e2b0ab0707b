"""BatchNorm statistics for averaged weights: recomputed on training data, as `torch.optim.swa_utils.update_bn` does.

Averaging the weights leaves BatchNorm's running statistics (buffers, never averaged) as
the live weights left them, and they do not fit the average. `update_bn` runs the model
over the training batches once, in train mode and without gradients, with every BatchNorm
module's momentum set to ``None`` (a cumulative mean over the batches) after resetting its
statistics: torch's `update_bn`, taking Hugging Face batches (dicts of tensors) as well as
tensors. `CandidateStatistics` keeps the live statistics aside and the recomputed ones of
each candidate, so that swapping weights swaps the statistics that go with them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Dict, List, Optional

import torch
from torch import nn

from .selection import LIVE

logger = logging.getLogger(__name__)

UPDATE_BN_MESSAGE = (
    "swa_update_bn recomputes the BatchNorm statistics of the shipped average over the training data at the end "
    "of training, but the Trainer has no train_dataloader to give it. Train with a train_dataset, or set "
    "swa_update_bn=False (--swa_update_bn false), and the average keeps the live weights' BatchNorm statistics."
)


def batchnorm_modules(model: nn.Module) -> List[nn.Module]:
    """The model's torch BatchNorm modules (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``) that keep statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def has_batchnorm(model: nn.Module) -> bool:
    """Whether the model has a BatchNorm module with running statistics."""
    return bool(batchnorm_modules(model))


def statistics(model: nn.Module) -> Dict[str, torch.Tensor]:
    """A copy of every BatchNorm buffer (running_mean, running_var, num_batches_tracked) by name."""
    kept = {id(m) for m in batchnorm_modules(model)}
    return {
        f"{prefix}.{name}" if prefix else name: buffer.detach().clone()
        for prefix, module in model.named_modules()
        if id(module) in kept
        for name, buffer in module.named_buffers(recurse=False)
        if buffer is not None
    }


@torch.no_grad()
def load_statistics(model: nn.Module, values: Mapping[str, torch.Tensor]) -> None:
    """Copy `values` (from `statistics`) into the model's BatchNorm buffers."""
    buffers = dict(model.named_buffers())
    for name, value in values.items():
        buffers[name].copy_(value)


def _model_inputs(batch, device: Optional[torch.device]):
    def to(value):
        return value.to(device) if device is not None and torch.is_tensor(value) else value

    if isinstance(batch, Mapping):
        return (), {key: to(value) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):  # (inputs, targets), as torch's update_bn takes it
        batch = batch[0]
    return (to(batch),), {}


@torch.no_grad()
def update_bn(model: nn.Module, batches: Iterable, device: Optional[torch.device] = None) -> int:
    """Recompute every BatchNorm module's running statistics over `batches`; returns how many batches ran.

    Each batch is a dict of model inputs (``model(**batch)``), a tensor, or a list/tuple whose
    first item is the input, as in `torch.optim.swa_utils.update_bn`. Tensors go to `device`
    (default: where the model's first parameter is). The statistics are reset and averaged
    cumulatively (``momentum=None``), in train mode, without gradients; every module's mode and
    every BatchNorm's momentum come back as they were.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).eval()
        >>> _ = torch.nn.init.eye_(model[0].weight), torch.nn.init.zeros_(model[0].bias)
        >>> update_bn(model, [torch.tensor([[0.0, 1.0], [2.0, 3.0]]), torch.tensor([[4.0, 5.0], [6.0, 7.0]])])
        2
        >>> model[1].running_mean.tolist(), model[1].num_batches_tracked.item(), model.training
        ([3.0, 4.0], 2, False)
    """
    modules = batchnorm_modules(model)
    if not modules:
        return 0
    if device is None:
        device = next((p.device for p in model.parameters()), None)
    modes = [(module, module.training) for module in model.modules()]
    momenta = [(module, module.momentum) for module in modules]
    for module in modules:
        module.reset_running_stats()
        module.momentum = None
    model.train()
    count = 0
    try:
        for batch in batches:
            args, kwargs = _model_inputs(batch, device)
            model(*args, **kwargs)
            count += 1
    finally:
        for module, momentum in momenta:
            module.momentum = momentum
        for module, mode in modes:
            module.training = mode
    if count == 0:
        raise ValueError("update_bn got no batches: BatchNorm statistics need at least one batch of training data.")
    return count


class CandidateStatistics:
    """The BatchNorm statistics that go with each set of weights the model can hold.

    The live statistics are kept aside when it is built; a candidate's are recomputed with
    `update_bn` over `batches` the first time the model holds it, then reused.

    Args:
        model: the model, holding its live weights and statistics.
        batches: the training batches (re-iterable, e.g. the Trainer's train dataloader).
    """

    def __init__(self, model: nn.Module, batches: Iterable):
        self.batches = batches
        self.by_name: Dict[str, Dict[str, torch.Tensor]] = {LIVE: statistics(model)}
        self.current = LIVE

    def use(self, model: nn.Module, name: str) -> None:
        """Give the model the statistics of `name` (``live`` or a candidate), which it must hold now."""
        if name == self.current:
            return
        if name in self.by_name:
            load_statistics(model, self.by_name[name])
        else:
            count = update_bn(model, self.batches)
            self.by_name[name] = statistics(model)
            logger.info("SWA: recomputed the BatchNorm statistics of %r over %d training batches.", name, count)
        self.current = name
