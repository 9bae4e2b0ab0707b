"""Load a GLUE task (Hub or local files) or any sentence(-pair) classification set.

Local files may be CSV (``.csv``), TSV (``.tsv``, read with quoting disabled
because GLUE TSVs contain stray quote characters) or JSON lines
(``.json``/``.jsonl``; a ``.json`` holding one JSON array also works). CSV/TSV
cells are read as text, never as NaN; the label column is then read as ints if
every value is an integer, floats if every value is a number, text otherwise.

Example:
    >>> import pathlib, tempfile
    >>> from hf_swa.glue.data import load_raw_datasets, resolve_text_columns
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "train.tsv").write_text('sentence\\tlabel\\n"odd quote\\t1\\nfine\\t0\\n')
    >>> raw = load_raw_datasets(train_file=str(folder / "train.tsv"))
    >>> raw["train"][0]
    {'sentence': '"odd quote', 'label': 1}
    >>> resolve_text_columns(raw)
    ('sentence',)
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import datasets
import pandas as pd

from hf_swa.glue.tasks import HUB_DATASET, GlueTask, get_task

logger = logging.getLogger(__name__)

__all__ = [
    "HUB_DATASET",
    "load_raw_datasets",
    "read_table",
    "resolve_text_columns",
    "check_columns",
    "evaluation_splits",
    "prediction_splits",
    "example_ids",
    "tokenize_datasets",
]

SUPPORTED_EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl")


# --------------------------------------------------------------------------- reading files
def _check_tsv_fields(file: Path, argument: str) -> None:
    """Every line of a TSV must have as many tab-separated fields as its header (a stray tab shifts columns)."""
    with open(file, encoding="utf-8", errors="replace", newline="") as handle:
        expected = None
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if expected is None:
                expected = line.count("\t") + 1
            elif line and line.count("\t") + 1 != expected:
                raise ValueError(
                    f"--{argument} {str(file)!r}: line {number} has {line.count(chr(9)) + 1} tab-separated fields, "
                    f"the header has {expected} (a tab inside a text field?)."
                )


def _coerce_labels(values: pd.Series) -> pd.Series:
    """Text cells (stripped) to int, else float, else left as text (empty cells stay empty text)."""
    values = values.str.strip()
    if (values == "").any():
        return values
    for kind in (int, float):
        try:
            converted = values.map(kind)
        except (TypeError, ValueError):
            continue
        return converted
    return values


def _read_json(path: Path) -> pd.DataFrame:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {number} is not valid JSON ({err}).") from None
    if not rows or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{path}: expected JSON lines with one object per example (or a JSON array of objects).")
    return pd.DataFrame.from_records(rows)


def read_table(path: str, label_column: Optional[str] = "label", *, argument: str = "file") -> datasets.Dataset:
    """Read one CSV/TSV/JSON-lines file into a ``datasets.Dataset``.

    ``label_column`` (when present in a CSV/TSV file) is converted from text to
    numbers where possible. ``argument`` names the option in error messages.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unsupported extension or unreadable content.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--{argument} {path!r}: no such file.")
    suffix = file.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"--{argument} {path!r}: unsupported file type {suffix or '(none)'!r}; "
            f"expected one of {', '.join(SUPPORTED_EXTENSIONS)}."
        )
    if suffix in (".json", ".jsonl"):
        frame = _read_json(file)
    else:
        if suffix == ".tsv":
            _check_tsv_fields(file, argument)
        try:
            frame = pd.read_csv(
                file,
                sep="\t" if suffix == ".tsv" else ",",
                # GLUE TSVs hold unbalanced quotes ("a 'quote), which csv quoting would swallow.
                quoting=csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                encoding="utf-8",
            )
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise ValueError(f"--{argument} {path!r}: could not parse the file ({err}).") from None
        if label_column and label_column in frame.columns:
            frame[label_column] = _coerce_labels(frame[label_column])
    if len(frame) == 0:
        raise ValueError(f"--{argument} {path!r}: the file has no examples.")
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def _local_split_names(task: Optional[GlueTask]) -> dict[str, str]:
    """Which split each file argument fills."""
    if task is not None and task.name == "mnli":
        return {
            "train_file": "train",
            "validation_file": "validation_matched",
            "validation_mismatched_file": "validation_mismatched",
            "test_file": "test_matched",
            "test_mismatched_file": "test_mismatched",
        }
    return {"train_file": "train", "validation_file": "validation", "test_file": "test"}


