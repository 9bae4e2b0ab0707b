"""The data of ``run_glue``: a GLUE task from the Hub or local files, labels as classes, the held-out rows.

Local files go through ``datasets.load_dataset("csv"/"json", data_files=...)`` (a TSV with quoting off: GLUE TSVs
hold stray quotes). Labels become a ``ClassLabel``: a GLUE task's classes, else the first labelled split's labels
sorted; float labels are regression.

Example:
    >>> import pathlib, tempfile
    >>> from hf_swa.glue.arguments import DataTrainingArguments
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "train.tsv").write_text('sentence\\tlabel\\n"odd quote\\tpos\\nfine\\tneg\\n')
    >>> raw = load_raw_datasets(DataTrainingArguments(train_file=str(folder / "train.tsv")), str(folder / "cache"))
    >>> encode_labels(raw, None, "label", ["train"]), raw["train"][0]
    (['neg', 'pos'], {'sentence': '"odd quote', 'label': 1})
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import tempfile
from typing import Optional

import datasets

from hf_swa import selection_split
from hf_swa.glue.arguments import FILE_FLAGS, FILE_TYPES
from hf_swa.glue.tasks import HUB_DATASET, GlueTask

logger = logging.getLogger(__name__)

__all__ = ["load_raw_datasets", "evaluation_splits", "prediction_splits", "text_columns", "encode_labels"]
__all__ += ["hold_out_rows", "tokenize", "example_ids", "data_files", "MISSING_LABELS"]

#: The name of the split the selection scores on (held-out training rows or --select_file), not a share.
SELECT_SPLIT_NAME = "swa_select"
#: Label cells that pandas reads as missing (its default NA spellings but "None", which can be a class name): a row
#: labelled so has no label, and is refused rather than becoming a class called "nan".
MISSING_LABELS = frozenset(
    ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA"]
    + ["NULL", "NaN", "n/a", "nan", "null"]
)


def data_files(data_args) -> dict:
    """``{split: (flag, path)}`` of the data files given: which split each ``--*_file`` fills."""
    task = data_args.glue_task
    val, test = (task.validation_splits, task.test_splits) if task else (("validation",), ("test",))  # MNLI: two each
    splits = dict(zip(FILE_FLAGS, ("train", val[0], test[0], *val[1:], *test[1:])), select_file=SELECT_SPLIT_NAME)
    return {split: (flag, getattr(data_args, flag)) for flag, split in splits.items() if getattr(data_args, flag)}


def _check_not_empty(flag: str, path: str, loader: str) -> None:
    """Refuse an empty file, and a CSV/TSV with a header but no row, naming the flag and the file."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = [line for line in (handle.readline() for _ in range(64)) if line.strip()][:2]
    if not lines:
        raise ValueError(
            f"--{flag} {path} is empty. Write one example per row (a header line naming the columns first, for CSV "
            f"and TSV), or drop --{flag}."
        )
    if loader == "csv" and len(lines) < 2:
        raise ValueError(f"--{flag} {path} has a header line ({lines[0].strip()!r}) but no rows: add the examples.")


def _read(loader: str, split: str, flag: str, path: str, options: dict) -> datasets.Dataset:
    """One file as one split (each file is read alone, so splits may have different columns: a training file
    without the label column is then named as such, not a clash of columns)."""
    _check_not_empty(flag, path, loader)
    try:
        data = datasets.load_dataset(loader, data_files={split: path}, **options)[split]
    except datasets.exceptions.DatasetGenerationError as err:
        raise ValueError(f"Could not read --{flag} {path}: {err.__cause__ or err}") from err
    if len(data) == 0:
        raise ValueError(f"--{flag} {path} holds no rows: add the examples.")
    return data


