"""GLUE: fine-tune with SWA (``run_glue``, ``hf-swa-glue``), compare against a baseline over seeds and report
(``hf-swa-report``). The modules that import the Trainer or ``datasets`` (``run``, ``data``, ``compare``) load
only when used.

>>> from hf_swa.glue import get_task, load_glue_metric
>>> load_glue_metric(get_task("SST-2").name).compute(predictions=[1, 0, 1], references=[1, 1, 1])["accuracy"]
0.6666666666666666
"""

from hf_swa.glue.metrics import load_glue_metric, make_compute_metrics
from hf_swa.glue.tasks import GLUE_TASKS, TASK_NAMES, GlueTask, get_task

__all__ = ["GLUE_TASKS", "TASK_NAMES", "GlueTask", "get_task", "load_glue_metric", "make_compute_metrics"]
