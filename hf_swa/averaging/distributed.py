"""Sharded weights: FSDP2 (DTensor) shards and DeepSpeed ZeRO-3 partitions.

The averaging engine reads and writes the part of each parameter this process holds
(`hf_swa.averaging.parameters.local_tensor`). Under DDP and ZeRO-1/2 that is the whole parameter,
the same on every rank, so every rank holds the same averages. Under FSDP2 and ZeRO-3
it is this rank's shard: each rank averages its own shard, nothing is gathered per
step, and the full averages are gathered only to save (`full_averages`, or by the
Trainer's own saving once the averages are swapped into the shards).

What the engines need around those reads and writes lives here:

- FSDP2 leaves the root module's parameters unsharded after a forward without a
  backward (evaluation); `reshard` puts the sharded DTensors back first, so the engine
  always sees the shards and the next forward gathers what was written into them.
- ZeRO-3 keeps small ("persistent") parameters gathered on every rank; after the
  partitions are written, `refresh_gathered` re-gathers them from the new partitions
  (as DeepSpeed does after each optimizer step).
- FSDP1 (`FullyShardedDataParallel`) flattens parameters into per-rank flat buffers;
  it is refused up front (`check_supported`): use FSDP2 (`fsdp_version: 2`).
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Union

import torch
from torch import nn

from .parameters import is_dtensor, local_tensor  # noqa: F401  (is_dtensor: a public name here too)

FSDP1_MESSAGE = (
    "SWA does not support FSDP1 (FullyShardedDataParallel): it flattens the parameters into per-rank "
    "flat buffers, so the averaged weights could not be matched to the model's parameters or saved. "
    "Use FSDP2 instead: `fsdp_version: 2` in the Accelerate config, or "
    "fsdp_config={'version': 2} in TrainingArguments (the default in transformers 5)."
)


def is_zero3_parameter(tensor: torch.Tensor) -> bool:
    """A DeepSpeed ZeRO-3 parameter (its partition lives in ``ds_tensor``)."""
    return hasattr(tensor, "ds_tensor")


def is_sharded_parameter(param: torch.Tensor) -> bool:
    """True when each rank holds a different part of `param` (FSDP2/DTensor shard, ZeRO-3 partition)."""
    if is_zero3_parameter(param):
        return True
    if is_dtensor(param):
        return any(placement.is_shard() for placement in param.placements)
    return False


def rank_and_world_size() -> tuple:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def all_ranks(flag: bool) -> bool:
    """True when `flag` is True on every rank (one scalar all-reduce; the flag itself without a process group)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    if torch.distributed.get_world_size() == 1:
        return flag
    backend = str(torch.distributed.get_backend()).lower()
    device = torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
    return bool(value.item())


def _fsdp1_class():
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch built without distributed
        return None
    return FullyShardedDataParallel


def _fsdp2_class():
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch < 2.6
        try:
            from torch.distributed._composable.fsdp import FSDPModule
        except ImportError:
            return None
    return FSDPModule


def check_supported(model: nn.Module) -> None:
    """Refuse sharding schemes whose parameters hf_swa cannot average correctly, with the fix."""
    fsdp1 = _fsdp1_class()
    if fsdp1 is not None and any(isinstance(m, fsdp1) for m in model.modules()):
        raise ValueError(FSDP1_MESSAGE)
    for name, param in model.named_parameters():
        if is_zero3_parameter(param):
            location = getattr(param.ds_tensor, "final_location", None)
            if location is not None and "nvme" in str(location).lower():
                raise ValueError(
                    f"SWA does not support ZeRO-3 parameter offload to NVMe ({name!r} lives on NVMe): the "
                    "partitions are swapped out between steps. Offload parameters to 'cpu' or not at all."
                )


def fsdp2_modules(model: nn.Module) -> List[nn.Module]:
    """The FSDP2 (`fully_shard`) modules inside `model`."""
    fsdp2 = _fsdp2_class()
    if fsdp2 is None:
        return []
    return [m for m in model.modules() if isinstance(m, fsdp2)]


def reshard(modules: Iterable[nn.Module]) -> None:
    """Put FSDP2 modules back to their sharded parameters (a no-op for modules already sharded)."""
    for module in modules:
        module.reshard()


@torch.no_grad()
def refresh_gathered(params: Iterable[torch.Tensor]) -> None:
    """Re-gather ZeRO-3 parameters that are currently gathered, after their partitions changed.

    DeepSpeed keeps "persistent" parameters (smaller than `stage3_param_persistence_threshold`)
    gathered on every rank; their gathered copies would otherwise keep the old values.
    Collective: every rank must call it with the same parameters.
    """
    gathered = [p for p in params if is_zero3_parameter(p) and getattr(p.ds_status, "name", "") == "AVAILABLE"]
    if gathered:
        gathered[0].partition(param_list=gathered)  # frees the stale gathered copies, keeps ds_tensor
        gathered[0].all_gather(param_list=gathered)


@torch.no_grad()
def full_tensor(param: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """The full tensor whose shard on this rank is `local`, sharded like `param`. Collective when sharded.

    `local` may have another dtype or device than the parameter's shard (fp32 averages in
    host memory); the gather runs on the parameter's device, the result keeps `local`'s dtype.
    """
    if is_zero3_parameter(param):
        group = param.ds_process_group
        world_size = torch.distributed.get_world_size(group)
        device = param.ds_tensor.device
        gathered = torch.empty(world_size * local.numel(), dtype=local.dtype, device=device)
        torch.distributed.all_gather_into_tensor(gathered, local.to(device).contiguous().view(-1), group=group)
        return gathered[: param.ds_numel].view(param.ds_shape)
    if is_dtensor(param):
        from torch.distributed.tensor import DTensor

        device = local_tensor(param).device
        sharded = DTensor.from_local(
            local.to(device),
            param.device_mesh,
            param.placements,
            run_check=False,
            shape=param.shape,
            stride=param.stride(),
        )
        return sharded.full_tensor()
    return local


@torch.no_grad()
def full_averages(
    averager, model: nn.Module, device: Optional[Union[str, torch.device]] = "cpu", name: str = "swa"
) -> Dict[str, torch.Tensor]:
    """A candidate's full fp32 averages by parameter name (``swa``: the main one), gathered from every rank's shard.

    Meant for saving: under FSDP2 or ZeRO-3 each rank averages only its shard, and this
    gathers each tensor once (one parameter at a time, so the accelerator holds at most
    one full parameter beyond the model). Collective under sharding: call it on every
    rank. Replicated parameters (single process, DDP, ZeRO-1/2) are copied as they are.

    Args:
        averager: a `WeightAverager` built for `model`, with at least one snapshot.
        model: the (sharded) model.
        device: where the full tensors go (``"cpu"`` by default; ``None``: the gather device).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from hf_swa import WeightAverager
        >>> from hf_swa.averaging.distributed import full_averages
        >>> model = nn.Linear(2, 1)
        >>> averager = WeightAverager(model)
        >>> _ = averager.update(model)
        >>> sorted(full_averages(averager, model))
        ['bias', 'weight']
    """
    averager.require_snapshot()
    full = {}
    for (key, param), average in zip(averager.matched_parameters(model), averager.averages(name).values()):
        tensor = full_tensor(param, average)
        full[key] = tensor.to(device, copy=True) if device is not None else tensor.clone()
    return full