def load_raw_datasets(data_args, cache_dir: Optional[str] = None, token=None) -> datasets.DatasetDict:
    """The raw splits: from the data files when given, else the GLUE task from the Hub (``nyu-mll/glue``)."""
    task, files = data_args.glue_task, data_files(data_args)
    if not files:
        try:
            return datasets.load_dataset(HUB_DATASET, task.name, cache_dir=cache_dir, token=token)
        except (ConnectionError, OSError) as err:
            raise ConnectionError(
                f"Could not load {HUB_DATASET}/{task.name} from the Hub ({err}). Offline, pass local files: "
                f"--train_file, --validation_file, --test_file with the columns {[*task.sentence_keys, 'label']}."
            ) from err
    extension = os.path.splitext(next(iter(files.values()))[1])[1].lower()
    loader = FILE_TYPES[extension]
    options = {} if loader == "json" else {"keep_default_na": False}  # "NA" is the text NA
    if extension == ".tsv":
        options.update(delimiter="\t", quoting=csv.QUOTE_NONE)
    if cache_dir is None:  # read into memory, through a scratch cache removed afterwards: nothing left behind
        scratch, options["keep_in_memory"] = tempfile.TemporaryDirectory(prefix="hf-swa-data-"), True
    else:
        scratch = contextlib.nullcontext(cache_dir)
    with scratch as folder:
        options["cache_dir"] = folder
        return datasets.DatasetDict({split: _read(loader, split, *given, options) for split, given in files.items()})


def evaluation_splits(raw, task: Optional[GlueTask]) -> list:
    """Splits to evaluate on, in order (MNLI: matched, then mismatched)."""
    return [name for name in (task.validation_splits if task else ("validation",)) if name in raw]


def prediction_splits(raw, task: Optional[GlueTask]) -> list:
    """``(split, submission file stem)`` pairs to predict on: ``("test", "CoLA")``; ``predictions`` without a task."""
    pairs = zip(task.test_splits, task.submission_names, strict=True) if task else [("test", "predictions")]
    return [(split, stem) for split, stem in pairs if split in raw]


def text_columns(raw, task: Optional[GlueTask], given=None) -> tuple:
    """The one or two text columns: given, else the task's, else ``sentence1/sentence2``, ``sentence`` or ``text``."""
    if given and not 1 <= len(given) <= 2:
        raise ValueError(f"--text_columns takes one or two column names, got {list(given)}.")
    columns = tuple(given or ()) or (task.sentence_keys if task else ())
    if not columns:  # the first of these the first split has
        found = set(next(iter(raw.values())).column_names)
        columns = next((g for g in (("sentence1", "sentence2"), ("sentence",), ("text",)) if found.issuperset(g)), ())
    for split, dataset in raw.items():
        missing = [c for c in columns if c not in dataset.column_names]
        if missing or not columns:
            raise ValueError(
                f"The {split} split lacks the text column(s) {missing or '?'} (columns found: {dataset.column_names})."
                " Pass --text_columns (one or two names) and --label_column to name the columns of your files."
            )
    return columns


def _class_names(raw, split: str, task: Optional[GlueTask], column: str) -> list:
    """The classes: the Hub's ``ClassLabel``, the task's, else the `split`'s labels sorted (numbers numerically)."""
    feature = raw[split].features[column]
    if isinstance(feature, datasets.ClassLabel):
        return feature.names
    if task is not None:
        return list(task.label_names)
    if feature.dtype in ("string", "large_string"):
        raw[split] = raw[split].class_encode_column(column)
        names = raw[split].features[column].names
    else:
        names = [str(v) for v in sorted(raw[split].unique(column))]
    if len(names) < 2:
        raise ValueError(f"The {split} labels in column {column!r} hold one class {names}: classification needs two.")
    return names


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() in MISSING_LABELS


