"""GLUE metric as a local ``evaluate`` module, loaded by path (offline): ``load_glue_metric`` in
:mod:`hf_swa.glue.metrics`. The config is the task (``mnli_matched``, ``mnli_mismatched``, ``hans`` too); the math
is scikit-learn / scipy. ``evaluate`` imports a copy of this file, so it imports third-party packages only.
"""

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

_CITATION = """\
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  booktitle={International Conference on Learning Representations},
  year={2019}
}
"""

_DESCRIPTION = "Official metrics of the GLUE benchmark tasks (https://gluebenchmark.com/)."

_KWARGS_DESCRIPTION = """
Args: predictions and references: class ids (classification) or scores (stsb).
Returns: "accuracy" (sst2, mnli*, qnli, rte, wnli, hans), "accuracy" and "f1" (mrpc, qqp), "pearson" and
"spearmanr" (stsb), "matthews_correlation" (cola).
"""

ACCURACY_TASKS = ("sst2", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli", "hans")
ACCURACY_F1_TASKS = ("mrpc", "qqp")
CONFIG_NAMES = ("cola", "stsb") + ACCURACY_F1_TASKS + ACCURACY_TASKS


def simple_accuracy(preds, labels):
    return float((np.asarray(preds) == np.asarray(labels)).mean())


def acc_and_f1(preds, labels):
    return {"accuracy": simple_accuracy(preds, labels), "f1": float(f1_score(y_true=labels, y_pred=preds))}


def pearson_and_spearman(preds, labels):
    return {"pearson": float(pearsonr(preds, labels)[0]), "spearmanr": float(spearmanr(preds, labels)[0])}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Glue(evaluate.Metric):
    def _info(self):
        if self.config_name not in CONFIG_NAMES:
            raise KeyError(f"Unknown GLUE metric config {self.config_name!r}; expected one of {list(CONFIG_NAMES)}.")
        dtype = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}),
            codebase_urls=[],
            reference_urls=["https://gluebenchmark.com/"],
            format="numpy",
        )

    def _compute(self, predictions, references):
        if len(predictions) == 0:
            raise ValueError("GLUE metric: no predictions to score (empty evaluation set).")
        if self.config_name == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
        if self.config_name == "stsb":
            return pearson_and_spearman(predictions, references)
        if self.config_name in ACCURACY_F1_TASKS:
            return acc_and_f1(predictions, references)
        return {"accuracy": simple_accuracy(predictions, references)}
