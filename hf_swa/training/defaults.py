"""The one set of SWA defaults, measured in docs/when-averaging-helps.md and docs/candidates.md.

`SWAConfig`, `SWATrainingArguments`, `SWATrainer`, ``run_glue`` and the demo take theirs from here:
average the second half of training (``SWA_START``) with the LR held at ``SWA_LR_RATIO`` of its
peak, snapshot every step, keep ``SWA_WINDOWS`` window candidates (fewer on a short run), no EMA
candidate, train on every row (the apps hold out ``SWA_SELECT_SPLIT`` = 0 rows) and ship the last
window (``SWA_SHIP``). Given rows held out of training (``swa_select_dataset``; `hf_swa.selection_split`
makes them, ``--swa_select_split`` in the apps), ``SWA_SELECT_METRIC = "auto"`` chooses by loss on them.
On the regime study (docs/when-averaging-helps.md) the last window of a run on every row beat the
choice on held-out rows, which cost more (a fifth fewer rows) than it gained.

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
SWA_SHIP = "last_window"
#: BEMA (the ``bema`` candidate, off by default) with TRL's `BEMACallback` defaults (Block & Zhang 2025).
SWA_BEMA = False
SWA_BEMA_EMA_POWER = 0.5
SWA_BEMA_BIAS_POWER = 0.2
SWA_BEMA_LAG = 10
SWA_BEMA_MULTIPLIER = 1.0
SWA_BEMA_UPDATE_AFTER = 0
SWA_BEMA_UPDATE_FREQ = 400
#: The share of the training rows the apps hold out to choose on (the API: `hf_swa.selection_split`); 0: none,
#: every row trains and the model ships SWA_SHIP (measured better than choosing on held-out rows).
SWA_SELECT_SPLIT = 0.0


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
    "SWA_BEMA",
    "SWA_BEMA_EMA_POWER",
    "SWA_BEMA_BIAS_POWER",
    "SWA_BEMA_LAG",
    "SWA_BEMA_MULTIPLIER",
    "SWA_BEMA_UPDATE_AFTER",
    "SWA_BEMA_UPDATE_FREQ",
    "lr_tail_is_on",
]
