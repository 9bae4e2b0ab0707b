"""`SWACallback`: Stochastic Weight Averaging for any `transformers.Trainer`."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Optional

from transformers import TrainerCallback

from .. import __version__
from ..averaging import distributed
from ..averaging.averager import WeightAverager
from ..averaging.names import MAIN_CANDIDATE
from ..checkpointing.names import CONFIG_FILE, checkpoint_folder
from ..checkpointing.state import save_swa_state, write_json_atomic
from . import power_ema_hooks
from .batchnorm import LIVE, UPDATE_BN_MESSAGE, CandidateStatistics, has_batchnorm
from .checks import HYPERPARAMETER_SEARCH_MESSAGE, LOAD_BEST_MESSAGE, check_best_metric, warn_if_the_schedule_decays
from .config import SWAConfig
from .resumption import resume
from .schedule import install_lr_tail, sync_lr_tail
from .selection import rule_candidate, select_candidate
from .weights_record import describe_weights

logger = logging.getLogger(__name__)


class SWACallback(TrainerCallback):
    """Average the weights over the late optimizer steps of any `Trainer` run.

    From the start step on, the weights after every `swa_freq`-th optimizer step are
    folded into fp32 running averages (gradient accumulation counts optimizer steps
    only). From the start step the LR anneals to `swa_lr`, or without it to `swa_lr_ratio`
    of its peak (ratio 0: the schedule runs unchanged). Each
    `checkpoint-N/` holds the live weights, as a plain Trainer's, with the SWA state beside
    them, and resuming continues the same average. When training ends the model takes
    the averaged weights, so `trainer.model` and `trainer.save_model()` are the averaged
    model; the live weights stay available through `live_weights()`.

    Args:
        config: an `SWAConfig`; or pass its fields as keyword arguments.

    Example:
        >>> import torch
        >>> from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
        >>> from hf_swa import SWACallback, SWAConfig
        >>> model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
        ...     num_attention_heads=2, intermediate_size=8))
        >>> data = [{"input_ids": torch.tensor([1, 2, 3]), "labels": torch.tensor(1)}] * 8
        >>> import tempfile
        >>> args = TrainingArguments(tempfile.mkdtemp(), max_steps=4, per_device_train_batch_size=2,
        ...     report_to="none", save_strategy="no", use_cpu=True)
        >>> callback = SWACallback(SWAConfig(swa_start=0.5, swa_freq=1))
        >>> trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
        >>> _ = trainer.train()  # doctest: +ELLIPSIS
        {'train_runtime': ...}
        >>> callback.averager.n_averaged  # steps 2, 3 and 4
        3
    """

    def __init__(self, config: Optional[SWAConfig] = None, **kwargs):
        if config is not None and kwargs:
            raise TypeError("Pass either an SWAConfig or its fields as keyword arguments, not both.")
        self.config = config if config is not None else SWAConfig(**kwargs)
        self.averager: Optional[WeightAverager] = None
        self.start_step: Optional[int] = None
        # The last optimizer step trained, set when training ends (what the shipped weights' record counts to).
        self.last_step: Optional[int] = None
        self.max_steps: Optional[int] = None
        # Set by SWATrainer.train to the checkpoint it resumes from; a plain Trainer leaves it None
        # and the callback looks at args.resume_from_checkpoint, then output_dir/checkpoint-<step>.
        self.resume_from_checkpoint: Optional[str] = None
        # The record of the last `select()`: metric, data, every score and the chosen name.
        self.selection: Optional[dict] = None
        # Set by SWATrainer, which writes the SWA state into each checkpoint before old ones rotate.
        self.trainer_writes_state = False
        # The folder whose swa_config.json on_train_end wrote: rewritten when select() changes the choice.
        self.record_folder: Optional[str] = None
        # BatchNorm statistics of the live weights and of each candidate, from the end of training (swa_update_bn).
        self.batchnorm: Optional[CandidateStatistics] = None

    # ---------------------------------------------------------------- events
    def on_train_begin(self, args, state, control, model=None, lr_scheduler=None, train_dataloader=None, **kwargs):
        if args.load_best_model_at_end:
            raise ValueError(LOAD_BEST_MESSAGE)
        if self.config.updates_bn(has_batchnorm(model)) and train_dataloader is None:
            raise ValueError(UPDATE_BN_MESSAGE)
        self.use_batchnorm_statistics(model, LIVE)
        from .checks import warn_if_fewer_processes_than_launched

        warn_if_fewer_processes_than_launched(args)
        self.batchnorm = None
        if state.is_hyper_param_search and args.save_strategy != "no" and not self.trainer_writes_state:
            raise ValueError(HYPERPARAMETER_SEARCH_MESSAGE)
        if self.averager is not None and self.averager.keeps_live_weights:
            # A second train() on the same trainer continues from the live weights, not from the average
            # (or from the candidate copy_to put over them, when no live weights are kept).
            self.averager.swap_out(model)
        self.max_steps = state.max_steps
        self.last_step = None
        self.start_step = self.config.start_step(state.max_steps)
        check_best_metric(args, state, self.start_step)
        self.averager = self.new_averager(model, self.config.window_starts(state.max_steps))
        self.selection = None
        if self.config.swa_power_ema_stds:
            power_ema_hooks.check(self.config, self.averager, state)
        self.record_folder = None
        if state.global_step > 0:
            resume(self, args, state, model)
        elif self.config.swa_bema:
            self.averager.update_bema(model, 0)  # the weights before training: BEMA's anchor when update_after is 0
        if self.config.swa_power_ema_stds:  # only once the resume is accepted: a refused one deletes nothing
            power_ema_hooks.prune_snapshots(args.output_dir, state.global_step, args.should_save)
        if not self.config.has_lr_tail:
            warn_if_the_schedule_decays(args)
        else:
            install_lr_tail(lr_scheduler, self.config, self.start_step, state.global_step)
        logger.info(
            "SWA: averaging from optimizer step %d of %d, every %d step(s)",
            self.start_step,
            state.max_steps,
            self.config.swa_freq,
        )

    def on_step_end(self, args, state, control, model=None, lr_scheduler=None, **kwargs):
        step = state.global_step
        if self.config.has_lr_tail:
            sync_lr_tail(lr_scheduler, step)  # a step fp16's loss scaler skipped still counts for the tail
        if step <= state.max_steps:  # a step past the end (resuming a finished run) is never averaged
            # One read and one NaN/inf check of the weights for the snapshot, the power EMAs and BEMA.
            snapshot = self.config.is_snapshot_step(step, state.max_steps, start=self.start_step)
            self.averager.update_step(model, step, snapshot=snapshot)
        if self.config.swa_power_ema_stds:
            power_ema_hooks.write_if_due(self.config, self.averager, model, args, state)

    def on_save(self, args, state, control, **kwargs):
        if not self.trainer_writes_state:  # SWATrainer writes it earlier, before old checkpoints rotate
            self.save_state(args, state, checkpoint_folder(args.output_dir, state.global_step))

    def save_state(self, args, state, folder: str) -> None:
        """Write the SWA state (averages and counters) into the checkpoint folder `folder`."""
        if self.averager.sharded:
            # FSDP2 / ZeRO-3: every rank writes its own shard of the averages; the record comes last.
            shard = distributed.rank_and_world_size()
            metadata = self.metadata(state.global_step)
            save_swa_state(folder, self.averager.state_dict(), metadata, shard=shard, write_record=False)
            distributed.barrier()
            if args.should_save:
                save_swa_state(folder, self.averager.state_dict(), metadata, shard=shard, write_averages=False)
        else:
            # Single process, DDP, ZeRO-1/2: every rank holds the same averages; the main process writes them.
            if not args.should_save:
                return
            if not os.path.isdir(folder):
                logger.warning("SWA: checkpoint folder %s not found; SWA state not saved with it.", folder)
                return
            save_swa_state(folder, self.averager.state_dict(), self.metadata(state.global_step))

    def on_train_end(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        if self.averager is None:
            return
        self.last_step = min(state.global_step, state.max_steps)
        if self.config.swa_power_ema_candidates:
            power_ema_hooks.reconstruct_at_the_end(self.config, self.averager, model, args, state)
        shipped = self.shipped_without_choice() if self.has_average else None
        if shipped is None:
            logger.warning(
                "SWA: training ended at step %d before the first snapshot (step %d), and swa_ship=%r names no "
                "candidate that holds one; the model keeps its live weights.",
                state.global_step,
                self.start_step,
                self.config.swa_ship,
            )
            stale = os.path.join(args.output_dir, CONFIG_FILE)
            if args.should_save and os.path.isfile(stale):  # an earlier run's record would describe other weights
                os.remove(stale)
            return
        if shipped != LIVE:
            self.averager.swap_in(model, shipped)
        if self.config.updates_bn(has_batchnorm(model)):  # every candidate gets its statistics, whatever ships
            if train_dataloader is None:
                raise ValueError(UPDATE_BN_MESSAGE)
            self.batchnorm = CandidateStatistics(model, train_dataloader)  # keeps the live statistics aside
            self.use_batchnorm_statistics(model, self.averager.held or LIVE)
        if args.should_save:
            self.record_folder = args.output_dir
            self.write_config(args.output_dir)
        logger.info(
            "SWA: the model now holds %s, %s (swa_ship=%r; %d snapshot(s) in the SWA average, %d skipped as "
            "non-finite).",
            self.averager.held or LIVE,
            self.shipped_weights()["description"],
            self.config.swa_ship,
            self.averager.n_averaged,
            self.averager.n_skipped,
        )

    # ---------------------------------------------------------------- helpers
    def new_averager(self, model, window_starts) -> WeightAverager:
        """A `WeightAverager` of these settings for `model`, its windows starting at `window_starts`."""
        return WeightAverager(
            model,
            device=self.config.swa_device,
            strategy=self.config.swa_strategy,
            ema_decay=self.config.swa_ema_decay,
            window_starts=window_starts,
            ema_decays=self.config.swa_ema_decays,
            power_ema_stds=self.config.swa_power_ema_stds,
            bema=self.config.bema_settings(self.max_steps),
        )

    def shipped_without_choice(self) -> Optional[str]:
        """The candidate `swa_ship` names, which the model holds after training unless a selection chooses
        (``None``: it holds no snapshot, and the live weights ship)."""
        return rule_candidate(self.candidates, self.config.swa_ship)

    def shipped_weights(self) -> Optional[dict]:
        """What the model holds now, described (`hf_swa.training.selection.describe_weights`); ``None`` before
        training ends."""
        if self.averager is None or self.last_step is None:
            return None
        name = self.averager.held
        record = {"name": LIVE, "kind": LIVE}
        if name is not None:
            record = next(r for r in self.candidates if r["name"] == name)
            record.setdefault("start_step", self.start_step)  # the EMA of the "ema" strategy: from the start step
        return describe_weights(record, self.config.swa_freq, self.last_step)

    @contextlib.contextmanager
    def live_weights(self, model):
        """Context manager: the model holds its live (not averaged) weights within the block."""
        with self.averager.live_weights(model), self._statistics_of(model, LIVE):
            yield model

    @contextlib.contextmanager
    def averaged_weights(self, model, name: str = MAIN_CANDIDATE):
        """Context manager: the model holds a candidate (``swa``: the SWA average) within the block."""
        with self.averager.averaged_weights(model, name), self._statistics_of(model, name):
            yield model

    @contextlib.contextmanager
    def _statistics_of(self, model, name: str):
        before = self.batchnorm.current if self.batchnorm is not None else None
        self.use_batchnorm_statistics(model, name)
        try:
            yield
        finally:
            if before is not None:
                self.batchnorm.use(model, before)

    def use_batchnorm_statistics(self, model, name: str) -> None:
        """With `swa_update_bn`, after training: give the model the BatchNorm statistics of `name`
        (``live`` or a candidate, which the model must hold), recomputed the first time."""
        if self.batchnorm is not None:
            self.batchnorm.use(model, name)

    @property
    def candidates(self) -> list:
        """A record per candidate average (name, kind, start step, ``n_averaged``, decay for EMAs)."""
        return self.averager.candidates() if self.averager is not None else []

    def select(self, model, score_fn, metric: Optional[str] = None, dataset: Optional[dict] = None) -> dict:
        """Score every candidate and the live weights with ``score_fn(model) -> float``, ship the best.

        The model ends holding the chosen weights; `summary()` records the choice, and the
        `swa_config.json` written into ``output_dir`` at the end of training is rewritten with it
        (so a `save_model()` after `select()` leaves a folder that names what it holds). Higher
        is better unless the config says otherwise (names ending in ``loss``: lower; the default
        ``swa_select_metric="auto"`` names the score ``loss``, so pass a loss, or `metric`). For
        use with a plain `Trainer` or a subclass after `train()`, on rows held out of training.
        """
        if not self.has_average:
            raise RuntimeError("SWA has no snapshot yet: train past the start step before selecting.")
        metric = metric or self.config.select_metric_name() or "score"
        greater = self.config.select_greater_is_better(metric)

        def score(name: str) -> float:
            self.use_batchnorm_statistics(model, name)
            return score_fn(model)

        record = select_candidate(self.averager, model, score, metric, greater, dataset)
        self.record_selection(model, record)
        return record

    def record_selection(self, model, record: dict) -> None:
        """Keep the record of a choice the model holds now, give it its BatchNorm statistics
        (`swa_update_bn`) and rewrite the `swa_config.json` that `on_train_end` wrote with it."""
        self.use_batchnorm_statistics(model, record["chosen"])
        self.selection = record
        if self.record_folder is not None:
            self.write_config(self.record_folder)

    @property
    def ended(self) -> bool:
        """Whether training has ended and the model holds what ships (an average, or the live weights)."""
        return self.last_step is not None

    @property
    def has_average(self) -> bool:
        """Whether some candidate holds a snapshot (the SWA average, or a power EMA from the first step)."""
        return self.averager is not None and bool(self.averager.candidate_names())

    def summary(self) -> dict:
        """The SWA settings and counters, as recorded in `swa_config.json`."""
        record = self.config.to_dict()
        record.update(
            start_step=self.start_step,
            max_steps=self.max_steps,
            n_averaged=self.averager.n_averaged if self.averager else 0,
            n_skipped=self.averager.n_skipped if self.averager else 0,
            candidates=self.candidates,
            shipped=(self.averager.held or LIVE) if self.has_average else None,
            shipped_weights=self.shipped_weights() if self.has_average else None,
            hf_swa_version=__version__,
        )
        if self.selection is not None:
            record["selection"] = self.selection
        return record

    def write_config(self, folder: str, **extra) -> None:
        """Write `swa_config.json` (settings, candidates, selection, `n_averaged`) into `folder`."""
        os.makedirs(folder, exist_ok=True)
        write_json_atomic(os.path.join(folder, CONFIG_FILE), {**self.summary(), **extra})

    def metadata(self, global_step: Optional[int] = None) -> dict:
        return {
            "global_step": global_step,
            "config": self.config.to_dict(),
            "start_step": self.start_step,
            "swa_freq": self.config.swa_freq,
            "strategy": self.averager.strategy.to_dict(),
            "candidates": self.averager.settings(),
            "holds_averages": self.averager.holds_averages,
            "hf_swa_version": __version__,
        }
