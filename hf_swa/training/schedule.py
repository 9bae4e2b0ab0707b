"""The SWA learning-rate tail: anneal to `swa_lr` (else `swa_lr_ratio` of the peak LR) from the start step, then hold.

It is composed with the schedule the Trainer built (every `transformers.get_scheduler`
schedule is a `LambdaLR`), so `lr_scheduler.get_last_lr()` and the logged
`learning_rate` are the LR actually used.

The tail counts optimizer steps as `state.global_step` does, steps that fp16's loss
scaler skipped included, so it starts at `swa_start` like the snapshots. The Trainer
does not step its scheduler on a step Accelerate reports skipped (the base schedule, as
in transformers, counts the updates applied): `sync_lr_tail` adds those steps back
after each step. Fused optimizers (`adamw_torch_fused`, the transformers default on
recent torch) skip inside their own step, Accelerate does not see it, and the scheduler
steps anyway; the tail then needs nothing added.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from .config import SWAConfig


def anneal_factor(progress: float, strategy: str) -> float:
    """Share of the start LR left at `progress` in [0, 1] of the anneal (1 at the start, 0 at the end).

    >>> anneal_factor(0.0, "cos"), anneal_factor(0.5, "linear"), round(anneal_factor(0.5, "cos"), 6)
    (1.0, 0.5, 0.5)
    """
    progress = min(1.0, max(0.0, progress))
    if strategy == "cos":
        return (1.0 + math.cos(math.pi * progress)) / 2.0
    return 1.0 - progress  # "linear" (SWAConfig checks the setting)


def tail_lr(step: int, start_step: int, start_lr: float, swa_lr: float, anneal_steps: int, strategy: str) -> float:
    """LR for optimizer step `step` (counted from 1) at or after `start_step`.

    Step `start_step` uses `start_lr` (the base schedule's LR for that step) and the LR
    reaches `swa_lr` at `start_step + anneal_steps`, then holds; with `anneal_steps=0`
    it is `swa_lr` from `start_step` on.

    >>> tail_lr(10, start_step=10, start_lr=1.0, swa_lr=0.5, anneal_steps=4, strategy="linear")
    1.0
    >>> tail_lr(12, start_step=10, start_lr=1.0, swa_lr=0.5, anneal_steps=4, strategy="linear")
    0.75
    >>> tail_lr(99, start_step=10, start_lr=1.0, swa_lr=0.5, anneal_steps=4, strategy="linear")
    0.5
    """
    if anneal_steps == 0:
        return swa_lr
    progress = (step - start_step) / anneal_steps
    return swa_lr + (start_lr - swa_lr) * anneal_factor(progress, strategy)


def base_scheduler(scheduler):
    """The torch scheduler inside an Accelerate wrapper (or the scheduler itself)."""
    return getattr(scheduler, "scheduler", scheduler)


class _TailClock:
    """Optimizer steps the scheduler did not take (skipped by fp16's loss scaler), shared by a tail's lambdas."""

    def __init__(self):
        self.skipped = 0


def skipped_steps(scheduler, global_step: int) -> int:
    """Optimizer steps so far that `scheduler` did not step for: `global_step` minus its steps, at least 0.

    The Trainer steps its scheduler after each optimizer step Accelerate does not report
    skipped, so this is the number of steps fp16's loss scaler skipped where Accelerate
    sees it (not with fused optimizers), kept across resumes: both counts are restored
    from the checkpoint.
    """
    return max(0, global_step - base_scheduler(scheduler).last_epoch)


def _tail_clock(inner) -> Optional[_TailClock]:
    """The clock of the SWA tail composed into `inner`'s lambdas, or None."""
    lambdas = getattr(inner, "lr_lambdas", None)
    return getattr(lambdas[0], "clock", None) if lambdas else None


def _refresh_lrs(inner) -> None:
    """Recompute the LR for the next step from the lambdas (as `LambdaLR.step` would, without stepping)."""
    new_lrs = [base_lr * lam(inner.last_epoch) for lam, base_lr in zip(inner.lr_lambdas, inner.base_lrs)]
    for group, lr in zip(inner.optimizer.param_groups, new_lrs):
        if isinstance(group["lr"], torch.Tensor):  # as torch's schedulers update tensor LRs: in place
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
    set_last_lr(inner, new_lrs)


def set_last_lr(scheduler, lrs: list) -> None:
    """What `scheduler.get_last_lr()` returns (and the Trainer logs): torch keeps it in ``_last_lr``.

    The one place hf_swa writes a torch scheduler's private state; tests/test_transformers_internals.py guards it.
    """
    scheduler._last_lr = list(lrs)


def sync_lr_tail(scheduler, global_step: int) -> None:
    """After optimizer step `global_step`: count a step the scheduler skipped into the tail.

    A no-op unless the tail is installed and a step was skipped since the last call.
    """
    inner = base_scheduler(scheduler)
    clock = _tail_clock(inner)
    if clock is None:
        return
    skipped = skipped_steps(scheduler, global_step)
    if skipped != clock.skipped:
        clock.skipped = skipped
        _refresh_lrs(inner)


def install_lr_tail(scheduler, config: SWAConfig, start_step: int, global_step: int = 0) -> None:
    """Compose the SWA LR tail with `scheduler` (a `LambdaLR`, as `transformers.get_scheduler` builds).

    Each param group's factor follows its base schedule before `start_step`; from
    there it anneals from the base factor at `start_step` to a target factor and
    holds: `swa_lr_ratio`, so each group ends at that share of its own peak LR; or,
    with `swa_lr` set, `swa_lr / peak`, where `peak` is the largest base LR of the
    groups: groups keep their LR ratios, and the group trained at the peak LR (every
    group, with the Trainer's own optimizer) ends at `swa_lr`. Nothing changes when
    there is no tail (`swa_lr` unset and `swa_lr_ratio` 0). The current LR is refreshed
    at once, so a tail that begins at step 1 applies to step 1. `global_step`: the
    optimizer steps done (on resume). Idempotent.

    Example:
        >>> import torch
        >>> from hf_swa import SWAConfig
        >>> optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
        >>> scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        >>> install_lr_tail(scheduler, SWAConfig(swa_start=2, swa_lr_ratio=0.25), start_step=2)
        >>> for step in (1, 2):  # two optimizer steps; the LR for the next one
        ...     optimizer.step()
        ...     scheduler.step()
        ...     print(step + 1, scheduler.get_last_lr())
        2 [0.25]
        3 [0.25]
    """
    if not config.has_lr_tail:
        return
    inner = base_scheduler(scheduler)
    if not isinstance(inner, torch.optim.lr_scheduler.LambdaLR):
        raise TypeError(
            f"The SWA LR tail (swa_lr, swa_lr_ratio) needs a LambdaLR-based schedule (every transformers "
            f"`lr_scheduler_type` except 'reduce_lr_on_plateau'), got {type(inner).__name__}. Use one of those "
            "schedules, or leave swa_lr unset with swa_lr_ratio=0 to keep yours."
        )
    clock = _tail_clock(inner)  # set when already composed (a flag on the scheduler would go into its state_dict)
    if clock is None:
        target_factor = config.swa_lr_ratio  # a share of each group's peak
        if config.swa_lr is not None:
            peak = max(inner.base_lrs)
            if peak <= 0:
                raise ValueError(f"swa_lr needs a positive base learning rate, got {inner.base_lrs}")
            # Param groups keep their LR ratios: the group with the largest base LR goes to swa_lr.
            target_factor = config.swa_lr / peak
        clock = _TailClock()
        inner.lr_lambdas = [
            _tail_lambda(base_lambda, target_factor, config, start_step, clock) for base_lambda in inner.lr_lambdas
        ]
    clock.skipped = skipped_steps(scheduler, global_step)
    # Refresh the LR for the next step (the scheduler computed it with the base lambdas, or another clock).
    _refresh_lrs(inner)


def _tail_lambda(base_lambda, target_factor: float, config: SWAConfig, start_step: int, clock: _TailClock):
    # A plain function (not a callable object), so LambdaLR.state_dict leaves it out of checkpoints.
    def factor(scheduler_steps: int) -> float:
        step = scheduler_steps + 1 + clock.skipped  # the optimizer step that will use this LR
        if step < start_step:
            return base_lambda(scheduler_steps)
        start_factor = base_lambda(start_step - 1)
        return tail_lr(
            step, start_step, start_factor, target_factor, config.swa_anneal_steps, config.swa_anneal_strategy
        )

    factor.clock = clock
    return factor
