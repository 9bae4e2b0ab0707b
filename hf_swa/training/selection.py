"""What ships at the end of training, and why: the one home of that rule.

`decide` says whether training ends by choosing among the candidates, on what data and by which
metric, or ships the candidate `swa_ship` names (`rule_candidate`, by kind); the callback, the
trainer and the applications ask it and hold no rule of their own. The record of what shipped is
`hf_swa.training.weights_record.describe_weights`.

Choosing among the candidate averages and the live weights on held-out data:

Every candidate a `WeightAverager` holds (``swa``, ``swa_from{s}``, ``ema_{d}``) and the
live weights (``live``) are scored one after the other, the best is put into the model,
and a record of the choice is returned. Ties go to the earlier name in that order:
``swa``, later window starts, EMAs, then ``live``. A score that is NaN never wins.

A refit (scikit-learn's ``refit=True``) chooses in a run with rows held out, trains again on
every row and ships the same candidate: a window at the same share of training, another
candidate by its name (`refit_candidate`, `ship_refit`, `SWATrainer.ship_refit`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Tuple

from torch import nn

from ..averaging.names import LIVE, MAIN_CANDIDATE
from .config import LAST_WINDOW

logger = logging.getLogger(__name__)

WINDOW_KIND = "window_mean"  # the kind of `swa` and `swa_from<step>` (`WindowMeans.kind`)

SELECT_DATASET, EVAL_DATASET = "swa_select_dataset", "eval_dataset"


@dataclass(frozen=True)
class ShipDecision:
    """Whether training ends by choosing among the candidates (``chooses``), on what (``data``: ``SELECT_DATASET``
    or ``EVAL_DATASET``) and by which ``metric``; without a choice, the candidate ``rule`` (`swa_ship`) names ships.
    ``optimistic``: chosen on the evaluation set, whose scores then flatter the choice. ``note``: said once.

    Example:
        >>> from hf_swa import SWAConfig
        >>> decide(SWAConfig(), has_select_dataset=True, has_eval_dataset=True)
        ShipDecision(chooses=True, rule='live', data='swa_select_dataset', metric='loss', \
greater_is_better=False, optimistic=False, note=None)
        >>> decide(SWAConfig(swa_select_metric="none"), has_select_dataset=False, has_eval_dataset=True).chooses
        False
    """

    chooses: bool
    rule: str
    data: Optional[str] = None
    metric: Optional[str] = None
    greater_is_better: Optional[bool] = None
    optimistic: bool = False
    note: Optional[str] = None


def decide(config, has_select_dataset: bool, has_eval_dataset: bool) -> ShipDecision:
    """What ships at the end of training with these settings and data (`ShipDecision`); refuses a choice by a
    metric with nothing to score on.

    ``swa_select_metric`` ``None``: no choice. ``"auto"``: loss on ``swa_select_dataset`` when there is one, else no
    choice (with a note). A metric named: on ``swa_select_dataset``, else on ``eval_dataset`` (optimistic).
    """
    metric = config.swa_select_metric
    if metric is None:
        return ShipDecision(False, config.swa_ship)
    if config.selects_automatically and not has_select_dataset:
        note = (
            "SWA: swa_select_metric='auto' chooses by loss on held-out rows, and there are none: no selection, the "
            f"model ships swa_ship={config.swa_ship!r}. To choose among the candidates, pass the trainer "
            "swa_select_dataset=... (rows held out of training, e.g. with hf_swa.selection_split); "
            "swa_select_metric='none' silences this."
        )
        return ShipDecision(False, config.swa_ship, note=note)
    name, greater = config.select_metric_name(), config.select_greater_is_better()
    if has_select_dataset:
        return ShipDecision(True, config.swa_ship, SELECT_DATASET, name, greater)
    if not has_eval_dataset:
        raise ValueError(
            f"swa_select_metric={metric!r} needs data to score the candidates on: pass the trainer's "
            "swa_select_dataset=... (held-out rows), or an eval_dataset."
        )
    note = (
        "SWA selects among the candidates on eval_dataset: the scores reported on it for the chosen model are "
        "optimistic. Pass swa_select_dataset (rows held out of training) for honest numbers."
    )
    return ShipDecision(True, config.swa_ship, EVAL_DATASET, name, greater, optimistic=True, note=note)


def choose(scores: Dict[str, float], greater_is_better: bool) -> str:
    """The name with the best score; ties go to the first name in `scores`' order.

    >>> choose({"swa": 0.8, "swa_from50": 0.9, "live": 0.9}, greater_is_better=True)
    'swa_from50'
    >>> choose({"swa": 0.3, "live": float("nan")}, greater_is_better=False)
    'swa'
    """
    best_name, best = None, None
    for name, score in scores.items():
        if score is None or math.isnan(score):
            continue
        if best is None or (score > best if greater_is_better else score < best):
            best_name, best = name, score
    if best_name is None:
        raise ValueError(f"Every selection score is NaN ({scores}): nothing to choose from.")
    return best_name


def score_candidates(averager, model: nn.Module, score: Callable[[str], float]) -> Dict[str, float]:
    """``{name: score(name)}`` for every candidate and ``live``, each scored while the model holds it.

    What the model held before comes back afterwards.
    """
    scores: Dict[str, float] = {}
    for name in averager.candidate_names():
        with averager.averaged_weights(model, name):
            scores[name] = float(score(name))
    with averager.live_weights(model):
        scores[LIVE] = float(score(LIVE))
    return scores


def ship(averager, model: nn.Module, name: str) -> None:
    """Put candidate `name` (or the live weights, ``live``) into the model, the live weights kept aside."""
    if name == LIVE:
        averager.swap_out(model)
    else:
        averager.swap_in(model, name)


def select_candidate(
    averager,
    model: nn.Module,
    score: Callable[[str], float],
    metric: str,
    greater_is_better: bool,
    dataset: Optional[dict] = None,
) -> dict:
    """Score every candidate and the live weights, ship the best, and return the record of it.

    Args:
        averager: the `WeightAverager` holding the candidates.
        model: the model it averages.
        score: called with a candidate's name while the model holds it; returns its score.
        metric: the metric's name, for the record.
        greater_is_better: whether a higher score is better.
        dataset: what was scored on (name, size, notes), for the record.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from hf_swa import WeightAverager
        >>> model = nn.Linear(1, 1, bias=False)
        >>> averager = WeightAverager(model)
        >>> for value in (1.0, 3.0):
        ...     _ = model.weight.data.fill_(value)
        ...     _ = averager.update(model)
        >>> record = select_candidate(averager, model, lambda name: abs(model.weight.item() - 2.0),
        ...                           metric="distance", greater_is_better=False)
        >>> record["chosen"], record["scores"], model.weight.item()
        ('swa', {'swa': 0.0, 'live': 1.0}, 2.0)
    """
    scores = score_candidates(averager, model, score)
    chosen = choose(scores, greater_is_better)
    ship(averager, model, chosen)
    return {
        "metric": metric,
        "greater_is_better": greater_is_better,
        "dataset": dataset or {},
        "scores": scores,
        "chosen": chosen,
    }


def _window_start(summary: Mapping, name: str) -> Optional[int]:
    """The start step of window `name` in a run's `summary` (swa_config), None for a name that is not a window."""
    for record in summary.get("candidates", []):
        if record.get("name") == name and record.get("kind") == WINDOW_KIND:
            return record.get("start_step")
    return None


