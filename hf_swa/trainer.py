"""`SWATrainer` and `SWATrainingArguments`: the Trainer with SWA built in."""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import logging
import os
import random
import textwrap
from dataclasses import dataclass, field
from typing import List, Literal, Optional

import numpy as np
import torch
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint, unwrap_peft_model

from .averaging import averaged_parameters
from .callback import LOAD_BEST_MESSAGE, SWACallback
from .checkpoint import CONFIG_FILE
from .config import SWAConfig, parse_swa_start
from .distributed import FSDP1_MESSAGE
from .selection import LIVE, select_candidate

logger = logging.getLogger(__name__)


@dataclass
class SWATrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the SWA settings (each also a `--flag` through `HfArgumentParser`).

    Example:
        >>> from transformers import HfArgumentParser
        >>> from hf_swa import SWATrainingArguments
        >>> (args,) = HfArgumentParser(SWATrainingArguments).parse_args_into_dataclasses(
        ...     ["--output_dir", "/tmp/out", "--swa_start", "0.5", "--swa_freq", "10", "--swa_lr", "2e-5"])
        >>> args.swa_start, args.swa_freq, args.to_swa_config().swa_lr
        (0.5, 10, 2e-05)
    """

    swa: bool = field(default=True, metadata={"help": "Average weights with SWA (False: a plain Trainer run, a baseline)."})
    swa_start: str = field(
        default="0.75",
        metadata={
            "help": "When averaging starts: a fraction of the total optimizer steps in (0, 1] such as 0.75, "
            "or an optimizer step >= 1 such as 100."
        },
    )
    swa_freq: int = field(default=1, metadata={"help": "Fold in a snapshot every this many optimizer steps."})
    swa_lr: Optional[float] = field(
        default=None,
        metadata={"help": "Anneal the LR to this value from swa_start and hold it. Unset: keep the base schedule."},
    )
    swa_anneal_steps: int = field(
        default=0, metadata={"help": "Optimizer steps over which the LR anneals to swa_lr (0: jump)."}
    )
    swa_anneal_strategy: Literal["cos", "linear"] = field(default="cos", metadata={"help": "Shape of the anneal."})
    swa_device: Optional[str] = field(
        default=None, metadata={"help": "Where the fp32 averages live: unset = beside the weights, 'cpu' = host memory."}
    )
    swa_strategy: Literal["uniform", "ema"] = field(
        default="uniform", metadata={"help": "uniform: the SWA mean of the snapshots; ema: exponential moving average."}
    )
    swa_ema_decay: float = field(default=0.999, metadata={"help": "Decay of the 'ema' strategy."})
    swa_windows: int = field(
        default=1,
        metadata={"help": "Split the snapshots into this many windows; candidates swa_from<step> average the "
                  "snapshots from each later window start on (1: the classic average only)."},
    )
    swa_ema_decays: List[float] = field(
        default_factory=list, metadata={"help": "One bias-corrected EMA candidate ema_<d> per decay, e.g. 0.9 0.99."}
    )
    swa_select_metric: Optional[str] = field(
        default=None,
        metadata={"help": "Score every candidate and the live weights on the selection data at the end of training "
                  "and ship the best, by this metric (loss, accuracy, eval_f1, ...). Unset: ship swa."},
    )
    swa_select_greater_is_better: Optional[bool] = field(
        default=None, metadata={"help": "Whether a higher selection score is better (default: False for *loss)."}
    )
    swa_eval_candidates: bool = field(
        default=False, metadata={"help": "evaluate() also reports eval_<candidate>_* for every candidate."}
    )

    def __post_init__(self):
        # Checked before TrainingArguments sets up DeepSpeed and the process group.
        if self.swa and self.swa_lr is not None and "scheduler" in _deepspeed_config(self.deepspeed):
            raise ValueError(
                "swa_lr composes the SWA LR tail with the Trainer's schedule, but the DeepSpeed config has its own "
                "'scheduler' section, which replaces it (and is not a LambdaLR). Remove 'scheduler' from the "
                "DeepSpeed config (the Trainer then builds lr_scheduler_type and DeepSpeed steps it), or leave "
                "swa_lr unset."
            )
        super().__post_init__()
        self.swa_start = parse_swa_start(self.swa_start)
        if self.swa and self.fsdp and int((self.fsdp_config or {}).get("version", 2)) == 1:
            raise ValueError(FSDP1_MESSAGE)
        if self.swa:
            config = self.to_swa_config()  # validate now, before any model is built or trained
            schedule = str(getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type))
            if self.load_best_model_at_end:
                raise ValueError(LOAD_BEST_MESSAGE)
            if config.swa_lr is not None and schedule == "reduce_lr_on_plateau":
                raise ValueError(
                    "swa_lr needs a LambdaLR-based schedule, and lr_scheduler_type='reduce_lr_on_plateau' is not one: "
                    "choose another lr_scheduler_type (e.g. 'linear' or 'constant') or leave swa_lr unset."
                )

    def to_swa_config(self) -> SWAConfig:
        """The `SWAConfig` these arguments describe."""
        return SWAConfig(
            swa_start=self.swa_start,
            swa_freq=self.swa_freq,
            swa_lr=self.swa_lr,
            swa_anneal_steps=self.swa_anneal_steps,
            swa_anneal_strategy=self.swa_anneal_strategy,
            swa_device=self.swa_device,
            strategy=self.swa_strategy,
            ema_decay=self.swa_ema_decay,
            swa_windows=self.swa_windows,
            swa_ema_decays=list(self.swa_ema_decays or []),
            swa_select_metric=self.swa_select_metric,
            swa_select_greater_is_better=self.swa_select_greater_is_better,
            swa_eval_candidates=self.swa_eval_candidates,
        )


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


def _deepspeed_config(deepspeed) -> dict:
    """The DeepSpeed config given to TrainingArguments (a dict or a JSON file), or {}."""
    if isinstance(deepspeed, dict):
        return deepspeed
    if isinstance(deepspeed, str) and os.path.isfile(deepspeed):
        with open(deepspeed, encoding="utf-8") as f:
            return json.load(f)
    return {}


def loss_uses_num_items_in_batch(model) -> Optional[bool]:
    """Whether `model.forward` hands `num_items_in_batch` to its loss (``None``: source not available).

    transformers' `Trainer` counts every model whose `forward` takes ``**kwargs`` as one that
    normalises its loss by `num_items_in_batch`: it then skips the division by the gradient
    accumulation steps and, under DDP with `average_tokens_across_devices`, multiplies the
    loss by the number of processes. Models that compute a plain mean loss and ignore the
    count (BERT, RoBERTa, DeBERTa, GPT-2 sequence classification, ...) get losses and gradients
    scaled by those factors. A forward uses the count when it names `num_items_in_batch` or
    passes ``**kwargs`` on to ``self.loss_function``.

    >>> from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel
    >>> loss_uses_num_items_in_batch(BertForSequenceClassification(BertConfig(hidden_size=8, num_hidden_layers=1,
    ...     num_attention_heads=2, intermediate_size=8, vocab_size=10)))
    False
    >>> loss_uses_num_items_in_batch(GPT2LMHeadModel(GPT2Config(n_embd=8, n_layer=1, n_head=2, vocab_size=10)))
    True
    """
    model = getattr(model, "_orig_mod", model)  # torch.compile
    forward = inspect.unwrap(type(model).forward)
    if forward is nn.Module.forward:
        return None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(forward)))
    except (OSError, TypeError, SyntaxError, AttributeError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "num_items_in_batch":
            return True
        if isinstance(node, ast.keyword) and node.arg == "num_items_in_batch":
            return True
        if isinstance(node, ast.Constant) and node.value == "num_items_in_batch":
            return True
        if isinstance(node, ast.Call) and "loss" in _callee_name(node.func).lower():
            if any(keyword.arg is None for keyword in node.keywords):  # hands **kwargs to a loss
                return True
    return False


def _callee_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


class SWATrainer(Trainer):
    """A `Trainer` that averages the late weights (SWA) and evaluates the average.

    Takes every `Trainer` argument. The SWA settings come from `SWATrainingArguments`
    (or `swa_config=SWAConfig(...)` with plain `TrainingArguments`); with
    `args.swa=False` it is a plain Trainer, for a baseline that differs only in SWA.
    `evaluate()` reports the live weights as `eval_*` and, once a snapshot exists, the
    averaged weights as `eval_swa_*`. After `train()` the model holds the average and
    `save_model()` writes it as a plain Transformers checkpoint plus `swa_config.json`.

    Example:
        >>> import torch
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> from hf_swa import SWATrainer, SWATrainingArguments
        >>> model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
        ...     num_attention_heads=2, intermediate_size=8))
        >>> data = [{"input_ids": torch.tensor([1, 2, 3]), "labels": torch.tensor(1)}] * 8
        >>> args = SWATrainingArguments("/tmp/hf_swa_doctest", max_steps=4, per_device_train_batch_size=2,
        ...     report_to="none", save_strategy="no", use_cpu=True, swa_start=0.5, swa_lr=1e-4)
        >>> trainer = SWATrainer(model=model, args=args, train_dataset=data, eval_dataset=data[:2])
        >>> _ = trainer.train()  # doctest: +ELLIPSIS
        {'train_runtime': ...}
        >>> metrics = trainer.evaluate()
        >>> "eval_loss" in metrics and "eval_swa_loss" in metrics
        True
        >>> trainer.save_model("/tmp/hf_swa_doctest/final")  # averaged model + swa_config.json
    """

    def __init__(self, *args, swa_config: Optional[SWAConfig] = None, swa_select_dataset=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._check_loss_kwargs()
        self.swa_callback: Optional[SWACallback] = None
        self.swa_select_dataset = swa_select_dataset
        if not getattr(self.args, "swa", True):
            return
        if swa_config is None:
            if isinstance(self.args, SWATrainingArguments):
                swa_config = self.args.to_swa_config()
            else:
                swa_config = SWAConfig()
                logger.warning("SWATrainer got plain TrainingArguments and no swa_config: using %s", swa_config)
        if self.args.load_best_model_at_end:
            raise ValueError(LOAD_BEST_MESSAGE)
        if self.model is not None and not averaged_parameters(self.model):
            raise ValueError(
                "The model has no trainable floating-point parameters, so SWA has nothing to average. "
                "Unfreeze some parameters or set swa=False."
            )
        self.swa_callback = SWACallback(swa_config)
        self.add_callback(self.swa_callback)
        self._check_selection_data()

    def _check_selection_data(self) -> None:
        if self.swa_callback.config.swa_select_metric is None:
            return
        if self.swa_select_dataset is None and self.eval_dataset is None:
            raise ValueError(
                f"swa_select_metric={self.swa_callback.config.swa_select_metric!r} needs data to score the candidates "
                "on: pass SWATrainer(..., swa_select_dataset=...) (held-out rows), or an eval_dataset."
            )
        if isinstance(self._selection_data()[0], dict):
            raise ValueError("The selection data must be one dataset, not a dict of datasets: pass swa_select_dataset.")
        if self.swa_select_dataset is None:
            logger.warning(
                "SWA selects among the candidates on eval_dataset: the scores reported on it for the chosen model are "
                "optimistic. Pass swa_select_dataset (rows held out of training) for honest numbers."
            )

    def _selection_data(self):
        if self.swa_select_dataset is not None:
            return self.swa_select_dataset, {"name": "swa_select_dataset"}
        note = "selected on eval_dataset: scores reported on it for the chosen model are optimistic"
        return self.eval_dataset, {"name": "eval_dataset", "note": note}

    def _check_loss_kwargs(self) -> None:
        # See loss_uses_num_items_in_batch: a model whose loss is a plain mean must not be treated as
        # normalised by num_items_in_batch, or gradient accumulation sums instead of averaging and DDP
        # multiplies the loss (training and evaluation) by the number of processes.
        if self.model is None or self.compute_loss_func is not None:
            return
        if not getattr(self, "model_accepts_loss_kwargs", False):
            return
        base = unwrap_peft_model(self.accelerator.unwrap_model(self.model))  # as Trainer.__init__ does
        if hasattr(base, "accepts_loss_kwargs"):  # the model says so itself: Trainer followed it
            return
        if loss_uses_num_items_in_batch(base) is False:
            self.model_accepts_loss_kwargs = False
            logger.info(
                "%s computes a mean loss and ignores num_items_in_batch: the loss is averaged over gradient "
                "accumulation steps and processes as for any mean loss.", type(base).__name__,
            )

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if self.swa_callback is not None:
            folder = resume_from_checkpoint
            if isinstance(folder, bool):
                folder = get_last_checkpoint(self.args.output_dir) if folder else None
            self.swa_callback.resume_from_checkpoint = folder
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        if self.swa_callback is not None and self.swa_callback.config.swa_select_metric and self.swa_callback.has_average:
            self.select_candidate()
        return output

    def select_candidate(self) -> dict:
        """Score every candidate and the live weights on the selection data; the model takes the best.

        Runs at the end of `train()` when `swa_select_metric` is set. Each score is logged as
        ``select_<name>_<metric>``; the record goes into `swa_config.json`. If selection fails,
        the candidates are saved first (``output_dir/swa_candidates``) and the error says so.
        """
        callback = self.swa_callback
        config = callback.config
        dataset, info = self._selection_data()
        info["size"] = len(dataset) if hasattr(dataset, "__len__") else None
        metric = config.select_metric_name()
        plain_evaluate = super().evaluate

        def score(name: str) -> float:
            with preserved_rng_state():
                metrics = plain_evaluate(dataset, metric_key_prefix=f"select_{name}")
            key = f"select_{name}_{metric}"
            if key not in metrics:
                produced = sorted(k[len(f"select_{name}_"):] for k in metrics if k.startswith(f"select_{name}_"))
                raise ValueError(
                    f"swa_select_metric={config.swa_select_metric!r}, but evaluation (compute_metrics) produces only "
                    f"{', '.join(produced)}: set swa_select_metric to one of these."
                )
            return metrics[key]

        try:
            record = select_candidate(callback.averager, self.model, score, metric, config.select_greater_is_better(),
                                      info)
        except Exception as error:
            folder = os.path.join(self.args.output_dir, "swa_candidates")
            self.save_candidates(folder)
            raise type(error)(f"{error} (Selection failed; every candidate was saved to {folder} first.)") from error
        callback.selection = record
        logger.info("SWA: chose %r by %s: %s", record["chosen"], metric, record["scores"])
        return record

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

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """Evaluate the live weights (`eval_*`) and, once a snapshot exists, the average (`eval_swa_*`)."""
        callback = self.swa_callback
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        several = isinstance(dataset, dict) and not isinstance(eval_dataset, str)
        if callback is None or not callback.has_average or several:
            # Several datasets: Trainer.evaluate calls back into this method once per dataset.
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        with callback.live_weights(self.model):
            metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        # The extra pass must not shift the random streams training goes on with (dataloader seeds,
        # dropout): with or without SWA evaluation, the live weights follow the same trajectory.
        names = callback.averager.candidate_names() if callback.config.swa_eval_candidates else ["swa"]
        shipped = callback.selection["chosen"] if callback.selection else None
        if shipped not in names + [None, LIVE]:  # the candidate chosen at the end of training
            names.append(shipped)
        for name in names:
            with preserved_rng_state(), callback.averaged_weights(self.model, name):
                metrics.update(super().evaluate(eval_dataset, ignore_keys, f"{metric_key_prefix}_{name}"))
        return metrics

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False):
        """Save the model; when it holds the average, also write `swa_config.json` beside it."""
        callback = self.swa_callback
        folder = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:  # first: Trainer.save_model may push the folder to the Hub
            if callback is not None and callback.has_average and (
                callback.averager.holds_averages or callback.selection is not None
            ):  # the average, a candidate, or live weights chosen over them
                callback.write_config(folder)
            elif os.path.isfile(os.path.join(folder, CONFIG_FILE)):
                # Live weights must not be taken for an average by what an earlier run left here.
                os.remove(os.path.join(folder, CONFIG_FILE))
        super().save_model(output_dir, _internal_call)
