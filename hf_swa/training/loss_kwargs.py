"""Whether a model's loss uses transformers' `num_items_in_batch` (the Trainer's loss-scaling guess)."""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Optional

from torch import nn


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