def refit_candidate(
    chosen: str, first: Mapping, names: list, starts: dict, max_steps: int
) -> Tuple[str, Optional[str]]:
    """``(name, why)``: the candidate of the refit run to ship for `chosen` of the `first` run's swa_config.

    A window (``swa``, ``swa_from<step>``) is matched by its share of training, not by its name: the refit run
    trains on more rows, so more steps, and the same name sits at another point of its training. The refit run's
    window (`starts`: name -> start step of its `max_steps`) starting nearest the chosen window's share of the
    first run ships (the earlier on a tie). Another candidate ships under its own name when the refit run has it
    (`names`), else ``swa``. `why` says why the name differs (None when it does not).

    Example:
        >>> first = {"max_steps": 40, "candidates": [{"name": "swa_from30", "kind": "window_mean", "start_step": 30}]}
        >>> starts = {"swa": 20, "swa_from30": 30, "swa_from38": 38}  # the refit run's windows, of its 50 steps
        >>> refit_candidate("swa_from30", first, ["ema_0.9", *starts], starts, 50)
        ('swa_from38', 'swa_from30 starts at 75% of the first run, swa_from38 at 76% of the refit run')
        >>> refit_candidate("ema_0.9", first, ["ema_0.9", *starts], starts, 50)
        ('ema_0.9', None)
    """
    start = _window_start(first, chosen)
    if start is not None and starts and first.get("max_steps"):
        share = start / first["max_steps"]
        name = min(starts, key=lambda n: (abs(starts[n] / max_steps - share), starts[n]))
        if name == chosen:
            return name, None
        there = starts[name] / max_steps
        return name, f"{chosen} starts at {share:.0%} of the first run, {name} at {there:.0%} of the refit run"
    if chosen in (*names, LIVE):
        return chosen, None
    return MAIN_CANDIDATE, f"{chosen} is not a refit candidate: swa, the average of every snapshot, instead"


