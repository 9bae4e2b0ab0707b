"""Which keys of a Trainer metrics dict are scores, of which weights, and the files that hold them.

``eval_<m>`` is the live weights' score and ``eval_swa_<m>`` the averaged weights'; each other
candidate's score is ``eval_<candidate>_<m>`` (``eval_swa_from75_<m>``, ``eval_ema_0.9_<m>``), and
with selection the shipped candidate's is repeated as ``eval_chosen_<m>``, its name under
``swa_chosen``. MNLI's mismatched set repeats every key with ``_mm`` at the end. Next to the scores the Trainer
records bookkeeping (runtime, throughput, sizes, epoch), which is not a measure of the model.
``Trainer.save_metrics`` writes them to ``<split>_results.json`` and all of them to ``all_results.json``.

Example:
    >>> metric_names({"eval_accuracy": 0.9, "eval_swa_accuracy": 0.91, "eval_loss": 0.3, "eval_runtime": 2.0,
    ...               "epoch": 3.0, "eval_samples_mm": 98})
    ['accuracy', 'loss']
    >>> is_lower_better("loss_mm"), is_score("combined_score"), is_score("accuracy_mm")
    (True, False, True)
    >>> weights_and_metric("eval_swa_from75_accuracy_mm"), weights_and_metric("eval_f1")
    (('swa_from75', 'accuracy_mm'), ('live', 'f1'))
    >>> chosen_scores({"eval_accuracy": 0.9, "eval_ema_0.9_accuracy": 0.92, "eval_ema_0.9_runtime": 1.0}, "ema_0.9")
    {'eval_chosen_accuracy': 0.92}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional

from hf_swa.averaging.candidates import CANDIDATE_NAME_PATTERN
from hf_swa.training.selection import LIVE

__all__ = [
    "ALL_RESULTS_FILE",
    "RESULTS_FILES",
    "TRAIN_RESULTS_FILE",
    "LIVE_PREFIX",
    "AVERAGED_PREFIX",
    "MISMATCHED_SUFFIX",
    "COMBINED_SCORE",
    "BOOKKEEPING",
    "CHOSEN",
    "CHOSEN_NAME_KEY",
    "LIVE",
    "metric_names",
    "is_lower_better",
    "is_score",
    "is_bookkeeping",
    "weights_and_metric",
    "score_key",
    "chosen_scores",
    "SELECT_PREFIX",
    "select_key",
    "selection_scores",
    "candidate_order",
]

ALL_RESULTS_FILE = "all_results.json"
#: What a run's folder may hold, best first: every metric, or the evaluation alone.
RESULTS_FILES = (ALL_RESULTS_FILE, "eval_results.json")
TRAIN_RESULTS_FILE = "train_results.json"
LIVE_PREFIX = "eval_"
AVERAGED_PREFIX = "eval_swa_"
MISMATCHED_SUFFIX = "_mm"
#: run_glue's mean of a task's metrics when it has several: a summary, not a metric of its own.
COMBINED_SCORE = "combined_score"
#: Keys the Trainer adds next to the scores; a metric name ending in one of these is bookkeeping.
BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second", "samples", "epoch", "model_preparation_time")
LOWER_IS_BETTER = ("loss",)
#: The weights a selection shipped, whichever candidate (or ``live``) they are.
CHOSEN = "chosen"
#: The results key naming the candidate the selection shipped.
CHOSEN_NAME_KEY = "swa_chosen"
_WEIGHTS_KEY = re.compile(rf"^{LIVE_PREFIX}(?:({CANDIDATE_NAME_PATTERN}|{CHOSEN})_)?(.+)$")
#: Each candidate's (and the live weights') score on the selection data: ``select_<name>_<metric>``.
SELECT_PREFIX = "select_"
_SELECT_KEY = re.compile(rf"^{SELECT_PREFIX}({CANDIDATE_NAME_PATTERN}|{LIVE})_(.+)$")


def _base(name: str) -> str:
    return name.removesuffix(MISMATCHED_SUFFIX)


def weights_and_metric(key: str) -> Optional[tuple[str, str]]:
    """``(weights, metric)`` of an evaluation key: weights ``live``, a candidate's name or ``chosen``; else None."""
    match = _WEIGHTS_KEY.match(key)
    return (match[1] or LIVE, match[2]) if match else None


