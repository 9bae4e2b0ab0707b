"""Which keys of a Trainer metrics dict are scores, of which weights, and the files that hold them.

``eval_<m>`` is the live weights' score and ``eval_swa_<m>`` the averaged weights'; MNLI's
mismatched set repeats every key with ``_mm`` at the end. Next to the scores the Trainer
records bookkeeping (runtime, throughput, sizes, epoch), which is not a measure of the model.
``Trainer.save_metrics`` writes them to ``<split>_results.json`` and all of them to ``all_results.json``.

Example:
    >>> metric_names({"eval_accuracy": 0.9, "eval_swa_accuracy": 0.91, "eval_loss": 0.3, "eval_runtime": 2.0,
    ...               "epoch": 3.0, "eval_samples_mm": 98})
    ['accuracy', 'loss']
    >>> is_lower_better("loss_mm"), is_score("combined_score"), is_score("accuracy_mm")
    (True, False, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ALL_RESULTS_FILE",
    "RESULTS_FILES",
    "TRAIN_RESULTS_FILE",
    "LIVE_PREFIX",
    "AVERAGED_PREFIX",
    "MISMATCHED_SUFFIX",
    "COMBINED_SCORE",
    "BOOKKEEPING",
    "metric_names",
    "is_lower_better",
    "is_score",
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


def _base(name: str) -> str:
    return name.removesuffix(MISMATCHED_SUFFIX)


def metric_names(metrics: Mapping[str, Any]) -> list[str]:
    """Names ``m`` with a number under ``eval_<m>`` or ``eval_swa_<m>``, first seen first, bookkeeping left out."""
    names: list[str] = []
    for key, value in metrics.items():
        if not key.startswith(LIVE_PREFIX) or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = key[len(AVERAGED_PREFIX) :] if key.startswith(AVERAGED_PREFIX) else key[len(LIVE_PREFIX) :]
        if name and name not in names and not _base(name).endswith(BOOKKEEPING):
            names.append(name)
    return names


def is_lower_better(name: str) -> bool:
    """A loss (MNLI mismatched included): lower is better."""
    return _base(name) in LOWER_IS_BETTER


def is_score(name: str) -> bool:
    """A metric of the model's quality: not a loss and not run_glue's combined score."""
    return not is_lower_better(name) and _base(name) != COMBINED_SCORE
