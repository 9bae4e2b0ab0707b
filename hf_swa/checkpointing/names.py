"""The names of what hf_swa writes into a run's folders, and how a checkpoint folder is named.

One home for each name. Nothing here imports torch or transformers, so a command line can
use these names before it knows it will compute anything.

Example:
    >>> checkpoint_step("out/checkpoint-30"), checkpoint_step("out/final")
    (30, None)
    >>> checkpoint_folder("out", 30)
    'out/checkpoint-30'
"""

from __future__ import annotations

import os
import re
from typing import Optional

# transformers.trainer_utils.PREFIX_CHECKPOINT_DIR (tests/test_checkpoint_contract.py checks they agree); importing
# it from there would load the Trainer's stack, PEFT included, into every command line.
CHECKPOINT_PREFIX = "checkpoint"
CHECKPOINT_FOLDER = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)$")

# Inside a checkpoint-N/ folder: the SWA training state.
STATE_FILE = "swa_state.json"
AVERAGES_FILE = "swa_averages.safetensors"
SHARDED_AVERAGES_FILE = "swa_averages-rank{rank}.safetensors"
# Beside every model hf_swa ships: what was averaged and what was chosen.
CONFIG_FILE = "swa_config.json"
# The weights of a saved model or adapter, as save_pretrained writes them.
MODEL_FILE = "model.safetensors"
MODEL_INDEX_FILE = "model.safetensors.index.json"
ADAPTER_FILE = "adapter_model.safetensors"
# A run's power-EMA snapshots: output_dir/swa_power_ema/pema-<σ_rel>-<step:09d>.safetensors.
POWER_EMA_DIR = "swa_power_ema"
POWER_EMA_FILE = re.compile(r"pema-[0-9.e+-]+-(\d{9,})\.safetensors")


def checkpoint_folder(output_dir: str, step: int) -> str:
    """The ``checkpoint-N`` folder a Trainer writes at optimizer step ``step``."""
    return os.path.join(output_dir, f"{CHECKPOINT_PREFIX}-{step}")


def power_ema_file(std: float, step: int) -> str:
    """The snapshot file of the power EMA of width ``std`` at optimizer step ``step``.

    >>> power_ema_file(0.1, 42)
    'pema-0.1-000000042.safetensors'
    """
    return f"pema-{std:g}-{step:09d}.safetensors"


def checkpoint_step(folder: str) -> Optional[int]:
    """The N of a ``checkpoint-N`` folder's name, or ``None`` for another name."""
    match = CHECKPOINT_FOLDER.match(os.path.basename(os.path.normpath(folder)))
    return int(match.group(1)) if match else None
