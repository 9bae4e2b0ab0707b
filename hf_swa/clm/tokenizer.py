"""A byte-level BPE tokenizer trained offline on your own text, for a model trained from scratch
(``--model_type ... --tokenizer_name <folder>``).

Example:
    >>> import tempfile
    >>> tokenizer = train_tokenizer(["the cat sat on the mat"] * 10, tempfile.mkdtemp(), vocab_size=300)
    >>> tokenizer.decode(tokenizer("the cat")["input_ids"]), tokenizer.eos_token
    ('the cat', '<|endoftext|>')
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["train_tokenizer", "END_OF_TEXT"]

END_OF_TEXT = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], folder, vocab_size: int = 8000, min_frequency: int = 2):
    """Train a GPT-2-style byte-level BPE of `vocab_size` tokens on `texts` and save it to `folder`; returns it
    as a ``PreTrainedTokenizerFast`` whose end-of-text (and padding) token is ``END_OF_TEXT``."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[END_OF_TEXT], show_progress=False
    )
    os.makedirs(folder, exist_ok=True)
    trained = os.path.join(folder, "tokenizer.json")
    bpe.save(trained)  # the trained tokenizer, through its public file format (save_pretrained rewrites it below)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=trained, eos_token=END_OF_TEXT, bos_token=END_OF_TEXT, pad_token=END_OF_TEXT,
        unk_token=END_OF_TEXT, model_max_length=1024,
    )  # fmt: skip
    tokenizer.save_pretrained(str(folder))
    return tokenizer
