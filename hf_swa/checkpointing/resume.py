"""Which `checkpoint-N/` folders a run can resume from: the newest *complete* one.

A process killed while it writes a checkpoint (kill -9, out of memory, a preempted node)
leaves a folder that holds only part of it. transformers' own
``resume_from_checkpoint=True`` takes the newest folder whatever it holds, and fails
on it. A checkpoint is complete when every part needed to resume is present and fully
written:

- the weights (``model.safetensors``, sharded weights with all their shards, ``pytorch_model.bin``,
  a PEFT adapter, or the FSDP / DeepSpeed state folders),
- ``trainer_state.json``,
- the optimizer and the scheduler (unless the run saves the model only),
- and, from the step averaging starts, the SWA state (``swa_state.json`` and its averages).

Fully written is checked cheaply: JSON parses, safetensors headers cover the whole file,
``torch.save`` archives have their closing directory. Nothing is deleted.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import zipfile
from typing import List, Optional

from safetensors import SafetensorError, safe_open

from .names import STATE_FILE, checkpoint_step
from .state import swa_state_problem

logger = logging.getLogger(__name__)

_SAFETENSORS_WEIGHTS = ("model.safetensors", "adapter_model.safetensors")
_TORCH_WEIGHTS = ("pytorch_model.bin", "adapter_model.bin")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def checkpoint_problems(folder: str, swa_start_step: Optional[int] = 1, save_only_model: bool = False) -> List[str]:
    """What keeps `folder` from being resumed from (an empty list: it is complete).

    Args:
        folder: a ``checkpoint-N`` folder.
        swa_start_step: the SWA state is required in checkpoints of this step and later (the
            default, 1: in every checkpoint, as an SWA run writes it into each); ``None``: never.
        save_only_model: the run saves no optimizer and scheduler (``save_only_model=True``).
    """
    problems = []
    problems += _json_problems(os.path.join(folder, "trainer_state.json"))
    problems += _weights_problems(folder)
    if not save_only_model:
        problems += _optimizer_problems(folder)
    step = checkpoint_step(folder)
    swa_problem = swa_state_problem(folder)
    if swa_problem is not None:
        problems.append(swa_problem)
    elif (
        swa_start_step is not None
        and step is not None
        and step >= swa_start_step
        and not os.path.isfile(os.path.join(folder, STATE_FILE))
    ):
        problems.append("no SWA state (swa_state.json)")
    return problems


def last_complete_checkpoint(
    output_dir: str, swa_start_step: Optional[int] = 1, save_only_model: bool = False
) -> Optional[str]:
    """The newest complete ``checkpoint-N`` folder in `output_dir`, or ``None``.

    Incomplete ones (a process killed while writing them) are skipped with a warning that
    names them and says what they lack. Pass the result to
    ``trainer.train(resume_from_checkpoint=...)``; `SWATrainer` does this itself for
    ``resume_from_checkpoint=True``. See `checkpoint_problems` for the arguments.

    Example:
        >>> import tempfile
        >>> from hf_swa import last_complete_checkpoint
        >>> last_complete_checkpoint(tempfile.mkdtemp()) is None
        True
    """
    if not os.path.isdir(output_dir):
        return None
    folders = [os.path.join(output_dir, name) for name in os.listdir(output_dir)]
    folders = [f for f in folders if os.path.isdir(f) and checkpoint_step(f) is not None]
    for folder in sorted(folders, key=checkpoint_step, reverse=True):
        problems = checkpoint_problems(folder, swa_start_step, save_only_model)
        if not problems:
            return folder
        logger.warning("Skipping the incomplete checkpoint %s: %s.", folder, "; ".join(problems))
    return None


def _json_problems(path: str) -> List[str]:
    try:
        with open(path, encoding="utf-8") as f:
            json.load(f)
    except FileNotFoundError:
        return [f"no {os.path.basename(path)}"]
    except (OSError, ValueError) as error:
        return [f"{os.path.basename(path)} is unreadable ({error})"]
    return []


def _safetensors_problems(path: str) -> List[str]:
    try:
        with safe_open(path, framework="pt"):  # the header must cover the whole file
            return []
    except (OSError, SafetensorError, ValueError) as error:
        return [f"{os.path.basename(path)} is unreadable ({error})"]


def _torch_file_problems(path: str) -> List[str]:
    try:
        with zipfile.ZipFile(path):  # torch.save's archive: its directory is written last
            return []
    except (OSError, zipfile.BadZipFile) as error:
        return [f"{os.path.basename(path)} is unreadable ({error})"]


def _file_problems(path: str) -> List[str]:
    if path.endswith(".safetensors"):
        return _safetensors_problems(path)
    return _torch_file_problems(path)


def _weights_problems(folder: str) -> List[str]:
    for name in _SAFETENSORS_WEIGHTS + _TORCH_WEIGHTS:
        if os.path.isfile(os.path.join(folder, name)):
            return _file_problems(os.path.join(folder, name))
    for name in _INDEXES:
        index = os.path.join(folder, name)
        if os.path.isfile(index):
            problems = _json_problems(index)
            if problems:
                return problems
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f).get("weight_map", {}).values()))
            return [p for shard in shards for p in _file_problems(os.path.join(folder, shard))]
    if _distributed_state(folder, "pytorch_model_fsdp") or _deepspeed_state(folder):
        return []
    return ["no model weights"]


def _optimizer_problems(folder: str) -> List[str]:
    if _deepspeed_state(folder):  # DeepSpeed keeps the optimizer (and its own scheduler) in global_step*/
        return []
    problems = []
    if os.path.isfile(os.path.join(folder, "optimizer.pt")):
        problems += _torch_file_problems(os.path.join(folder, "optimizer.pt"))
    elif not _distributed_state(folder, "optimizer"):
        problems.append("no optimizer state (optimizer.pt)")
    if os.path.isfile(os.path.join(folder, "scheduler.pt")):
        problems += _torch_file_problems(os.path.join(folder, "scheduler.pt"))
    else:
        problems.append("no scheduler state (scheduler.pt)")
    return problems


def _distributed_state(folder: str, prefix: str) -> bool:
    """FSDP's state: sharded ``<prefix>_0/`` folders with their ``.metadata``, or a full ``<prefix>.bin``."""
    if os.path.isfile(os.path.join(folder, f"{prefix}.bin")):
        return not _torch_file_problems(os.path.join(folder, f"{prefix}.bin"))
    shards = [s for s in glob.glob(os.path.join(folder, f"{prefix}_*")) if os.path.isdir(s)]
    return bool(shards) and all(os.path.isfile(os.path.join(s, ".metadata")) for s in shards)


def _deepspeed_state(folder: str) -> bool:
    """DeepSpeed's state: a ``latest`` file naming a ``global_step*`` folder that exists."""
    try:
        with open(os.path.join(folder, "latest"), encoding="utf-8") as f:
            tag = f.read().strip()
    except OSError:
        return False
    return bool(tag) and os.path.isdir(os.path.join(folder, tag))
