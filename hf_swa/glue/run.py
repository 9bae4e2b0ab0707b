"""Fine-tune and evaluate on a GLUE task (or any sentence(-pair) classification set) with SWA.

The arguments mirror transformers' ``examples/pytorch/text-classification/run_glue.py``.
``run_glue`` is what ``hf-swa-glue`` (``scripts/run_glue.py``) calls; it is importable so tests and
other code can run it in-process.

Example (local files, a model saved in ``./tiny-bert``)::

    from hf_swa.glue.run import DataTrainingArguments, GlueTrainingArguments, ModelArguments, run_glue
    results = run_glue(
        ModelArguments(model_name_or_path="./tiny-bert"),
        DataTrainingArguments(task_name="mrpc", train_file="train.tsv", validation_file="dev.tsv"),
        GlueTrainingArguments(output_dir="out", do_train=True, do_eval=True, num_train_epochs=3),
    )
    results["eval_f1"], results["eval_swa_f1"]  # live weights vs the average

Files written to ``output_dir``: the averaged model, or the candidate chosen
(plain Transformers checkpoint + ``swa_config.json``) and its model card (``README.md``, written after
training whether or not the model is pushed), ``train_results.json``, ``eval_results.json``,
``all_results.json`` (MNLI mismatched metrics end in ``_mm``), with ``--swa_select_split``
the held-out rows (``swa_select_rows.json``), and with
``do_predict`` one GLUE submission file per test split (``CoLA.tsv``,
``MNLI-m.tsv``, ``MNLI-mm.tsv``, ...; ``predictions.tsv`` for a custom data set).
"""

from __future__ import annotations

import csv
import logging
import os
from typing import Optional

import numpy as np
from transformers import AutoConfig, DataCollatorWithPadding, default_data_collator, set_seed

from hf_swa.checkpointing.names import CONFIG_FILE
from hf_swa.glue.arguments import DataTrainingArguments, GlueTrainingArguments, ModelArguments
from hf_swa.glue.data import (
    check_columns,
    evaluation_splits,
    example_ids,
    load_raw_datasets,
    prediction_splits,
    resolve_text_columns,
    tokenize_datasets,
)
from hf_swa.glue.labels import LabelInfo, infer_labels
from hf_swa.glue.metric_keys import CHOSEN_NAME_KEY, MISMATCHED_SUFFIX, RESULTS_FILES, TRAIN_RESULTS_FILE, chosen_scores
from hf_swa.glue.metrics import make_compute_metrics
from hf_swa.glue.modeling import prepare_model_and_tokenizer
from hf_swa.glue.selection import (
    SELECT_ROWS_FILE,
    SELECT_SPLIT,
    check_selection_data,
    prepare_selection,
    selection_results,
    write_selection_rows,
)
from hf_swa.glue.tasks import get_task
from hf_swa.hub.card import MODEL_CARD_NAME, write_model_card
from hf_swa.training.trainer import SWATrainer, SWATrainingArguments

logger = logging.getLogger(__name__)

__all__ = ["ModelArguments", "DataTrainingArguments", "GlueTrainingArguments", "run_glue", "write_submission"]


def _mismatched_suffix(split: str) -> str:
    return MISMATCHED_SUFFIX if split.endswith("mismatched") else ""


def _labels_without_labelled_data(task_name: Optional[str], model_args: ModelArguments) -> LabelInfo:
    """Predict-only on a custom data set: the classes are the fine-tuned model's own."""
    if task_name:
        task = get_task(task_name)
        return LabelInfo(list(task.label_names), is_regression=task.is_regression)
    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path,
        cache_dir=model_args.cache_dir,
        revision=model_args.model_revision,
        token=model_args.token,
        trust_remote_code=model_args.trust_remote_code,
    )
    if config.problem_type == "regression":
        return LabelInfo([], is_regression=True)
    return LabelInfo([config.id2label[i] for i in sorted(config.id2label)])


# Written by an earlier run into the same folder; left there they would describe this run's model.
_RUN_OUTPUTS = (CONFIG_FILE, *RESULTS_FILES, TRAIN_RESULTS_FILE, MODEL_CARD_NAME, SELECT_ROWS_FILE)


def _remove_stale_outputs(output_dir: str) -> None:
    for name in _RUN_OUTPUTS:
        path = os.path.join(output_dir, name)
        if os.path.isfile(path):
            logger.info("Removing %s from an earlier run", path)
            os.remove(path)


def _positive_label_id(task_name: Optional[str], label2id) -> Optional[int]:
    """The model's id of the class a GLUE task's F1 is about (its second label name), if it has F1."""
    if not task_name or not label2id:
        return None
    task = get_task(task_name)
    if "f1" not in task.metrics or len(task.label_names) != 2:
        return None
    return label2id.get(task.label_names[1])


