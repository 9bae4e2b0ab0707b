"""hf_swa: Stochastic Weight Averaging for Hugging Face Transformers fine-tuning.

>>> from hf_swa import SWAConfig, SWACallback, SWATrainer, SWATrainingArguments, WeightAverager
"""

__version__ = "0.1.0"

from .averaging import WeightAverager  # noqa: E402
from .callback import SWACallback  # noqa: E402
from .config import SWAConfig  # noqa: E402
from .trainer import SWATrainer, SWATrainingArguments  # noqa: E402
from .trainer import SWAArgumentsMixin, SWATrainerMixin  # noqa: E402
from .resume import last_complete_checkpoint  # noqa: E402

__all__ = ["SWAConfig", "WeightAverager", "SWACallback", "SWATrainer", "SWATrainingArguments", "__version__",
           "SWATrainerMixin", "SWAArgumentsMixin", "last_complete_checkpoint"]
