"""Registry of the nine GLUE tasks: columns, labels, splits, metrics.

Everything here is static data about the benchmark; nothing is downloaded.
Column and label names follow the ``nyu-mll/glue`` dataset on the Hugging Face
Hub, and label ids follow its ``ClassLabel`` order, so a model trained on local
files and one trained on the Hub copy agree on what label 0 means.

Example:
    >>> from hf_swa.glue.tasks import get_task
    >>> task = get_task("mnli")
    >>> task.sentence_keys
    ('premise', 'hypothesis')
    >>> task.label_names
    ('entailment', 'neutral', 'contradiction')
    >>> task.validation_splits
    ('validation_matched', 'validation_mismatched')
    >>> get_task("stsb").is_regression, get_task("stsb").num_labels
    (True, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["HUB_DATASET", "GlueTask", "GLUE_TASKS", "TASK_NAMES", "get_task", "find_task", "dataset_facts"]

#: The GLUE benchmark on the Hugging Face Hub: one config per task.
HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueTask:
    """Static description of one GLUE task.

    Attributes:
        name: the config name on the Hub (``"cola"``, ``"sst2"``, ...).
        sentence_keys: one or two text column names.
        label_names: class names in id order; empty for the regression task (STS-B).
        metrics: the official metrics, in the order the GLUE paper lists them.
        main_metric: the single number used for a GLUE average (the convention of
            the BERT paper: F1 for MRPC/QQP, Spearman for STS-B, Matthews
            correlation for CoLA, accuracy elsewhere).
        validation_splits / test_splits: split names on the Hub.
        submission_names: GLUE leaderboard file stem for each test split
            (``CoLA`` -> ``CoLA.tsv``).
        submission_labels: how the leaderboard spells each class in the
            submission files, in id order: ``0``/``1`` for the binary tasks whose
            raw GLUE files use 0/1, class names for the NLI tasks.
        purpose: what the task asks of a model, in a few words (for model cards).
    """

    name: str
    sentence_keys: tuple[str, ...]
    label_names: tuple[str, ...]
    metrics: tuple[str, ...]
    main_metric: str
    validation_splits: tuple[str, ...] = ("validation",)
    test_splits: tuple[str, ...] = ("test",)
    submission_names: tuple[str, ...] = ()
    submission_labels: tuple[str, ...] = ()
    purpose: str = ""

    @property
    def is_regression(self) -> bool:
        """True for STS-B (a similarity score, not a class)."""
        return not self.label_names

    @property
    def num_labels(self) -> int:
        """Output size of the classification head (1 for regression)."""
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        """True when examples are sentence pairs."""
        return len(self.sentence_keys) == 2


_BINARY01 = ("0", "1")

GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            "cola",
            ("sentence",),
            ("unacceptable", "acceptable"),
            ("matthews_correlation",),
            "matthews_correlation",
            submission_names=("CoLA",),
            submission_labels=_BINARY01,
            purpose="judging whether a sentence is grammatically acceptable",
        ),
        GlueTask(
            "sst2",
            ("sentence",),
            ("negative", "positive"),
            ("accuracy",),
            "accuracy",
            submission_names=("SST-2",),
            submission_labels=_BINARY01,
            purpose="classifying the sentiment of a sentence",
        ),
        GlueTask(
            "mrpc",
            ("sentence1", "sentence2"),
            ("not_equivalent", "equivalent"),
            ("accuracy", "f1"),
            "f1",
            submission_names=("MRPC",),
            submission_labels=_BINARY01,
            purpose="deciding whether two sentences are paraphrases",
        ),
        GlueTask(
            "qqp",
            ("question1", "question2"),
            ("not_duplicate", "duplicate"),
            ("accuracy", "f1"),
            "f1",
            submission_names=("QQP",),
            submission_labels=_BINARY01,
            purpose="deciding whether two questions are duplicates",
        ),
        GlueTask(
            "stsb",
            ("sentence1", "sentence2"),
            (),
            ("pearson", "spearmanr"),
            "spearmanr",
            submission_names=("STS-B",),
            purpose="scoring the semantic similarity of two sentences (regression)",
        ),
        GlueTask(
            "mnli",
            ("premise", "hypothesis"),
            ("entailment", "neutral", "contradiction"),
            ("accuracy",),
            "accuracy",
            validation_splits=("validation_matched", "validation_mismatched"),
            test_splits=("test_matched", "test_mismatched"),
            submission_names=("MNLI-m", "MNLI-mm"),
            submission_labels=("entailment", "neutral", "contradiction"),
            purpose="natural language inference (entailment, neutral, contradiction)",
        ),
        GlueTask(
            "qnli",
            ("question", "sentence"),
            ("entailment", "not_entailment"),
            ("accuracy",),
            "accuracy",
            submission_names=("QNLI",),
            submission_labels=("entailment", "not_entailment"),
            purpose="deciding whether a sentence answers a question",
        ),
        GlueTask(
            "rte",
            ("sentence1", "sentence2"),
            ("entailment", "not_entailment"),
            ("accuracy",),
            "accuracy",
            submission_names=("RTE",),
            submission_labels=("entailment", "not_entailment"),
            purpose="recognising textual entailment",
        ),
        GlueTask(
            "wnli",
            ("sentence1", "sentence2"),
            ("not_entailment", "entailment"),
            ("accuracy",),
            "accuracy",
            submission_names=("WNLI",),
            submission_labels=_BINARY01,
            purpose="pronoun-resolution entailment",
        ),
    )
}

TASK_NAMES: tuple[str, ...] = tuple(GLUE_TASKS)

# Spellings people type for the same task ("SST-2", "sts-b", "mnli-m").
_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_matched": "mnli"}


def get_task(name: str) -> GlueTask:
    """Return the :class:`GlueTask` called ``name`` (case-insensitive).

    Raises:
        ValueError: for an unknown name; the message lists the valid ones.

    Example:
        >>> get_task("SST-2").name
        'sst2'
        >>> get_task("qqp").metrics
        ('accuracy', 'f1')
    """
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        raise ValueError(
            f"Unknown GLUE task {name!r}. Valid task names: {', '.join(TASK_NAMES)}. "
            "For another data set, leave task_name unset and pass train/validation files "
            "with text_columns and label_column."
        )
    return GLUE_TASKS[key]


def find_task(name: Optional[str]) -> Optional[GlueTask]:
    """The :class:`GlueTask` called ``name``, or ``None`` for a name that is not a GLUE task.

    Example:
        >>> find_task("STS-B").name, find_task("tweet_sentiment")
        ('stsb', None)
    """
    if not name:
        return None
    try:
        return get_task(name)
    except ValueError:
        return None


def dataset_facts(task_name: Optional[str]) -> dict:
    """What a model card says of a GLUE task's data: Hub id, config, display name, what the task asks.

    Example:
        >>> dataset_facts("mrpc")["name"], dataset_facts(None)
        ('GLUE MRPC', {})
    """
    task = find_task(task_name)
    if task is None:
        return {}
    return {"id": HUB_DATASET, "config": task.name, "name": f"GLUE {task.name.upper()}", "purpose": task.purpose}
