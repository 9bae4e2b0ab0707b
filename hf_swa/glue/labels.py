"""Labels: which classes a data set has, how raw labels become ids, and agreement with the model.

A label goes raw value -> canonical name -> id. For a GLUE task the canonical
names are the task's class names (``entailment`` ...) and a raw value may be the
class id (``0``, ``"0"``), the class name, or the leaderboard spelling. For any
other data set the names are the distinct raw values as text, sorted (numbers
numerically), and ids follow that order. The ids a model uses are its
``config.label2id``, kept when the model was already fine-tuned on the same
classes (so ``roberta-large-mnli`` keeps its own order).

Example:
    >>> import datasets
    >>> from hf_swa.glue.labels import infer_labels
    >>> raw = datasets.DatasetDict({
    ...     "train": datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": ["pos", "neg", "neutral"]}),
    ...     "validation": datasets.Dataset.from_dict({"text": ["d"], "label": ["neg"]})})
    >>> info = infer_labels(raw, None, "label", ["train", "validation"])
    >>> info.label_list, info.is_regression
    (['neg', 'neutral', 'pos'], False)
    >>> info.to_name("pos")
    'pos'
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import datasets

from hf_swa.glue.tasks import GlueTask, get_task

logger = logging.getLogger(__name__)

__all__ = ["LabelInfo", "infer_labels", "align_with_model_config"]


@dataclass
class LabelInfo:
    """Classes of a data set.

    Attributes:
        label_list: canonical class names in data-set order (empty for regression).
        is_regression: one float target per example.
        aliases: raw value (or its text) -> canonical name, for the GLUE spellings.
    """

    label_list: list[str]
    is_regression: bool = False
    aliases: dict = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_list)

    def to_name(self, value) -> str:
        """Canonical class name of a raw label value; ``KeyError`` if it is not a known class."""
        if value in self.aliases:
            return self.aliases[value]
        text = _as_text(value)
        if text in self.aliases:
            return self.aliases[text]
        if not self.aliases and text in self.label_list:
            return text
        raise KeyError(value)

    def label_fn(self, label2id: Optional[dict] = None):
        """``raw value -> id`` (a float for regression), using ``label2id`` (default: list order)."""
        if self.is_regression:
            return float
        mapping = label2id if label2id is not None else {name: i for i, name in enumerate(self.label_list)}
        return lambda value: mapping[self.to_name(value)]


def _as_text(value) -> str:
    """Text form of a raw label; integral floats (``1.0``) read as ints (``"1"``)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _sort_key(text: str):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _glue_aliases(task: GlueTask) -> dict:
    aliases = {}
    for i, name in enumerate(task.label_names):
        aliases[i] = aliases[str(i)] = aliases[name] = name
        if task.submission_labels:
            aliases[task.submission_labels[i]] = name
    return aliases


def _is_float_column(dataset: datasets.Dataset, column: str) -> bool:
    feature = dataset.features[column]
    return isinstance(feature, datasets.Value) and feature.dtype.startswith("float")


def infer_labels(
    raw: datasets.DatasetDict,
    task_name: Optional[str],
    label_column: str,
    labelled_splits: Sequence[str],
) -> LabelInfo:
    """Work out the classes (or regression) of the labelled splits and check they agree.

    The first labelled split (``train`` when present) defines the classes of a
    custom data set; any other labelled split holding a class the first one lacks
    is an error, as is a GLUE label that is not one of the task's classes.

    Raises:
        ValueError: label set mismatch, unknown GLUE labels, text labels for a
            regression task, or no labelled split at all.
    """
    if not labelled_splits:
        raise ValueError("No labelled split (train or validation) to read the classes from.")
    _check_every_example_has_a_label(raw, label_column, labelled_splits)
    if task_name:
        return _glue_labels(raw, get_task(task_name), label_column, labelled_splits)
    return _custom_labels(raw, label_column, labelled_splits)


def _check_every_example_has_a_label(raw: datasets.DatasetDict, label_column: str, splits: Sequence[str]) -> None:
    for split in splits:
        for index, value in enumerate(raw[split][label_column]):
            if value is None or (isinstance(value, float) and math.isnan(value)) or _as_text(value) == "":
                raise ValueError(
                    f"The {split} split has no label in column {label_column!r} for example {index} (counting "
                    "from 0, header not counted): every example of a labelled split needs one."
                )


