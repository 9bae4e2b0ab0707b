"""`SWAConfig`: when and how to average, validated up front."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import List, Literal, Optional, Union, get_args

from ..averaging.bema import BEMA_CANDIDATE, BEMASettings
from ..averaging.candidates import ema_candidate_name, power_ema_candidate_name
from ..averaging.names import LIVE, MAIN_CANDIDATE
from ..averaging.power_ema_math import check_std, check_stds
from ..averaging.strategies import check_ema_decay, check_ema_decays, make_strategy
from ..checkpointing.power_ema_snapshots import default_snapshot_every
from . import defaults
from .defaults import lr_tail_is_on
from .settings import (
    AUTO,
    RENAMED_SETTINGS,
    install_renamed_attributes,
    parse_select_metric,
    parse_swa_start,
    setting,
    settings_doc,
    take_renamed,
)

AnnealStrategy = Literal["cos", "linear"]
ANNEAL_STRATEGIES = get_args(AnnealStrategy)
Strategy = Literal["uniform", "ema"]
PowerEMADtype = Literal["float32", "bfloat16"]
#: `swa_ship` "last_window": the window average with the latest start (``swa`` when there is one window).
LAST_WINDOW = "last_window"


@dataclass
class SWAConfig:
    """Settings of Stochastic Weight Averaging.

    Each field is one setting, declared once with its default (:mod:`hf_swa.training.defaults`) and its
    help, listed below; `SWATrainingArguments` has a ``--flag`` of the same name for each. The old names
    ``strategy`` and ``ema_decay`` (now ``swa_strategy``, ``swa_ema_decay``) still work for one version,
    with a FutureWarning.

    Example:
        >>> from hf_swa import SWAConfig
        >>> config = SWAConfig(swa_start=0.75, swa_freq=10, swa_lr=2e-5)
        >>> config.start_step(max_steps=1000)
        750
        >>> config.is_snapshot_step(760, max_steps=1000), config.is_snapshot_step(765, max_steps=1000)
        (True, False)
        >>> SWAConfig(swa_start=0.5, swa_freq=10, swa_windows=2).window_starts(max_steps=1000)
        [500, 750]
    """

    swa_start: Union[int, float] = setting(
        defaults.SWA_START,
        "When averaging starts: a fraction 0 < f <= 1 of the total optimizer steps such as 0.5 (start step "
        "max(1, ceil(f * max_steps))), or an optimizer step >= 1 such as 100 (global_step counts from 1).",
    )
    swa_freq: int = setting(
        defaults.SWA_FREQ,
        "Fold a snapshot into the averages every this many optimizer steps from the start step on (the start "
        "step itself is the first snapshot).",
    )
    swa_lr: Optional[float] = setting(
        defaults.SWA_LR,
        "From the start step, anneal the LR to this value and hold it there. Unset: swa_lr_ratio of the peak.",
    )
    swa_lr_ratio: float = setting(
        defaults.SWA_LR_RATIO,
        "Without swa_lr: from the start step the LR anneals to this share of its peak (each param group's) "
        "and holds there; in [0, 1], 0 keeps the Trainer's schedule unchanged.",
    )
    swa_anneal_steps: int = setting(
        defaults.SWA_ANNEAL_STEPS, "Optimizer steps over which the LR anneals to the tail LR (0: jump to it)."
    )
    swa_anneal_strategy: AnnealStrategy = setting(defaults.SWA_ANNEAL_STRATEGY, "The shape of the anneal.")
    swa_device: Optional[str] = setting(
        defaults.SWA_DEVICE,
        "Where the fp32 averages live: unset = beside each parameter; 'cpu' = host memory (pinned when CUDA "
        "is available).",
    )
    swa_strategy: Strategy = setting(
        defaults.SWA_STRATEGY,
        "uniform: the SWA mean of all snapshots; ema: a bias-corrected exponential moving average.",
    )
    swa_ema_decay: float = setting(defaults.SWA_EMA_DECAY, "Decay of the 'ema' strategy, in (0, 1).")
    swa_windows: int = setting(
        defaults.SWA_WINDOWS,
        "Split the snapshots into this many windows of nearly equal length, one fp32 mean each; the candidates "
        "are swa (every snapshot) and swa_from<s> (the snapshots from each later window start s on). 1: the "
        "classic average only.",
    )
    swa_windows_at_most: bool = setting(
        defaults.SWA_WINDOWS_AT_MOST,
        "Treat swa_windows as an upper bound: a run that takes fewer snapshots gets one window per snapshot "
        "instead of being refused.",
    )
    swa_ema_decays: List[float] = setting(
        defaults.SWA_EMA_DECAYS, "One bias-corrected EMA candidate ema_<d> per decay, e.g. 0.9 0.99."
    )
    swa_select_metric: Optional[str] = setting(
        defaults.SWA_SELECT_METRIC,
        "Score every candidate and the live weights at the end of training and ship the best, by this metric. "
        "'auto': by loss on the trainer's swa_select_dataset (run_glue: the rows --swa_select_split holds out) "
        "when there is one, else no selection (one warning) and the model ships swa_ship; never on the "
        "evaluation set. A metric (loss, accuracy, eval_f1, ...): on swa_select_dataset, else on eval_dataset "
        "(flagged optimistic). 'none': no selection, ship swa_ship.",
    )
    swa_select_greater_is_better: Optional[bool] = setting(
        defaults.SWA_SELECT_GREATER_IS_BETTER,
        "Whether a higher selection score is better (unset: False for names ending in loss, True otherwise).",
    )
    swa_eval_candidates: bool = setting(
        defaults.SWA_EVAL_CANDIDATES,
        "SWATrainer.evaluate() also reports eval_<candidate>_* for every candidate (one evaluation each).",
    )
    swa_power_ema_stds: List[float] = setting(
        defaults.SWA_POWER_EMA_STDS,
        "Keep one power-function EMA (EDM2) per relative width 0 < std < 0.289, e.g. 0.05 0.10, updated every "
        "optimizer step from the first; each is a candidate pema_<std>, written to output_dir/swa_power_ema/ "
        "as snapshots. Off when empty.",
    )
    swa_power_ema_every: Optional[int] = setting(
        defaults.SWA_POWER_EMA_EVERY,
        "Write the power EMAs as snapshots every this many optimizer steps, and at the last step (unset: about "
        "32 snapshots a run).",
    )
    swa_power_ema_dtype: PowerEMADtype = setting(
        defaults.SWA_POWER_EMA_DTYPE, "dtype of the power-EMA snapshots: float32 (exact) or bfloat16 (half the bytes)."
    )
    swa_power_ema_candidates: List[float] = setting(
        defaults.SWA_POWER_EMA_CANDIDATES,
        "Widths reconstructed from the power-EMA snapshots at the end of training (EDM2's post-hoc EMA), added "
        "as candidates pema_<std>; needs two or more swa_power_ema_stds.",
    )
    swa_update_bn: Optional[bool] = setting(
        defaults.SWA_UPDATE_BN,
        "Recompute BatchNorm running statistics for the shipped weights at the end of training, with one pass "
        "over the training data, as torch's update_bn (unset: when the model has a torch BatchNorm module).",
    )
    swa_ship: str = setting(
        defaults.SWA_SHIP,
        "What the model ships when nothing chooses (no swa_select_metric, or 'auto' without swa_select_dataset): "
        "live (the default: the weights of the last step, picked on held-out rows where no fixed average beat "
        "them; the averages are evaluated beside them), swa (every snapshot from swa_start), last_window (the "
        "window with the latest start, swa_from<s>; swa with one window), or an ema_<d> / pema_<std> candidate of "
        "these settings, or bema (with swa_bema).",
    )
    swa_bema: bool = setting(
        defaults.SWA_BEMA,
        "Keep BEMA (bias-corrected EMA, Block & Zhang 2025), as TRL's BEMACallback computes it, as the candidate "
        "bema: anchored at step swa_bema_update_after (0: the start of training), updated every "
        "swa_bema_update_freq steps after it.",
    )
    swa_bema_ema_power: float = setting(defaults.SWA_BEMA_EMA_POWER, "BEMA's EMA decay power κ (TRL's ema_power).")
    swa_bema_bias_power: float = setting(
        defaults.SWA_BEMA_BIAS_POWER, "BEMA's bias-correction power η (TRL's bias_power)."
    )
    swa_bema_lag: int = setting(defaults.SWA_BEMA_LAG, "BEMA's lag ρ (TRL's lag).")
    swa_bema_multiplier: float = setting(defaults.SWA_BEMA_MULTIPLIER, "BEMA's step multiplier γ (TRL's multiplier).")
    swa_bema_update_after: int = setting(
        defaults.SWA_BEMA_UPDATE_AFTER,
        "The optimizer step whose weights anchor BEMA (TRL's update_after; 0: the start).",
    )
    swa_bema_update_freq: int = setting(
        defaults.SWA_BEMA_UPDATE_FREQ, "Update BEMA every this many optimizer steps (TRL's update_freq)."
    )
    # The old names of swa_strategy and swa_ema_decay, as keyword arguments only (RENAMED_SETTINGS).
    strategy: dataclasses.InitVar[Optional[str]] = None
    ema_decay: dataclasses.InitVar[Optional[float]] = None

    def __post_init__(self, strategy: Optional[str] = None, ema_decay: Optional[float] = None) -> None:
        take_renamed(self, {"strategy": strategy, "ema_decay": ema_decay})
        self.swa_start = parse_swa_start(self.swa_start)
        if isinstance(self.swa_start, float):
            if not (0.0 < self.swa_start <= 1.0) or math.isnan(self.swa_start):
                raise ValueError(
                    f"swa_start={self.swa_start!r}: as a float it is a fraction of the training steps and must be "
                    "in (0, 1] (e.g. 0.75); pass an int (e.g. 100) for an absolute optimizer step"
                )
        elif self.swa_start < 1:
            raise ValueError(
                f"swa_start={self.swa_start!r}: as an int it is an optimizer step and must be >= 1 "
                "(transformers counts global_step from 1); use a float in (0, 1] for a fraction"
            )
        if isinstance(self.swa_freq, bool) or not isinstance(self.swa_freq, int) or self.swa_freq < 1:
            raise ValueError(f"swa_freq={self.swa_freq!r}: must be an int >= 1 (optimizer steps between snapshots)")
        if self.swa_lr is not None and not (self.swa_lr > 0 and math.isfinite(self.swa_lr)):
            raise ValueError(f"swa_lr={self.swa_lr!r}: must be a finite number > 0, or None for swa_lr_ratio")
        ratio = self.swa_lr_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ValueError(
                f"swa_lr_ratio must be in [0, 1] (a share of the peak LR; 0 keeps the schedule), got {ratio!r}"
            )
        if (
            isinstance(self.swa_anneal_steps, bool)
            or not isinstance(self.swa_anneal_steps, int)
            or self.swa_anneal_steps < 0
        ):
            raise ValueError(f"swa_anneal_steps={self.swa_anneal_steps!r}: must be an int >= 0 (0 = jump to swa_lr)")
        if self.swa_anneal_strategy not in ANNEAL_STRATEGIES:
            raise ValueError(
                f"swa_anneal_strategy={self.swa_anneal_strategy!r}: must be one of {', '.join(ANNEAL_STRATEGIES)}"
            )
        make_strategy(self.swa_strategy, check_ema_decay(self.swa_ema_decay, "swa_ema_decay"))
        self._check_candidates()
        self._check_power_emas()
        self.bema_settings()
        self._check_ship()

    def _check_candidates(self) -> None:
        if isinstance(self.swa_windows, bool) or not isinstance(self.swa_windows, int) or self.swa_windows < 1:
            raise ValueError(f"swa_windows={self.swa_windows!r}: must be an int >= 1 (1 = the classic SWA average)")
        if self.swa_windows > 1 and self.swa_strategy != "uniform" and not self.swa_windows_at_most:
            # As an upper bound (swa_windows_at_most) the windows leave an EMA strategy one window.
            raise ValueError(
                f"swa_windows={self.swa_windows} splits the uniform SWA average, but "
                f"swa_strategy={self.swa_strategy!r}: use swa_strategy='uniform' with windows, and swa_ema_decays "
                "for EMA candidates."
            )
        self.swa_ema_decays = check_ema_decays(self.swa_ema_decays or [])
        self.swa_select_metric = parse_select_metric(self.swa_select_metric)
        if self.swa_select_metric is not None and not str(self.swa_select_metric).strip():
            raise ValueError(
                "swa_select_metric is empty: name a metric such as 'loss' or 'accuracy', or leave it unset"
            )

    def _check_power_emas(self) -> None:
        self.swa_power_ema_stds = check_stds(self.swa_power_ema_stds or [], "swa_power_ema_stds")
        every = self.swa_power_ema_every
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"swa_power_ema_every={every!r}: must be an int >= 1 (optimizer steps), or None")
        if self.swa_power_ema_dtype not in get_args(PowerEMADtype):
            raise ValueError(f"swa_power_ema_dtype={self.swa_power_ema_dtype!r}: must be 'float32' or 'bfloat16'")
        self.swa_power_ema_candidates = [
            check_std(s, "swa_power_ema_candidates") for s in self.swa_power_ema_candidates or []
        ]
        if self.swa_power_ema_candidates and len(self.swa_power_ema_stds) < 2:
            raise ValueError(
                f"swa_power_ema_candidates={self.swa_power_ema_candidates} are reconstructed from stored power EMAs of "
                f"at least two widths, but swa_power_ema_stds={self.swa_power_ema_stds}: store two, e.g. [0.05, 0.10]."
            )

    def _check_ship(self) -> None:
        names = [LIVE, LAST_WINDOW, MAIN_CANDIDATE]
        names += [ema_candidate_name(d) for d in self.swa_ema_decays]
        names += [power_ema_candidate_name(s) for s in self.swa_power_ema_stds + self.swa_power_ema_candidates]
        names += [BEMA_CANDIDATE] if self.swa_bema else []
        if self.swa_ship not in names:
            raise ValueError(
                f"swa_ship={self.swa_ship!r}: the model can ship one of {', '.join(names)} (the live weights, the "
                "last window, the average from swa_start, or a candidate of swa_ema_decays / swa_power_ema_stds / "
                "swa_power_ema_candidates / swa_bema)."
            )

    def bema_settings(self, max_steps: Optional[int] = None) -> Optional[BEMASettings]:
        """TRL's BEMA parameters from the ``swa_bema_*`` settings (checked), or ``None`` without ``swa_bema``.

        With `max_steps`, refuses a schedule whose first update comes after the last step.

        >>> SWAConfig(swa_bema=True, swa_bema_update_freq=1).bema_settings().update_freq
        1
        """
        if not self.swa_bema:
            return None
        names = [field.name for field in dataclasses.fields(BEMASettings)]
        settings = BEMASettings(**{name: getattr(self, f"swa_bema_{name}") for name in names})
        if max_steps is not None:
            settings.check_updates_within(max_steps)
        return settings

    def power_ema_every(self, max_steps: int) -> int:
        """Every how many optimizer steps the power EMAs are written as snapshots (the last step is one too)."""
        return self.swa_power_ema_every or default_snapshot_every(max_steps)

    def is_power_ema_snapshot_step(self, global_step: int, max_steps: int) -> bool:
        """Whether the power EMAs are written after optimizer step `global_step`.

        >>> config = SWAConfig(swa_power_ema_stds=[0.05, 0.1], swa_power_ema_every=10)
        >>> [s for s in range(1, 26) if config.is_power_ema_snapshot_step(s, max_steps=25)]
        [10, 20, 25]
        """
        if not self.swa_power_ema_stds or not 1 <= global_step <= max_steps:
            return False
        return global_step % self.power_ema_every(max_steps) == 0 or global_step == max_steps

    def start_step(self, max_steps: int) -> int:
        """The first optimizer step whose weights are averaged; checks it is within training."""
        if isinstance(self.swa_start, float):
            step = max(1, math.ceil(self.swa_start * max_steps))
        else:
            step = self.swa_start
        if max_steps > 0 and step > max_steps:
            raise ValueError(
                f"swa_start={self.swa_start!r} is step {step}, past the end of training (max_steps={max_steps}): "
                "no weights would be averaged. Lower swa_start or train longer."
            )
        return step

    def is_snapshot_step(self, global_step: int, max_steps: int, start: Optional[int] = None) -> bool:
        """Whether the weights after optimizer step `global_step` are folded into the averages.

        The one home of the snapshot rule: every `swa_freq`-th optimizer step from the start
        step on, up to `max_steps` (a step past it, which transformers can run when resuming a
        finished run, is never averaged). `start`: the start step when it is not this run's own
        (a run continued to a larger `max_steps` keeps the start its averaging began at).
        """
        start = self.start_step(max_steps) if start is None else start
        return start <= global_step <= max_steps and (global_step - start) % self.swa_freq == 0

    def n_snapshots(self, max_steps: int) -> int:
        """How many snapshots a run of `max_steps` optimizer steps takes."""
        return (max_steps - self.start_step(max_steps)) // self.swa_freq + 1

    def window_starts(self, max_steps: int, start: Optional[int] = None) -> List[int]:
        """The first step of each window: the snapshots split into `swa_windows` nearly equal parts.

        With `swa_windows_at_most`, a run of fewer snapshots than `swa_windows` gets one window per snapshot,
        and an ``"ema"`` strategy (which does not split) one window. `start`: the start step when it is not this
        run's own (a run continued to a larger `max_steps`).
        """
        start = self.start_step(max_steps) if start is None else start
        count = (max_steps - start) // self.swa_freq + 1
        windows = min(self.swa_windows, count) if self.swa_windows_at_most else self.swa_windows
        if self.swa_strategy != "uniform":
            windows = 1
        if windows > count:
            raise ValueError(
                f"swa_windows={self.swa_windows} but the run takes only {count} snapshot(s) (every {self.swa_freq} "
                f"step(s) from step {start} to {max_steps}): each window needs one. Lower swa_windows or swa_freq, "
                "or set swa_windows_at_most to keep one window per snapshot."
            )
        return [start + self.swa_freq * (k * count // windows) for k in range(windows)]

    @property
    def has_lr_tail(self) -> bool:
        """Whether the LR is changed from the start step on (``swa_lr`` set, or ``swa_lr_ratio`` above 0)."""
        return lr_tail_is_on(self.swa_lr, self.swa_lr_ratio)

    @property
    def selects_automatically(self) -> bool:
        """Whether `swa_select_metric` is ``"auto"``: loss on ``swa_select_dataset`` if given, else no selection."""
        return self.swa_select_metric == AUTO

    def select_metric_name(self) -> Optional[str]:
        """The selection metric without an ``eval_`` prefix (``"eval_f1"`` -> ``"f1"``; ``"auto"`` -> ``"loss"``),
        or ``None``.

        >>> SWAConfig().select_metric_name(), SWAConfig(swa_select_metric="eval_f1").select_metric_name()
        ('loss', 'f1')
        """
        if self.swa_select_metric is None:
            return None
        if self.selects_automatically:
            return "loss"
        name = self.swa_select_metric.strip()
        return name[len("eval_") :] if name.startswith("eval_") else name

    def select_greater_is_better(self, metric: Optional[str] = None) -> bool:
        """Whether a higher score of `metric` (default: the selection metric) is better.

        As `swa_select_greater_is_better` says when set; else False for a name ending in
        ``loss`` and True otherwise.
        """
        if self.swa_select_greater_is_better is not None:
            return bool(self.swa_select_greater_is_better)
        return not (metric or self.select_metric_name() or "").endswith("loss")

    def updates_bn(self, has_batchnorm: bool) -> bool:
        """Whether BatchNorm statistics are recomputed for the shipped weights (`swa_update_bn`)."""
        return has_batchnorm and self.swa_update_bn is not False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SWAConfig":
        """The config of a record such as ``swa_config.json`` (one written before the renames, by the old names).

        >>> SWAConfig.from_dict({"swa_freq": 5, "strategy": "ema", "n_averaged": 3}).swa_strategy
        'ema'
        """
        values = {RENAMED_SETTINGS.get(k, k): v for k, v in values.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


install_renamed_attributes(SWAConfig)
if SWAConfig.__doc__:  # None under python -OO
    SWAConfig.__doc__ += settings_doc(SWAConfig)
