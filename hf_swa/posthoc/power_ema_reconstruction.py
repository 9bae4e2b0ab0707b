"""Post-hoc power EMAs: reconstruct an EMA of any width from the snapshots of a run, after training.

After EDM2 (Karras et al. 2024, Appendix C.3; ``reconstruct_phema.py`` of NVlabs/edm2):
the snapshots at or before the target step, of at least two widths, are combined with
the least-squares coefficients of `hf_swa.averaging.power_ema_math.solve_coefficients` (each target's
coefficients sum to 1). The combination is streamed tensor by tensor (in pieces of rows)
in fp32, so memory stays near one piece per snapshot, never a model per snapshot.

Bad input is refused before anything is computed or written, with the setting and the
fix named: a width outside ``0 < σ_rel < 0.289``, a step after the last snapshot (or
between snapshots), fewer than 2 stored widths, snapshots of different tensors, and NaN
or inf in a snapshot (found while streaming). All the widths are written into one staging
folder that replaces the output folder last, so a refusal or a failure leaves it as it was.

Example:
    >>> import tempfile, torch
    >>> from torch import nn
    >>> from hf_swa import WeightAverager
    >>> from hf_swa.checkpointing.power_ema_snapshots import save_power_ema_snapshots
    >>> model, folder = nn.Linear(2, 1), tempfile.mkdtemp()
    >>> averager = WeightAverager(model, power_ema_stds=[0.05, 0.1])
    >>> for step in range(1, 31):
    ...     with torch.no_grad():
    ...         _ = model.bias.fill_(float(step))
    ...     _ = averager.update_power_emas(model, step)
    ...     if step % 10 == 0:
    ...         _ = save_power_ema_snapshots(averager, folder)
    >>> stored = averager.averages("pema_0.1")["bias"].item()
    >>> result = reconstruct_power_ema(folder, 0.1)
    >>> result.step, round(sum(result.coefficients), 6), abs(result.state_dict()["bias"].item() - stored) < 1e-5
    (30, 1.0, True)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from safetensors import safe_open

from ..averaging.candidates import power_ema_candidate_name
from ..averaging.power_ema_math import check_std, fit_error, solve_coefficients, std_to_exp
from ..checkpointing.files import CheckpointWeights, row_chunks
from ..checkpointing.power_ema_snapshots import PowerEMASnapshot, list_power_ema_snapshots
from ..checkpointing.writer import check_output_dir, staged_folder
from .average import weighted_sum, write_averaged_checkpoint

__all__ = [
    "PowerEMAReconstruction",
    "power_ema_coefficients",
    "reconstruct_power_ema",
    "select_snapshots",
    "write_power_ema_models",
]


class _SnapshotReader:
    """One snapshot file read lazily, tensor by tensor (the reader interface of `weighted_sum`)."""

    def __init__(self, snapshot: PowerEMASnapshot):
        self.folder = snapshot.path  # named in error messages
        self.snapshot = snapshot

    def tensor(self, name: str, rows: Optional[tuple] = None) -> torch.Tensor:
        with safe_open(self.snapshot.path, framework="pt") as handle:
            tensor = handle.get_slice(name)[rows[0] : rows[1]] if rows else handle.get_tensor(name)
        return tensor


@dataclass
class PowerEMAReconstruction:
    """A post-hoc power EMA of width ``std`` at ``step``: its ``coefficients`` over ``sources``, streamed lazily.

    ``tensors()`` yields ``(name, fp32 tensor)`` one at a time; ``state_dict()`` gathers them.
    """

    std: float
    step: int
    sources: List[PowerEMASnapshot]
    coefficients: List[float]
    names: List[str] = field(default_factory=list)

    def chunks(self, name: str) -> Iterator[torch.Tensor]:
        """Tensor ``name`` of the reconstruction, in fp32, in pieces of rows (`row_chunks`)."""
        readers = [_SnapshotReader(s) for s in self.sources]
        with safe_open(self.sources[-1].path, framework="pt") as handle:
            shape = tuple(handle.get_slice(name).get_shape())
        for rows in row_chunks(shape, torch.float32):
            try:
                yield weighted_sum(readers, name, self.coefficients, rows)
            except ValueError as err:
                raise ValueError(f"{err} For a power EMA: reconstruct at a step before that snapshot.") from None

    def tensors(self) -> Iterator[Tuple[str, torch.Tensor]]:
        for name in self.names:
            chunks = list(self.chunks(name))
            yield name, chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return dict(self.tensors())

    def fit_error(self) -> float:
        """The relative L2 distance between the reconstructed profile and the target's (`fit_error`)."""
        steps, stds = [s.step for s in self.sources], [s.std for s in self.sources]
        return fit_error(steps, stds, self.step, self.std, self.coefficients)

    def record(self) -> dict:
        """What ``swa_config.json`` records: width, γ, step, and each snapshot with its coefficient."""
        from .. import __version__

        return {
            "method": "power_ema",
            "strategy": "power_ema",
            "std": self.std,
            "gamma": float(std_to_exp(self.std)),
            "step": self.step,
            "n_averaged": len(self.sources),
            "sources": [{"file": s.path, "std": s.std, "step": s.step} for s in self.sources],
            "weights": list(self.coefficients),
            "fit_error": self.fit_error(),
            "hf_swa_version": __version__,
        }


