"""GLUE metrics for the Trainer, from the ``evaluate`` module shipped in this package.

Example:
    >>> import numpy as np
    >>> from transformers import EvalPrediction
    >>> from hf_swa.glue.metrics import make_compute_metrics
    >>> compute = make_compute_metrics("mrpc")
    >>> logits = np.array([[2.0, -1.0], [0.1, 0.3], [-1.0, 1.0]])
    >>> compute(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 0])))
    {'accuracy': 0.6666666666666666, 'f1': 0.6666666666666666}
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np

from hf_swa.glue.tasks import get_task

__all__ = ["METRIC_SCRIPT", "load_glue_metric", "metric_config_name", "metric_names", "make_compute_metrics"]

#: The ``evaluate`` script, shipped as package data (``hf_swa/glue/metric/glue.py``).
METRIC_SCRIPT = Path(__file__).resolve().parent / "metric" / "glue.py"
_EXTRA_CONFIGS = ("mnli_matched", "mnli_mismatched", "hans")


def metric_config_name(task_name: Optional[str], num_labels: int = 2, is_regression: bool = False) -> str:
    """The GLUE metric config to use for a task, or for a custom data set.

    A GLUE task uses its own config. A custom data set borrows the closest one:
    ``stsb`` (Pearson/Spearman) for regression, ``mrpc`` (accuracy + F1 of label
    id 1) for two classes, ``mnli`` (accuracy) for more.

    Example:
        >>> metric_config_name("SST-2"), metric_config_name(None, 2), metric_config_name(None, 5)
        ('sst2', 'mrpc', 'mnli')
    """
    if task_name:
        return get_task(task_name).name
    if is_regression:
        return "stsb"
    return "mrpc" if num_labels == 2 else "mnli"


def metric_names(task_name: Optional[str], num_labels: int = 2, is_regression: bool = False) -> tuple:
    """The metrics the evaluation reports, main first (``loss`` aside).

    >>> metric_names("mrpc"), metric_names(None, 3), metric_names(None, is_regression=True)
    (('f1', 'accuracy'), ('accuracy',), ('spearmanr', 'pearson'))
    """
    config = metric_config_name(task_name, num_labels, is_regression)
    task = get_task(config)
    return (task.main_metric, *(m for m in task.metrics if m != task.main_metric))


def load_glue_metric(task_name: str, **kwargs):
    """Load the GLUE ``evaluate`` metric for ``task_name`` from the local script (offline).

    ``kwargs`` go to :func:`evaluate.load`; by default the metric keeps its
    buffers in memory so concurrent processes never share cache files.

    Example:
        >>> load_glue_metric("cola").compute(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])
        {'matthews_correlation': 0.5773502691896258}
    """
    import evaluate

    # The metric script also knows these evaluation-only configs besides the nine tasks.
    config = task_name if task_name in _EXTRA_CONFIGS else get_task(task_name).name
    if not METRIC_SCRIPT.is_file():
        raise FileNotFoundError(
            f"GLUE metric script missing at {METRIC_SCRIPT}; the package was installed without "
            "its data files (pyproject.toml package-data must include 'glue/metric/*.py')."
        )
    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(METRIC_SCRIPT), config, **kwargs)


def make_compute_metrics(
    task_name: Optional[str] = None,
    *,
    num_labels: int = 2,
    is_regression: Optional[bool] = None,
    positive_label_id: Optional[int] = None,
) -> Callable:
    """Build a ``compute_metrics(EvalPrediction) -> dict`` for the Trainer.

    Logits become class ids with argmax (classification) or are squeezed to one
    score per example (regression).

    Args:
        task_name: a GLUE task, or ``None`` for a custom data set.
        num_labels: number of classes of a custom data set.
        is_regression: defaults to the task's own (STS-B) or ``False``.
        positive_label_id: the model's id of the class F1 is about (MRPC: "equivalent",
            QQP: "duplicate"), when it is not 1, e.g. for a model fine-tuned with another
            label order. Accuracy is the same either way.

    Example:
        >>> import numpy as np
        >>> from transformers import EvalPrediction
        >>> flipped = make_compute_metrics("mrpc", positive_label_id=0)  # id 0 is "equivalent"
        >>> logits = np.array([[2.0, -1.0], [0.1, 0.3], [-1.0, 1.0]])
        >>> flipped(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 0])))["f1"]
        0.6666666666666666
    """
    if is_regression is None:
        is_regression = get_task(task_name).is_regression if task_name else False
    config = metric_config_name(task_name, num_labels, is_regression)
    metric = load_glue_metric(config)

    def compute_metrics(eval_pred) -> dict:
        preds = eval_pred.predictions
        if isinstance(preds, (tuple, list)):
            preds = preds[0]
        preds = np.asarray(preds)
        preds = np.squeeze(preds, axis=-1) if is_regression and preds.ndim > 1 else preds
        references = np.asarray(eval_pred.label_ids)
        if not is_regression:
            preds = np.argmax(preds, axis=-1)
            if positive_label_id is not None and positive_label_id != 1:
                # The metric scores F1 of id 1: relabel so that the positive class is 1.
                preds = (preds == positive_label_id).astype(np.int64)
                references = (references == positive_label_id).astype(np.int64)
        return metric.compute(predictions=preds, references=references)

    return compute_metrics
