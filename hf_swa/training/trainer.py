"""`SWATrainerMixin` and `SWATrainer`: any Trainer with SWA built in."""

from __future__ import annotations

import contextlib
import logging
import os
import random
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from transformers import Trainer
from transformers.trainer_utils import HubStrategy
from transformers.utils.hub import PushInProgress

from ..averaging.names import MAIN_CANDIDATE
from ..averaging.parameters import require_averaged_parameters
from ..checkpointing.names import CHECKPOINT_PREFIX, CONFIG_FILE
from ..checkpointing.resume import last_complete_checkpoint
from .arguments import SWAArgumentsMixin, SWATrainingArguments  # noqa: F401  (hf_swa.training.trainer's public names)
from .callback import SWACallback
from .checks import LOAD_BEST_MESSAGE
from .compat import hf_api, on_push_begin
from .config import SWAConfig
from .selection import EVAL_DATASET, LIVE, SELECT_DATASET, decide, select_candidate, ship_refit

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def preserved_rng_state():
    """Restore the Python, NumPy, torch CPU and CUDA random states on exit."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class SWATrainerMixin:
    """SWA for any `Trainer` subclass: put it first, ``class SWASFTTrainer(SWATrainerMixin, SFTTrainer)``.

    It adds an `SWACallback` (as ``self.swa_callback``) and, around it:

    - `evaluate()` reports the live weights as ``eval_*`` and, once a snapshot exists, the
      average as ``eval_swa_*``, in one log entry and one ``on_evaluate`` event;
    - ``checkpoint-N/`` holds the live weights with the SWA state beside them, written
      before transformers pushes the checkpoint or deletes old ones (``save_total_limit``);
    - ``train(resume_from_checkpoint=True)`` resumes from the newest *complete* checkpoint;
    - after `train()` the model holds the average, and `save_model()` writes it with
      ``swa_config.json`` beside it; checkpoints pushed during training (``hub_strategy``)
      never replace the model on the Hub;
    - with ``swa_select_metric``, `train()` ends by scoring every candidate average and the
      live weights on ``swa_select_dataset`` (or, for a metric set by name, ``eval_dataset``)
      and the model takes the best; ``"auto"`` (the default) selects by loss on
      ``swa_select_dataset`` only, and without one ships `swa_ship`; ``swa_select_split`` (a dict saying how
      those rows were held out) is recorded with the choice. `hf_swa.training.selection.decide` says which.

    Training itself (the loss, its scaling over gradient accumulation and processes) is the
    Trainer's own: the live weights follow the plain Trainer's trajectory bit for bit.

    The SWA settings come from arguments with `SWAArgumentsMixin` (`SWATrainingArguments`),
    or ``swa_config=SWAConfig(...)``; with ``args.swa=False`` the trainer is the plain one.

    Example:
        >>> import torch
        >>> from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
        >>> from hf_swa import SWAConfig, SWATrainerMixin
        >>> class MyTrainer(Trainer):  # any Trainer subclass, e.g. trl.SFTTrainer
        ...     pass
        >>> class SWAMyTrainer(SWATrainerMixin, MyTrainer):
        ...     pass
        >>> model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
        ...     num_attention_heads=2, intermediate_size=8))
        >>> data = [{"input_ids": torch.tensor([1, 2, 3]), "labels": torch.tensor(1)}] * 8
        >>> import tempfile
        >>> args = TrainingArguments(tempfile.mkdtemp(), max_steps=4, per_device_train_batch_size=2,
        ...     report_to="none", save_strategy="no", use_cpu=True)
        >>> trainer = SWAMyTrainer(model=model, args=args, train_dataset=data, eval_dataset=data[:2],
        ...     swa_config=SWAConfig(swa_start=3))
        >>> _ = trainer.train()  # doctest: +ELLIPSIS
        {'train_runtime': ...}
        >>> trainer.swa_callback.averager.n_averaged, "eval_swa_loss" in trainer.evaluate()
        (2, True)
    """

    def __init__(
        self, *args, swa_config: Optional[SWAConfig] = None, swa_select_dataset=None, swa_select_split=None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.swa_callback: Optional[SWACallback] = None
        self.swa_select_dataset = swa_select_dataset
        self.swa_select_split = swa_select_split  # how the selection rows were held out: recorded with a choice
        if not getattr(self.args, "swa", True):
            return
        if swa_config is None:
            if isinstance(self.args, SWAArgumentsMixin):
                swa_config = self.args.to_swa_config()
            else:
                swa_config = SWAConfig()
                logger.warning(
                    "%s got arguments without SWA settings and no swa_config: using %s", type(self).__name__, swa_config
                )
        if self.args.load_best_model_at_end:
            raise ValueError(LOAD_BEST_MESSAGE)
        if any(isinstance(c, SWACallback) for c in self.callback_handler.callbacks):
            raise ValueError(
                f"{type(self).__name__} adds its own SWACallback, and callbacks holds another one, which would "
                "average a second time. Remove SWACallback from callbacks (or use the plain Trainer class with it)."
            )
        if self.model is not None:
            require_averaged_parameters(self.model)
        self.swa_callback = SWACallback(swa_config)
        self.swa_callback.trainer_writes_state = True
        self.add_callback(self.swa_callback)
        self.swa_decision = None  # what ships at the end of train(): decided with the data (_check_selection_data)
        if self.train_dataset is not None:  # a trainer that only evaluates or predicts chooses nothing
            self._check_selection_data()

    def _check_selection_data(self) -> None:
        """Decide what ships at the end of `train()` (`hf_swa.training.selection.decide`) with the data the trainer
        holds: when it is built with a training set, when `train()` starts and when `select_candidate()` runs. A
        note of the decision is logged once."""
        said = self.swa_decision.note if self.swa_decision is not None else None
        self.swa_decision = decide(
            self.swa_callback.config, self.swa_select_dataset is not None, self.eval_dataset is not None
        )
        if self.swa_decision.chooses and isinstance(self._selection_data()[0], dict):
            raise ValueError("The selection data must be one dataset, not a dict of datasets: pass swa_select_dataset.")
        if self.swa_decision.note and self.swa_decision.note != said:
            logger.warning(self.swa_decision.note)

    def _selection_data(self):
        if self.swa_decision.data == SELECT_DATASET:
            return self.swa_select_dataset, {"name": SELECT_DATASET}
        note = "selected on eval_dataset: scores reported on it for the chosen model are optimistic"
        return self.eval_dataset, {"name": EVAL_DATASET, "note": note}

    # ---------------------------------------------------------------- training and checkpoints
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(
                self.args.output_dir, self._swa_state_needed_from(), self.args.save_only_model
            )
            if resume_from_checkpoint is None:
                raise ValueError(f"No complete checkpoint found in output directory ({self.args.output_dir}).")
        if self.swa_callback is not None:
            self._check_selection_data()  # the data may have been set since the trainer was built
            self.swa_callback.resume_from_checkpoint = resume_from_checkpoint or None
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        callback = self.swa_callback
        if callback is not None and callback.has_average and self.swa_decision.chooses:
            self.select_candidate()
        return output

    def select_candidate(self) -> dict:
        """Score every candidate and the live weights on the selection data; the model takes the best.

        Runs at the end of `train()` when `swa_select_metric` is set (``"auto"``: and
        ``swa_select_dataset`` is given). Each score is logged as
        ``select_<name>_<metric>``; the record goes into `swa_config.json`. If selection fails,
        the candidates are saved first (``output_dir/swa_candidates``) and the error says so.
        """
        self._check_selection_data()  # decided with the data the trainer holds now (set since it was built, too)
        callback, decision = self.swa_callback, self.swa_decision
        if not decision.chooses:
            raise ValueError(
                f"Nothing to choose on: swa_select_metric={callback.config.swa_select_metric!r} with this trainer's "
                "data ships swa_ship. Pass swa_select_dataset=... (held-out rows) or name a metric."
            )
        dataset, info = self._selection_data()
        info["size"] = len(dataset) if hasattr(dataset, "__len__") else None
        metric = decision.metric
        plain_evaluate = super().evaluate

        def score(name: str) -> float:
            callback.use_batchnorm_statistics(self.model, name)
            with preserved_rng_state():
                metrics = plain_evaluate(dataset, metric_key_prefix=f"select_{name}")
            key = f"select_{name}_{metric}"
            if key not in metrics:
                produced = sorted(k[len(f"select_{name}_") :] for k in metrics if k.startswith(f"select_{name}_"))
                raise ValueError(
                    f"swa_select_metric={callback.config.swa_select_metric!r}, but evaluation (compute_metrics) "
                    "produces only "
                    f"{', '.join(produced)}: set swa_select_metric to one of these."
                )
            return metrics[key]

        try:
            record = select_candidate(callback.averager, self.model, score, metric, decision.greater_is_better, info)
        except Exception as error:
            folder = os.path.join(self.args.output_dir, "swa_candidates")
            self.save_candidates(folder)
            raise type(error)(f"{error} (Selection failed; every candidate was saved to {folder} first.)") from error
        record["optimistic"] = decision.optimistic  # a choice made on the evaluation set flatters the scores there
        if self.swa_select_split is not None:
            record["split"] = self.swa_select_split
        callback.record_selection(self.model, record)
        logger.info("SWA: chose %r by %s: %s", record["chosen"], metric, record["scores"])
        return record

    def ship_refit(self, first: dict, **record) -> dict:
        """Ship the candidate another run chose on its held-out rows (a refit: this run trained on every row).

        `first` is that run's ``swa_config.json`` or ``swa_callback.summary()``; `record` goes into the record's
        ``refit`` entry. See `hf_swa.training.selection.ship_refit`.
        """
        return ship_refit(self.swa_callback, self.model, first, **record)

    def save_candidates(self, folder: str) -> List[str]:
        """Save every candidate and the live weights, each as a plain Transformers checkpoint in ``folder/<name>``.

        Each folder gets a `swa_config.json` whose ``candidate`` names it. The model ends as it began.
        """
        callback = self.swa_callback
        if callback is None or not callback.has_average:
            raise RuntimeError("SWA has no candidate averages to save yet (train past the start step first).")
        paths = []
        for name in callback.averager.candidate_names() + [LIVE]:
            path = os.path.join(folder, name)
            held = callback.live_weights(self.model) if name == LIVE else callback.averaged_weights(self.model, name)
            with held:
                super().save_model(path)
                if self.args.should_save:
                    callback.write_config(path, candidate=name)
            paths.append(path)
        return paths

    def _swa_state_needed_from(self) -> Optional[int]:
        """The first checkpoint step that must hold SWA state to be resumed from (None: without SWA)."""
        if self.swa_callback is None:
            return None
        config = self.swa_callback.config
        if config.swa_power_ema_stds:
            return 1  # power EMAs are updated from the first step
        if isinstance(config.swa_start, int):
            return config.swa_start
        if self.args.max_steps > 0:
            return config.start_step(self.args.max_steps)
        return 1  # a fraction of a length not known yet: every checkpoint of an SWA run holds the state

    def _save_checkpoint(self, model, trial):
        # The SWA state goes in first: transformers pushes the checkpoint and deletes old ones
        # (save_total_limit) right after writing it, and only then calls on_save.
        callback = self.swa_callback
        if callback is not None and callback.averager is not None:
            name = f"{CHECKPOINT_PREFIX}-{self.state.global_step}"
            folder = os.path.join(self._get_output_dir(trial=trial), name)
            if self.args.should_save:
                os.makedirs(folder, exist_ok=True)
            callback.save_state(self.args, self.state, folder)
        super()._save_checkpoint(model, trial)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Push checkpoints as checkpoints only: they hold the live weights, never the model to ship."""
        if self.swa_callback is None:
            return super()._push_from_checkpoint(checkpoint_folder)
        strategy = self.args.hub_strategy
        if not self.is_world_process_zero() or strategy not in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            return  # every_save, end: the model is pushed once, as the average, by push_to_hub() after train()
        in_progress = getattr(self, "push_in_progress", None)
        if not self.args.hub_always_push and in_progress is not None and not in_progress.is_done():
            return
        on_push_begin(self)
        job = hf_api().upload_folder(
            repo_id=self.hub_model_id,
            folder_path=checkpoint_folder,
            path_in_repo="last-checkpoint" if strategy == HubStrategy.CHECKPOINT else Path(checkpoint_folder).name,
            commit_message=f"Training in progress, step {self.state.global_step}, checkpoint",
            token=self.args.hub_token,
            run_as_future=True,
            revision=self.args.hub_revision,
        )
        if in_progress is None or in_progress.is_done():
            self.push_in_progress = PushInProgress([job])
        else:
            in_progress.jobs.append(job)

    # ---------------------------------------------------------------- evaluation and saving
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval", **kwargs):
        """Evaluate the live weights (`eval_*`) and, once a snapshot exists, the average (`eval_swa_*`).

        Options of the Trainer class's own `evaluate` (``**gen_kwargs`` of `Seq2SeqTrainer`) pass on to each pass.
        """
        callback = self.swa_callback
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        several = isinstance(dataset, dict) and not isinstance(eval_dataset, str)
        if callback is None or not callback.has_average or several:
            # Several datasets: Trainer.evaluate calls back into this method once per dataset.
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix, **kwargs)
        with self._one_evaluation_event():
            with callback.live_weights(self.model):
                metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix, **kwargs)
            # The extra passes must not shift the random streams training goes on with (dataloader seeds,
            # dropout): with or without SWA evaluation, the live weights follow the same trajectory.
            for name in self._evaluated_candidates():
                with preserved_rng_state(), callback.averaged_weights(self.model, name):
                    metrics.update(super().evaluate(eval_dataset, ignore_keys, f"{metric_key_prefix}_{name}", **kwargs))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _evaluated_candidates(self) -> List[str]:
        """``swa``, every candidate with `swa_eval_candidates`, and the candidate that ships (chosen, or named by
        `swa_ship`): ``eval_<name>_*`` scores what `save_model()` writes whenever an average ships."""
        callback = self.swa_callback
        held = callback.averager.candidate_names()
        names = held if callback.config.swa_eval_candidates else [n for n in (MAIN_CANDIDATE,) if n in held]
        # What ships: the candidate the model holds after training, or while training the one swa_ship names.
        shipped = callback.averager.held or callback.shipped_without_choice()
        if shipped in held and shipped not in names:
            names.append(shipped)
        return names

    @contextlib.contextmanager
    def _one_evaluation_event(self):
        """Within the block `Trainer.evaluate` neither logs nor fires `on_evaluate`: the caller does, once.

        Callbacks such as `EarlyStoppingCallback` then see every metric of an evaluation at once
        (live and averaged), never a part of them.
        """
        handler = self.callback_handler
        self.log = lambda logs, *args, **kwargs: None
        handler.on_evaluate = lambda args, state, control, metrics, **kwargs: control
        try:
            yield
        finally:
            del self.log, handler.on_evaluate

    def save_model(self, output_dir: Optional[str] = None, *args, **kwargs):
        """Save the model; when it holds the average, also write `swa_config.json` beside it."""
        callback = self.swa_callback
        folder = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:  # first: Trainer.save_model may push the folder to the Hub
            if callback is not None and callback.has_average and (callback.ended or callback.averager.holds_averages):
                callback.write_config(folder)  # what the model holds, shipped by swa_ship or chosen, and why
            elif os.path.isfile(os.path.join(folder, CONFIG_FILE)):
                # Live weights must not be taken for an average by what an earlier run left here.
                os.remove(os.path.join(folder, CONFIG_FILE))
        super().save_model(output_dir, *args, **kwargs)


