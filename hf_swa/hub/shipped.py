"""Which weights a model folder holds, in words for its card: the SWA average, or the candidate chosen.

Read from ``swa_config.json``: with a ``selection`` the folder holds ``selection["chosen"]`` (a
candidate average or ``live``); without one, the candidate it names as ``shipped`` (``swa_ship``:
``swa``, or the last window), ``swa`` for a record that names none. Each is described from the
candidate's record.

Example:
    >>> config = {"candidates": [{"name": "swa_from60", "kind": "window_mean", "start_step": 60, "n_averaged": 21}],
    ...           "selection": {"chosen": "swa_from60", "metric": "loss", "scores": {"swa_from60": 0.3, "live": 0.4},
    ...                         "dataset": {"name": "swa_select_dataset", "size": 480}}}
    >>> weights = shipped_weights(config)
    >>> weights.name, weights.label
    ('swa_from60', 'Chosen weights')
    >>> weights.phrase
    'the equal-weight mean of the 21 snapshots taken from optimizer step 60 on'
    >>> weights.selection_phrase
    'loss on 480 training rows held out for the choice, among 2 candidates (the live weights included)'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from hf_swa.averaging.names import LIVE, MAIN_CANDIDATE

__all__ = ["ShippedWeights", "shipped_weights"]


@dataclass(frozen=True)
class ShippedWeights:
    """The weights a folder holds: ``name`` (``swa``, a candidate or ``live``) and how the card speaks of them."""

    name: str
    label: str  # the results column: "Averaged weights" or "Chosen weights"
    phrase: Optional[str] = None  # what the candidate is (None: the SWA average of every snapshot, as the card says)
    selection_phrase: Optional[str] = None  # how it was chosen (None: shipped as swa_ship says, without a choice)
    optimistic: bool = False  # chosen on the evaluation set: the scores reported on it flatter them

    @property
    def chosen(self) -> bool:
        return self.selection_phrase is not None

    @property
    def live(self) -> bool:
        """The live weights, shipped as ``swa_ship="live"`` says: no average was shipped."""
        return self.name == LIVE and not self.chosen


def _candidate_phrase(name: str, records: list, described: Optional[Mapping[str, Any]] = None) -> str:
    """What candidate `name` is: the description recorded with the shipped weights (``shipped_weights``) when it
    names them, else (records written before hf_swa 0.4) a phrase built from the candidate's record by its kind."""
    if described and described.get("name") == name and described.get("description"):
        return described["description"]
    if name == LIVE:
        return "the weights of the last training step (no average scored better)"
    record = next((r for r in records if r.get("name") == name), {})
    count = record.get("n_averaged", "the")
    kind = record.get("kind")
    if kind == "bema":
        return f"BEMA, the bias-corrected EMA of Block & Zhang (2025) as TRL computes it, over {count} updates"
    if kind == "ema":
        return f"a bias-corrected exponential moving average (decay {record.get('decay')}) of {count} snapshots"
    if kind in ("power_ema", "power_ema_posthoc"):
        how = ", reconstructed after training from stored power EMAs" if kind == "power_ema_posthoc" else ""
        return (
            f"a power-function EMA (EDM2, σ_rel {record.get('std')}) of the weights after every optimizer step from "
            f"step 1 to step {record.get('step')}{how}"
        )
    if record.get("start_step") is not None and name != MAIN_CANDIDATE:
        return f"the equal-weight mean of the {count} snapshots taken from optimizer step {record['start_step']} on"
    return f"the equal-weight mean of all {count} snapshots"


def _data_phrase(dataset: Mapping[str, Any], split: Optional[Mapping[str, Any]] = None) -> str:
    size = dataset.get("size")
    if dataset.get("name") == "swa_select_dataset":
        share = (split or {}).get("held_out_share")
        groups = " in whole groups" if (split or {}).get("kind") == "groups" else ""
        of = f" ({share:.1%} of the training rows{groups})" if share else ""
        return f"{size} training rows held out for the choice{of}" if size else "training rows held out for the choice"
    return f"the evaluation set{f' ({size} rows)' if size else ''}, so its scores there are optimistic"


def _recorded(swa_config: Mapping[str, Any], name: str) -> Optional[str]:
    """The recorded description of the shipped weights, when the record has one for `name`."""
    described = swa_config.get("shipped_weights") or {}
    return described.get("description") if described.get("name") == name else None


def shipped_weights(swa_config: Mapping[str, Any]) -> ShippedWeights:
    """What the folder of this ``swa_config.json`` holds."""
    selection = swa_config.get("selection")
    if not selection:
        name = swa_config.get("shipped") or MAIN_CANDIDATE
        if name == LIVE and _recorded(swa_config, LIVE):  # swa_ship="live": the averages were evaluated only
            return ShippedWeights(LIVE, "Live weights", _recorded(swa_config, LIVE))
        if name in (MAIN_CANDIDATE, LIVE):  # live without a record of it (a swap by hand, hf_swa < 0.4)
            return ShippedWeights(MAIN_CANDIDATE, "Averaged weights", _recorded(swa_config, name))
        phrase = _candidate_phrase(name, swa_config.get("candidates", []), swa_config.get("shipped_weights"))
        return ShippedWeights(name, "Averaged weights", phrase)
    chosen = selection["chosen"]
    count = len(selection.get("scores", {}))
    how = (
        f"{selection.get('metric')} on {_data_phrase(selection.get('dataset', {}), selection.get('split'))}, among "
        f"{count} candidates "
        "(the live weights included)"
    )
    refit = selection.get("refit")
    if refit:  # chosen on held-out rows, shipped from a second run on every row
        how += f"; {refit['chosen_on_split']} won, and this is the {chosen} of a second run trained on every row"
    # SWATrainer sets the flag; records written before it had one name the data only.
    optimistic = selection.get("optimistic", selection.get("dataset", {}).get("name") == "eval_dataset")
    candidate = _candidate_phrase(chosen, swa_config.get("candidates", []), swa_config.get("shipped_weights"))
    return ShippedWeights(chosen, "Chosen weights", candidate, how, optimistic)