def score_key(metric: str, weights: str = LIVE) -> str:
    """The key of `metric` for `weights`: ``eval_<m>`` for ``live``, else ``eval_<weights>_<m>``.

    >>> score_key("f1"), score_key("f1", "swa"), score_key("f1", "chosen")
    ('eval_f1', 'eval_swa_f1', 'eval_chosen_f1')
    """
    return LIVE_PREFIX + metric if weights == LIVE else f"{LIVE_PREFIX}{weights}_{metric}"


def is_bookkeeping(name: str) -> bool:
    """Runtime, throughput, sizes or epoch: not a measure of the model."""
    return _base(name).endswith(BOOKKEEPING)


def metric_names(metrics: Mapping[str, Any]) -> list[str]:
    """Names ``m`` with a number under ``eval_<m>`` or ``eval_<weights>_<m>``, first seen first, bookkeeping left
    out."""
    names: list[str] = []
    for key, value in metrics.items():
        parsed = weights_and_metric(key)
        if parsed is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = parsed[1]
        if name and name not in names and not is_bookkeeping(name):
            names.append(name)
    return names


def select_key(name: str, metric: str) -> str:
    """``select_<name>_<metric>``: the score of candidate `name` (or ``live``) on the selection data."""
    return f"{SELECT_PREFIX}{name}_{metric}"


def selection_scores(metrics: Mapping[str, Any]) -> dict:
    """``{name: (metric, score)}`` from a run's ``select_<name>_<metric>`` keys.

    >>> selection_scores({"select_swa_from50_loss": 0.3, "select_live_loss": 0.4, "select_samples": 90})
    {'swa_from50': ('loss', 0.3), 'live': ('loss', 0.4)}
    """
    out = {}
    for key, value in metrics.items():
        match = _SELECT_KEY.match(key)
        if match and not is_bookkeeping(match[2]):
            out[match[1]] = (match[2], value)
    return out


def candidate_order(name: str) -> tuple:
    """Sort key of the weights' names: ``swa``, later window starts, EMAs by decay, ``live``.

    >>> sorted(["live", "ema_0.99", "swa_from75", "ema_0.9", "swa", "swa_from60"], key=candidate_order)
    ['swa', 'swa_from60', 'swa_from75', 'ema_0.9', 'ema_0.99', 'live']
    """
    if name == LIVE:
        return (3, 0.0, name)
    window = re.fullmatch(r"swa_from(\d+)", name)
    if name == "swa" or window:
        return (0 if name == "swa" else 1, float(window[1]) if window else 0.0, name)
    try:
        return (2, float(name.removeprefix("ema_")), name)
    except ValueError:
        return (4, 0.0, name)


def chosen_scores(metrics: Mapping[str, Any], chosen: str) -> dict:
    """The scores of the `chosen` weights (``live``, ``swa`` or another candidate) under ``eval_chosen_<m>`` keys."""
    out = {}
    for key, value in metrics.items():
        parsed = weights_and_metric(key)
        if parsed and parsed[0] == chosen and not is_bookkeeping(parsed[1]):
            out[score_key(parsed[1], CHOSEN)] = value
    return out


def is_lower_better(name: str) -> bool:
    """A loss (MNLI mismatched included): lower is better."""
    return _base(name) in LOWER_IS_BETTER


def is_score(name: str) -> bool:
    """A metric of the model's quality: not a loss and not run_glue's combined score."""
    return not is_lower_better(name) and _base(name) != COMBINED_SCORE
