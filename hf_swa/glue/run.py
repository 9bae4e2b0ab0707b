"""Fine-tune and evaluate on a GLUE task (or any sentence(-pair) classification set) with SWA.

``run_glue`` reads like transformers' ``examples/pytorch/text-classification/run_glue.py``: data, model, tokenizer,
tokenize, train (SWATrainer chooses on the selection rows, docs/glue.md), evaluate, predict. Written to
``output_dir``: the shipped model (+ ``swa_config.json``) and its card, ``results.json`` (:mod:`hf_swa.hub.results`),
the Trainer's ``train_results.json`` and ``trainer_state.json``, ``swa_select_rows.json`` and, with ``do_predict``,
a GLUE submission file per test split (``CoLA.tsv``, ...)::

    results = run_glue(ModelArguments("./tiny-bert"), DataTrainingArguments("mrpc", train_file="train.tsv",
        validation_file="dev.tsv"), GlueTrainingArguments("out", do_train=True, do_eval=True))
    results["eval"]["live"]["validation"]["f1"], results["eval"]["chosen"]["validation"]["f1"]
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
from transformers import DataCollatorWithPadding, default_data_collator, set_seed

from hf_swa import SWATrainer
from hf_swa.averaging.names import MAIN_CANDIDATE
from hf_swa.checkpointing.names import CONFIG_FILE
from hf_swa.glue.arguments import DataTrainingArguments, GlueTrainingArguments, ModelArguments
from hf_swa.glue.data import (
    SELECT_SPLIT_NAME,
    data_files,
    encode_labels,
    evaluation_splits,
    example_ids,
    hold_out_rows,
    load_raw_datasets,
    prediction_splits,
    text_columns,
    tokenize,
)
from hf_swa.glue.metrics import make_compute_metrics, metric_names
from hf_swa.glue.modeling import load_config_and_tokenizer, load_model, model_labels
from hf_swa.glue.tasks import dataset_facts
from hf_swa.hub.card import MODEL_CARD_NAME, write_model_card
from hf_swa.hub.results import CHOSEN, RESULTS_FILE, TRAINER_RESULTS_FILES, nest_metrics
from hf_swa.training.loss_kwargs import declare_mean_loss
from hf_swa.training.selection import decide
from hf_swa.training.splits import held_out_share

logger = logging.getLogger(__name__)

__all__ = ["ModelArguments", "DataTrainingArguments", "GlueTrainingArguments", "run_glue", "write_submission"]

#: Written beside a run's results: the share, the seed and the numbers of the training rows held out.
SELECT_ROWS_FILE = "swa_select_rows.json"
#: Where a --swa_refit run keeps the run it chose on (its own output_dir holds the run on every row).
SELECTION_RUN_DIR = "selection_run"
# Written by an earlier run into the same folder; left there they would describe this run's model.
_OUTPUTS = (CONFIG_FILE, RESULTS_FILE, *TRAINER_RESULTS_FILES, "train_results.json", MODEL_CARD_NAME, SELECT_ROWS_FILE)


def check_selection_data(data_args: DataTrainingArguments, training_args) -> None:
    """Refuse, before anything loads and in flag terms, a run that selects with no data to choose on."""
    metric, refit = training_args.swa_select_metric, training_args.swa_refit and training_args.swa
    if refit and not (metric and data_args.swa_select_split):
        raise ValueError(
            "--swa_refit chooses on training rows held out by --swa_select_split (or its groups), then trains on "
            "them too: it needs --swa_select_split above 0 and a --swa_select_metric."
        )
    if refit and training_args.resume_from_checkpoint:
        raise ValueError(
            "--swa_refit runs twice and --resume_from_checkpoint names one checkpoint: resume each run in its own "
            "folder without --swa_refit, or start the refit run again."
        )
    if not (training_args.do_train and training_args.swa):
        return
    config, has_select_data = training_args.to_swa_config(), bool(data_args.swa_select_split or data_args.select_file)
    try:  # the core's one rule of what ships (selection.decide), with the data this run will have
        decide(config, has_select_data, training_args.do_eval)
    except ValueError:
        raise ValueError(
            f"--swa_select_metric {metric} chooses on held-out data, but --swa_select_split 0 holds out no training "
            "row and there is no --do_eval: keep --swa_select_split above 0, pass a --select_file, add --do_eval (an "
            "optimistic choice), or pass --swa_select_metric auto or none."
        ) from None


def check_select_metric(training_args, produced: tuple) -> None:
    """Refuse, before training, a selection metric that the evaluation does not produce."""
    if training_args.swa and training_args.swa_select_metric:
        wanted = training_args.to_swa_config().select_metric_name()
        if wanted not in ("loss", *produced):
            raise ValueError(
                f"--swa_select_metric {training_args.swa_select_metric!r}: the evaluation of this task produces only "
                f"{', '.join(('loss', *produced))}. Set --swa_select_metric to one of these."
            )


def write_submission(path: str, ids, predictions, label_names=None) -> None:
    r"""Write a GLUE-style submission TSV: ``index<TAB>prediction``; ``label_names`` None writes regression scores.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "RTE.tsv")
        >>> write_submission(path, [0, 1], np.array([1, 0]), ["entailment", "not_entailment"])
        >>> open(path).read().splitlines()
        ['index\tprediction', '0\tnot_entailment', '1\tentailment']
    """
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["index", "prediction"])
        for index, value in zip(ids, predictions, strict=True):
            writer.writerow([index, f"{float(value):.3f}" if label_names is None else label_names[int(value)]])


class _LoadedData(NamedTuple):
    """The raw splits a run uses and what they hold."""

    raw: Any  # datasets.DatasetDict
    eval_splits: list  # the splits evaluated on, in order
    predict_splits: list  # (split, submission file stem) pairs
    columns: tuple  # the one or two text columns
    labelled: list  # the splits with labels
    label_list: Optional[list]  # the classes; None for regression


class _HeldOut(NamedTuple):
    """What the selection scores on: `rows`, the record of the training rows held out (None when none are), and
    `split`, the description that ``results["selection"]["split"]`` and ``swa_config.json`` carry."""

    rows: Optional[dict]
    split: dict


@dataclasses.dataclass(frozen=True)
class _RunFacts:
    """What `_prepare` learnt of the data that the stages after it need."""

    eval_splits: list
    predict_splits: list
    held_out: _HeldOut
    compute_metrics: Callable
    metrics: tuple  # the metric names the evaluation produces


class _Prepared(NamedTuple):
    raw: Any
    data: Any  # the tokenized datasets.DatasetDict
    model: Any
    tokenizer: Any
    facts: _RunFacts


class EvaluationData(NamedTuple):
    """The first evaluation set prepared for a model, to score checkpoints on (`evaluation_data`).

    >>> data = EvaluationData([{"input_ids": [2, 3]}], tokenizer=None, compute_metrics=None, is_regression=False)
    >>> dataset, _, _, is_regression = data  # a tuple too
    >>> len(dataset), is_regression
    (1, False)
    """

    dataset: Any
    tokenizer: Any
    compute_metrics: Callable
    is_regression: bool


def _load(model_args, data_args, do: dict) -> _LoadedData:
    """The raw splits each stage in `do` (train, eval, predict: bool) uses, cut to ``--max_*_samples``, their
    text columns and classes."""
    task, column = data_args.glue_task, data_args.label_column
    raw = load_raw_datasets(data_args, model_args.cache_dir, model_args.token)
    eval_splits, predict_splits = evaluation_splits(raw, task), prediction_splits(raw, task)
    stages = dict(train=[s for s in ("train",) if s in raw], eval=eval_splits, predict=[s for s, _ in predict_splits])
    kept = {}
    for stage in (stage for stage, wanted in do.items() if wanted):
        if not stages[stage]:
            flag = {"train": "train", "eval": "validation", "predict": "test"}[stage]
            raise ValueError(f"--do_{stage} needs data to work on: pass --{flag}_file (splits found: {list(raw)}).")
        limit = getattr(data_args, f"max_{stage}_samples")
        kept.update({s: raw[s].select(range(min(limit or len(raw[s]), len(raw[s])))) for s in stages[stage]})
    if do.get("train") and SELECT_SPLIT_NAME in raw:  # --select_file
        kept[SELECT_SPLIT_NAME] = raw[SELECT_SPLIT_NAME]
    raw = raw.__class__(kept)
    columns = text_columns(raw, task, data_args.text_columns)
    labelled = [s for s in raw if s in ("train", SELECT_SPLIT_NAME) or s in eval_splits]
    label_list = (
        encode_labels(raw, task, column, labelled, data_files(data_args)) if labelled else model_labels(model_args)
    )
    return _LoadedData(raw, eval_splits, predict_splits, columns, labelled, label_list)


def _selection_rows(raw, data_args, training_args, label_column, eval_splits) -> _HeldOut:
    """What the selection scores on: a --select_file, training rows (or whole groups) moved from the training
    split into the selection split, else the evaluation set."""
    share, groups = data_args.swa_select_split, data_args.swa_select_group_column
    if SELECT_SPLIT_NAME in raw:
        file = {"kind": "file", "file": data_args.select_file, "rows": len(raw[SELECT_SPLIT_NAME]), "held_out_rows": 0}
        return _HeldOut(None, file)
    if not (training_args.do_train and share):
        return _HeldOut(None, {"kind": "eval_set", "set": eval_splits[0] if eval_splits else None, "held_out_rows": 0})
    seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    rows = hold_out_rows(raw["train"], share, seed, label_column, groups)
    kept = sorted(set(range(len(raw["train"]))) - set(rows))
    raw[SELECT_SPLIT_NAME], raw["train"] = raw["train"].select(rows), raw["train"].select(kept)
    actual = held_out_share(kept, rows)  # as near `share` as whole rows (groups) allow, within the split's tolerance
    record = {"swa_select_split": share, "held_out_share": actual, "seed": seed, "train_rows": len(rows) + len(kept)}
    kind = {"kind": "groups", "column": groups} if groups else {"kind": "rows"}
    split = {**kind, "share": share, "held_out_share": actual, "seed": seed, "held_out_rows": len(rows)}
    return _HeldOut({**record, "held_out_rows": rows, **({"group_column": groups} if groups else {})}, split)


def _prepare(model_args, data_args, training_args) -> _Prepared:
    """Data, model and tokenizer, and the facts of the data the stages after need."""
    do = {stage: getattr(training_args, f"do_{stage}") for stage in ("train", "eval", "predict")}
    loaded = _load(model_args, data_args, do)
    raw, label_list, labelled = loaded.raw, loaded.label_list, loaded.labelled
    task, column = data_args.glue_task, data_args.label_column
    model, tokenizer, label_to_id = load_model(model_args, task, label_list, training_args.do_train)
    held_out = _selection_rows(raw, data_args, training_args, column, loaded.eval_splits)
    labelled += [SELECT_SPLIT_NAME] if held_out.rows else []
    with training_args.main_process_first(desc="dataset tokenization"):
        data = tokenize(raw, tokenizer, loaded.columns, data_args, labelled, column, label_to_id)
    facts = _RunFacts(
        eval_splits=loaded.eval_splits,
        predict_splits=loaded.predict_splits,
        held_out=held_out,
        compute_metrics=_compute_metrics(task, label_list, label_to_id),
        metrics=metric_names(data_args.task_name, len(label_list or [0]), label_list is None),
    )
    return _Prepared(raw, data, model, tokenizer, facts)


def _compute_metrics(task, label_list, label_to_id):
    """The Trainer's ``compute_metrics``; F1 is about the model's id of the task's class 1 (MRPC: equivalent)."""
    positive = (label_to_id[1] if label_to_id else 1) if task is not None and "f1" in task.metrics else None
    name, count = task.name if task else None, len(label_list or [0])
    return make_compute_metrics(name, num_labels=count, is_regression=label_list is None, positive_label_id=positive)