def write_submission(path: str, ids, predictions, label_names: Optional[list[str]] = None) -> None:
    r"""Write a GLUE-style submission TSV: ``index<TAB>prediction`` per example.

    ``label_names`` turns class ids into the names to write; ``None`` writes
    regression scores with three decimals.

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
        for index, prediction in zip(ids, predictions, strict=True):
            value = f"{float(prediction):.3f}" if label_names is None else label_names[int(prediction)]
            writer.writerow([index, value])


def _load_splits(data_args: DataTrainingArguments, model_args: ModelArguments, training_args) -> tuple:
    """The raw splits this run uses, cut to the requested sizes; also the evaluation and prediction splits."""
    task_name = data_args.task_name
    raw = load_raw_datasets(
        task_name,
        train_file=data_args.train_file,
        validation_file=data_args.validation_file,
        test_file=data_args.test_file,
        validation_mismatched_file=data_args.validation_mismatched_file,
        test_mismatched_file=data_args.test_mismatched_file,
        label_column=data_args.label_column or "label",
        cache_dir=model_args.cache_dir,
        token=model_args.token,
    )
    eval_splits = evaluation_splits(raw, task_name)
    predict_splits = prediction_splits(raw, task_name)
    needed = {"do_train": "train" in raw, "do_eval": bool(eval_splits), "do_predict": bool(predict_splits)}
    for flag, present in needed.items():
        if getattr(training_args, flag) and not present:
            what = {"do_train": "--train_file", "do_eval": "--validation_file", "do_predict": "--test_file"}[flag]
            raise ValueError(f"--{flag} needs data to work on: pass {what} (splits found: {list(raw)}).")
    keep = {"train": training_args.do_train, **{s: training_args.do_eval for s in eval_splits}}
    keep.update({s: training_args.do_predict for s, _ in predict_splits})
    limits = {"train": data_args.max_train_samples, **{s: data_args.max_eval_samples for s in eval_splits}}
    limits.update({s: data_args.max_predict_samples for s, _ in predict_splits})
    for split in list(raw):
        if not keep.get(split, False):
            del raw[split]
        elif limits.get(split) is not None:
            raw[split] = raw[split].select(range(min(limits[split], len(raw[split]))))
    return raw, eval_splits, predict_splits


def _model_and_data(raw, eval_splits, model_args: ModelArguments, data_args: DataTrainingArguments, training_args):
    """Labels, model, tokenizer and the tokenized splits."""
    task_name, label_column = data_args.task_name, data_args.label_column or "label"
    text_columns = resolve_text_columns(raw, task_name, data_args.text_columns) if len(raw) else ()
    labelled = [s for s in raw if s == "train" or s in eval_splits]
    check_columns(raw, text_columns, label_column, labelled)
    if labelled:
        label_info = infer_labels(raw, task_name, label_column, labelled)
    else:
        label_info = _labels_without_labelled_data(task_name, model_args)
    model, tokenizer, label2id = prepare_model_and_tokenizer(
        model_args.model_name_or_path,
        label_info,
        task_name=task_name,
        training=training_args.do_train,
        tokenizer_name=model_args.tokenizer_name,
        cache_dir=model_args.cache_dir,
        revision=model_args.model_revision,
        token=model_args.token,
        trust_remote_code=model_args.trust_remote_code,
        use_fast_tokenizer=model_args.use_fast_tokenizer,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )
    with training_args.main_process_first(desc="dataset tokenization"):
        data = tokenize_datasets(
            raw,
            tokenizer,
            text_columns,
            max_seq_length=data_args.max_seq_length,
            pad_to_max_length=data_args.pad_to_max_length,
            label_column=label_column,
            label_fn=label_info.label_fn(label2id) if labelled else None,
            labelled_splits=labelled,
            num_proc=data_args.preprocessing_num_workers,
            load_from_cache_file=not data_args.overwrite_cache,
        )
    return label_info, model, tokenizer, label2id, data


def _compute_metrics(task_name: Optional[str], num_labels: int, label_info: LabelInfo, label2id):
    return make_compute_metrics(
        task_name,
        num_labels=num_labels,
        is_regression=label_info.is_regression,
        positive_label_id=_positive_label_id(task_name, label2id),
    )


def _collator(tokenizer, data_args: DataTrainingArguments, training_args):
    if data_args.pad_to_max_length:
        return default_data_collator
    multiple = 8 if (training_args.fp16 or training_args.bf16) else None
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)


def _train(trainer: SWATrainer, train_dataset, training_args, held_out: Optional[dict] = None) -> dict:
    if trainer.is_world_process_zero():
        _remove_stale_outputs(training_args.output_dir)
        if held_out is not None:
            write_selection_rows(training_args.output_dir, held_out)
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()  # the shipped weights (average or chosen candidate, when SWA ran) + swa_config.json
    metrics = dict(train_result.metrics, train_samples=len(train_dataset))
    if held_out is not None:
        metrics["select_samples"] = len(held_out["held_out_rows"])
    metrics.update(selection_results(trainer))
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    return metrics


def _evaluate(trainer: SWATrainer, data, eval_splits) -> dict:
    eval_metrics = {}
    for split in eval_splits:
        metrics = dict(trainer.evaluate(eval_dataset=data[split]), eval_samples=len(data[split]))
        suffix = _mismatched_suffix(split)
        eval_metrics.update({key + suffix: value for key, value in metrics.items()})
    selection = selection_results(trainer)
    if selection:  # the shipped weights' scores again, under eval_chosen_*
        eval_metrics.update(chosen_scores(eval_metrics, selection[CHOSEN_NAME_KEY]), **selection)
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    return eval_metrics


def _predict(trainer: SWATrainer, raw, data, predict_splits, task_name, label_info: LabelInfo, id2label, output_dir):
    """Write one submission file per test split, with the leaderboard's spelling of the classes."""
    task = get_task(task_name) if task_name else None
    names = None
    if not label_info.is_regression:
        names = [id2label[i] for i in range(len(id2label))]
        if task is not None:  # the leaderboard's spelling (0/1 for CoLA, SST-2, MRPC, QQP, WNLI)
            names = [task.submission_labels[task.label_names.index(name)] for name in names]
    for split, stem in predict_splits:
        ids = example_ids(raw[split])
        output = trainer.predict(data[split], metric_key_prefix="predict")
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        predictions = np.squeeze(logits, axis=-1) if label_info.is_regression else np.argmax(logits, axis=-1)
        if trainer.is_world_process_zero():
            path = os.path.join(output_dir, f"{stem}.tsv")
            write_submission(path, ids, predictions, names)
            logger.info("Wrote %d predictions to %s", len(predictions), path)