def load_raw_datasets(
    task_name: Optional[str] = None,
    *,
    train_file: Optional[str] = None,
    validation_file: Optional[str] = None,
    test_file: Optional[str] = None,
    validation_mismatched_file: Optional[str] = None,
    test_mismatched_file: Optional[str] = None,
    label_column: Optional[str] = None,
    cache_dir: Optional[str] = None,
    token: Optional[str] = None,
) -> datasets.DatasetDict:
    """Load the raw (untokenized) splits.

    With any file given, the splits come from the files: ``train``,
    ``validation``, ``test`` (for MNLI: ``validation_matched`` /
    ``validation_mismatched`` / ``test_matched`` / ``test_mismatched``, the
    mismatched ones from the ``*_mismatched_file`` arguments). With no file,
    ``task_name`` is loaded from the Hub (``nyu-mll/glue``).

    Raises:
        ValueError: neither a task nor files, an unknown task, or a mismatched
            file argument given for a task other than MNLI.
        FileNotFoundError: a file that does not exist.
        ConnectionError: the Hub cannot be reached (the message says to pass local files).
    """
    task = get_task(task_name) if task_name else None
    files = {
        "train_file": train_file,
        "validation_file": validation_file,
        "test_file": test_file,
        "validation_mismatched_file": validation_mismatched_file,
        "test_mismatched_file": test_mismatched_file,
    }
    given = {name: path for name, path in files.items() if path}
    if given:
        split_of = _local_split_names(task)
        unexpected = sorted(set(given) - set(split_of))
        if unexpected:
            raise ValueError(f"{', '.join('--' + u for u in unexpected)} only apply to task_name=mnli.")
        label_key = label_column or "label"
        return datasets.DatasetDict(
            {split_of[name]: read_table(path, label_key, argument=name) for name, path in given.items()}
        )
    if task is None:
        raise ValueError(
            "Nothing to load: pass task_name (one of the GLUE tasks, loaded from the Hub) "
            "or local files with --train_file / --validation_file / --test_file."
        )
    try:
        return datasets.load_dataset(HUB_DATASET, task.name, cache_dir=cache_dir, token=token)
    except (ConnectionError, OSError) as err:
        raise ConnectionError(
            f"Could not load GLUE task {task.name!r} from the Hugging Face Hub ({HUB_DATASET}): {err}. "
            "If you are offline, pass local files instead: --train_file, --validation_file and --test_file "
            "(CSV, TSV or JSON lines) with the GLUE column names "
            f"{list(task.sentence_keys) + ['label']} (or set --text_columns / --label_column)."
        ) from err


# --------------------------------------------------------------------------- columns and splits
def resolve_text_columns(
    raw: datasets.DatasetDict, task_name: Optional[str] = None, text_columns: Optional[Sequence[str]] = None
) -> tuple[str, ...]:
    """The one or two text columns: given, else the task's, else guessed from common names.

    Example:
        >>> raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        ...     {"sentence1": ["a"], "sentence2": ["b"], "label": [0]})})
        >>> resolve_text_columns(raw)
        ('sentence1', 'sentence2')
    """
    if text_columns:
        columns = tuple(text_columns)
        if not 1 <= len(columns) <= 2:
            raise ValueError(f"text_columns takes one or two column names, got {len(columns)}: {list(columns)}.")
        return columns
    if task_name:
        return get_task(task_name).sentence_keys
    found = set(next(iter(raw.values())).column_names)
    for guess in (("sentence1", "sentence2"), ("sentence",), ("text",)):
        if found.issuperset(guess):
            return guess
    raise ValueError(
        f"Cannot tell which columns hold the text; columns found: {sorted(found)}. "
        "Pass --text_columns with one or two column names (and --label_column if it is not 'label')."
    )


