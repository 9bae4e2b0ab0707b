"""GLUE task registry and the offline GLUE metric, checked against scikit-learn/scipy and hand-computed values."""

import math

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import EvalPrediction

from hf_swa.glue.metrics import METRIC_SCRIPT, load_glue_metric, make_compute_metrics, metric_config_name
from hf_swa.glue.tasks import GLUE_TASKS, TASK_NAMES, dataset_facts, get_task

# ----------------------------------------------------------------------------- registry


def test_registry_has_the_nine_tasks_with_official_metrics():
    assert TASK_NAMES == ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")
    expected = {
        "cola": ("matthews_correlation",),
        "sst2": ("accuracy",),
        "mrpc": ("accuracy", "f1"),
        "qqp": ("accuracy", "f1"),
        "stsb": ("pearson", "spearmanr"),
        "mnli": ("accuracy",),
        "qnli": ("accuracy",),
        "rte": ("accuracy",),
        "wnli": ("accuracy",),
    }
    assert {name: task.metrics for name, task in GLUE_TASKS.items()} == expected
    for task in GLUE_TASKS.values():
        assert task.main_metric in task.metrics


def test_registry_columns_labels_and_splits():
    assert get_task("mrpc").sentence_keys == ("sentence1", "sentence2")
    assert get_task("qqp").sentence_keys == ("question1", "question2")
    assert get_task("mnli").sentence_keys == ("premise", "hypothesis")
    assert get_task("qnli").sentence_keys == ("question", "sentence")
    assert get_task("cola").sentence_keys == ("sentence",) and not get_task("cola").is_pair
    stsb = get_task("stsb")
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.label_names == ()
    mnli = get_task("mnli")
    assert mnli.num_labels == 3 and mnli.label_names == ("entailment", "neutral", "contradiction")
    assert mnli.validation_splits == ("validation_matched", "validation_mismatched")
    assert mnli.test_splits == ("test_matched", "test_mismatched")
    assert mnli.submission_names == ("MNLI-m", "MNLI-mm")
    assert get_task("sst2").submission_names == ("SST-2",) and get_task("stsb").submission_names == ("STS-B",)
    for task in GLUE_TASKS.values():
        assert len(task.submission_names) == len(task.test_splits)
        assert len(task.submission_labels) == (0 if task.is_regression else task.num_labels)


def test_task_names_are_case_insensitive_and_accept_dashes():
    assert get_task("SST-2").name == "sst2" and get_task("STS-B").name == "stsb" and get_task("CoLA").name == "cola"


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(
        ValueError, match=r"Unknown GLUE task 'squad'.*cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli"
    ):
        get_task("squad")


def test_dataset_facts_name_the_hub_copy_of_each_task():
    assert dataset_facts("SST-2") == {
        "id": "nyu-mll/glue",
        "config": "sst2",
        "name": "GLUE SST2",
        "purpose": "classifying the sentiment of a sentence",
    }
    assert dataset_facts("tweets") == {} and dataset_facts(None) == {}


# ----------------------------------------------------------------------------- metric module


def test_metric_script_ships_inside_the_package():
    assert METRIC_SCRIPT.is_file() and METRIC_SCRIPT.parent.name == "metric"
    assert "glue/metric/*.py" in (METRIC_SCRIPT.parents[2].parent / "pyproject.toml").read_text()


def test_hand_computed_values():
    # CoLA: TP=1 FP=1 TN=2 FN=0 -> (1*2 - 1*0) / sqrt(2*1*3*2) = 2/sqrt(12)
    mcc = load_glue_metric("cola").compute(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])
    assert mcc["matthews_correlation"] == pytest.approx(2 / math.sqrt(12))
    # MRPC: 3 of 4 right; precision 1/2, recall 1 -> F1 2/3
    assert load_glue_metric("mrpc").compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0]) == pytest.approx(
        {"accuracy": 0.75, "f1": 2 / 3}
    )
    assert load_glue_metric("rte").compute(predictions=[0, 1, 1], references=[0, 0, 1]) == pytest.approx(
        {"accuracy": 2 / 3}
    )
    # STS-B: a monotone but non-linear relation: Spearman exactly 1, Pearson below 1.
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    stsb = load_glue_metric("stsb").compute(predictions=x**3, references=x)
    dx, dy = x - x.mean(), x**3 - (x**3).mean()
    pearson = (dx * dy).sum() / math.sqrt((dx**2).sum() * (dy**2).sum())  # 0.906, from the definition
    assert stsb["spearmanr"] == pytest.approx(1.0) and stsb["pearson"] == pytest.approx(pearson)
    # Perfectly anti-correlated predictions.
    assert load_glue_metric("stsb").compute(predictions=-x, references=x)["pearson"] == pytest.approx(-1.0)


