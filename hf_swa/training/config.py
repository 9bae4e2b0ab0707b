"""`SWAConfig`: when and how to average, validated up front."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import List, Optional, Union

from ..averaging.bema import BEMA_CANDIDATE, BEMASettings
from ..averaging.candidates import MAIN_CANDIDATE, ema_candidate_name, power_ema_candidate_name
from ..averaging.power_ema import check_std, check_stds
from ..averaging.strategies import check_ema_decay, check_ema_decays, make_strategy
from ..checkpointing.power_ema import default_snapshot_every
from . import defaults
from .defaults import lr_tail_is_on

ANNEAL_STRATEGIES = ("cos", "linear")
#: `swa_select_metric` "auto": loss on swa_select_dataset when given, else no selection.
AUTO = "auto"
#: `swa_ship` "last_window": the window average with the latest start (``swa`` when there is one window).
LAST_WINDOW = "last_window"


def parse_select_metric(value: Optional[str]) -> Optional[str]:
    """A `swa_select_metric` setting: ``"none"`` (any case) turns selection off, like ``report_to="none"``;
    ``"auto"`` (any case) is the default.

    >>> parse_select_metric("loss"), parse_select_metric("None"), parse_select_metric(None), parse_select_metric("Auto")
    ('loss', None, None, 'auto')
    """
    if value is not None and str(value).strip().lower() == "none":
        return None
    if value is not None and str(value).strip().lower() == AUTO:
        return AUTO
    return value


def parse_swa_start(value: Union[str, int, float]) -> Union[int, float]:
    """Turn a `swa_start` setting into an int step or a float fraction.

    An int (or a string of digits such as ``"100"``) is an optimizer step; a float
    (or a string with a decimal point such as ``"0.75"`` or ``"1.0"``) is a fraction
    of the total optimizer steps.

    >>> parse_swa_start("0.75"), parse_swa_start("100"), parse_swa_start(1.0)
    (0.75, 100, 1.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"swa_start must be a fraction in (0, 1] or a step >= 1, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"swa_start must be a fraction in (0, 1] such as 0.75 or an optimizer step >= 1 such as 100, got {value!r}"
        ) from None


