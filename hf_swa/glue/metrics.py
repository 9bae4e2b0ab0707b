"""GLUE metrics for the Trainer, from the offline ``evaluate`` module shipped in this package (``metric/glue.py``).

A custom data set borrows the closest GLUE config: ``stsb`` (Pearson, Spearman) for regression, ``mrpc``
(accuracy, F1 of label id 1) for two classes, ``mnli`` (accuracy) for more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from hf_swa.glue.tasks import get_task

__all__ = ["METRIC_SCRIPT", "load_glue_metric", "metric_config_name", "metric_names", "make_compute_metrics"]

#: The ``evaluate`` script, shipped as package data (``hf_swa/glue/metric/glue.py``).
METRIC_SCRIPT = Path(__file__).resolve().parent / "metric" / "glue.py"
_EXTRA_CONFIGS = ("mnli_matched", "mnli_mismatched", "hans")


def metric_config_name(task_name: Optional[str], num_labels: int = 2, is_regression: bool = False) -> str:
    """The GLUE metric config of a task, or the closest one for a custom data set.

    >>> metric_config_name("SST-2"), metric_config_name(None, 2), metric_config_name(None, 5)
    ('sst2', 'mrpc', 'mnli')
    """
    if task_name:
        return get_task(task_name).name
    return "stsb" if is_regression else "mrpc" if num_labels == 2 else "mnli"


def metric_names(task_name: Optional[str], num_labels: int = 2, is_regression: bool = False) -> tuple:
    """The metrics the evaluation reports, main first (``loss`` aside).

    >>> metric_names("mrpc"), metric_names(None, 3), metric_names(None, is_regression=True)
    (('f1', 'accuracy'), ('accuracy',), ('spearmanr', 'pearson'))
    """
    task = get_task(metric_config_name(task_name, num_labels, is_regression))
    return (task.main_metric, *(m for m in task.metrics if m != task.main_metric))


def load_glue_metric(task_name: str, **kwargs):
    """The GLUE ``evaluate`` metric of ``task_name``, from the local script; kept in memory by default.

    >>> load_glue_metric("cola").compute(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])
    {'matthews_correlation': 0.5773502691896258}
    """
    import evaluate

    config = task_name if task_name in _EXTRA_CONFIGS else get_task(task_name).name
    if not METRIC_SCRIPT.is_file():
        raise FileNotFoundError(f"GLUE metric script missing at {METRIC_SCRIPT}: reinstall hf_swa with its data files.")
    kwargs.setdefault("keep_in_memory", True)  # concurrent processes never share cache files
    return evaluate.load(str(METRIC_SCRIPT), config, **kwargs)


def make_compute_metrics(task_name=None, *, num_labels=2, is_regression=None, positive_label_id=None):
    """A ``compute_metrics(EvalPrediction) -> dict`` for the Trainer, on the argmax of the logits (regression: the
    one score). ``positive_label_id``: the model's id of the class F1 is about (MRPC: equivalent), if not 1.

    >>> from transformers import EvalPrediction
    >>> logits = np.array([[2.0, -1.0], [0.1, 0.3], [-1.0, 1.0]])
    >>> make_compute_metrics("mrpc")(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 0])))
    {'accuracy': 0.6666666666666666, 'f1': 0.6666666666666666}
    >>> make_compute_metrics("mrpc", positive_label_id=0)(EvalPrediction(logits, np.array([0, 1, 0])))["f1"]
    0.6666666666666666
    """
    if is_regression is None:
        is_regression = bool(task_name and get_task(task_name).is_regression)
    metric = load_glue_metric(metric_config_name(task_name, num_labels, is_regression))

    def compute_metrics(eval_pred) -> dict:
        preds, references = eval_pred.predictions, np.asarray(eval_pred.label_ids)
        preds = np.asarray(preds[0] if isinstance(preds, (tuple, list)) else preds)
        if is_regression:
            return metric.compute(predictions=preds.squeeze(-1) if preds.ndim > 1 else preds, references=references)
        preds = np.argmax(preds, axis=-1)
        if positive_label_id not in (None, 1):  # the metric scores F1 of id 1
            preds, references = (preds == positive_label_id).astype(int), (references == positive_label_id).astype(int)
        return metric.compute(predictions=preds, references=references)

    return compute_metrics