def check_columns(
    raw: datasets.DatasetDict, text_columns: Sequence[str], label_column: str, label_splits: Sequence[str]
) -> None:
    """Fail with a clear message when a split lacks a text column, or a labelled split lacks the label column.

    Example:
        >>> raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"], "y": [1]})})
        >>> check_columns(raw, ["sentence"], "y", ["train"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: The train split lacks the column 'sentence' (columns found: ['text', 'y']). Pass --text_columns ...
    """
    for split, dataset in raw.items():
        needed = list(text_columns) + ([label_column] if split in label_splits else [])
        missing = [column for column in needed if column not in dataset.column_names]
        if missing:
            names = ", ".join(repr(column) for column in missing)
            raise ValueError(
                f"The {split} split lacks the column{'s' if len(missing) > 1 else ''} {names} "
                f"(columns found: {dataset.column_names}). "
                "Pass --text_columns (one or two names) and --label_column to name the columns of your files."
            )


def evaluation_splits(raw: datasets.DatasetDict, task_name: Optional[str] = None) -> list[str]:
    """Splits to evaluate on, in order (MNLI: matched, then mismatched)."""
    names = get_task(task_name).validation_splits if task_name else ("validation",)
    return [name for name in names if name in raw]


def prediction_splits(raw: datasets.DatasetDict, task_name: Optional[str] = None) -> list[tuple[str, str]]:
    """``(split, submission file stem)`` pairs to predict on (``("test", "CoLA")``).

    A custom data set writes ``predict_results.tsv``-style stems: ``"predictions"``.
    """
    if not task_name:
        return [("test", "predictions")] if "test" in raw else []
    task = get_task(task_name)
    return [(split, stem) for split, stem in zip(task.test_splits, task.submission_names, strict=True) if split in raw]


def example_ids(dataset: datasets.Dataset) -> list:
    """The ids a GLUE submission uses: the ``idx`` (Hub) or ``index`` (GLUE TSV) column, else row numbers."""
    for column in ("idx", "index"):
        if column in dataset.column_names:
            return list(dataset[column])
    return list(range(len(dataset)))


# --------------------------------------------------------------------------- tokenization
def tokenize_datasets(
    raw: datasets.DatasetDict,
    tokenizer,
    text_columns: Sequence[str],
    *,
    max_seq_length: int = 128,
    pad_to_max_length: bool = False,
    label_column: Optional[str] = None,
    label_fn=None,
    labelled_splits: Sequence[str] = (),
    num_proc: Optional[int] = None,
    load_from_cache_file: bool = True,
) -> datasets.DatasetDict:
    """Tokenize every split; labelled splits get a ``labels`` column from ``label_fn(raw_label)``.

    Only the model inputs (and ``labels``) remain. Padding is left to a
    ``DataCollatorWithPadding`` unless ``pad_to_max_length``. Texts are cast to
    ``str`` (empty/missing cells become ``""``).
    """
    if max_seq_length > tokenizer.model_max_length:
        logger.warning(
            "max_seq_length=%d is longer than the tokenizer's model_max_length=%d; using %d.",
            max_seq_length,
            tokenizer.model_max_length,
            tokenizer.model_max_length,
        )
        max_seq_length = tokenizer.model_max_length

    def as_text(values):
        return ["" if value is None else str(value) for value in values]

    def encode(batch, with_labels):
        texts = [as_text(batch[column]) for column in text_columns]
        result = tokenizer(
            *texts,
            padding="max_length" if pad_to_max_length else False,
            max_length=max_seq_length,
            truncation=True,
        )
        if with_labels:
            result["labels"] = [label_fn(value) for value in batch[label_column]]
        return result

    tokenized = {}
    for split, dataset in raw.items():
        with_labels = split in labelled_splits
        tokenized[split] = dataset.map(
            encode,
            batched=True,
            fn_kwargs={"with_labels": with_labels},
            remove_columns=dataset.column_names,
            num_proc=num_proc,
            load_from_cache_file=load_from_cache_file,
            desc=f"Tokenizing {split}",
        )
    return datasets.DatasetDict(tokenized)
