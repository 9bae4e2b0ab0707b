"""The nine GLUE tasks: columns, classes, splits, metrics, as static data (nothing is downloaded).

Column and class names follow ``nyu-mll/glue`` on the Hub, and class ids its ``ClassLabel`` order, so a
model trained on local files and one trained on the Hub copy agree on what label 0 means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["HUB_DATASET", "GlueTask", "GLUE_TASKS", "TASK_NAMES", "get_task", "find_task", "dataset_facts"]

#: The GLUE benchmark on the Hugging Face Hub: one config per task.
HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: ``main_metric`` is the one a GLUE average counts (the BERT paper's), ``submission_names``
    the leaderboard's file stems of the test splits and ``submission_labels`` its spelling of each class.

    >>> task = get_task("mnli")
    >>> task.sentence_keys, task.main_metric, task.submission_names, task.validation_splits[1]
    (('premise', 'hypothesis'), 'accuracy', ('MNLI-m', 'MNLI-mm'), 'validation_mismatched')
    """

    name: str
    sentence_keys: tuple
    label_names: tuple  # in id order; empty for the regression task (STS-B)
    metrics: tuple  # the official ones
    main_metric: str
    submission_names: tuple
    submission_labels: tuple
    purpose: str  # what the task asks, for model cards
    validation_splits: tuple = ("validation",)
    test_splits: tuple = ("test",)

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:  # the size of the classification head
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.sentence_keys) == 2


_PAIR, _01, _ACC = ("sentence1", "sentence2"), ("0", "1"), ("accuracy",)
_NLI = ("entailment", "not_entailment")
GLUE_TASKS: dict = {
    task.name: task
    for task in (
        GlueTask("cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",),
                 "matthews_correlation", ("CoLA",), _01, "judging whether a sentence is grammatically acceptable"),
        GlueTask("sst2", ("sentence",), ("negative", "positive"), _ACC, "accuracy", ("SST-2",), _01,
                 "classifying the sentiment of a sentence"),
        GlueTask("mrpc", _PAIR, ("not_equivalent", "equivalent"), ("accuracy", "f1"), "f1", ("MRPC",), _01,
                 "deciding whether two sentences are paraphrases"),
        GlueTask("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), ("accuracy", "f1"), "f1",
                 ("QQP",), _01, "deciding whether two questions are duplicates"),
        GlueTask("stsb", _PAIR, (), ("pearson", "spearmanr"), "spearmanr", ("STS-B",), (),
                 "scoring the semantic similarity of two sentences (regression)"),
        GlueTask("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), _ACC, "accuracy",
                 ("MNLI-m", "MNLI-mm"), ("entailment", "neutral", "contradiction"),
                 "natural language inference (entailment, neutral, contradiction)",
                 ("validation_matched", "validation_mismatched"), ("test_matched", "test_mismatched")),
        GlueTask("qnli", ("question", "sentence"), _NLI, _ACC, "accuracy", ("QNLI",), _NLI,
                 "deciding whether a sentence answers a question"),
        GlueTask("rte", _PAIR, _NLI, _ACC, "accuracy", ("RTE",), _NLI, "recognising textual entailment"),
        GlueTask("wnli", _PAIR, _NLI[::-1], _ACC, "accuracy", ("WNLI",), _01, "pronoun-resolution entailment"),
    )
}  # fmt: skip
TASK_NAMES: tuple = tuple(GLUE_TASKS)
_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_matched": "mnli"}  # spellings people type


def get_task(name: str) -> GlueTask:
    """The task called ``name`` (case-insensitive, ``SST-2`` too); a ValueError listing the valid names otherwise.

    >>> get_task("SST-2").name
    'sst2'
    """
    task = find_task(name)
    if task is None:
        raise ValueError(
            f"Unknown GLUE task {name!r}. Valid task names: {', '.join(TASK_NAMES)}. For another data set, leave "
            "task_name unset and pass train/validation files with text_columns and label_column."
        )
    return task


def find_task(name: Optional[str]) -> Optional[GlueTask]:
    """The task called ``name``, or None for a name that is not a GLUE task.

    >>> find_task("STS-B").name, find_task("tweet_sentiment")
    ('stsb', None)
    """
    key = str(name).strip().lower()
    return GLUE_TASKS.get(_ALIASES.get(key, key)) if name else None


def dataset_facts(task_name: Optional[str]) -> dict:
    """What a model card says of a GLUE task's data: Hub id, config, display name, what the task asks.

    >>> dataset_facts("mrpc")["name"], dataset_facts(None)
    ('GLUE MRPC', {})
    """
    if (task := find_task(task_name)) is None:
        return {}
    return {"id": HUB_DATASET, "config": task.name, "name": f"GLUE {task.name.upper()}", "purpose": task.purpose}