def encode_labels(raw, task: Optional[GlueTask], column: str, labelled: list, files=None) -> Optional[list]:
    """Make `column` of the `labelled` splits a ``ClassLabel`` (in place); return the class names, None for regression.
    A missing label (empty, ``nan``, ``NA``, ... : `MISSING_LABELS`), or one that is not a class, is refused with the
    split, its file (`files`: `data_files`) and the column named."""
    for split in labelled:
        where = f"The {split} split" + (f" (--{files[split][0]} {files[split][1]})" if split in (files or {}) else "")
        if column not in raw[split].column_names:
            raise ValueError(
                f"{where} lacks the label column {column!r} (columns found: {raw[split].column_names}). Every "
                "labelled split (train, validation, select) needs it: add it to the file, or pass --label_column "
                "to name it."
            )
        empty = [i for i, v in enumerate(raw[split][column]) if _is_missing(v)]
        if empty:
            raise ValueError(
                f"{where} has no label in column {column!r} for example {empty[0]} (from 0, not counting a header; "
                f"{len(empty)} such row(s)): {raw[split][empty[0]][column]!r} reads as missing. Fill in the "
                "label or remove the row."
            )
    dtype = getattr(raw[labelled[0]].features[column], "dtype", "")
    if task.is_regression if task else dtype.startswith("float"):
        for split in labelled:
            raw[split] = raw[split].cast_column(column, datasets.Value("float32"))
        return None
    names = _class_names(raw, labelled[0], task, column)
    target = datasets.ClassLabel(names=names)
    for split in labelled:
        data = raw[split]
        if isinstance(data.features[column], datasets.ClassLabel):
            continue
        ids = [str(i) for i in range(len(names))] if task is not None and dtype.startswith("int") else []
        unknown = sorted({str(v) for v in data.unique(column)} - set(names) - set(ids))
        if unknown:
            raise ValueError(
                f"The {split} split has labels {unknown} in column {column!r} that are not the classes {names}"
                f"{' (or their ids)' if ids else ''}: check the files use one label column and spelling."
            )
        if not ids:  # names (or numbers standing for names): as text, then classes
            data = data.cast_column(column, datasets.Value("string"))
        raw[split] = data.cast_column(column, target)
    return names


def hold_out_rows(train: datasets.Dataset, share: float, seed: int, column: str, groups: Optional[str] = None) -> list:
    """The training rows (numbers, increasing) held out for the selection: ``hf_swa.selection_split`` of a
    seeded share, stratified by the classes of `column`, of whole groups of the column `groups` when given."""
    if groups is not None and groups not in train.column_names:
        raise ValueError(
            f"--swa_select_group_column {groups!r}: the training data has no such column "
            f"(columns: {train.column_names})."
        )
    labels = list(train[column]) if isinstance(train.features[column], datasets.ClassLabel) else None
    try:
        return selection_split(share, labels or [None] * len(train), groups and train[groups], seed)[1]
    except ValueError as err:
        what = f"whole groups of {groups!r}" if groups else "a stratified share"
        raise ValueError(
            f"--swa_select_split {share} cannot hold out {what} of {len(train)} training rows ({err}). "
            "Train on more rows or groups, pass a --select_file, or pass --swa_select_split 0 to train on every row."
        ) from None


def tokenize(raw, tokenizer, columns, data_args, labelled: list, label_column: str, label_to_id=None):
    """Tokenize every split: only the model inputs remain, and ``labels`` in the `labelled` splits
    (``label_to_id`` maps the data's class ids to the model's)."""
    max_length = min(data_args.max_seq_length, tokenizer.model_max_length)
    padding = "max_length" if data_args.pad_to_max_length else False

    def encode(batch, split):
        texts = [["" if v is None else str(v) for v in batch[c]] for c in columns]
        result = tokenizer(*texts, padding=padding, max_length=max_length, truncation=True)
        if split in labelled:
            result["labels"] = [label_to_id[v] if label_to_id else v for v in batch[label_column]]
        return result

    out, workers, cached = datasets.DatasetDict(), data_args.preprocessing_num_workers, not data_args.overwrite_cache
    for split, data in raw.items():
        options = dict(fn_kwargs={"split": split}, remove_columns=data.column_names, desc=f"Tokenizing {split}")
        out[split] = data.map(encode, batched=True, num_proc=workers, load_from_cache_file=cached, **options)
    return out


def example_ids(dataset) -> list:
    """The ids a GLUE submission uses: the ``idx`` (Hub) or ``index`` (GLUE TSV) column, else row numbers."""
    column = next((c for c in ("idx", "index") if c in dataset.column_names), None)
    return list(dataset[column]) if column else list(range(len(dataset)))
