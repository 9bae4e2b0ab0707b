"""Choosing among the candidate averages and the live weights on held-out data.

Every candidate a `WeightAverager` holds (``swa``, ``swa_from{s}``, ``ema_{d}``) and the
live weights (``live``) are scored one after the other, the best is put into the model,
and a record of the choice is returned. Ties go to the earlier name in that order:
``swa``, later window starts, EMAs, then ``live``. A score that is NaN never wins.

A refit (scikit-learn's ``refit=True``) chooses in a run with rows held out, trains again on
every row and ships the candidate of the chosen name (`ship_refit`, `SWATrainer.ship_refit`).
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Dict, Mapping, Optional, Tuple

from torch import nn

LIVE = "live"

logger = logging.getLogger(__name__)


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


def refit_candidate(
    chosen: str, first: Mapping, names: list, starts: dict, max_steps: int
) -> Tuple[str, Optional[str]]:
    """``(name, fallback)``: the candidate of the refit run to ship for `chosen` of the `first` run's swa_config.

    The same name when the refit run has it; else, for a window ``swa_from<step>`` (more rows, more steps),
    the window of the refit run (`starts`: name -> start step of `max_steps`) starting at the nearest share of
    training; else ``swa``. `fallback` says why the name differs (None when it does not).

    Example:
        >>> first = {"max_steps": 40, "candidates": [{"name": "swa_from30", "start_step": 30}]}
        >>> starts = {"swa_from20": 20, "swa_from38": 38}  # the refit run's windows, of its 50 steps
        >>> refit_candidate("swa_from30", first, ["swa", *starts], starts, 50)
        ('swa_from38', 'swa_from30 is not a refit candidate: swa_from38 starts nearest its share of training (75%)')
        >>> refit_candidate("ema_0.9", first, ["swa", "ema_0.9"], {}, 50)
        ('ema_0.9', None)
    """
    if chosen in (*names, LIVE):
        return chosen, None
    start = next((c.get("start_step") for c in first.get("candidates", []) if c.get("name") == chosen), None)
    if chosen.startswith("swa_from") and start is not None and starts:
        share = start / first["max_steps"]
        name = min(starts, key=lambda n: abs(starts[n] / max_steps - share))
        return name, f"{chosen} is not a refit candidate: {name} starts nearest its share of training ({share:.0%})"
    return "swa", f"{chosen} is not a refit candidate: swa, the average of every snapshot, instead"


def ship_refit(callback, model: nn.Module, first: Mapping, **record) -> dict:
    """Put into `model` the candidate that the run of swa_config `first` chose, from `callback`'s run on every row.

    The candidate of the same name ships, or the one `refit_candidate` maps it to, with a warning. The
    selection record is `first`'s, with ``chosen`` the name shipped and ``refit`` saying what was chosen,
    what shipped and why (plus `record`, e.g. ``selection_run=`` its folder). Returns that record.

    Example (``first`` trained on the rows kept with ``swa_select_dataset``, ``trainer`` on every row)::

        ship_refit(trainer.swa_callback, trainer.model, first.swa_callback.summary())
        trainer.save_model()  # swa_config.json: selection.refit
    """
    names = callback.averager.candidate_names() if callback.has_average else []
    starts = {c["name"]: c["start_step"] for c in callback.candidates if c["name"].startswith("swa_from")}
    chosen = first["selection"]["chosen"]
    name, fallback = refit_candidate(chosen, first, names, starts, callback.max_steps)
    if fallback:
        logger.warning("SWA refit: %s; shipping %s.", fallback, name)
    ship(callback.averager, model, name)
    refit = {"chosen_on_split": chosen, "shipped": name, "fallback": fallback, **record}
    callback.record_selection(model, {**first["selection"], "chosen": name, "refit": refit})
    return callback.selection
