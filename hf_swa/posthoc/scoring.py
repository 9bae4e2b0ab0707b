"""Score checkpoints on a GLUE task or a labelled file, for greedy soups: the GLUE runner's data and metrics.

``glue_score_fn`` returns ``score_fn(model) -> float`` (higher is better; a loss is
negated) that evaluates a sequence classifier with a ``Trainer`` on the validation
split. Data loading, columns, labels, tokenization and metrics are those of
:mod:`hf_swa.glue`, so a score here is the score ``run_glue`` reports.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from typing import Callable

import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from hf_swa.glue.arguments import DataTrainingArguments, ModelArguments
from hf_swa.glue.metrics import metric_names
from hf_swa.glue.modeling import ensure_pad_token
from hf_swa.glue.run import evaluation_data
from hf_swa.glue.tasks import dataset_facts, get_task
from hf_swa.hub.folder import TOKENIZER_FILES
from hf_swa.posthoc.arguments import SoupEvaluationArguments

__all__ = ["glue_score_fn"]


def _metric_key(args: SoupEvaluationArguments, data, is_regression: bool) -> str:
    """The ``eval_*`` key a score is read from: ``--metric``, else the main metric of the data by the rule
    ``run_glue`` records in ``results.json`` and ``hf-swa-report`` reads (:func:`hf_swa.glue.metrics.metric_names`
    of the task, or of the number of classes in the tokenized ``labels``).

    Example:
        >>> _metric_key(SoupEvaluationArguments(validation_file="dev.csv"), {"labels": [0, 1, 1]}, False)
        'eval_f1'
        >>> _metric_key(SoupEvaluationArguments(validation_file="dev.csv"), {"labels": [0, 1, 2]}, False)
        'eval_accuracy'
        >>> _metric_key(SoupEvaluationArguments(task_name="cola"), {"labels": [0, 1]}, False)
        'eval_matthews_correlation'
    """
    classes = 0 if is_regression else len(set(data["labels"]))
    name = args.metric or metric_names(args.task_name, classes, is_regression)[0]
    return name if name.startswith("eval_") else f"eval_{name}"


def _validation_set(args: SoupEvaluationArguments, model_folder: str) -> tuple:
    """``(tokenized validation split, tokenizer, compute_metrics, is_regression)``, as ``run_glue`` prepares them."""
    data_args = DataTrainingArguments(
        task_name=args.task_name,
        validation_file=args.validation_file,
        text_columns=args.text_columns,
        label_column=args.label_column,
        max_seq_length=args.max_seq_length,
        max_eval_samples=args.max_eval_samples,
    )
    if not any(os.path.isfile(os.path.join(model_folder, name)) for name in TOKENIZER_FILES):
        # transformers would build a default tokenizer for the architecture and score with it without a word
        raise ValueError(
            f"{model_folder} holds no tokenizer to score with (none of {', '.join(TOKENIZER_FILES)}); save it with "
            "the checkpoints (pass processing_class=tokenizer to the Trainer, or tokenizer.save_pretrained there)."
        )
    try:
        return evaluation_data(ModelArguments(model_folder), data_args)
    except ConnectionError as err:  # before OSError, which it is: the data (or a file) needed the network
        raise ValueError(_network_message(args, err.__cause__ or err)) from err  # the loader's own cause
    except OSError as err:
        raise ValueError(
            f"{model_folder} holds no tokenizer to score with ({err}); save it with the checkpoints."
        ) from err


def _network_message(args: SoupEvaluationArguments, err: BaseException) -> str:
    """What to do when scoring needed the Hub and could not reach it (offline mode, or no network).

    Example:
        >>> print(_network_message(SoupEvaluationArguments(task_name="sst2"), ConnectionError("no route")))
        ... # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
        --task_name sst2 scores on the validation split of the Hub data set nyu-mll/glue (sst2), which is
        neither cached here nor reachable (no route). ...
    """
    what = (
        f"--task_name {args.task_name} scores on the validation split of the Hub data set "
        f"{dataset_facts(args.task_name).get('id')} ({get_task(args.task_name).name})"
        if args.task_name
        else f"Scoring on {args.validation_file} needed the Hub"
    )
    offline = [name for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(name, "0") not in ("", "0")]
    cause = f"{' and '.join(offline)} is set" if offline else "the Hub cannot be reached"
    return (
        f"{what}, which is neither cached here nor reachable ({err}). {cause}: connect once (unset "
        f"{'/'.join(offline) or 'HF_HUB_OFFLINE'}) to cache it, or pass the validation rows as a local file with "
        "--validation_file (and --text_columns, --label_column)."
    )


def glue_score_fn(args: SoupEvaluationArguments, model_folder: str) -> tuple[Callable, str]:
    """``(score_fn, metric key)`` for checkpoints like the one in ``model_folder`` (its config and tokenizer)."""
    data, tokenizer, compute_metrics, is_regression = _validation_set(args, model_folder)
    key = _metric_key(args, data, is_regression)
    sign = -1.0 if key.endswith("loss") else 1.0
    trainers = {}
    scratch = tempfile.TemporaryDirectory(prefix="hf-swa-score-")  # the Trainer's output_dir: evaluation writes nothing

    def score_fn(model) -> float:
        if id(model) not in trainers:
            ensure_pad_token(model, tokenizer)
            eval_args = TrainingArguments(
                output_dir=scratch.name,
                per_device_eval_batch_size=args.per_device_eval_batch_size,
                use_cpu=args.use_cpu,
                dataloader_pin_memory=torch.cuda.is_available() and not args.use_cpu,
                report_to="none",
                disable_tqdm=True,
            )
            trainers[id(model)] = Trainer(
                model=model,
                args=eval_args,
                eval_dataset=data,
                processing_class=tokenizer,
                data_collator=DataCollatorWithPadding(tokenizer),
                compute_metrics=compute_metrics,
            )
        metrics = trainers[id(model)].evaluate()
        if key not in metrics:
            found = sorted(k.removeprefix("eval_") for k in metrics if not k.endswith(("runtime", "per_second")))
            raise ValueError(f"--metric {key.removeprefix('eval_')!r} is not among the scores: {found}.")
        return sign * float(metrics[key])

    weakref.finalize(score_fn, scratch.cleanup)  # gone with the score function
    return score_fn, key
