"""Checking a `WeightAverager` state saved in a checkpoint against the averager that resumes it."""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from .parameters import mismatch_message


def check_saved_state(state: dict, names: list, slots: dict, strategy: dict) -> Tuple[dict, Dict[str, int]]:
    """The saved averages by ``slot/name`` and counts by slot, once they fit ``slots`` (else ``ValueError``).

    Refuses state written with another strategy, for other parameters, or with other candidates.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> slots = {"window0": SimpleNamespace(buffers=[torch.zeros(2)])}
        >>> state = {"averages": {"window0/w": torch.ones(2)}, "names": ["w"], "slots": {"window0": 3}}
        >>> check_saved_state(state, ["w"], slots, {"name": "uniform"})[1]
        {'window0': 3}
    """
    if state.get("strategy", strategy) != strategy:
        raise ValueError(
            f"SWA state was saved with strategy {state['strategy']} but this averager uses "
            f"{strategy}: use the same strategy to resume (the EMA is bias-corrected since "
            "hf_swa 0.2, so an EMA state from earlier versions cannot continue)."
        )
    averages, counts = _slotted(state, next(iter(slots)))
    saved_names = state.get("names") or list(dict.fromkeys(key.split("/", 1)[1] for key in averages))
    if saved_names != names and set(saved_names) != set(names):
        raise ValueError(mismatch_message(saved_names, names, "the saved SWA state has", "this model has"))
    if set(counts) != set(slots):
        raise ValueError(
            f"SWA state holds the averages {sorted(counts)} but these settings keep {sorted(slots)}: "
            "resume with the same swa_windows, swa_ema_decays, power-EMA widths and max_steps."
        )
    for key, mean in slots.items():
        for name, buffer in zip(names, mean.buffers):
            saved = averages[f"{key}/{name}"]
            if saved.shape != buffer.shape:
                raise ValueError(
                    f"SWA state for {name!r} has shape {tuple(saved.shape)} but this model's parameter has "
                    f"{tuple(buffer.shape)}: the state was saved for another model."
                )
    return averages, counts


def _slotted(state: dict, first_slot: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, int]]:
    """Averages by ``slot/name`` and counts by slot (hf_swa 0.1 state: one average by name, the first slot)."""
    averages = state["averages"]
    if state.get("slots"):
        return averages, state["slots"]
    return {f"{first_slot}/{name}": tensor for name, tensor in averages.items()}, {first_slot: state["n_averaged"]}
