"""Flags for ``hf-swa-average`` from plain dataclasses, so ``--help`` loads neither torch nor transformers.

`dataclass_parser` turns dataclass fields into ``argparse`` flags the way ``HfArgumentParser``
does for these simple types (``Optional``, ``list`` as ``nargs="+"``, ``bool`` as a switch,
``metadata["choices"]``); `parse_into` reads the flags back into the dataclasses.

Example:
    >>> parser = dataclass_parser([SoupEvaluationArguments], prog="demo")
    >>> (evaluation,), rest = parse_into(parser, [SoupEvaluationArguments], ["--task_name", "cola"])
    >>> evaluation.task_name, evaluation.given, evaluation.per_device_eval_batch_size
    ('cola', True, 8)
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["SoupEvaluationArguments", "dataclass_parser", "parse_into"]


@dataclass
class SoupEvaluationArguments:
    """Held-out data that scores checkpoints (for ``--soup greedy``, or to report scores of a uniform mean).

    Example:
        >>> SoupEvaluationArguments(validation_file="dev.csv", text_columns=["text"], metric="f1").given
        True
        >>> SoupEvaluationArguments().given
        False
    """

    task_name: Optional[str] = field(
        default=None, metadata={"help": "GLUE task whose validation split scores the checkpoints (from the Hub)."}
    )
    validation_file: Optional[str] = field(
        default=None, metadata={"help": "Labelled data that scores the checkpoints (.csv, .tsv, .json/.jsonl)."}
    )
    text_columns: Optional[list[str]] = field(
        default=None, metadata={"help": "One or two text column names (default: the task's, or sentence1/sentence2)."}
    )
    label_column: Optional[str] = field(default=None, metadata={"help": "Label column name (default: label)."})
    metric: Optional[str] = field(
        default=None,
        metadata={
            "help": "Metric to maximise, e.g. accuracy, f1, loss (lower is better). Default: the main metric "
            "hf-swa-glue and hf-swa-report use for the same data (the task's; for a file: f1 with two classes, "
            "accuracy with more, spearmanr for regression)."
        },
    )
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Batch size for scoring."})
    use_cpu: bool = field(default=False, metadata={"help": "Score on the CPU even where a GPU is available."})
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Score on the first N examples only."})

    @property
    def given(self) -> bool:
        return bool(self.task_name or self.validation_file)


def _flag(parser: argparse.ArgumentParser, name: str, hint, spec: dataclasses.Field) -> None:
    options = {"help": spec.metadata.get("help"), "dest": name}
    if "choices" in spec.metadata:
        options["choices"] = spec.metadata["choices"]
    if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
        options["required"] = True
    else:
        options["default"] = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
    inner = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(inner) == 1:
        hint = inner[0]  # Optional[X] is an X flag that defaults to None
    if hint is bool:
        parser.add_argument(f"--{name}", action="store_true", **options)
    elif typing.get_origin(hint) is list:
        parser.add_argument(f"--{name}", nargs="+", type=typing.get_args(hint)[0], **options)
    else:
        parser.add_argument(f"--{name}", type=hint, **options)


def dataclass_parser(classes: list, **parser_options) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one ``--flag`` per field of each dataclass."""
    parser = argparse.ArgumentParser(**parser_options)
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for spec in dataclasses.fields(cls):
            _flag(parser, spec.name, hints[spec.name], spec)
    return parser


def parse_into(parser: argparse.ArgumentParser, classes: list, argv: Optional[list] = None) -> tuple:
    """``(instances of classes, the namespace)``: each dataclass built from its own flags (``__post_init__`` runs)."""
    namespace = parser.parse_args(argv)
    instances = tuple(cls(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)}) for cls in classes)
    return instances, namespace