def run_glue(model_args: ModelArguments, data_args: DataTrainingArguments, training_args: SWATrainingArguments) -> dict:
    """Train (``do_train``), evaluate (``do_eval``) and predict (``do_predict``); return all metrics.

    Evaluation reports the live weights as ``eval_*`` and the SWA average as
    ``eval_swa_*`` (once a snapshot exists); MNLI's mismatched set adds the same
    keys ending in ``_mm``. With ``swa_select_metric`` the candidate shipped is
    ``swa_chosen``, its scores are repeated as ``eval_chosen_*`` and each
    candidate's selection score is ``select_<name>_<metric>``; with
    ``swa_select_split`` the selection data is that share of the training rows,
    held out (``select_samples``). See the module docstring for the files written.
    """
    # Sequence classification losses are a mean over the batch and ignore `num_items_in_batch`. With
    # average_tokens_across_devices=True the Trainer multiplies the loss of any model it believes uses that
    # count by the world size under DDP (a correction meant for token-summed LM losses), inflating the loss
    # and the gradients world_size-fold. SWATrainer already detects the common mean-loss heads; this also
    # covers models whose forward it cannot inspect. Token averaging has no meaning for one label per example.
    training_args.average_tokens_across_devices = False
    check_selection_data(data_args.swa_select_split, training_args)
    set_seed(training_args.seed)
    raw, eval_splits, predict_splits = _load_splits(data_args, model_args, training_args)
    label_info, model, tokenizer, label2id, data = _model_and_data(
        raw, eval_splits, model_args, data_args, training_args
    )
    compute_metrics = _compute_metrics(data_args.task_name, model.config.num_labels, label_info, label2id)
    held_out = None
    if training_args.do_train:  # selection: checked, and its rows held out, before training
        held_out = prepare_selection(data, data_args.swa_select_split, training_args, compute_metrics, model.config)
    trainer = SWATrainer(
        model=model,
        args=training_args,
        train_dataset=data["train"] if training_args.do_train else None,
        eval_dataset=data[eval_splits[0]] if training_args.do_eval else None,
        processing_class=tokenizer,
        data_collator=_collator(tokenizer, data_args, training_args),
        compute_metrics=compute_metrics,
        swa_select_dataset=data.get(SELECT_SPLIT),
    )
    results: dict = {}
    if training_args.do_train:
        results.update(_train(trainer, data["train"], training_args, held_out))
    if training_args.do_eval:
        results.update(_evaluate(trainer, data, eval_splits))
    if training_args.do_predict:
        _predict(
            trainer,
            raw,
            data,
            predict_splits,
            data_args.task_name,
            label_info,
            model.config.id2label,
            training_args.output_dir,
        )
    if (
        training_args.do_train
        and trainer.is_world_process_zero()
        and os.path.isfile(os.path.join(training_args.output_dir, CONFIG_FILE))
    ):  # the averaged model was saved there
        write_model_card(training_args.output_dir, **model_card_fields(model_args, data_args, training_args))
    return results


def model_card_fields(model_args: ModelArguments, data_args: DataTrainingArguments, training_args) -> dict:
    """What the model card of a run names: the repository, the base model (a Hub id, not a local folder), the task."""
    base = model_args.model_name_or_path
    return dict(
        repo_id=training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir)),
        base_model=None if os.path.isdir(base) else base,
        task_name=data_args.task_name,
    )
