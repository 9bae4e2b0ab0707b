"""The one set of SWA defaults, measured in docs/when-averaging-helps.md and docs/candidates.md.

`SWAConfig`, `SWATrainingArguments`, `SWATrainer`, ``run_glue`` and the demo take theirs from here:
average the second half of training (``SWA_START``) with the LR held at ``SWA_LR_RATIO`` of its
peak, snapshot every step, keep ``SWA_WINDOWS`` window candidates (fewer on a short run), no EMA
candidate, train on every row (the apps hold out ``SWA_SELECT_SPLIT`` = 0 rows), evaluate the
averages next to the live weights, and ship the live weights (``SWA_SHIP``) unless something chooses.
Given rows held out of training (``swa_select_dataset``; `hf_swa.selection_split` makes them,
``--swa_select_split`` in the apps), ``SWA_SELECT_METRIC = "auto"`` chooses by loss on them.

How ``SWA_SHIP`` was picked (docs/when-averaging-helps.md, "How the default was picked"): every
fixed rule was scored on rows held out of training (never on the test rows), on seeds 1-3 of the
regime study; the live weights scored best (the last window 1.16 points below them, ``swa`` 4.23),
and on the test rows of seeds 4-5 they were level with the last window against the every-row
baseline (+3.08 and +3.06). No fixed average beat the live weights on held-out data, so none ships
by default: set ``swa_ship`` ("swa": the average from ``swa_start``) or give held-out rows to choose.

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
#: What the model ships when nothing chooses: ``"live"`` (the weights of the last step), ``"swa"`` (the average of
#: every snapshot from swa_start), ``"last_window"`` (the latest window) or a candidate's name.
SWA_SHIP = "live"
#: The share of the training rows the apps hold out to choose on (the API: `hf_swa.selection_split`); 0: none,
#: every row trains and the model ships SWA_SHIP (a fifth fewer rows cost more than the choice gained).
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
    "lr_tail_is_on",
]
