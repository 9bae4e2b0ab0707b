"""The one set of SWA defaults, measured in docs/when-averaging-helps.md and docs/candidates.md.

`SWAConfig`, `SWATrainingArguments`, `SWATrainer`, ``run_glue`` and the demo take theirs from here:
average the second half of training (``SWA_START``) with the LR held at ``SWA_LR_RATIO`` of its
peak, snapshot every step, keep ``SWA_WINDOWS`` window candidates (fewer on a short run), no EMA
candidate, and choose by loss on rows held out of training when the caller gives them
(``SWA_SELECT_METRIC = "auto"``); the apps hold out ``SWA_SELECT_SPLIT`` of the training rows for
it, as `hf_swa.selection_split` does for the API.

Example:
    >>> from hf_swa import SWAConfig
    >>> from hf_swa.training import defaults
    >>> config = SWAConfig()
    >>> (config.swa_start, config.swa_lr_ratio, config.swa_windows) == (
    ...     defaults.SWA_START, defaults.SWA_LR_RATIO, defaults.SWA_WINDOWS)
    True
"""

from __future__ import annotations

from typing import Optional

#: Averaging starts here: a fraction of the total optimizer steps.
SWA_START = 0.5
#: From SWA_START the LR is held at this share of its peak (unless ``swa_lr`` is given; 0 keeps the schedule).
SWA_LR_RATIO = 0.5
#: A snapshot every this many optimizer steps.
SWA_FREQ = 1
#: The snapshots split into this many windows; candidates ``swa_from<step>`` average from each later start.
SWA_WINDOWS = 4
#: A run with fewer snapshots than SWA_WINDOWS gets one window per snapshot instead of being refused.
SWA_WINDOWS_AT_MOST = True
#: No EMA candidate (never the best where measured).
SWA_EMA_DECAYS: tuple = ()
#: Loss on ``swa_select_dataset`` when one is given; otherwise no selection (the model ships SWA_SHIP).
SWA_SELECT_METRIC = "auto"
#: What the model ships when nothing chooses: ``"swa"`` (every snapshot) or ``"last_window"`` (the latest window).
SWA_SHIP = "swa"
#: The share of the training rows the apps hold out to choose on (the API: `hf_swa.selection_split`).
SWA_SELECT_SPLIT = 0.2


def lr_tail_is_on(swa_lr: Optional[float], swa_lr_ratio: float) -> bool:
    """Whether these settings change the LR from the start step on: ``swa_lr`` set, or ``swa_lr_ratio`` above 0.

    The one rule, for `SWAConfig`, the arguments' checks and the model card (this module imports nothing heavy).

    >>> lr_tail_is_on(None, 0.5), lr_tail_is_on(2e-5, 0.0), lr_tail_is_on(None, 0.0)
    (True, True, False)
    """
    return swa_lr is not None or swa_lr_ratio > 0


__all__ = [
    "SWA_START",
    "SWA_LR_RATIO",
    "SWA_FREQ",
    "SWA_WINDOWS",
    "SWA_WINDOWS_AT_MOST",
    "SWA_EMA_DECAYS",
    "SWA_SELECT_METRIC",
    "SWA_SELECT_SPLIT",
    "SWA_SHIP",
    "lr_tail_is_on",
]
