"""Build the sequence-classification model and its tokenizer for a data set's labels.

Example (a tiny GPT-2 built from config; the tokenizer has no pad token):
    >>> import tempfile
    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast
    >>> from hf_swa.glue.labels import LabelInfo
    >>> from hf_swa.glue.modeling import prepare_model_and_tokenizer
    >>> folder = tempfile.mkdtemp()
    >>> vocab = {"<|endoftext|>": 0, "a": 1, "b": 2}
    >>> backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    >>> backend.pre_tokenizer = pre_tokenizers.Whitespace()
    >>> _ = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>").save_pretrained(folder)
    >>> GPT2ForSequenceClassification(GPT2Config(vocab_size=3, n_embd=8, n_layer=1, n_head=2,
    ...     bos_token_id=0, eos_token_id=0)).save_pretrained(folder)
    >>> model, tokenizer, label2id = prepare_model_and_tokenizer(folder, LabelInfo(["neg", "pos"]))
    >>> tokenizer.pad_token, model.config.pad_token_id, label2id
    ('<|endoftext|>', 0, {'neg': 0, 'pos': 1})
"""

from __future__ import annotations

import logging
from typing import Optional

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from hf_swa.glue.labels import LabelInfo, align_with_model_config

logger = logging.getLogger(__name__)

__all__ = ["prepare_model_and_tokenizer", "ensure_pad_token"]


def ensure_pad_token(model, tokenizer) -> None:
    """Give a tokenizer without a pad token (GPT-2 style) ``pad = eos``, and tell the model.

    Sequence classification with a decoder pools the last non-pad token, found
    through ``model.config.pad_token_id``, so the two must agree.

    Raises:
        ValueError: the tokenizer has neither a pad nor an eos token.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"The tokenizer {type(tokenizer).__name__} has no pad token and no eos token to pad with; "
                "set tokenizer.pad_token (e.g. add a special token and resize the embeddings) first."
            )
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("Tokenizer has no pad token: padding with the eos token %r.", tokenizer.eos_token)
    if model.config.pad_token_id != tokenizer.pad_token_id:
        model.config.pad_token_id = tokenizer.pad_token_id


def prepare_model_and_tokenizer(
    model_name_or_path: str,
    label_info: LabelInfo,
    *,
    task_name: Optional[str] = None,
    training: bool = True,
    tokenizer_name: Optional[str] = None,
    cache_dir: Optional[str] = None,
    revision: str = "main",
    token: Optional[str] = None,
    trust_remote_code: bool = False,
    use_fast_tokenizer: bool = True,
    ignore_mismatched_sizes: bool = False,
):
    """Load config, tokenizer and ``AutoModelForSequenceClassification`` for ``label_info``.

    Returns ``(model, tokenizer, label2id)``; ``label2id`` is empty for regression.
    See :func:`hf_swa.glue.labels.align_with_model_config` for how the model's
    own label ids are kept or replaced.
    """
    hub_kwargs = {"cache_dir": cache_dir, "revision": revision, "token": token, "trust_remote_code": trust_remote_code}
    config = AutoConfig.from_pretrained(model_name_or_path, **hub_kwargs)
    label2id = align_with_model_config(config, label_info, training=training, task_name=task_name)
    tokenizer = AutoTokenizer.from_pretrained(
        tokenizer_name or model_name_or_path, use_fast=use_fast_tokenizer, **hub_kwargs
    )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name_or_path, config=config, ignore_mismatched_sizes=ignore_mismatched_sizes, **hub_kwargs
        )
    except RuntimeError as err:
        if "ignore_mismatched_sizes" not in str(err):
            raise
        raise ValueError(
            f"{model_name_or_path} has a classification head whose size differs from the data's "
            f"{label_info.num_labels} output(s) (see the load report above). Pass --ignore_mismatched_sizes "
            "to train a new head, or use the base model."
        ) from err
    ensure_pad_token(model, tokenizer)
    return model, tokenizer, label2id
