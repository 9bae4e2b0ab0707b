"""Resuming an SWA run from a checkpoint: the saved state checked against the run's settings, then loaded.

`resume` is called by `SWACallback.on_train_begin` when training starts past step 0. It refuses
state that would mix snapshots averaged under other settings, and accepts a *continuation*: a
run trained again to a larger ``max_steps`` with the same settings. A fractional ``swa_start``
would move the start step and the window starts with ``max_steps``; averaging that has started
keeps its start step and its windows where they are (a window planned past the resume point
simply starts there), so the averages go on from the snapshots they hold. A checkpoint taken
before averaging started holds no snapshot of the windows: the run plans them anew over its
length.

Example (a run of 30 steps at ``swa_start=0.5`` continued to 50: the windows stay at 15, 19, 23, 27)::

    trainer = SWATrainer(model, SWATrainingArguments(out, max_steps=50, ...), ...)
    trainer.train(resume_from_checkpoint=True)
"""

from __future__ import annotations

import logging
import os
from typing import List, Optional, Tuple

from ..averaging import distributed
from ..checkpointing.names import checkpoint_folder
from ..checkpointing.state import load_swa_state

logger = logging.getLogger(__name__)

# Settings that change which snapshots make the averages: a resumed run must keep them.
_AVERAGING_SETTINGS = ("start_step", "swa_freq", "strategy", "candidates")
# The settings that plan the start step and the windows from max_steps: a continuation keeps them.
_PLAN_SETTINGS = ("swa_start", "swa_windows", "swa_windows_at_most")
# Named in the refusal to resume a checkpoint written before the defaults of hf_swa/training/defaults.py.
_OLD_DEFAULTS = ("swa_start", "swa_lr", "swa_windows", "swa_windows_at_most", "swa_select_metric")


def lr_tail(config: dict) -> str:
    """The LR tail a saved or current config runs (a config saved without ``swa_lr_ratio`` had none but swa_lr)."""
    if config.get("swa_lr") is not None:
        return f"swa_lr={config['swa_lr']}"
    return f"swa_lr_ratio={config.get('swa_lr_ratio', 0.0)}"


def window_starts_of(candidates: Optional[list]) -> Optional[List[int]]:
    """The window starts in an averager's `settings()` (``None`` without a window store).

    >>> window_starts_of([{"kind": "window_mean", "starts": [5, 8]}, {"kind": "ema", "decay": 0.9}])
    [5, 8]
    """
    return next((c["starts"] for c in candidates or [] if c and c.get("kind") == "window_mean"), None)


def continued_plan(config, saved: dict, step: int, max_steps: int) -> Optional[Tuple[int, List[int]]]:
    """``(start_step, window_starts)`` of a continuation to `max_steps` from the saved state at `step`, or ``None``.

    A continuation: the saved settings that plan the averaging (``swa_start``, ``swa_windows``,
    ``swa_windows_at_most``) are these settings, and averaging had started by the resume `step`. It keeps the
    start step and every window that had started; the windows that had not are planned anew over the longer run
    (the last of its windows after `step`), so the last window stays near the end.

    >>> from hf_swa import SWAConfig
    >>> saved = {"start_step": 15, "candidates": [{"kind": "window_mean", "starts": [15, 19, 23, 27]}],
    ...          "config": SWAConfig(swa_start=0.5).to_dict()}
    >>> continued_plan(SWAConfig(swa_start=0.5), saved, step=30, max_steps=50)  # every window had started
    (15, [15, 19, 23, 27])
    >>> continued_plan(SWAConfig(swa_start=0.5), saved, step=20, max_steps=50)  # 23 and 27 had not
    (15, [15, 19, 33, 42])
    >>> continued_plan(SWAConfig(swa_start=0.6), saved, step=30, max_steps=50) is None  # another swa_start
    True
    """
    written, current = saved.get("config", {}), config.to_dict()
    start, starts = saved.get("start_step"), window_starts_of(saved.get("candidates"))
    if any(written.get(key) != current[key] for key in _PLAN_SETTINGS) or start is None or start > step:
        return None
    if not starts:
        return start, starts
    kept = [s for s in starts if s <= step]
    later = [s for s in config.window_starts(max_steps, start=start) if s > step][len(kept) - len(starts) :]
    return start, kept + later if len(kept) + len(later) == len(starts) else starts


def _checkpoint_folder(callback, args, state) -> str:
    if callback.resume_from_checkpoint:
        return callback.resume_from_checkpoint
    if isinstance(args.resume_from_checkpoint, str) and os.path.isdir(args.resume_from_checkpoint):
        return args.resume_from_checkpoint
    return checkpoint_folder(args.output_dir, state.global_step)


def _started(candidates: Optional[list], step: int) -> list:
    """An averager's `settings()` with only the windows that start by `step` (those that hold snapshots)."""
    return [
        {**c, "starts": [s for s in c["starts"] if s <= step]} if c and c.get("kind") == "window_mean" else c
        for c in candidates or []
    ]


