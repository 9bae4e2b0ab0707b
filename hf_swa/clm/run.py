"""Train and evaluate a causal LM with SWA: ``run_clm``, read like HF's ``language-modeling/run_clm.py``.

Data (:mod:`hf_swa.clm.data`), model (:mod:`hf_swa.clm.modeling`), train (``SWATrainer``; with selection text it
chooses by loss, else ``--swa_ship`` ships), evaluate: the loss and perplexity of the live weights, of ``swa``, of
every candidate evaluated (``--swa_eval_candidates``) and of the weights shipped (``chosen``) on each evaluation set
(``validation``, ``test``). Written to ``output_dir``: the shipped model (+ ``swa_config.json``) and its card, and
``results.json`` in the nested layout of :mod:`hf_swa.hub.results` (the one ``run_glue`` writes)::

    results = run_clm(ClmModelArguments(model_type="gpt2", tokenizer_name="tok", config_overrides="n_layer=2"),
        ClmDataArguments(train_file="train.txt", test_file="test.txt", block_size=64),
        SWATrainingArguments("out", do_train=True, do_eval=True))
    results["eval"]["live"]["test"]["perplexity"], results["eval"]["chosen"]["test"]["perplexity"]
"""

from __future__ import annotations

import json
import logging
import math
import os

from transformers import default_data_collator, set_seed

from hf_swa import SWATrainer
from hf_swa.checkpointing.names import CONFIG_FILE
from hf_swa.clm.arguments import ClmDataArguments, ClmModelArguments
from hf_swa.clm.data import SELECT_SPLIT_NAME, load_text, tokenize_and_group
from hf_swa.clm.modeling import block_size_for, load_model_and_tokenizer
from hf_swa.hub.card import MODEL_CARD_NAME, write_model_card
from hf_swa.hub.results import CHOSEN, RESULTS_FILE, TRAINER_RESULTS_FILES, nest_metrics

logger = logging.getLogger(__name__)

__all__ = ["run_clm", "EVAL_SPLITS", "TASK_NAME", "add_perplexity", "model_card_fields"]

#: The evaluation sets, in this order, that a run scores when it has them.
EVAL_SPLITS = ("validation", "test")
#: The task the results and the card name.
TASK_NAME = "causal-lm"
# Written by an earlier run into the same folder; left there they would describe this run's model.
_OUTPUTS = (CONFIG_FILE, RESULTS_FILE, *TRAINER_RESULTS_FILES, "train_results.json", MODEL_CARD_NAME)


def add_perplexity(scores: dict) -> dict:
    """``{weights: {set: {metric}}}`` with ``perplexity = exp(loss)`` beside each loss (``inf`` past overflow).

    >>> round(add_perplexity({"live": {"test": {"loss": math.log(20.0)}}})["live"]["test"]["perplexity"], 6)
    20.0
    """
    for sets in scores.values():
        for metrics in sets.values():
            if "loss" in metrics:
                metrics["perplexity"] = math.exp(metrics["loss"]) if metrics["loss"] < 700 else float("inf")
    return scores


def run_clm(model_args: ClmModelArguments, data_args: ClmDataArguments, training_args) -> dict:
    """Train (``do_train``) and evaluate (``do_eval``); return the nested results,
    ``results["eval"][weights][eval_set]["perplexity"]`` (weights: ``live``, ``swa``, each candidate evaluated and
    ``chosen``, what the run shipped), with the choice in ``results["chosen"]`` and ``results["selection"]``."""
    if data_args.select_file or data_args.swa_select_split:
        if not training_args.swa:
            raise ValueError(
                "--select_file and --swa_select_split choose among the SWA candidates, and --swa false trains without "
                "SWA: drop them for the baseline (it trains on every training document)."
            )
    training_args.prediction_loss_only = True  # no compute_metrics: the logits (blocks x vocab) are not kept
    set_seed(training_args.seed)
    seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    raw, held_out = load_text(data_args, seed, model_args.cache_dir)
    if training_args.do_train and "train" not in raw:
        raise ValueError("--do_train needs --train_file.")
    model, tokenizer = load_model_and_tokenizer(model_args)
    block_size = block_size_for(data_args.block_size, tokenizer, model)
    data = tokenize_and_group(raw, tokenizer, data_args, block_size, training_args.main_process_first)
    eval_splits = [split for split in EVAL_SPLITS if split in data]
    if training_args.do_eval and not eval_splits:
        raise ValueError("--do_eval needs text to evaluate: --validation_file, --test_file or a validation share.")
    trainer = SWATrainer(
        model=model,
        args=training_args,
        train_dataset=data.get("train") if training_args.do_train else None,
        eval_dataset=data[eval_splits[0]] if training_args.do_eval else None,
        processing_class=tokenizer,
        data_collator=default_data_collator,
        swa_select_dataset=data.get(SELECT_SPLIT_NAME) if training_args.swa else None,
    )
    results = {"task": TASK_NAME, "dataset": _dataset_facts(data_args, held_out), "block_size": block_size}
    results.update(world_size=training_args.world_size)  # the processes that trained (and evaluated)
    results.update(metrics=["perplexity"], lower_is_better=["perplexity", "loss"], pipeline_tag="text-generation")
    if training_args.do_train:
        results.update(_train(trainer, data, training_args))
    if training_args.do_eval:
        results.update(_evaluate(trainer, data, eval_splits, results.get("chosen")))
    _write_results(results, model_args, training_args, trainer)
    return results