@dataclass
class SWAConfig:
    """Settings of Stochastic Weight Averaging.

    Args:
        swa_start: when averaging starts. A float ``0 < f <= 1`` is a fraction of the
            total optimizer steps (start step ``max(1, ceil(f * max_steps))``); an int
            ``>= 1`` is an optimizer step (transformers counts ``global_step`` from 1).
        swa_freq: fold a snapshot into the average every ``swa_freq`` optimizer steps
            from the start step on (the start step itself is the first snapshot).
        swa_lr: if set, from the start step the learning rate anneals to ``swa_lr`` and
            holds there. If ``None``, the tail LR is ``swa_lr_ratio`` times the peak LR.
        swa_lr_ratio: without ``swa_lr``, the LR anneals to this share of its peak (of each
            param group's) from the start step and holds there; in ``[0, 1]``, 0 keeps the
            Trainer's schedule unchanged.
        swa_anneal_steps: optimizer steps over which the LR anneals to the tail LR
            (0 = jump to it at the start step).
        swa_anneal_strategy: ``"cos"`` or ``"linear"``.
        swa_device: where the fp32 averages live (``None``: beside each parameter;
            ``"cpu"``: in host memory, pinned when CUDA is available).
        strategy: ``"uniform"`` (the SWA mean of all snapshots) or ``"ema"``.
        ema_decay: decay of the ``"ema"`` strategy, in ``(0, 1)``.
        swa_windows: split the snapshots into this many windows of nearly equal length,
            one fp32 mean each; the candidates are ``swa`` (every snapshot) and
            ``swa_from{s}`` (the snapshots from each later window start ``s`` on).
        swa_windows_at_most: treat ``swa_windows`` as an upper bound: a run that takes
            fewer snapshots keeps one window per snapshot instead of being refused.
        swa_ema_decays: one bias-corrected EMA candidate ``ema_{d}`` per decay.
        swa_select_metric: if set, every candidate and the live weights (``live``) are
            scored on the selection data at the end of training and the best is shipped
            (``"loss"``, ``"accuracy"``, ``"eval_f1"``, ...): on ``swa_select_dataset``, else on
            ``eval_dataset`` (flagged optimistic). ``"auto"`` (default): loss on
            ``swa_select_dataset`` when one is given, otherwise no selection (one warning; the
            model ships `swa_ship`); never on ``eval_dataset``. ``None`` or ``"none"``: no selection.
        swa_select_greater_is_better: whether a higher score is better (default: False
            for names ending in ``loss``, True otherwise).
        swa_eval_candidates: `SWATrainer.evaluate()` also reports ``eval_<candidate>_*``
            for every candidate (one evaluation each).
        swa_power_ema_stds: keep one power-function EMA (EDM2) per relative width σ_rel
            (``0 < σ_rel < 0.289``, e.g. ``[0.05, 0.10]``), updated every optimizer step from
            the first; each is a candidate ``pema_{σ_rel}``. Off when empty.
        swa_power_ema_every: write each power EMA to ``output_dir/swa_power_ema/`` every this
            many optimizer steps, and at the last step (``None``: about 32 snapshots a run).
        swa_power_ema_dtype: ``"float32"`` (exact) or ``"bfloat16"`` (half the bytes) snapshots.
        swa_power_ema_candidates: widths reconstructed from the snapshots at the end of
            training (EDM2's post-hoc EMA) and added as candidates ``pema_{σ_rel}``; needs at
            least two stored widths.
        swa_ship: the candidate the model holds after training when nothing chooses (no
            `swa_select_metric`, or ``"auto"`` without ``swa_select_dataset``): ``"last_window"``
            (the window with the latest start, ``swa_from{s}``; ``swa`` with one window),
            ``"swa"`` (every snapshot from `swa_start`), or an ``ema_{d}`` / ``pema_{σ}`` candidate
            of these settings.
        swa_update_bn: recompute BatchNorm running statistics for the shipped weights at the
            end of training, with one pass over the training data (as
            `torch.optim.swa_utils.update_bn`); ``None`` (default): when the model has a torch
            BatchNorm module.
        swa_bema: keep BEMA (bias-corrected EMA, Block & Zhang 2025), as TRL's `BEMACallback`
            computes it, as the candidate ``bema``: from optimizer step ``swa_bema_update_after``
            (0: the start of training) it is updated every ``swa_bema_update_freq`` steps.
        swa_bema_ema_power, swa_bema_bias_power, swa_bema_lag, swa_bema_multiplier,
            swa_bema_update_after, swa_bema_update_freq: TRL's ``ema_power`` (κ), ``bias_power`` (η),
            ``lag`` (ρ), ``multiplier`` (γ), ``update_after`` (τ) and ``update_freq`` (φ), with its defaults.

    The defaults come from :mod:`hf_swa.training.defaults`.

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

    swa_start: Union[int, float] = defaults.SWA_START
    swa_freq: int = defaults.SWA_FREQ
    swa_lr: Optional[float] = None
    swa_lr_ratio: float = defaults.SWA_LR_RATIO
    swa_anneal_steps: int = 0
    swa_anneal_strategy: str = "cos"
    swa_device: Optional[str] = None
    strategy: str = "uniform"
    ema_decay: float = 0.999
    swa_windows: int = defaults.SWA_WINDOWS
    swa_windows_at_most: bool = defaults.SWA_WINDOWS_AT_MOST
    swa_ema_decays: List[float] = dataclasses.field(default_factory=lambda: list(defaults.SWA_EMA_DECAYS))
    swa_select_metric: Optional[str] = defaults.SWA_SELECT_METRIC
    swa_select_greater_is_better: Optional[bool] = None
    swa_eval_candidates: bool = False
    swa_power_ema_stds: List[float] = dataclasses.field(default_factory=list)
    swa_power_ema_every: Optional[int] = None
    swa_power_ema_dtype: str = "float32"
    swa_power_ema_candidates: List[float] = dataclasses.field(default_factory=list)
    swa_update_bn: Optional[bool] = None
    swa_ship: str = defaults.SWA_SHIP
    swa_bema: bool = defaults.SWA_BEMA
    swa_bema_ema_power: float = defaults.SWA_BEMA_EMA_POWER
    swa_bema_bias_power: float = defaults.SWA_BEMA_BIAS_POWER
    swa_bema_lag: int = defaults.SWA_BEMA_LAG
    swa_bema_multiplier: float = defaults.SWA_BEMA_MULTIPLIER
    swa_bema_update_after: int = defaults.SWA_BEMA_UPDATE_AFTER
    swa_bema_update_freq: int = defaults.SWA_BEMA_UPDATE_FREQ

    def __post_init__(self) -> None:
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
        make_strategy(self.strategy, check_ema_decay(self.ema_decay, "ema_decay"))
        self._check_candidates()
        self._check_power_emas()
        self.bema_settings()
        self._check_ship()

    def _check_candidates(self) -> None:
        if isinstance(self.swa_windows, bool) or not isinstance(self.swa_windows, int) or self.swa_windows < 1:
            raise ValueError(f"swa_windows={self.swa_windows!r}: must be an int >= 1 (1 = the classic SWA average)")
        if self.swa_windows > 1 and self.strategy != "uniform" and not self.swa_windows_at_most:
            # As an upper bound (swa_windows_at_most) the windows leave an EMA strategy one window.
            raise ValueError(
                f"swa_windows={self.swa_windows} splits the uniform SWA average, but strategy={self.strategy!r}: "
                "use strategy='uniform' with windows, and swa_ema_decays for EMA candidates."
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
        if self.swa_power_ema_dtype not in ("float32", "bfloat16"):
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
        names = [LAST_WINDOW, MAIN_CANDIDATE]
        names += [ema_candidate_name(d) for d in self.swa_ema_decays]
        names += [power_ema_candidate_name(s) for s in self.swa_power_ema_stds + self.swa_power_ema_candidates]
        names += [BEMA_CANDIDATE] if self.swa_bema else []
        if self.swa_ship not in names:
            raise ValueError(
                f"swa_ship={self.swa_ship!r}: the model can ship one of {', '.join(names)} (the last window, the "
                "average from swa_start, or a candidate of swa_ema_decays / swa_power_ema_stds / "
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

    def is_snapshot_step(self, global_step: int, max_steps: int) -> bool:
        """Whether the weights after optimizer step `global_step` are folded into the averages.

        The one home of the snapshot rule: every `swa_freq`-th optimizer step from the start
        step on, up to `max_steps` (a step past it, which transformers can run when resuming a
        finished run, is never averaged).
        """
        start = self.start_step(max_steps)
        return start <= global_step <= max_steps and (global_step - start) % self.swa_freq == 0

    def n_snapshots(self, max_steps: int) -> int:
        """How many snapshots a run of `max_steps` optimizer steps takes."""
        return (max_steps - self.start_step(max_steps)) // self.swa_freq + 1

    def window_starts(self, max_steps: int) -> List[int]:
        """The first step of each window: the snapshots split into `swa_windows` nearly equal parts.

        With `swa_windows_at_most`, a run of fewer snapshots than `swa_windows` gets one window per snapshot,
        and an ``"ema"`` strategy (which does not split) one window.
        """
        start, count = self.start_step(max_steps), self.n_snapshots(max_steps)
        windows = min(self.swa_windows, count) if self.swa_windows_at_most else self.swa_windows
        if self.strategy != "uniform":
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
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
