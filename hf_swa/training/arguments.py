"""The SWA settings as `TrainingArguments` fields: `SWAArgumentsMixin` and `SWATrainingArguments`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import List, Literal, Optional

from transformers import TrainingArguments

from ..averaging.distributed import FSDP1_MESSAGE
from . import defaults
from .checks import LOAD_BEST_MESSAGE
from .config import SWAConfig, parse_select_metric, parse_swa_start
from .defaults import lr_tail_is_on

SELECT_METRIC_HELP = (
    "Score every candidate and the live weights at the end of training and ship the best, by this metric. "
    "'auto' (default): by loss on the trainer's swa_select_dataset (run_glue: the rows --swa_select_split holds "
    "out) when there is one, else no selection and the model ships swa_ship; never on the evaluation set. A "
    "metric (loss, accuracy, eval_f1, ...): on swa_select_dataset, else on eval_dataset (flagged optimistic). "
    "'none': ship swa_ship."
)


@dataclass
class SWAArgumentsMixin:
    """The SWA settings, to mix into any `TrainingArguments` subclass (each a `--flag` through `HfArgumentParser`).

    The defaults come from :mod:`hf_swa.training.defaults`.

    Put it first, and make the new class a dataclass, e.g. for TRL:
    ``@dataclass class SWASFTConfig(SWAArgumentsMixin, SFTConfig): pass``.
    `SWATrainingArguments` is this mixin on `TrainingArguments`.

    Example:
        >>> from dataclasses import dataclass
        >>> from transformers import HfArgumentParser, Seq2SeqTrainingArguments
        >>> from hf_swa import SWAArgumentsMixin
        >>> @dataclass
        ... class SWASeq2SeqArguments(SWAArgumentsMixin, Seq2SeqTrainingArguments):
        ...     pass
        >>> (args,) = HfArgumentParser(SWASeq2SeqArguments).parse_args_into_dataclasses(
        ...     ["--output_dir", "/tmp/out", "--swa_start", "100", "--predict_with_generate", "true"])
        >>> args.swa_start, args.predict_with_generate, args.to_swa_config().swa_freq
        (100, True, 1)
    """

    swa: bool = field(
        default=True, metadata={"help": "Average weights with SWA (False: a plain Trainer run, a baseline)."}
    )
    swa_start: str = field(
        default=str(defaults.SWA_START),
        metadata={
            "help": "When averaging starts: a fraction of the total optimizer steps in (0, 1] such as 0.5, "
            "or an optimizer step >= 1 such as 100."
        },
    )
    swa_freq: int = field(
        default=defaults.SWA_FREQ, metadata={"help": "Fold in a snapshot every this many optimizer steps."}
    )
    swa_lr: Optional[float] = field(
        default=None,
        metadata={"help": "Anneal the LR to this value from swa_start and hold it. Unset: swa_lr_ratio of the peak."},
    )
    swa_lr_ratio: float = field(
        default=defaults.SWA_LR_RATIO,
        metadata={
            "help": "If swa_lr is unset: hold the LR at this fraction of learning_rate from swa_start "
            "(0: keep the base schedule)."
        },
    )
    swa_anneal_steps: int = field(
        default=0, metadata={"help": "Optimizer steps over which the LR anneals to the tail LR (0: jump)."}
    )
    swa_anneal_strategy: Literal["cos", "linear"] = field(default="cos", metadata={"help": "Shape of the anneal."})
    swa_device: Optional[str] = field(
        default=None,
        metadata={"help": "Where the fp32 averages live: unset = beside the weights, 'cpu' = host memory."},
    )
    swa_strategy: Literal["uniform", "ema"] = field(
        default="uniform", metadata={"help": "uniform: the SWA mean of the snapshots; ema: exponential moving average."}
    )
    swa_ema_decay: float = field(default=0.999, metadata={"help": "Decay of the 'ema' strategy."})
    swa_windows: int = field(
        default=defaults.SWA_WINDOWS,
        metadata={
            "help": "Split the snapshots into this many windows; candidates swa_from<step> average the "
            "snapshots from each later window start on (1: the classic average only)."
        },
    )
    swa_windows_at_most: bool = field(
        default=defaults.SWA_WINDOWS_AT_MOST,
        metadata={"help": "Treat swa_windows as an upper bound: a run with fewer snapshots gets one window each."},
    )
    swa_ema_decays: List[float] = field(
        default_factory=lambda: list(defaults.SWA_EMA_DECAYS),
        metadata={"help": "One bias-corrected EMA candidate ema_<d> per decay, e.g. 0.9 0.99."},
    )
    swa_select_metric: Optional[str] = field(default=defaults.SWA_SELECT_METRIC, metadata={"help": SELECT_METRIC_HELP})
    swa_select_greater_is_better: Optional[bool] = field(
        default=None, metadata={"help": "Whether a higher selection score is better (default: False for *loss)."}
    )
    swa_eval_candidates: bool = field(
        default=False, metadata={"help": "evaluate() also reports eval_<candidate>_* for every candidate."}
    )
    swa_power_ema_stds: List[float] = field(
        default_factory=list,
        metadata={
            "help": "Keep one power-function EMA (EDM2) per relative width, e.g. 0.05 0.10, from step 1; "
            "each is a candidate pema_<std> and is written to output_dir/swa_power_ema/ as snapshots."
        },
    )
    swa_power_ema_every: Optional[int] = field(
        default=None, metadata={"help": "Snapshot the power EMAs every N optimizer steps (default: ~32 a run)."}
    )
    swa_power_ema_dtype: Literal["float32", "bfloat16"] = field(
        default="float32", metadata={"help": "dtype of the power-EMA snapshots."}
    )
    swa_power_ema_candidates: List[float] = field(
        default_factory=list,
        metadata={
            "help": "Widths reconstructed from the snapshots at the end of training (EDM2's post-hoc EMA), added "
            "as candidates pema_<std>; needs two or more swa_power_ema_stds."
        },
    )
    swa_update_bn: Optional[bool] = field(
        default=None,
        metadata={
            "help": "Recompute BatchNorm statistics for the shipped weights over the training data at the end "
            "of training, as torch's update_bn (default: when the model has BatchNorm)."
        },
    )
    swa_ship: str = field(
        default=defaults.SWA_SHIP,
        metadata={
            "help": "What the model ships when nothing chooses (no selection, or 'auto' without selection data): "
            "last_window (the window with the latest start), swa (every snapshot from swa_start), or an "
            "ema_<d> / pema_<std> candidate of these settings, or bema (with swa_bema)."
        },
    )
    swa_bema: bool = field(
        default=defaults.SWA_BEMA,
        metadata={"help": "Keep BEMA (TRL's BEMACallback: bias-corrected EMA) as the candidate 'bema'."},
    )
    swa_bema_ema_power: float = field(
        default=defaults.SWA_BEMA_EMA_POWER, metadata={"help": "BEMA's EMA decay power (TRL's ema_power)."}
    )
    swa_bema_bias_power: float = field(
        default=defaults.SWA_BEMA_BIAS_POWER, metadata={"help": "BEMA's bias-correction power (TRL's bias_power)."}
    )
    swa_bema_lag: int = field(default=defaults.SWA_BEMA_LAG, metadata={"help": "BEMA's lag (TRL's lag)."})
    swa_bema_multiplier: float = field(
        default=defaults.SWA_BEMA_MULTIPLIER, metadata={"help": "BEMA's step multiplier (TRL's multiplier)."}
    )
    swa_bema_update_after: int = field(
        default=defaults.SWA_BEMA_UPDATE_AFTER,
        metadata={"help": "The optimizer step whose weights anchor BEMA (TRL's update_after; 0: the start)."},
    )
    swa_bema_update_freq: int = field(
        default=defaults.SWA_BEMA_UPDATE_FREQ,
        metadata={"help": "Update BEMA every this many optimizer steps (TRL's update_freq)."},
    )

    def __post_init__(self):
        # Checked before TrainingArguments sets up DeepSpeed and the process group.
        tail = lr_tail_is_on(self.swa_lr, self.swa_lr_ratio)
        if self.swa and tail and "scheduler" in _deepspeed_config(self.deepspeed):
            raise ValueError(
                "The SWA LR tail (swa_lr, else swa_lr_ratio of the peak) is composed with the Trainer's schedule, "
                "but the DeepSpeed config has its own 'scheduler' section, which replaces it (and is not a LambdaLR). "
                "Remove 'scheduler' from the DeepSpeed config (the Trainer then builds lr_scheduler_type and "
                "DeepSpeed steps it), or leave swa_lr unset and set swa_lr_ratio=0 to keep that schedule."
            )
        super().__post_init__()
        self.swa_start = parse_swa_start(self.swa_start)
        self.swa_select_metric = parse_select_metric(self.swa_select_metric)
        if self.swa and self.fsdp and int((self.fsdp_config or {}).get("version", 2)) == 1:
            raise ValueError(FSDP1_MESSAGE)
        if self.swa:
            config = self.to_swa_config()  # validate now, before any model is built or trained
            schedule = str(getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type))
            if self.load_best_model_at_end:
                raise ValueError(LOAD_BEST_MESSAGE)
            if config.has_lr_tail and schedule == "reduce_lr_on_plateau":
                raise ValueError(
                    "The SWA LR tail (swa_lr, else swa_lr_ratio of the peak) needs a LambdaLR-based schedule, and "
                    "lr_scheduler_type='reduce_lr_on_plateau' is not one: choose another lr_scheduler_type (e.g. "
                    "'linear' or 'constant'), or leave swa_lr unset and set swa_lr_ratio=0."
                )

    def to_swa_config(self) -> SWAConfig:
        """The `SWAConfig` these arguments describe."""
        return SWAConfig(
            swa_start=self.swa_start,
            swa_freq=self.swa_freq,
            swa_lr=self.swa_lr,
            swa_lr_ratio=self.swa_lr_ratio,
            swa_anneal_steps=self.swa_anneal_steps,
            swa_anneal_strategy=self.swa_anneal_strategy,
            swa_device=self.swa_device,
            strategy=self.swa_strategy,
            ema_decay=self.swa_ema_decay,
            swa_windows=self.swa_windows,
            swa_windows_at_most=self.swa_windows_at_most,
            swa_ema_decays=list(self.swa_ema_decays or []),
            swa_select_metric=self.swa_select_metric,
            swa_select_greater_is_better=self.swa_select_greater_is_better,
            swa_eval_candidates=self.swa_eval_candidates,
            swa_power_ema_stds=list(self.swa_power_ema_stds or []),
            swa_power_ema_every=self.swa_power_ema_every,
            swa_power_ema_dtype=self.swa_power_ema_dtype,
            swa_power_ema_candidates=list(self.swa_power_ema_candidates or []),
            swa_update_bn=self.swa_update_bn,
            swa_ship=self.swa_ship,
            swa_bema=self.swa_bema,
            swa_bema_ema_power=self.swa_bema_ema_power,
            swa_bema_bias_power=self.swa_bema_bias_power,
            swa_bema_lag=self.swa_bema_lag,
            swa_bema_multiplier=self.swa_bema_multiplier,
            swa_bema_update_after=self.swa_bema_update_after,
            swa_bema_update_freq=self.swa_bema_update_freq,
        )


@dataclass
class SWATrainingArguments(SWAArgumentsMixin, TrainingArguments):
    """`TrainingArguments` plus the SWA settings (each also a `--flag` through `HfArgumentParser`).

    Example:
        >>> from transformers import HfArgumentParser
        >>> from hf_swa import SWATrainingArguments
        >>> (args,) = HfArgumentParser(SWATrainingArguments).parse_args_into_dataclasses(
        ...     ["--output_dir", "/tmp/out", "--swa_start", "0.5", "--swa_freq", "10", "--swa_lr", "2e-5"])
        >>> args.swa_start, args.swa_freq, args.to_swa_config().swa_lr
        (0.5, 10, 2e-05)
    """


def _deepspeed_config(deepspeed) -> dict:
    """The DeepSpeed config given to TrainingArguments (a dict or a JSON file), or {}."""
    if isinstance(deepspeed, dict):
        return deepspeed
    if isinstance(deepspeed, str) and os.path.isfile(deepspeed):
        with open(deepspeed, encoding="utf-8") as f:
            return json.load(f)
    return {}