def _dataset_facts(data_args: ClmDataArguments, held_out: dict) -> dict:
    files = {split: os.path.basename(path) for split, path in data_args.data_files().items()}
    name = files.get("train") or next(iter(files.values()))
    return {"name": name, "files": files, "held_out": held_out, "purpose": "causal language modeling"}


def _train(trainer, data, training_args) -> dict:
    if trainer.is_world_process_zero():
        for path in (os.path.join(training_args.output_dir, name) for name in _OUTPUTS):
            if os.path.isfile(path):
                logger.info("Removing %s from an earlier run", path)
                os.remove(path)
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()  # the shipped weights (average or chosen candidate, when SWA ran) + swa_config.json
    metrics = dict(train_result.metrics, train_samples=len(data["train"]))
    if SELECT_SPLIT_NAME in data:
        metrics["select_samples"] = len(data[SELECT_SPLIT_NAME])
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics, combined=False)
    trainer.save_state()
    callback = trainer.swa_callback
    shipped = callback.summary()["shipped"] if callback is not None else None  # chosen, or as swa_ship says
    return {"train": metrics, "chosen": shipped, "selection": callback.selection if callback is not None else None}


def _evaluate(trainer, data, eval_splits, chosen) -> dict:
    """Each evaluation set scored by the live weights and each candidate evaluated, with perplexity."""
    callback = trainer.swa_callback
    names = [CHOSEN, "swa"]
    if callback is not None and callback.averager is not None:
        names += callback.averager.candidate_names() + list((callback.selection or {}).get("scores", {}))
    scores: dict = {}
    for i, split in enumerate(eval_splits):
        prefix = "eval" if i == 0 else f"eval_{split}"
        metrics = trainer.evaluate(eval_dataset=data[split], metric_key_prefix=prefix)
        trainer.log_metrics(split, metrics)
        for weights, sets in nest_metrics(metrics, names, prefix, split).items():
            scores.setdefault(weights, {}).update(sets)
    add_perplexity(scores)
    if chosen in scores:  # the shipped weights' scores, whichever they are (the live weights included)
        scores[CHOSEN] = scores[chosen]
    return {"eval": scores, "eval_samples": {split: len(data[split]) for split in eval_splits}}


def _write_results(results: dict, model_args, training_args, trainer) -> None:
    """``results.json`` beside the model, and the card of an SWA run's shipped model."""
    if not trainer.is_world_process_zero() or not (training_args.do_train or training_args.do_eval):
        return
    os.makedirs(training_args.output_dir, exist_ok=True)
    with open(os.path.join(training_args.output_dir, RESULTS_FILE), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    if training_args.do_train and os.path.isfile(os.path.join(training_args.output_dir, CONFIG_FILE)):
        write_model_card(training_args.output_dir, results, **model_card_fields(model_args, training_args))


def model_card_fields(model_args: ClmModelArguments, training_args) -> dict:
    """What the model card names: the repository, the base model (a Hub id, not a local folder), the task."""
    repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
    return dict(repo_id=repo_id, base_model=model_args.base_model, task_name=TASK_NAME)