def evaluation_data(model_args: ModelArguments, data_args: DataTrainingArguments) -> EvaluationData:
    """The first evaluation set, prepared as ``run_glue`` prepares it for the model in ``model_args`` (whose
    weights are not loaded), to score checkpoints on."""
    loaded = _load(model_args, data_args, {"eval": True})
    task, label_list, split = data_args.glue_task, loaded.label_list, loaded.eval_splits[0]
    first = loaded.raw.__class__({split: loaded.raw[split]})
    _, tokenizer, label_to_id = load_config_and_tokenizer(model_args, task, label_list, training=False)
    data = tokenize(first, tokenizer, loaded.columns, data_args, [split], data_args.label_column, label_to_id)
    return EvaluationData(data[split], tokenizer, _compute_metrics(task, label_list, label_to_id), label_list is None)


def _train(trainer, data, training_args, facts: _RunFacts, refit=None) -> dict:
    held_out, output_dir = facts.held_out.rows, training_args.output_dir
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    callback = trainer.swa_callback
    if refit is not None:  # ship the candidate chosen by the run in `refit`, the record naming that run
        with open(os.path.join(refit, CONFIG_FILE), encoding="utf-8") as f:
            trainer.ship_refit(json.load(f), selection_run=refit)
    # Only once training and the refit have succeeded: an earlier run's outputs go, as the new ones are written. A
    # run that fails or is killed leaves the earlier model and the files that describe it as they were.
    if trainer.is_world_process_zero():
        for path in (os.path.join(output_dir, name) for name in _OUTPUTS):
            if os.path.isfile(path):
                logger.info("Removing %s from an earlier run", path)
                os.remove(path)
        if held_out is not None:
            with open(os.path.join(output_dir, SELECT_ROWS_FILE), "w", encoding="utf-8") as f:
                json.dump(held_out, f)
    trainer.save_model()  # the shipped weights (average or chosen candidate, when SWA ran) + swa_config.json
    metrics = dict(train_result.metrics, train_samples=len(data["train"]))
    if held_out is not None:
        metrics["select_samples"] = len(held_out["held_out_rows"])
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics, combined=False)
    trainer.save_state()
    selection = callback.selection if callback is not None else None
    shipped = callback.summary()["shipped"] if callback is not None else None  # chosen, or as swa_ship says
    return {"train": metrics, "chosen": shipped, "selection": selection}


