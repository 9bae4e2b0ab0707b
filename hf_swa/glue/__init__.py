"""GLUE: fine-tune with SWA, compare against a baseline over seeds, and report.

- :mod:`~hf_swa.glue.tasks` (the nine tasks), :mod:`~hf_swa.glue.data`, :mod:`~hf_swa.glue.labels`,
  :mod:`~hf_swa.glue.modeling` and :mod:`~hf_swa.glue.metrics` (an offline ``evaluate`` module);
- :mod:`~hf_swa.glue.run` (``run_glue``) and :mod:`~hf_swa.glue.cli` (``hf-swa-glue``);
- :mod:`~hf_swa.glue.compare` (baseline and SWA runs over seeds), :mod:`~hf_swa.glue.summary`
  (their numbers), :mod:`~hf_swa.glue.report` and :mod:`~hf_swa.glue.report_plot` (the report),
  :mod:`~hf_swa.glue.report_cli` (``hf-swa-report``);
- :mod:`~hf_swa.glue.metric_keys`: which metric keys are scores, of which weights.

>>> from hf_swa.glue import get_task, load_glue_metric
>>> get_task("cola").metrics
('matthews_correlation',)
>>> load_glue_metric("sst2").compute(predictions=[1, 0, 1], references=[1, 1, 1])["accuracy"]
0.6666666666666666

The modules that import the Trainer (``run``, ``compare``, the command lines) are not
imported here.
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
