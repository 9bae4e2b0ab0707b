"""What a candidate's weights are, from its record: the record of the shipped weights that `swa_config.json`,
``results.json``, the end-of-training log line and the model card read.

Example:
    >>> record = describe_weights({"name": "swa_from7", "kind": "window_mean", "start_step": 7, "n_averaged": 4},
    ...                           swa_freq=1, last_step=10)
    >>> record["first_step"], record["last_step"], record["weighting"]
    (7, 10, 'equal')
    >>> record["description"]
    'the equal-weight mean of the weights after 4 optimizer steps: every step from step 7 to step 10'
"""

from __future__ import annotations

from typing import Mapping

from ..averaging.names import LIVE


def describe_weights(record: Mapping, swa_freq: int, last_step: int) -> dict:
    """The kind of a candidate's weights, the optimizer steps they average (``first_step``, ``last_step``,
    ``every``), how they weigh them (``weighting``) and the same in words (``description``).

    `record`: the candidate's record (`WeightAverager.candidates()`), or ``{"name": "live", "kind": "live"}``;
    `last_step`: the last optimizer step trained.

    >>> pema = {"name": "pema_0.05", "kind": "power_ema", "std": 0.05, "gamma": 6.94, "step": 8, "n_averaged": 8}
    >>> describe_weights(pema, 1, 8)["description"].split(", step k")[0]
    'a power-function EMA (EDM2, σ_rel 0.05, γ 6.94) of the weights after every optimizer step from step 1 to step 8'
    """
    facts = {"name": record.get("name"), "kind": record.get("kind")}
    if record.get("kind") == LIVE:
        words = f"the live weights of the last optimizer step ({last_step})"
        return {**facts, "first_step": last_step, "last_step": last_step, "every": None, "n_averaged": 1,
                "weighting": LIVE, "description": words}  # fmt: skip
    if record.get("kind") in ("window_mean", "ema"):
        return {**facts, **_snapshot_mean(record, swa_freq, last_step)}
    if record.get("kind") in ("power_ema", "power_ema_posthoc"):
        return {**facts, **_power_ema(record, last_step)}
    if record.get("kind") == "bema":
        return {**facts, **_bema(record, last_step)}
    # A kind that describes itself in its record.
    keys = ("first_step", "last_step", "every", "n_averaged", "weighting", "description")
    return {**facts, **{key: record.get(key) for key in keys}}


def _snapshot_mean(record: Mapping, swa_freq: int, last_step: int) -> dict:
    """A window mean or an EMA: folded every `swa_freq` steps from its start step."""
    first, count = record.get("start_step"), record.get("n_averaged")
    last = first + swa_freq * ((last_step - first) // swa_freq) if first is not None else last_step
    every = "every step" if swa_freq == 1 else f"every {swa_freq} steps"
    span = f"{every} from step {first} to step {last}"
    if record["kind"] == "window_mean":
        weighting, words = "equal", f"the equal-weight mean of the weights after {count} optimizer steps: {span}"
    else:
        decay = record.get("decay")
        weighting = f"ema decay {decay}"
        words = (
            f"a bias-corrected exponential moving average (decay {decay}) of the weights after {count} optimizer "
            f"steps: {span}, the latest weighted most"
        )
    return dict(first_step=first, last_step=last, every=swa_freq, n_averaged=count, weighting=weighting,
                description=words)  # fmt: skip


def _power_ema(record: Mapping, last_step: int) -> dict:
    """A power EMA (EDM2): every optimizer step from the first, step k weighted by k^(γ+1) − (k−1)^(γ+1)."""
    step, std, count = record.get("step", last_step), record.get("std"), record.get("n_averaged")
    span = f"of the weights after every optimizer step from step 1 to step {step}"
    if record["kind"] == "power_ema_posthoc":
        weighting = f"power σ_rel {std:g}, reconstructed"
        words = (
            f"a power-function EMA (EDM2, σ_rel {std:g}) {span}, reconstructed after training from {count} stored "
            f"power EMAs by least squares (fit error {record.get('fit_error', float('nan')):.3g})"
        )
    else:
        weighting = f"power σ_rel {std:g}"
        words = (
            f"a power-function EMA (EDM2, σ_rel {std:g}, γ {record.get('gamma'):.3g}) {span}, step k weighted by "
            "k^(γ+1) − (k−1)^(γ+1)"
        )
    return dict(first_step=1, last_step=step, every=1, n_averaged=count, weighting=weighting, description=words)


def _bema(record: Mapping, last_step: int) -> dict:
    """BEMA (Block & Zhang 2025, as TRL computes it): an EMA of the weights since its anchor step, plus a bias
    correction α_t (θ_t − θ_anchor), updated every ``update_freq`` steps."""
    anchor, step, count = record.get("start_step", 0), record.get("step", last_step), record.get("n_averaged")
    every = record.get("update_freq")
    words = (
        f"BEMA (Block & Zhang 2025, as TRL's BEMACallback computes it): an EMA of the weights after {count} updates, "
        f"every {every} optimizer steps from step {anchor} to step {step}, β_t = (lag + multiplier·t)^(−"
        f"{record.get('ema_power')}), plus the bias correction α_t (θ_t − θ_{anchor}), α_t = (lag + multiplier·t)^(−"
        f"{record.get('bias_power')})"
    )
    weighting = f"bema ema_power {record.get('ema_power')}, bias_power {record.get('bias_power')}"
    return dict(
        first_step=anchor, last_step=step, every=every, n_averaged=count, weighting=weighting, description=words
    )
