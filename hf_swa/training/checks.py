"""Checks of a run's settings against SWA, made when training starts, with the messages they give."""

from __future__ import annotations

import logging
import math
import os
from typing import Optional

logger = logging.getLogger(__name__)

# transformers schedules whose LR reaches (or nearly reaches) 0 at the end of training.
DECAYING_SCHEDULES = {
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "cosine_with_min_lr",
    "warmup_stable_decay",
}

LOAD_BEST_MESSAGE = (
    "load_best_model_at_end=True would replace the averaged weights with a live checkpoint at the end. "
    "Set load_best_model_at_end=False when using SWA (evaluation reports eval_swa_* for the average)."
)

HYPERPARAMETER_SEARCH_MESSAGE = (
    "hyperparameter_search writes each trial's checkpoints into a run-* folder that SWACallback cannot see, so "
    "their SWA state would be lost. Use SWATrainer (or SWATrainerMixin on your Trainer class), or save_strategy='no'."
)


def first_evaluation_step(args, state) -> Optional[int]:
    strategy = getattr(args, "eval_strategy", "no")
    strategy = str(getattr(strategy, "value", strategy))
    if strategy == "steps":
        every = args.eval_steps or args.logging_steps
        return math.ceil(every * state.max_steps) if every < 1 else int(every)
    if strategy == "epoch":
        return math.ceil(state.max_steps / max(state.num_train_epochs, 1))
    return None


def check_best_metric(args, state, start_step: int) -> None:
    """A best-metric on the averaged weights needs them at every evaluation: refuse one that comes earlier."""
    metric = getattr(args, "metric_for_best_model", None) or ""
    if "swa_" not in metric:
        return
    first = first_evaluation_step(args, state)
    if args.eval_on_start or (first is not None and first < start_step):
        raise ValueError(
            f"metric_for_best_model={metric!r} reads the averaged weights, but the first evaluation (step "
            f"{0 if args.eval_on_start else first}) comes before averaging starts (step {start_step}), where no "
            "eval_swa_* metric exists. Evaluate from the start step on, or use a live metric."
        )


def warn_if_the_schedule_decays(args) -> None:
    """Without an LR tail a decaying schedule leaves the late weights nearly still: averaging them does little."""
    schedule = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    if schedule in DECAYING_SCHEDULES:
        logger.warning(
            "SWA with swa_lr_ratio=0 and no swa_lr keeps the %r schedule, which decays the LR towards 0: the "
            "late weights barely move, so averaging them is nearly a no-op. Set swa_lr_ratio (e.g. 0.5, the "
            "default) or swa_lr to hold the LR up while averaging.",
            schedule,
        )


def warn_if_fewer_processes_than_launched(args) -> None:
    """Say so when the launcher asked for several processes and this run is one.

    ``accelerate launch --num_processes N --cpu`` (N > 1) starts one plain process: it sets
    ``MASTER_ADDR``/``MASTER_PORT`` for N processes (and ``ACCELERATE_USE_CPU``), but no ``WORLD_SIZE``,
    so the run trains alone without a word. Launchers that really start N processes set ``WORLD_SIZE``.

    Example:
        >>> import types
        >>> os.environ.update(ACCELERATE_USE_CPU="True", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")
        >>> warn_if_fewer_processes_than_launched(types.SimpleNamespace(world_size=1))  # logs the warning
        >>> for name in ("ACCELERATE_USE_CPU", "MASTER_ADDR", "MASTER_PORT"):
        ...     del os.environ[name]
    """
    env = os.environ
    asked_for_several = "ACCELERATE_USE_CPU" in env and "MASTER_ADDR" in env and "WORLD_SIZE" not in env
    if asked_for_several and args.world_size == 1:
        logger.warning(
            "accelerate launch set up several processes (MASTER_ADDR=%s, MASTER_PORT=%s) but started only this one: "
            "`accelerate launch --cpu --num_processes N` runs a single process. This run trains on 1 process. For N "
            "CPU processes, launch with `accelerate launch --multi_gpu --num_processes N` (no --cpu) and use_cpu=True "
            "in the training arguments, or with `torchrun --nproc_per_node N`.",
            env["MASTER_ADDR"],
            env.get("MASTER_PORT", "?"),
        )
