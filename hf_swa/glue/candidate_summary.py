"""The candidates of a task's SWA runs over seeds: which one each seed shipped, and each one's mean scores.

Read from the runs' results: ``swa_chosen`` (the candidate shipped), ``select_<name>_<metric>``
(each candidate's score on the selection data) and ``eval_<name>_<metric>`` (each candidate's
score on the evaluation set, with ``swa_eval_candidates``).

Example:
    >>> from types import SimpleNamespace as Run
    >>> runs = [Run(seed=1, metrics={"swa_chosen": "swa_from50", "select_swa_loss": 0.4,
    ...                              "select_swa_from50_loss": 0.3, "select_live_loss": 0.5}),
    ...         Run(seed=2, metrics={"swa_chosen": "live", "select_swa_loss": 0.4,
    ...                              "select_swa_from50_loss": 0.5, "select_live_loss": 0.2})]
    >>> summary = summarize_candidates("sst2", "accuracy", runs)
    >>> summary.names, summary.chosen_by_seed, summary.select_metric
    (['swa', 'swa_from50', 'live'], {1: 'swa_from50', 2: 'live'}, 'loss')
    >>> summary.select_means["swa_from50"], summary.times_chosen("live")
    (0.4, 1)
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Optional, Sequence

from hf_swa.glue.metric_keys import CHOSEN, CHOSEN_NAME_KEY, LIVE, candidate_order, selection_scores, weights_and_metric

__all__ = ["CandidateSummary", "summarize_candidates"]


@dataclass
class CandidateSummary:
    """One task's candidates over the seeds of its SWA runs.

    Attributes:
        task: the task.
        metric: the main metric, as the evaluation scores are given.
        names: the candidates and ``live``, in order (``swa``, later windows, EMAs, ``live``).
        chosen_by_seed: the candidate each seed shipped (seeds that selected).
        eval_means: mean evaluation score of `metric` per name, over the seeds that report it.
        select_metric: the selection metric (None when no run selected).
        select_means: mean selection score per name.
    """

    task: str
    metric: str
    names: list
    chosen_by_seed: dict = field(default_factory=dict)
    eval_means: dict = field(default_factory=dict)
    select_metric: Optional[str] = None
    select_means: dict = field(default_factory=dict)

    def times_chosen(self, name: str) -> int:
        return sum(1 for chosen in self.chosen_by_seed.values() if chosen == name)


def _means(values: dict) -> dict:
    return {name: statistics.fmean(scores) for name, scores in values.items() if scores}


def summarize_candidates(task: str, metric: str, swa_runs: Sequence) -> Optional[CandidateSummary]:
    """The candidates of `swa_runs` (objects with ``seed`` and ``metrics``); None when they hold none
    beyond the average and the live weights and none chose."""
    chosen, evals, selects, select_metric = {}, {}, {}, None
    for run in sorted(swa_runs, key=lambda r: r.seed):
        if run.metrics.get(CHOSEN_NAME_KEY) is not None:
            chosen[run.seed] = run.metrics[CHOSEN_NAME_KEY]
        for key, value in run.metrics.items():
            parsed = weights_and_metric(key)
            if parsed and parsed[1] == metric and parsed[0] != CHOSEN:
                evals.setdefault(parsed[0], []).append(float(value))
        for name, (metric_name, value) in selection_scores(run.metrics).items():
            select_metric = metric_name
            selects.setdefault(name, []).append(float(value))
    names = sorted(set(evals) | set(selects) | set(chosen.values()), key=candidate_order)
    if not chosen and set(names) <= {"swa", LIVE}:
        return None
    return CandidateSummary(task, metric, names, chosen, _means(evals), select_metric, _means(selects))