class SWATrainer(SWATrainerMixin, Trainer):
    """A `Trainer` that averages the late weights (SWA) and evaluates the average.

    Takes every `Trainer` argument. The SWA settings come from `SWATrainingArguments`
    (or `swa_config=SWAConfig(...)` with plain `TrainingArguments`); with
    `args.swa=False` it is a plain Trainer, for a baseline that differs only in SWA.
    `evaluate()` reports the live weights as `eval_*` and, once a snapshot exists, the
    averaged weights as `eval_swa_*`. Checkpoints hold the live weights and the SWA state;
    after `train()` the model holds the average and `save_model()` writes it as a plain
    Transformers checkpoint plus `swa_config.json`. See `SWATrainerMixin` for the rest.

    Example:
        >>> import torch
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> from hf_swa import SWATrainer, SWATrainingArguments
        >>> model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
        ...     num_attention_heads=2, intermediate_size=8))
        >>> data = [{"input_ids": torch.tensor([1, 2, 3]), "labels": torch.tensor(1)}] * 8
        >>> import os, tempfile
        >>> out = tempfile.mkdtemp()
        >>> args = SWATrainingArguments(out, max_steps=4, per_device_train_batch_size=2,
        ...     report_to="none", save_strategy="no", use_cpu=True, swa_start=0.5, swa_lr=1e-4)
        >>> trainer = SWATrainer(model=model, args=args, train_dataset=data, eval_dataset=data[:2])
        >>> _ = trainer.train()  # doctest: +ELLIPSIS
        {'train_runtime': ...}
        >>> metrics = trainer.evaluate()
        >>> "eval_loss" in metrics and "eval_swa_loss" in metrics
        True
        >>> trainer.save_model(os.path.join(out, "final"))  # averaged model + swa_config.json
    """
