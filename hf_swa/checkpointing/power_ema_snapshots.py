"""Power-EMA snapshots on disk: one safetensors file per width and step, written atomically.

A snapshot is one power EMA (`hf_swa.averaging.candidates.PowerFunctionMeans`) at one optimizer
step: ``<folder>/pema-<σ_rel>-<step:09d>.safetensors``. Its tensors are named as the
model's parameters (those the averager keeps), so a snapshot reads like a state dict, and
its safetensors metadata header holds ``std`` (σ_rel), ``gamma`` (γ) and ``step`` (t): the
profile that reconstruction (`hf_swa.posthoc.power_ema_reconstruction`) needs, read from the file
itself and never from its name. One file per (width, step), rather than one per step
holding every width, keeps the tensor names the model's own, lets a width's history be
read, copied or pruned on its own, and makes each file one column of the solve.

A file is written tensor by tensor into a temporary file of the same folder, flushed to
disk (``fsync``) and renamed into place, so a crash (even ``kill -9``) leaves either the
whole snapshot or none; leftover ``.tmp-*`` files are ignored by the reader.

Example:
    >>> import tempfile, torch
    >>> from torch import nn
    >>> from hf_swa import WeightAverager
    >>> model = nn.Linear(2, 1)
    >>> averager = WeightAverager(model, power_ema_stds=[0.05, 0.1])
    >>> for step in (1, 2, 3):
    ...     _ = averager.update_power_emas(model, step)
    >>> folder = tempfile.mkdtemp()
    >>> [os.path.basename(p) for p in save_power_ema_snapshots(averager, folder)]
    ['pema-0.05-000000003.safetensors', 'pema-0.1-000000003.safetensors']
    >>> [(s.std, round(s.gamma, 2), s.step, s.names) for s in list_power_ema_snapshots(folder)]
    [(0.05, 16.97, 3, ['bias', 'weight']), (0.1, 6.94, 3, ['bias', 'weight'])]
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import List, Mapping, Optional, Union

import torch

from .files import open_safetensors
from .names import POWER_EMA_FILE, power_ema_file
from .state import atomic_write  # the one home of write-to-temporary-then-rename
from .writer import write_safetensors

__all__ = ["PowerEMASnapshot", "list_power_ema_snapshots", "save_power_ema_snapshots", "write_power_ema_snapshot"]

#: The ``hf_swa`` entry of a snapshot's metadata header.
SNAPSHOT_FORMAT = "power_ema_snapshot/1"
_DTYPE_BY_NAME = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: About how many snapshots a run keeps by default.
SNAPSHOTS_PER_RUN = 32


def default_snapshot_every(max_steps: int) -> int:
    """Every how many optimizer steps to snapshot by default: about `SNAPSHOTS_PER_RUN` per run, at most one a step.

    >>> default_snapshot_every(1000), default_snapshot_every(100), default_snapshot_every(10)
    (32, 4, 1)
    """
    return max(1, math.ceil(max_steps / SNAPSHOTS_PER_RUN))


@dataclass(frozen=True)
class PowerEMASnapshot:
    """A snapshot file, from its header: ``path``, ``std`` (σ_rel), ``gamma``, ``step``, ``names``, ``dtype``."""

    path: str
    std: float
    gamma: float
    step: int
    names: list
    dtype: str


def _snapshot_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    dtype = _DTYPE_BY_NAME.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if dtype not in _DTYPE_BY_NAME.values():
        raise ValueError(f"Power-EMA snapshots are float32 (default) or bfloat16, not {dtype!r}.")
    return dtype


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_power_ema_snapshot(
    folder: str, std: float, gamma: float, step: int, tensors: Mapping[str, torch.Tensor], dtype="float32"
) -> str:
    """Write one power EMA (``tensors`` by parameter name) of width ``std`` (exponent ``gamma``) at ``step``.

    Returns the file's path. ``dtype``: ``"float32"`` (default, exact) or ``"bfloat16"``
    (half the bytes, rounded). Each tensor is cast and copied to the host one at a time.
    """
    dtype = _snapshot_dtype(dtype)
    if not (isinstance(std, float) and 0.0 < std < 1.0 and isinstance(gamma, float)):
        raise ValueError(
            f"A power-EMA snapshot needs its width σ_rel and exponent γ as floats, got {std!r}, {gamma!r}."
        )
    if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
        raise ValueError(f"A power-EMA snapshot needs the optimizer step t > 0 of its last update, got {step!r}.")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, power_ema_file(std, step))
    entries = [(name, dtype, tuple(tensor.shape)) for name, tensor in tensors.items()]
    metadata = {"format": "pt", "hf_swa": SNAPSHOT_FORMAT, "std": repr(std)}
    metadata.update(gamma=repr(gamma), step=str(step), dtype=str(dtype).removeprefix("torch."))

    def write(tmp: str) -> None:
        write_safetensors(tmp, entries, lambda name: [tensors[name].detach().to(dtype)], metadata)
        _fsync(tmp)

    atomic_write(path, write)
    _fsync(folder)  # the rename itself reaches the disk
    return path


def save_power_ema_snapshots(averager, folder: str, dtype="float32", tensors_for=None, write=True) -> List[str]:
    """Write each power EMA of a `WeightAverager` as a snapshot at the step of its last update.

    ``tensors_for(name)`` gives the full tensors of candidate ``name`` (default:
    ``averager.averages(name)``). Under FSDP2/ZeRO-3 pass one that gathers them (e.g.
    ``lambda name: full_averages(averager, model, name=name)``) and call this on every
    rank (the gather is collective), with ``write=True`` on the one process that writes.
    """
    if not averager.keeps_power_emas:
        raise ValueError("This averager keeps no power EMAs (power_ema_stds is empty): there is nothing to snapshot.")
    if averager.sharded and tensors_for is None:
        raise ValueError("The power EMAs are sharded: pass tensors_for= that gathers them (full_averages).")
    tensors_for = tensors_for or averager.averages
    paths = []
    for record in averager.power_ema_records():
        tensors = tensors_for(record["name"])
        if write:
            paths.append(
                write_power_ema_snapshot(folder, record["std"], record["gamma"], record["step"], tensors, dtype)
            )
    return paths


def read_snapshot(path: str) -> PowerEMASnapshot:
    """A snapshot's header; ``ValueError`` naming the file when it is not an hf_swa power-EMA snapshot."""
    advice = "Reconstruct at a step before it (--power_ema_step), or copy the snapshot folder again."
    with open_safetensors(path, advice) as handle:
        metadata, names = handle.metadata() or {}, list(handle.keys())
    if metadata.get("hf_swa") != SNAPSHOT_FORMAT:
        raise ValueError(f"{path} is not an hf_swa power-EMA snapshot (its header lacks hf_swa={SNAPSHOT_FORMAT}).")
    return PowerEMASnapshot(
        path=path,
        std=float(metadata["std"]),
        gamma=float(metadata["gamma"]),
        step=int(metadata["step"]),
        names=names,
        dtype=metadata.get("dtype", "float32"),
    )


def list_power_ema_snapshots(folder: str, std: Optional[float] = None) -> List[PowerEMASnapshot]:
    """The snapshots in ``folder`` (of width ``std`` only, if given), ordered by step then width."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Power-EMA snapshot folder {folder!r} does not exist.")
    found = [read_snapshot(os.path.join(folder, f)) for f in sorted(os.listdir(folder)) if POWER_EMA_FILE.fullmatch(f)]
    found = [s for s in found if std is None or s.std == std]
    return sorted(found, key=lambda s: (s.step, s.std))