def select_snapshots(snapshot_dir: str, step: Optional[int] = None) -> Tuple[List[PowerEMASnapshot], int]:
    """The snapshots a reconstruction at ``step`` uses (those at or before it), and the step (default: the last).

    Raises ``FileNotFoundError`` / ``ValueError`` naming the fix: no snapshots, fewer than 2
    widths, a step after the last snapshot or without one, snapshots of different tensors.
    """
    snapshots = list_power_ema_snapshots(snapshot_dir)
    if not snapshots:
        raise FileNotFoundError(
            f"{snapshot_dir} holds no power-EMA snapshots (pema-<std>-<step>.safetensors): pass the run's "
            "swa_power_ema folder as --power_ema_dir, from a run trained with swa_power_ema_stds set."
        )
    steps = sorted({s.step for s in snapshots})
    if step is None:
        step = steps[-1]
    if step > steps[-1]:
        raise ValueError(
            f"--power_ema_step {step} is after the last snapshot (step {steps[-1]}) in {snapshot_dir}: an EMA "
            f"cannot be reconstructed from weights that were not saved. Pass a step <= {steps[-1]} or omit it."
        )
    if step not in steps:
        near = [str(s) for s in (max((s for s in steps if s < step), default=None), min(s for s in steps if s > step))]
        raise ValueError(
            f"--power_ema_step {step} has no snapshot in {snapshot_dir}: choose a step with snapshots, e.g. the "
            f"nearest, {' or '.join(s for s in near if s != 'None')} (snapshots from step {steps[0]} to {steps[-1]})."
        )
    used = [s for s in snapshots if 0 < s.step <= step]
    widths = sorted({s.std for s in used})
    if len(widths) < 2:
        raise ValueError(
            f"{snapshot_dir} holds snapshots of {len(widths)} width(s) ({widths}) up to step {step}: reconstruction "
            "needs at least 2 stored widths. Train with two or more, e.g. swa_power_ema_stds=[0.05, 0.10]."
        )
    odd = [s.path for s in used if s.names != used[-1].names]
    if odd:
        raise ValueError(f"{odd[0]} holds other tensors than {used[-1].path}: keep the snapshots of one run only.")
    return used, step


def power_ema_coefficients(snapshots: Sequence[PowerEMASnapshot], step: int, stds: Sequence[float]) -> List[list]:
    """One list of coefficients (over ``snapshots``) per target width, each summing to 1."""
    stds = [check_std(std, "--power_ema_std") for std in stds]
    steps, widths = [s.step for s in snapshots], [s.std for s in snapshots]
    # One solve per width: a width's coefficients do not depend on the other widths asked for with it.
    solved = [solve_coefficients(steps, widths, step, [std])[:, 0] for std in stds]
    if not all(math.isfinite(float(v)) for column in solved for v in column):
        raise ValueError(f"The power-EMA solve for {stds} at step {step} is singular: drop duplicate snapshots.")
    return [[float(v) for v in column] for column in solved]


