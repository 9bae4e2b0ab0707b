"""hf_swa: Stochastic Weight Averaging for Hugging Face Transformers fine-tuning.

>>> from hf_swa import SWAConfig, SWACallback, SWATrainer, SWATrainingArguments, WeightAverager

The names are loaded on first use, so ``import hf_swa`` stays light: the Trainer and its
stack are imported only when ``SWACallback``, ``SWATrainer`` or ``SWATrainingArguments`` is.
"""

from __future__ import annotations

import importlib

__version__ = "0.4.0"

# Each public name and the module that defines it.
_EXPORTS = {
    "SWAConfig": ".training.config",
    "WeightAverager": ".averaging.averager",
    "SWACallback": ".training.callback",
    "SWATrainer": ".training.trainer",
    "SWATrainingArguments": ".training.arguments",
    "SWATrainerMixin": ".training.trainer",
    "SWAArgumentsMixin": ".training.arguments",
    "last_complete_checkpoint": ".checkpointing.resume",
    "average_checkpoints": ".posthoc.average",
    "greedy_soup": ".posthoc.soup",
    "reconstruct_power_ema": ".posthoc.power_ema_reconstruction",
    "selection_split": ".training.splits",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