def _evaluate(trainer, data, eval_splits, chosen) -> dict:
    """Every evaluation set scored by the live weights and each candidate evaluated: ``{weights: {set: {metric}}}``."""
    callback = trainer.swa_callback
    names = [CHOSEN, MAIN_CANDIDATE]
    if callback is not None and callback.averager is not None:
        names += callback.averager.candidate_names() + list((callback.selection or {}).get("scores", {}))
    scores: dict = {}
    for i, split in enumerate(eval_splits):
        prefix = "eval" if i == 0 else f"eval_{split}"  # one key per metric in the logs, whatever the set
        metrics = trainer.evaluate(eval_dataset=data[split], metric_key_prefix=prefix)
        trainer.log_metrics(split, metrics)
        for weights, sets in nest_metrics(metrics, names, prefix, split).items():
            scores.setdefault(weights, {}).update(sets)
    if chosen in scores:  # the shipped weights' scores, whichever they are (the live weights included)
        scores[CHOSEN] = scores[chosen]
    return {"eval": scores, "eval_samples": {split: len(data[split]) for split in eval_splits}}


def _predict(trainer, raw, data, predict_splits, task, output_dir) -> None:
    """One submission file per test split, with the leaderboard's spelling of the classes."""
    config = trainer.model.config
    names = None if config.problem_type == "regression" else [config.id2label[i] for i in range(config.num_labels)]
    if names and task is not None:  # the leaderboard's spelling (0/1 for CoLA, SST-2, MRPC, QQP, WNLI)
        spelling = {name.lower(): task.submission_labels[i] for i, name in enumerate(task.label_names)}
        names = [spelling.get(str(name).lower(), name) for name in names]
    for split, stem in predict_splits:
        output = trainer.predict(data[split], metric_key_prefix="predict")
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        predictions = np.argmax(logits, axis=-1) if names else np.squeeze(logits, axis=-1)
        if trainer.is_world_process_zero():
            path = os.path.join(output_dir, f"{stem}.tsv")
            write_submission(path, example_ids(raw[split]), predictions, names)
            logger.info("Wrote %d predictions to %s", len(predictions), path)


