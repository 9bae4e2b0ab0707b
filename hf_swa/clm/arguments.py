"""The arguments of ``run_clm``: the model (a checkpoint, a GGUF file, or a config to train from scratch), the
text, and the training with SWA (``SWATrainingArguments``, the core's defaults).

Each field is also a ``--flag`` through ``HfArgumentParser`` (see :mod:`hf_swa.clm.cli`). Nothing here imports
``datasets``: ``hf-swa-clm --help`` stays light.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from hf_swa.glue.arguments import flag
from hf_swa.training.splits import check_share

__all__ = ["ClmModelArguments", "ClmDataArguments", "TEXT_FILE_TYPES", "DATA_FILE_FLAGS"]

#: The text files ``run_clm`` reads, and the ``datasets`` loader of each.
TEXT_FILE_TYPES = {".txt": "text", ".csv": "csv", ".json": "json", ".jsonl": "json"}
#: The data flags, and the split each fills.
DATA_FILE_FLAGS = {"train_file": "train", "validation_file": "validation", "test_file": "test", "select_file": "select"}


@dataclass
class ClmModelArguments:
    """Which model to train: ``--model_name_or_path`` (with ``--gguf_file`` for GGUF weights), or
    ``--model_type`` with ``--config_overrides`` and a local ``--tokenizer_name`` to train from scratch.

    >>> ClmModelArguments(model_type="gpt2", tokenizer_name="tok", config_overrides="n_layer=2").from_scratch
    True
    >>> ClmModelArguments(model_type="gpt2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --model_type gpt2 trains from scratch and needs a tokenizer: pass --tokenizer_name ...
    """

    model_name_or_path: Optional[str] = flag("Model id on the Hub or a local model folder (unset: --model_type).")
    gguf_file: Optional[str] = flag("A .gguf file inside --model_name_or_path holding the weights and tokenizer.")
    model_type: Optional[str] = flag("Train a new model of this type from scratch (gpt2, llama, ...).")
    config_overrides: Optional[str] = flag(
        "With --model_type: settings of the new config, e.g. 'n_layer=4,n_embd=256,n_head=4'."
    )
    tokenizer_name: Optional[str] = flag("Tokenizer folder or id if not the model's own (needed with --model_type).")
    cache_dir: Optional[str] = flag("Where Hub downloads (and the data loaders' caches) go.")
    model_revision: str = flag("Branch, tag or commit of the model.", "main")
    token: Optional[str] = flag("Hub token for private models.")
    trust_remote_code: bool = flag("Allow model code from the Hub repo.", False)
    torch_dtype: Optional[str] = flag("Load the weights in this dtype (float32, bfloat16, float16; default: auto).")

    def __post_init__(self):
        if bool(self.model_name_or_path) == bool(self.model_type):
            raise ValueError(
                "Pass either --model_name_or_path (a model to fine-tune) or --model_type (a new model from scratch)."
            )
        if self.config_overrides and not self.model_type:
            raise ValueError("--config_overrides sets up a new model: use it with --model_type, not a checkpoint.")
        if self.model_type and not self.tokenizer_name:
            raise ValueError(
                f"--model_type {self.model_type} trains from scratch and needs a tokenizer: pass --tokenizer_name "
                "(a local folder saved by a tokenizer's save_pretrained)."
            )
        if self.gguf_file and not self.model_name_or_path:
            raise ValueError("--gguf_file names a file inside --model_name_or_path: pass that folder or repo too.")
        if self.gguf_file and os.path.isdir(self.model_name_or_path or ""):
            if not os.path.isfile(os.path.join(self.model_name_or_path, self.gguf_file)):
                raise FileNotFoundError(f"--gguf_file {self.gguf_file!r}: not in {self.model_name_or_path}.")

    @property
    def from_scratch(self) -> bool:
        return self.model_type is not None

    @property
    def base_model(self) -> Optional[str]:
        """The base model a card names: a Hub id, never a local folder or a new model."""
        name = self.model_name_or_path
        return None if not name or os.path.isdir(name) else name


@dataclass
class ClmDataArguments:
    """The text: files (.txt: one document a line; .csv, .json/.jsonl: a text column), grouped into blocks.

    >>> ClmDataArguments(train_file=__file__.replace(".py", ".txt"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: --train_file '...arguments.txt': no such file.
    """

    train_file: Optional[str] = flag("Training text (.txt, .csv, .json/.jsonl).")
    validation_file: Optional[str] = flag("Evaluation text (unset: --validation_split_percentage of the training).")
    test_file: Optional[str] = flag("Test text, evaluated beside the validation text.")
    text_column: str = flag("The text column of .csv/.json files (.txt: each line).", "text")
    block_size: Optional[int] = flag("Tokens per training block (default: the model's length, at most 1024).")
    validation_split_percentage: int = flag("Without --validation_file: this percentage of the training documents.", 5)
    swa_select_split: float = flag(
        "Share of the training documents in (0, 1) held out (seeded) to choose among the SWA candidates on, by "
        "loss; 0 (the default): none, every document trains and --swa_ship ships.", 0.0)  # fmt: skip
    select_file: Optional[str] = flag("Your own text to choose among the SWA candidates on (by loss).")
    max_train_samples: Optional[int] = flag("Use only the first N training blocks.")
    max_eval_samples: Optional[int] = flag("Use only the first N blocks of each evaluation set.")
    keep_linebreaks: bool = flag(".txt files: keep the line breaks in the text.", True)
    preprocessing_num_workers: Optional[int] = flag("Processes for tokenization.")
    overwrite_cache: bool = flag("Re-tokenize instead of using the cache.", False)

    def __post_init__(self):
        if not (self.train_file or self.validation_file or self.test_file):
            raise ValueError("Pass the text: --train_file (and --validation_file, --test_file).")
        for name in ("block_size", "max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}.")
        if not 0 <= self.validation_split_percentage < 100:
            raise ValueError(f"--validation_split_percentage {self.validation_split_percentage}: must be in [0, 100).")
        self.swa_select_split = float(self.swa_select_split or 0.0)
        if self.swa_select_split:
            check_share(self.swa_select_split, "--swa_select_split")
        if self.select_file and self.swa_select_split:
            raise ValueError("--select_file is the selection text: drop --swa_select_split (or drop --select_file).")
        check_text_files(self)

    def data_files(self) -> dict:
        """``{split: path}`` for the files given."""
        return {split: getattr(self, name) for name, split in DATA_FILE_FLAGS.items() if getattr(self, name)}


def check_text_files(data: ClmDataArguments) -> None:
    """Each file exists and has one type the loaders read, and all have the same type."""
    given = {name: getattr(data, name) for name in DATA_FILE_FLAGS if getattr(data, name)}
    for name, path in given.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--{name} {path!r}: no such file.")
        if os.path.splitext(path)[1].lower() not in TEXT_FILE_TYPES:
            raise ValueError(f"--{name} {path!r}: unsupported file type; expected one of {', '.join(TEXT_FILE_TYPES)}.")
    kinds = {TEXT_FILE_TYPES[os.path.splitext(path)[1].lower()] for path in given.values()}
    if len(kinds) > 1:
        raise ValueError(f"The text files mix types {sorted(kinds)}: pass files of one type (txt, csv or json).")
