"""Which parameters are averaged, and under which names.

Each trainable floating-point parameter once (tied weights are one tensor), named as in
the unwrapped model: the prefixes that DDP, FSDP, activation checkpointing and
``torch.compile`` add are dropped.
"""

from __future__ import annotations

import re
from typing import List, Tuple

import torch
from torch import nn

# Prefixes that wrappers (DDP, FSDP, activation checkpointing, torch.compile) add to parameter names.
_WRAPPER_PREFIX = re.compile(r"(^module\.)|(_fsdp_wrapped_module\.)|(_checkpoint_wrapped_module\.)|(_orig_mod\.)")


def clean_parameter_name(name: str) -> str:
    """Drop the prefixes that DDP/FSDP/checkpointing/compile wrappers add to a parameter name.

    >>> clean_parameter_name("module.bert._fsdp_wrapped_module.embeddings.word_embeddings.weight")
    'bert.embeddings.word_embeddings.weight'
    """
    return _WRAPPER_PREFIX.sub("", name)


def is_dtensor(tensor: torch.Tensor) -> bool:
    """A torch DTensor (FSDP2, tensor parallel), by its public class.

    >>> is_dtensor(torch.zeros(2))
    False
    """
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def local_tensor(param: torch.Tensor) -> torch.Tensor:
    """The part of `param` this process holds: a DTensor's local shard, a ZeRO-3 partition, or the tensor itself.

    Writes into it (under ``torch.no_grad()``) land in `param`: `DTensor.to_local` returns a
    view of the local shard.
    """
    if hasattr(param, "ds_tensor"):  # DeepSpeed ZeRO-3: param.data is empty, the partition lives in ds_tensor
        return param.ds_tensor
    if is_dtensor(param):
        return param.detach().to_local()
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


def require_averaged_parameters(model: nn.Module) -> List[Tuple[str, torch.Tensor]]:
    """`averaged_parameters`, refusing a model that has none (the one home of that rule)."""
    named = averaged_parameters(model)
    if not named:
        raise ValueError(
            "The model has no trainable floating-point parameters, so there is nothing to average. "
            "Unfreeze some parameters (requires_grad=True), or train without SWA (swa=False)."
        )
    return named


def mismatch_message(expected: List[str], found: List[str], expected_label: str, found_label: str) -> str:
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