def reconstruct_power_ema(snapshot_dir: str, std: float, step: Optional[int] = None) -> PowerEMAReconstruction:
    """The power EMA of width ``std`` (σ_rel) at ``step`` (default: the last snapshot), reconstructed lazily.

    Nothing is read beyond the snapshot headers until its tensors are asked for.
    """
    std = check_std(std, "--power_ema_std")
    snapshots, step = select_snapshots(snapshot_dir, step)
    (coefficients,) = power_ema_coefficients(snapshots, step, [std])
    return PowerEMAReconstruction(std, step, snapshots, coefficients, list(snapshots[-1].names))


def power_ema_folder(output_dir: str, std: float) -> str:
    """``output_dir/pema_0.05``: where the model of width 0.05 goes (one folder per width, however many)."""
    return os.path.join(output_dir, power_ema_candidate_name(std))


def write_power_ema_models(
    snapshot_dir: str,
    stds: Sequence[float],
    output_dir: str,
    base_model_dir: str,
    *,
    step: Optional[int] = None,
    overwrite_output_dir: bool = False,
    progress: bool = True,
) -> List[dict]:
    """Write one plain Transformers model per width into ``output_dir/pema_{std}``; return their records.

    ``base_model_dir`` (a saved model or ``checkpoint-N`` of the run) supplies the config,
    tokenizer, file layout, dtypes and the tensors that are not averaged (frozen
    parameters, buffers); each tensor the snapshots hold is replaced by the reconstruction,
    computed in fp32 and written in the base's dtype, as `hf_swa.average_checkpoints`
    writes. Every check runs before anything is written.
    """
    stds = [check_std(std, "--power_ema_std") for std in stds]
    if not stds:
        raise ValueError("Pass at least one width to reconstruct (--power_ema_std 0.05 ...).")
    snapshots, step = select_snapshots(snapshot_dir, step)
    all_coefficients = power_ema_coefficients(snapshots, step, stds)
    base = CheckpointWeights(base_model_dir)
    _check_base(base, snapshots[-1])
    check_output_dir(output_dir, [snapshot_dir, base_model_dir], overwrite_output_dir)
    with staged_folder(output_dir) as stage:  # all widths, then one rename: a failure leaves output_dir as it was
        return [
            _write_model(
                PowerEMAReconstruction(std, step, snapshots, x, list(snapshots[-1].names)), base, stage, progress
            )
            for std, x in zip(stds, all_coefficients)
        ]


def _write_model(result: PowerEMAReconstruction, base: CheckpointWeights, output_dir: str, progress: bool) -> dict:
    averaged = set(result.names)

    def chunks_for(name):
        if name not in averaged:
            yield base.tensor(name)  # not averaged: copied from the base model
            return
        for chunk in result.chunks(name):
            yield chunk.to(base.dtype(name))

    record = result.record() | {"base_model": os.path.abspath(base.folder), "format": base.kind}
    record["dtype"] = ", ".join(sorted({str(base.dtype(n)).removeprefix("torch.") for n in result.names}))
    folder = power_ema_folder(output_dir, result.std)
    write_averaged_checkpoint(folder, [base], chunks_for, record, desc=f"pema_{result.std:g}", progress=progress)
    return record


def _check_base(base: CheckpointWeights, snapshot: PowerEMASnapshot) -> None:
    missing = [name for name in snapshot.names if name not in set(base.names)]
    if missing:
        raise ValueError(
            f"The base model {base.folder} lacks {len(missing)} tensor(s) the snapshots hold (e.g. {missing[0]!r}): "
            "pass a checkpoint-N or saved model of the same run as the base."
        )
    with safe_open(snapshot.path, framework="pt") as handle:
        for name in snapshot.names:
            shape = tuple(handle.get_slice(name).get_shape())
            if shape != base.shape(name):
                raise ValueError(
                    f"Tensor {name!r} has shape {shape} in {snapshot.path} but {base.shape(name)} in the base model "
                    f"{base.folder}: pass a checkpoint-N or saved model of the same run as the base."
                )