def _steps(candidates: list, name: str, max_steps: Optional[int]) -> dict:
    """Where candidate `name` sits in its run: its start step, the run's steps and the share of training."""
    start = next((c.get("start_step") for c in candidates if c.get("name") == name), None)
    share = round(start / max_steps, 4) if start is not None and max_steps else None
    return {"start_step": start if name != LIVE else None, "max_steps": max_steps, "start_share": share}


def ship_refit(callback, model: nn.Module, first: Mapping, **record) -> dict:
    """Put into `model` the candidate that the run of swa_config `first` chose, from `callback`'s run on every row.

    The candidate `refit_candidate` maps the choice to ships (a window by its share of training), with a warning
    when the refit run lacks the candidate. The selection record is `first`'s, with ``chosen`` the name shipped
    and ``refit`` saying what was chosen and what shipped, each with its steps (``chosen_steps``,
    ``shipped_steps``), and why they differ (plus `record`, e.g. ``selection_run=`` its folder). Returns that record.

    Example (``first`` trained on the rows kept with ``swa_select_dataset``, ``trainer`` on every row)::

        ship_refit(trainer.swa_callback, trainer.model, first.swa_callback.summary())
        trainer.save_model()  # swa_config.json: selection.refit
    """
    names = callback.averager.candidate_names() if callback.has_average else []
    starts = {c["name"]: c["start_step"] for c in callback.candidates if c.get("kind") == WINDOW_KIND}
    chosen = first["selection"]["chosen"]
    name, why = refit_candidate(chosen, first, names, starts, callback.max_steps)
    if why:  # a window at the same share of training is the rule; another candidate missing is a fallback
        log = logger.info if _window_start(first, chosen) is not None else logger.warning
        log("SWA refit: %s; shipping %s.", why, name)
    ship(callback.averager, model, name)
    refit = {
        "chosen_on_split": chosen,
        "chosen_steps": _steps(first.get("candidates", []), chosen, first.get("max_steps")),
    }
    refit.update(shipped=name, shipped_steps=_steps(callback.candidates, name, callback.max_steps), fallback=why)
    callback.record_selection(model, {**first["selection"], "chosen": name, "refit": {**refit, **record}})
    return callback.selection


def rule_candidate(records: list, rule: str) -> Optional[str]:
    """The candidate that `swa_ship` = `rule` names among the candidates' `records`, by kind (``live`` for the live
    weights); ``None`` when it holds no snapshot (the model then keeps its live weights).

    ``last_window`` is the window mean with the latest start (``swa`` when there is one window, or the EMA an
    ``"ema"`` strategy names ``swa``); any other rule is a candidate's name.

    >>> records = [{"name": "swa", "kind": "window_mean", "start_step": 5}, {"name": "swa_from8",
    ...     "kind": "window_mean", "start_step": 8}, {"name": "pema_0.05", "kind": "power_ema"}]
    >>> rule_candidate(records, "last_window"), rule_candidate(records, "pema_0.05"), rule_candidate([], "swa")
    ('swa_from8', 'pema_0.05', None)
    """
    names = [record["name"] for record in records]
    if rule == LIVE:
        return LIVE
    if rule == LAST_WINDOW:
        windows = [record for record in records if record["kind"] == WINDOW_KIND]
        if windows:
            return max(windows, key=lambda record: record.get("start_step") or 0)["name"]
        rule = MAIN_CANDIDATE
    return rule if rule in names else None