def _glue_labels(raw: datasets.DatasetDict, task, label_column: str, splits: Sequence[str]) -> LabelInfo:
    """A GLUE task's own classes (or regression), after checking the data holds only those."""
    if task.is_regression:
        for split in splits:
            feature = raw[split].features[label_column]
            if not (isinstance(feature, datasets.Value) and feature.dtype.startswith(("float", "int"))):
                raise ValueError(
                    f"{task.name} is a regression task but the {split} labels in column {label_column!r} are not "
                    f"numbers (e.g. {raw[split][0][label_column]!r})."
                )
        return LabelInfo([], is_regression=True)
    info = LabelInfo(list(task.label_names), aliases=_glue_aliases(task))
    for split in splits:
        unknown = sorted({_as_text(v) for v in raw[split].unique(label_column)} - set(map(str, info.aliases)))
        if unknown:
            raise ValueError(
                f"The {split} split of {task.name} has labels {unknown} that are not {task.name} classes; "
                f"expected ids 0..{task.num_labels - 1} or names {list(task.label_names)}."
            )
    return info


def _custom_labels(raw: datasets.DatasetDict, label_column: str, splits: Sequence[str]) -> LabelInfo:
    """A custom data set's classes, as the first split has them (regression for non-integer numbers)."""
    first = splits[0]
    if _is_float_column(raw[first], label_column):
        values = [v for v in raw[first][label_column] if not (isinstance(v, float) and math.isnan(v))]
        if any(not float(v).is_integer() for v in values):
            return LabelInfo([], is_regression=True)
    classes = sorted({_as_text(v) for v in raw[first].unique(label_column)}, key=_sort_key)
    if "" in classes:
        raise ValueError(f"The {first} split has examples with an empty label in column {label_column!r}.")
    for split in splits[1:]:
        extra = sorted({_as_text(v) for v in raw[split].unique(label_column)} - set(classes), key=_sort_key)
        if extra:
            raise ValueError(
                f"Label set mismatch: the {split} split has labels {extra} that the {first} split does not have "
                f"({first} labels: {classes}). Check both files use the same label column and spelling."
            )
    if len(classes) < 2:
        raise ValueError(f"The {first} split has a single label {classes}; classification needs at least two.")
    return LabelInfo(classes)


_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")


def align_with_model_config(config, info: LabelInfo, *, training: bool, task_name: Optional[str] = None) -> dict:
    """Put the classes into a model ``config`` (``id2label``/``label2id``/``problem_type``); return ``label2id``.

    A config that already names the same classes (ignoring case) keeps its ids; when
    only evaluating/predicting, data holding a subset of the model's classes also
    keeps them. A config naming other classes is overwritten with a warning when
    training (a new head is trained) and is an error when only evaluating/predicting.

    Example:
        >>> from transformers import BertConfig
        >>> config = BertConfig()
        >>> align_with_model_config(config, LabelInfo(["neg", "pos"]), training=True)
        {'neg': 0, 'pos': 1}
        >>> config.id2label, config.problem_type
        ({0: 'neg', 1: 'pos'}, 'single_label_classification')
    """
    if task_name:
        config.finetuning_task = get_task(task_name).name
    if info.is_regression:
        config.id2label, config.label2id = {0: "LABEL_0"}, {"LABEL_0": 0}
        config.problem_type = "regression"
        return {}
    config.problem_type = "single_label_classification"
    # id2label is the source of truth (transformers 5 no longer derives label2id from it).
    current = {name: int(i) for i, name in (config.id2label or {}).items()}
    has_names = current and not all(_DEFAULT_LABEL.match(str(name)) for name in current)
    if has_names:
        by_lower = {str(name).lower(): int(i) for name, i in current.items()}
        data = {name.lower() for name in info.label_list}
        # Same classes: keep the model's ids. Evaluating only, a data set may lack some of the model's classes.
        if len(by_lower) == len(current) and (data == set(by_lower) or (not training and data < set(by_lower))):
            spelling = {name.lower(): name for name in info.label_list}
            label2id = {spelling.get(name, name): i for name, i in by_lower.items()}
            config.label2id = label2id
            config.id2label = {i: name for name, i in label2id.items()}
            return label2id
        message = f"The model was fine-tuned on classes {sorted(current, key=str)} but the data has {info.label_list}."
        if not training:
            raise ValueError(message + " Evaluating or predicting with it would be meaningless; train it first.")
        logger.warning("%s Training a new classification head for the data's classes.", message)
    label2id = {name: i for i, name in enumerate(info.label_list)}
    config.label2id = label2id
    config.id2label = {i: name for i, name in enumerate(info.label_list)}
    return label2id
