"""The arguments of ``run_glue``: the model, the data, and the training with SWA.

Each field is also a ``--flag`` through ``HfArgumentParser`` (see :mod:`hf_swa.glue.cli`). The SWA
defaults, ``--swa_select_split`` included, are the core's: :mod:`hf_swa.training.defaults`.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from typing import Optional

from hf_swa import SWATrainingArguments
from hf_swa.glue.tasks import GlueTask, find_task, get_task
from hf_swa.training import defaults
from hf_swa.training.splits import check_share

__all__ = ["ModelArguments", "DataTrainingArguments", "GlueTrainingArguments"]

#: The data files ``run_glue`` reads, and the loader of each (``datasets.load_dataset``).
FILE_TYPES = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}
FILE_FLAGS = ("train_file", "validation_file", "test_file", "validation_mismatched_file", "test_mismatched_file")


def check_files(data: "DataTrainingArguments") -> None:
    """Each data file exists, has a type the loaders read, and the same type as the others."""
    given = {flag: getattr(data, flag) for flag in (*FILE_FLAGS, "select_file") if getattr(data, flag)}
    for flag, path in given.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--{flag} {path!r}: no such file.")
        if os.path.splitext(path)[1].lower() not in FILE_TYPES:
            raise ValueError(f"--{flag} {path!r}: unsupported file type; expected one of {', '.join(FILE_TYPES)}.")
        if "mismatched" in flag and data.task_name != "mnli":
            raise ValueError(f"--{flag} only applies to --task_name mnli.")
    kinds = {os.path.splitext(path)[1].lower().replace(".jsonl", ".json") for path in given.values()}
    if len(kinds) > 1:
        raise ValueError(f"The data files mix types {sorted(kinds)}: pass files of one type (csv, tsv or json).")


def check_selection_source(data: "DataTrainingArguments") -> None:
    """The selection rows are a share of the training rows in (0, 1) (0: none), of the groups of a column the
    training file has, or --select_file."""
    share, column = data.swa_select_split, data.swa_select_group_column
    if share:  # 0: off, every row trains
        check_share(share, "--swa_select_split")
    if data.select_file and (share or column):
        raise ValueError(
            "--select_file is the selection set: no training row is held out beside it. Drop --swa_select_split and "
            "--swa_select_group_column, or drop --select_file to hold out training rows."
        )
    if column and not share:
        raise ValueError(
            f"--swa_select_group_column {column} holds out whole groups making up a share of the training rows: "
            "give that share with --swa_select_split (e.g. 0.2)."
        )
    found = _header(data.train_file) if column and data.train_file else None
    if found is not None and column not in found:
        raise ValueError(f"--swa_select_group_column {column!r}: --train_file has no such column (columns: {found}).")


def _header(path: str) -> Optional[list]:
    """The column names of a data file, from its first line (None when that line does not tell them)."""
    with open(path, encoding="utf-8") as handle:
        first = handle.readline()
    if FILE_TYPES[os.path.splitext(path)[1].lower()] == "csv":
        return next(csv.reader([first], delimiter="\t" if path.lower().endswith(".tsv") else ","), [])
    try:
        return list(json.loads(first))
    except (ValueError, TypeError):
        return None  # not JSON lines: the loader will tell


def flag(help: str, default=None):
    """A dataclass field that ``HfArgumentParser`` turns into ``--name`` with `help`."""
    return field(default=default, metadata={"help": help})


@dataclass
class ModelArguments:
    """Which model/config/tokenizer to fine-tune from.

    >>> ModelArguments("bert-base-cased").model_revision
    'main'
    """

    model_name_or_path: str = field(metadata={"help": "Model id on the Hub or path to a local model folder."})
    tokenizer_name: Optional[str] = flag("Tokenizer if not the model's own.")
    cache_dir: Optional[str] = flag("Where Hub downloads (and the data loaders' caches) go.")
    model_revision: str = flag("Branch, tag or commit of the model.", "main")
    token: Optional[str] = flag("Hub token for private models.")
    trust_remote_code: bool = flag("Allow model code from the Hub repo.", False)
    use_fast_tokenizer: bool = flag("Use a fast (Rust) tokenizer.", True)
    ignore_mismatched_sizes: bool = flag("Re-initialise a classification head of another size than the data's.", False)


@dataclass
class DataTrainingArguments:
    """What data to train/evaluate/predict on, and how to tokenize it.

    >>> DataTrainingArguments("SST-2").task_name, DataTrainingArguments("rte", swa_select_split=0).swa_select_split
    ('sst2', 0.0)
    """

    task_name: Optional[str] = flag("GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli.")
    train_file: Optional[str] = flag("Training data (.csv, .tsv, .json/.jsonl).")
    validation_file: Optional[str] = flag("Evaluation data (MNLI: matched).")
    test_file: Optional[str] = flag("Prediction data (MNLI: matched).")
    validation_mismatched_file: Optional[str] = flag("MNLI mismatched dev set.")
    test_mismatched_file: Optional[str] = flag("MNLI mismatched test set.")
    text_columns: Optional[list[str]] = flag("One or two text column names (default: the task's, or sentence1/2).")
    label_column: Optional[str] = flag("Label column name (default: label).")
    max_seq_length: int = flag("Longer inputs are truncated.", 128)
    pad_to_max_length: bool = flag("Pad every input to max_seq_length (default: pad each batch).", False)
    max_train_samples: Optional[int] = flag("Use only the first N train examples.")
    max_eval_samples: Optional[int] = flag("Use only the first N eval examples.")
    max_predict_samples: Optional[int] = flag("Use only the first N test examples.")
    overwrite_cache: bool = flag("Re-tokenize instead of using the cache.", False)
    preprocessing_num_workers: Optional[int] = flag("Processes for tokenization.")
    swa_select_split: Optional[float] = flag(
        "Share of the training rows in (0, 1) (by label, seeded by data_seed or seed) held out to choose among the SWA "
        f"candidates on (not by --no_swa); 0: none, every row trains and --swa_ship ships. Default "
        f"{defaults.SWA_SELECT_SPLIT:g}."
    )
    swa_select_group_column: Optional[str] = flag(
        "With --swa_select_split S: hold out whole groups of this column of the training data (documents, authors, "
        "sources, years), about S of the rows, so that the selection meets unseen groups as the model will."
    )
    select_file: Optional[str] = flag(
        "Your own selection set (the type and columns of --train_file) to choose among the SWA candidates on; "
        "no training row is held out."
    )

    def __post_init__(self):
        if self.task_name:
            self.task_name = get_task(self.task_name).name  # unknown names fail here, listing the valid ones
        if not self.task_name and not (self.train_file or self.validation_file or self.test_file):
            raise ValueError("Pass --task_name (a GLUE task) or data files (--train_file, --validation_file, ...).")
        for name in ("max_seq_length", "max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}.")
        check_files(self)
        self.label_column = self.label_column or "label"
        if self.swa_select_split is None:  # unset
            self.swa_select_split = 0.0 if self.select_file else defaults.SWA_SELECT_SPLIT
        self.swa_select_split = float(self.swa_select_split)  # 0.0: off
        check_selection_source(self)

    @property
    def glue_task(self) -> Optional[GlueTask]:
        """The GLUE task, or None for another data set."""
        return find_task(self.task_name)


@dataclass
class GlueTrainingArguments(SWATrainingArguments):
    """``SWATrainingArguments`` (with the core's SWA defaults) plus ``--swa_refit``.

    Example:
        >>> from transformers import HfArgumentParser
        >>> (args,) = HfArgumentParser(GlueTrainingArguments).parse_args_into_dataclasses(["--output_dir", "/tmp/out"])
        >>> args.swa_start, args.swa_lr_ratio, args.swa_windows, args.swa_select_metric, args.swa_refit
        (0.5, 0.5, 4, 'auto', False)
    """

    swa_refit: bool = flag(
        "Choose on the selection split, then train again on every training row (same seed and settings) and ship "
        "the candidate of the chosen name from that second run.", defaults.SWA_REFIT)  # fmt: skip