@pytest.mark.parametrize("task", ["cola", "sst2", "mrpc", "qqp", "mnli", "qnli", "rte", "wnli"])
def test_classification_metrics_match_sklearn_on_random_predictions(task):
    rng = np.random.default_rng(TASK_NAMES.index(task))
    num_labels = get_task(task).num_labels
    references = rng.integers(0, num_labels, size=200)
    predictions = np.where(rng.random(200) < 0.6, references, rng.integers(0, num_labels, size=200))
    result = load_glue_metric(task).compute(predictions=predictions, references=references)
    expected = {"accuracy": accuracy_score(references, predictions)}
    if task == "cola":
        expected = {"matthews_correlation": matthews_corrcoef(references, predictions)}
    elif task in ("mrpc", "qqp"):
        expected["f1"] = f1_score(references, predictions)
    assert set(result) == set(get_task(task).metrics) == set(expected)
    assert result == pytest.approx(expected, abs=1e-12)


def test_regression_metric_matches_scipy_on_random_predictions():
    rng = np.random.default_rng(0)
    references = rng.uniform(0, 5, size=300)
    predictions = references + rng.normal(0, 1.5, size=300)
    result = load_glue_metric("stsb").compute(predictions=predictions, references=references)
    # The metric stores float32 inputs: compare with scipy on the same float32 values.
    p32, r32 = predictions.astype(np.float32), references.astype(np.float32)
    assert result["pearson"] == pytest.approx(pearsonr(p32, r32)[0], abs=1e-6)
    assert result["spearmanr"] == pytest.approx(spearmanr(p32, r32)[0], abs=1e-6)
    assert 0.3 < result["pearson"] < 0.95


def test_metric_rejects_unknown_config():
    with pytest.raises(ValueError, match="Unknown GLUE task 'squad'"):
        load_glue_metric("squad")


# ----------------------------------------------------------------------------- compute_metrics for the Trainer


def test_compute_metrics_argmax_for_classification():
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [-1.0, 1.0], [0.5, 0.4]])
    labels = np.array([0, 1, 0, 0])  # argmax -> [0, 1, 1, 0]
    result = make_compute_metrics("mrpc")(EvalPrediction(predictions=logits, label_ids=labels))
    assert result == pytest.approx({"accuracy": 0.75, "f1": 2 / 3})
    # A tuple of outputs (logits first) is accepted.
    result = make_compute_metrics("sst2")(EvalPrediction(predictions=(logits, logits), label_ids=labels))
    assert result == pytest.approx({"accuracy": 0.75})


def test_compute_metrics_squeezes_regression_outputs():
    scores = np.array([[1.0], [2.0], [3.5], [4.0]])
    labels = np.array([1.0, 2.5, 3.0, 4.0])
    result = make_compute_metrics("stsb")(EvalPrediction(predictions=scores, label_ids=labels))
    assert result["spearmanr"] == pytest.approx(spearmanr(scores[:, 0], labels)[0])
    assert result["pearson"] == pytest.approx(pearsonr(scores[:, 0], labels)[0], abs=1e-6)
    assert set(result) == {"pearson", "spearmanr"}


def test_custom_datasets_borrow_the_closest_glue_metric():
    assert metric_config_name(None, num_labels=2) == "mrpc"
    assert metric_config_name(None, num_labels=4) == "mnli"
    assert metric_config_name(None, num_labels=1, is_regression=True) == "stsb"
    logits = np.eye(4)[[0, 1, 2, 3, 3]]
    result = make_compute_metrics(None, num_labels=4)(
        EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 2, 3, 0]))
    )
    assert result == pytest.approx({"accuracy": 0.8})