def run_glue(model_args: ModelArguments, data_args: DataTrainingArguments, training_args) -> dict:
    """Train (``do_train``), evaluate (``do_eval``) and predict (``do_predict``); return the nested results,
    ``results["eval"][weights][eval_set][metric]`` (weights: ``live``, ``swa``, each candidate evaluated and
    ``chosen``, what the run shipped) with the choice in ``results["chosen"]`` and ``results["selection"]``."""
    check_selection_data(data_args, training_args)
    every_row = dataclasses.replace(data_args, swa_select_split=0, swa_select_group_column=None, select_file=None)
    if not training_args.swa:  # the baseline: what a user runs without hf_swa, on every labelled row
        return _run(model_args, every_row if training_args.do_train else data_args, training_args)
    if not (training_args.swa_refit and training_args.do_train):
        return _run(model_args, data_args, training_args)
    first_dir = os.path.join(training_args.output_dir, SELECTION_RUN_DIR)
    options = dict(swa_refit=False, do_predict=False, push_to_hub=False)
    _run(model_args, data_args, dataclasses.replace(training_args, output_dir=first_dir, **options))
    refit_args = dataclasses.replace(training_args, swa_select_metric=None, swa_refit=False)
    return _run(model_args, every_row, refit_args, refit=first_dir)