def check_same_averaging(callback, folder: str, saved: dict, step: int, not_started: bool = False) -> None:
    """Refuse resuming SWA state averaged with settings that change which snapshots the averages hold.

    Windows are compared by the starts up to the resume `step`: later ones hold no snapshot yet. `not_started`: the
    state holds no window snapshot yet, so neither the start step nor the windows matter.
    """
    current = {
        "start_step": callback.start_step,
        "swa_freq": callback.config.swa_freq,
        "strategy": callback.averager.strategy.to_dict(),
        "candidates": callback.averager.settings(),
    }
    compared = {key: (saved.get(key), current[key]) for key in _AVERAGING_SETTINGS}
    compared["candidates"] = tuple(_started(candidates, step) for candidates in compared["candidates"])
    if not_started:
        del compared["start_step"]
    changed = [f"{key}: checkpoint {was!r}, now {now!r}" for key, (was, now) in compared.items() if was != now]
    written = saved.get("config", {})
    if lr_tail(written) != lr_tail(callback.config.to_dict()):
        changed.append(f"LR tail: checkpoint {lr_tail(written)}, now {lr_tail(callback.config.to_dict())}")
    if changed:
        hint = ""
        if "swa_lr_ratio" not in written:  # written before the defaults moved into hf_swa/training/defaults.py
            hint = " It was written with " + ", ".join(f"{k}={written.get(k)!r}" for k in _OLD_DEFAULTS) + "."
        raise ValueError(
            f"The SWA state in {folder} was averaged with other settings ({'; '.join(changed)}), and its averages "
            "would mix snapshots taken under both. Resume with the same swa_start, swa_freq, swa_strategy, "
            "swa_windows, swa_ema_decays, swa_power_ema_stds and swa_lr or swa_lr_ratio (training for longer, with "
            "a larger max_steps, keeps the averages where they started), or start a new run." + hint
        )


def _refuse_missing_state(callback, folder: str, step: int) -> None:
    if callback.config.swa_power_ema_stds:
        raise ValueError(
            f"Resuming at step {step} from {folder}, which has no SWA state, but the power EMAs average every "
            "step from the first: their history is lost. Resume from a checkpoint written with them, or "
            "unset swa_power_ema_stds."
        )
    if callback.config.swa_bema and step >= callback.config.swa_bema_update_after:
        raise ValueError(
            f"Resuming at step {step} from {folder}, which has no SWA state, but BEMA was anchored at step "
            f"swa_bema_update_after={callback.config.swa_bema_update_after}: its anchor and EMA are lost. Resume "
            f"from a checkpoint written with swa_bema, or set swa_bema_update_after to a step > {step}."
        )
    if step < callback.start_step:
        logger.info("SWA: resuming at step %d, before averaging starts (step %d).", step, callback.start_step)
        return
    raise ValueError(
        f"Resuming at step {step} from {folder}, which has no SWA state, but averaging starts at step "
        f"{callback.start_step}: the snapshots before step {step} are lost. Resume from a checkpoint written "
        f"with SWA, or set swa_start to an optimizer step > {step} to start a new average from here."
    )


def resume(callback, args, state, model) -> None:
    """Load the SWA state of the checkpoint training resumes from into `callback`, once every check passes."""
    folder = _checkpoint_folder(callback, args, state)
    averager = callback.averager
    saved = load_swa_state(folder, shard=distributed.rank_and_world_size() if averager.sharded else None)
    step = state.global_step
    if saved is None:
        return _refuse_missing_state(callback, folder, step)
    if saved.get("global_step") is not None and saved["global_step"] != step:
        raise ValueError(
            f"The SWA state in {folder} was saved at step {saved['global_step']}, but training resumes at step "
            f"{step}: it belongs to another checkpoint. Pass the same checkpoint to "
            "train(resume_from_checkpoint=...) and args.resume_from_checkpoint, or use SWATrainer, which passes "
            "it on."
        )
    plan = continued_plan(callback.config, saved, step, state.max_steps)
    if plan is not None and plan != (callback.start_step, window_starts_of(averager.settings())):
        start, starts = plan
        logger.info(
            "SWA: continuing a run whose averaging started at step %d (windows from %s): they stay there with "
            "max_steps=%d.",
            start,
            starts,
            state.max_steps,
        )
        callback.start_step = start
        averager = callback.averager = callback.new_averager(model, starts)
    not_started = saved.get("start_step") is not None and saved["start_step"] > step
    check_same_averaging(callback, folder, saved, step, not_started=not_started)
    if saved["averages"] is None:
        if saved["names"] != averager.names:
            raise ValueError(f"The SWA state in {folder} was saved for another model (its parameters differ).")
        averager.n_skipped = int(saved.get("n_skipped", 0))
    else:
        averager.load_state_dict(saved)
    logger.info("SWA: resumed %d snapshot(s) from %s.", averager.n_averaged, folder)
