"""GLUE: task registry, offline metric, data loading and the ``run_glue`` entry point.

>>> from hf_swa.glue import get_task, load_glue_metric
>>> get_task("cola").metrics
('matthews_correlation',)
>>> load_glue_metric("sst2").compute(predictions=[1, 0, 1], references=[1, 1, 1])["accuracy"]
0.6666666666666666

``run_glue`` and its argument dataclasses live in :mod:`hf_swa.glue.run` (it
imports the trainer, so it is not imported here).
"""

from hf_swa.glue.metrics import load_glue_metric, make_compute_metrics
from hf_swa.glue.tasks import GLUE_TASKS, TASK_NAMES, GlueTask, get_task, glue_average

__all__ = [
    "GLUE_TASKS",
    "TASK_NAMES",
    "GlueTask",
    "get_task",
    "glue_average",
    "load_glue_metric",
    "make_compute_metrics",
]
