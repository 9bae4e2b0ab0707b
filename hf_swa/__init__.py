"""hf_swa: Stochastic Weight Averaging for Hugging Face Transformers fine-tuning.

>>> from hf_swa import SWAConfig, SWACallback, SWATrainer, SWATrainingArguments, WeightAverager
"""

__version__ = "0.1.0"

from .averaging import WeightAverager  # noqa: E402
from .callback import SWACallback  # noqa: E402
from .config import SWAConfig  # noqa: E402
from .trainer import SWATrainer, SWATrainingArguments  # noqa: E402

# Loaded on first use: post-hoc averaging is not needed to train.
_LAZY = {"average_checkpoints": ".checkpoint_average", "greedy_soup": ".soup"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["average_checkpoints", "greedy_soup", "SWAConfig", "WeightAverager", "SWACallback", "SWATrainer", "SWATrainingArguments", "__version__"]
