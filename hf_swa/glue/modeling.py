"""The sequence-classification model and tokenizer for a data set's classes, as HF's ``run_glue.py`` loads them.

A model fine-tuned on the same classes (ignoring case) keeps its label ids (``roberta-large-mnli``); a head naming
other classes is retrained with a warning, or refused when only evaluating. A tokenizer without a pad token (GPT-2)
pads with its eos token, as in this example:
    >>> import tempfile
    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast
    >>> from hf_swa.glue.arguments import ModelArguments
    >>> folder = tempfile.mkdtemp()
    >>> backend = Tokenizer(models.WordLevel({"<|endoftext|>": 0, "a": 1, "b": 2}, unk_token="<|endoftext|>"))
    >>> backend.pre_tokenizer = pre_tokenizers.Whitespace()
    >>> _ = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>").save_pretrained(folder)
    >>> GPT2ForSequenceClassification(GPT2Config(vocab_size=3, n_embd=8, n_layer=1, n_head=2,
    ...     bos_token_id=0, eos_token_id=0)).save_pretrained(folder)
    >>> model, tokenizer, label_to_id = load_model(ModelArguments(folder), None, ["neg", "pos"], training=True)
    >>> tokenizer.pad_token, model.config.pad_token_id, model.config.label2id, label_to_id
    ('<|endoftext|>', 0, {'neg': 0, 'pos': 1}, None)
"""

from __future__ import annotations

import logging
import re
from typing import Optional

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from ..training.compat import MISMATCHED_SIZES_ERRORS

logger = logging.getLogger(__name__)

__all__ = ["load_model", "load_config_and_tokenizer", "model_labels", "ensure_pad_token"]

_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")


def _hub_kwargs(model_args) -> dict:
    names = ("cache_dir", "model_revision", "token", "trust_remote_code")
    return {name.removeprefix("model_"): getattr(model_args, name) for name in names}  # revision=model_revision


def model_labels(model_args) -> Optional[list]:
    """The classes of a fine-tuned model (None: regression), for predicting without labelled data."""
    config = AutoConfig.from_pretrained(model_args.model_name_or_path, **_hub_kwargs(model_args))
    return None if config.problem_type == "regression" else [config.id2label[i] for i in sorted(config.id2label)]


def _align_labels(config, label_list: list, training: bool) -> Optional[dict]:
    """Put the classes into ``config``; return ``{data id: model id}`` when the model keeps its own ids."""
    names = {str(name).lower(): int(i) for i, name in (config.id2label or {}).items()}
    if names and not all(_DEFAULT_LABEL.match(name.upper()) for name in names):
        data = [label.lower() for label in label_list]
        if set(data) == set(names) or (not training and set(data) < set(names)):
            spelled = dict(zip(data, label_list, strict=True))
            config.id2label = {i: spelled.get(name, name) for name, i in names.items()}
            config.label2id = {name: i for i, name in config.id2label.items()}
            return {i: names[label] for i, label in enumerate(data)}
        message = f"The model was fine-tuned on classes {sorted(names)} but the data has {label_list}."
        if not training:
            raise ValueError(message + " Evaluating or predicting with it would be meaningless; train it first.")
        logger.warning("%s Training a new classification head for the data's classes.", message)
    config.label2id = {label: i for i, label in enumerate(label_list)}
    config.id2label = dict(enumerate(label_list))
    return None


def ensure_pad_token(model, tokenizer) -> None:
    """The model pads as its tokenizer does (a decoder pools the last non-pad token)."""
    model.config.pad_token_id = tokenizer.pad_token_id


def load_config_and_tokenizer(model_args, task, label_list: Optional[list], training: bool):
    """``(config, tokenizer, label_to_id)`` for the classes `label_list` (None: regression); see the module doc."""
    hub = _hub_kwargs(model_args)
    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path, num_labels=len(label_list or [0]), finetuning_task=task and task.name, **hub
    )
    config.problem_type = "regression" if label_list is None else "single_label_classification"
    label_to_id = None if label_list is None else _align_labels(config, label_list, training)
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, use_fast=model_args.use_fast_tokenizer, **hub
    )
    if tokenizer.pad_token is None and tokenizer.eos_token is None:
        raise ValueError(f"The tokenizer {type(tokenizer).__name__} has no pad token and no eos token to pad with.")
    if tokenizer.pad_token is None:  # GPT-2: pad with eos
        tokenizer.pad_token = tokenizer.eos_token
    config.pad_token_id = tokenizer.pad_token_id
    return config, tokenizer, label_to_id


def load_model(model_args, task, label_list: Optional[list], training: bool):
    """``(model, tokenizer, label_to_id)``: :func:`load_config_and_tokenizer` and the model for that config."""
    config, tokenizer, label_to_id = load_config_and_tokenizer(model_args, task, label_list, training)
    try:
        options = dict(
            config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **_hub_kwargs(model_args)
        )
        model = AutoModelForSequenceClassification.from_pretrained(model_args.model_name_or_path, **options)
    except RuntimeError as err:
        if not any(words in str(err) for words in MISMATCHED_SIZES_ERRORS):
            raise
        raise ValueError(
            f"{model_args.model_name_or_path} has a classification head whose size differs from the data's "
            f"{config.num_labels} output(s). Pass --ignore_mismatched_sizes to train a new head, or use the base model."
        ) from err
    return model, tokenizer, label_to_id