def _run(model_args, data_args, training_args, refit=None) -> dict:
    set_seed(training_args.seed)
    raw, data, model, tokenizer, facts = _prepare(model_args, data_args, training_args)
    if training_args.do_train:
        check_select_metric(training_args, facts.metrics)
    if data_args.pad_to_max_length:
        collator = default_data_collator
    else:
        half = training_args.fp16 or training_args.bf16
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if half else None)
    # BERT-style losses are plain means: scaled as such under accumulation and DDP, for the baseline and SWA alike.
    declare_mean_loss(model)
    trainer = SWATrainer(
        model=model,
        args=training_args,
        train_dataset=data.get("train") if training_args.do_train else None,
        eval_dataset=data[facts.eval_splits[0]] if training_args.do_eval else None,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=facts.compute_metrics,
        swa_select_dataset=data.get(SELECT_SPLIT_NAME),
        swa_select_split=facts.held_out.split,
    )
    results = {"task": data_args.task_name, "dataset": dataset_facts(data_args.task_name)}
    results.update(metrics=list(facts.metrics), lower_is_better=["loss"])
    if training_args.do_train:
        results.update(_train(trainer, data, training_args, facts, refit))
    if training_args.do_eval:
        results.update(_evaluate(trainer, data, facts.eval_splits, results.get("chosen")))
    if training_args.do_predict:
        _predict(trainer, raw, data, facts.predict_splits, data_args.glue_task, training_args.output_dir)
    _write_results(results, model_args, data_args, training_args, trainer)
    return results


def _write_results(results: dict, model_args, data_args, training_args, trainer) -> None:
    """``results.json`` beside the model, and the card of an SWA run's shipped model."""
    if not trainer.is_world_process_zero() or not (training_args.do_train or training_args.do_eval):
        return
    os.makedirs(training_args.output_dir, exist_ok=True)
    with open(os.path.join(training_args.output_dir, RESULTS_FILE), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    if training_args.do_train and os.path.isfile(os.path.join(training_args.output_dir, CONFIG_FILE)):
        write_model_card(training_args.output_dir, results, **model_card_fields(model_args, data_args, training_args))


def model_card_fields(model_args: ModelArguments, data_args: DataTrainingArguments, training_args) -> dict:
    """What the model card of a run names: the repository, the base model (a Hub id, not a local folder), the task."""
    base, repo_id = model_args.model_name_or_path, training_args.hub_model_id
    repo_id = repo_id or os.path.basename(os.path.abspath(training_args.output_dir))
    return dict(repo_id=repo_id, base_model=None if os.path.isdir(base) else base, task_name=data_args.task_name)
