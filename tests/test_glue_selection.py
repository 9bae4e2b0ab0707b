"""run_glue with candidates and selection: the held-out split, and the chosen model's scores in the results."""

import dataclasses
import json
import logging
from collections import Counter

import pytest
from glue_fixtures import pair_rows, save_tiny_bert, sentiment_rows, write_rows
from test_glue_run import TRAIN as GLUE_RUN_TRAIN
from transformers import AutoTokenizer

import hf_swa.glue.run as run_module
from hf_swa.checkpointing.names import CONFIG_FILE
from hf_swa.glue.data import hold_out_rows
from hf_swa.glue.metrics import metric_names
from hf_swa.glue.run import (
    SELECT_ROWS_FILE,
    DataTrainingArguments,
    GlueTrainingArguments,
    ModelArguments,
    check_select_metric,
    run_glue,
)
from hf_swa.hub.results import nest_metrics
from hf_swa.training.trainer import SWATrainer

TRAIN = {**GLUE_RUN_TRAIN, "seed": 3, "learning_rate": 5e-3}


def glue(bert, out, train, dev=None, task="sst2", split=None, **training):
    """run_glue on local files: train, and evaluate when `dev` is given, with the quick settings."""
    data = DataTrainingArguments(
        task_name=task, train_file=str(train), validation_file=dev and str(dev), swa_select_split=split
    )
    args = GlueTrainingArguments(output_dir=str(out), do_train=True, do_eval=dev is not None, **{**TRAIN, **training})
    return run_glue(ModelArguments(model_name_or_path=str(bert)), data, args)


# -- the split ------------------------------------------------------------------------------------


def labelled(labels, names=None):
    import datasets

    names = names or sorted(set(labels))
    return datasets.Dataset.from_dict({"label": labels}, datasets.Features({"label": datasets.ClassLabel(names=names)}))


def test_split_is_stratified_and_seeded():
    labels = ["a"] * 30 + ["b"] * 20 + ["c"] * 10
    rows = hold_out_rows(labelled(labels), share=0.2, seed=1, column="label")
    counts = Counter(labels[i] for i in rows)
    assert len(rows) == 12 and rows == sorted(set(rows))
    assert counts == {"a": 6, "b": 4, "c": 2}  # 0.2 of each class: the proportions of the whole
    assert hold_out_rows(labelled(labels), share=0.2, seed=1, column="label") == rows
    assert hold_out_rows(labelled(labels), share=0.2, seed=2, column="label") != rows


def test_split_of_regression_rows_is_plain_random():
    import datasets

    values = datasets.Dataset.from_dict({"label": [i / 10 for i in range(23)]})
    rows = hold_out_rows(values, share=0.25, seed=0, column="label")
    assert len(rows) == 6 and len(set(rows)) == 6 and all(0 <= i < 23 for i in rows)  # ceil(5.75)
    assert rows == hold_out_rows(values, 0.25, 0, "label") != hold_out_rows(values, 0.25, 1, "label")


@pytest.mark.parametrize("share", [1.0, 1.5, -0.2])
def test_split_outside_zero_one_is_refused(share):
    with pytest.raises(ValueError, match=r"--swa_select_split .*must be a share of the training rows in \(0, 1\)"):
        DataTrainingArguments(task_name="sst2", swa_select_split=share)


def test_split_zero_turns_the_held_out_rows_off():
    assert DataTrainingArguments(task_name="sst2", swa_select_split=0).swa_select_split is None
    assert DataTrainingArguments(task_name="sst2", swa_select_split=0.0).swa_select_split is None


def test_split_too_small_for_a_class_is_refused_in_flag_terms():
    with pytest.raises(ValueError, match=r"--swa_select_split 0.2 cannot hold out a stratified share of 41 training"):
        hold_out_rows(labelled(["a"] + ["b"] * 40), share=0.2, seed=0, column="label")
    with pytest.raises(ValueError, match=r"pass --swa_select_split 0 to train on every row"):
        hold_out_rows(labelled(["a"] * 2 + ["b"] * 40), share=0.01, seed=0, column="label")


# -- run_glue -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("models") / "bert")


@pytest.fixture
def files(tmp_path):
    rows = sentiment_rows(60, seed=0)
    rows[-8:] = [dict(r, label="1") for r in rows[-8:]]  # 26 negative, 34 positive: counts differ by class
    return rows, write_rows(tmp_path / "train.tsv", rows), write_rows(tmp_path / "dev.tsv", sentiment_rows(24, seed=1))


class RecordingTrainer(SWATrainer):
    """Records the rows each run trains and selects on."""

    seen = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        select = self.swa_select_dataset
        RecordingTrainer.seen.append(
            {
                "train": [tuple(ids) for ids in self.train_dataset["input_ids"]],
                "select": None if select is None else [tuple(ids) for ids in select["input_ids"]],
            }
        )


@pytest.mark.slow
def test_baseline_and_swa_train_on_the_same_rows(tmp_path, bert, files, monkeypatch):
    rows, train, dev = files
    monkeypatch.setattr(run_module, "SWATrainer", RecordingTrainer)
    RecordingTrainer.seen = []
    results, held = {}, {}
    for swa in (True, False):
        out = tmp_path / f"swa{swa}"
        results[swa] = glue(bert, out, train, dev, split=0.25, max_steps=4, swa=swa, swa_select_metric="accuracy")
        held[swa] = json.loads((out / SELECT_ROWS_FILE).read_text())
    assert held[True] == held[False]
    assert held[True]["seed"] == 3 and held[True]["train_rows"] == 60 and held[True]["swa_select_split"] == 0.25
    rows_out = held[True]["held_out_rows"]
    counts = Counter(rows[i]["label"] for i in rows_out)  # 26 negative and 34 positive rows: 6.5 and 8.5 of them
    assert sum(counts.values()) == 15 and counts["0"] in (6, 7) and counts["1"] in (8, 9)
    assert [r["train"]["select_samples"] for r in results.values()] == [15, 15]
    assert [r["train"]["train_samples"] for r in results.values()] == [45, 45]
    swa_run, baseline_run = RecordingTrainer.seen
    assert swa_run == baseline_run
    # The rows held out are the recorded ones; every other row is trained on, in the file's order.
    tokenizer = AutoTokenizer.from_pretrained(str(bert))
    ids = [tuple(tokenizer(row["sentence"], truncation=True, max_length=128)["input_ids"]) for row in rows]
    assert swa_run["select"] == [ids[i] for i in rows_out]
    assert swa_run["train"] == [ids[i] for i in range(60) if i not in rows_out]
    # Another seed holds out other rows.
    other = hold_out_rows(labelled([int(r["label"]) for r in rows], [0, 1]), 0.25, seed=4, column="label")
    assert other != rows_out and len(other) == 15


@pytest.mark.slow
def test_selection_results_name_the_chosen_and_repeat_its_eval_scores(tmp_path, bert, files):
    _, train, dev = files
    out = tmp_path / "out"
    results = glue(
        bert,
        out,
        train,
        dev,
        split=0.3,
        max_steps=8,
        swa_start="0.25",
        swa_windows=2,
        swa_ema_decays=[0.5],
        swa_select_metric="loss",
        swa_eval_candidates=True,
    )
    record = json.loads((out / CONFIG_FILE).read_text())
    selection = record["selection"]
    chosen = results["chosen"]
    assert chosen == selection["chosen"] == record["shipped"] and results["selection"] == selection
    assert selection["dataset"]["name"] == "swa_select_dataset" and selection["dataset"]["size"] == 18
    names = ["swa", "swa_from5", "ema_0.5", "live"]  # snapshots at steps 2..8, windows from 2 and 5
    assert sorted(selection["scores"]) == sorted(names)
    assert min(selection["scores"].values()) == selection["scores"][chosen]
    scores = results["eval"]
    assert scores["chosen"] == scores[chosen]
    assert set(scores) == {*names, "chosen"}  # every candidate was evaluated too (swa_eval_candidates)
    for name in names:
        assert set(scores[name]["validation"]) == {"accuracy", "loss"}  # a candidate's scores, not new metrics
    saved = json.loads((out / "results.json").read_text())
    assert saved["chosen"] == chosen and saved["eval"] == scores


@pytest.mark.slow
def test_selection_without_a_split_uses_the_eval_set_with_a_warning(tmp_path, bert, files, caplog):
    _, train, dev = files
    with caplog.at_level(logging.WARNING):
        results = glue(bert, tmp_path / "out", train, dev, max_steps=4, swa_select_metric="accuracy")
    assert "selects among the candidates on eval_dataset" in caplog.text
    record = json.loads((tmp_path / "out" / CONFIG_FILE).read_text())["selection"]
    assert record["dataset"]["name"] == "eval_dataset" and record["dataset"]["size"] == 24
    assert "select_samples" not in results["train"] and results["train"]["train_samples"] == 60
    assert not (tmp_path / "out" / SELECT_ROWS_FILE).exists()


def test_a_split_leaving_a_class_without_training_rows_is_refused_before_training(tmp_path, bert, monkeypatch):
    rows = pair_rows(
        9, seed=0, label_names=("entailment", "not_entailment", "entailment"), keys=("sentence1", "sentence2")
    )
    train = write_rows(tmp_path / "train.jsonl", rows[:4] + [dict(rows[1], label="not_entailment")])  # 3 e, 2 n
    monkeypatch.setattr(SWATrainer, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ValueError, match="--swa_select_split 0.75 cannot hold out a stratified share of 5 training"):
        glue(bert, tmp_path / "out", train, task="rte", split=0.75, max_steps=2)


def test_no_split_and_no_eval_set_is_refused_in_flag_terms_before_anything_loads(tmp_path, bert, files, monkeypatch):
    _, train, _ = files
    monkeypatch.setattr(run_module, "_prepare", lambda *a, **k: pytest.fail("data loaded"))
    with pytest.raises(ValueError, match=r"--swa_select_split 0 holds out no training row and there is no --do_eval"):
        glue(bert, tmp_path / "out", train, split=0, max_steps=2)  # the default --swa_select_metric loss
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_runs_that_do_not_train_choose_nothing_and_need_no_selection_data(tmp_path, bert, files, caplog):
    rows, _, dev = files
    test = write_rows(tmp_path / "test.tsv", [{"sentence": r["sentence"]} for r in rows[:5]])
    with caplog.at_level(logging.WARNING):
        results = run_glue(  # the defaults (selection by loss on 20% of the training rows), predict and evaluate only
            ModelArguments(model_name_or_path=str(bert)),
            DataTrainingArguments(task_name="sst2", validation_file=str(dev), test_file=str(test)),
            GlueTrainingArguments(output_dir=str(tmp_path / "out"), do_eval=True, do_predict=True, **TRAIN),
        )
    assert results["eval_samples"] == {"validation": 24} and "chosen" not in results and "chosen" not in results["eval"]
    assert (tmp_path / "out" / "SST-2.tsv").is_file()
    assert "eval_dataset" not in caplog.text  # no warning about selecting on the evaluation set


def test_every_candidate_name_the_engine_gives_is_nested_back_per_evaluation_set():
    from torch import nn

    from hf_swa import WeightAverager

    model = nn.Linear(2, 1)
    averager = WeightAverager(model, window_starts=[1, 3, 150], ema_decays=[0.9, 0.999, 1e-05])
    for step in range(1, 200, 7):
        averager.update(model, step=step)
    names = averager.candidate_names()
    assert len(names) == 6
    prefix = "eval_validation_mismatched"
    metrics = {f"{prefix}_{name}_matthews_correlation": i / 10 for i, name in enumerate(names)}
    metrics.update({f"{prefix}_matthews_correlation": 0.9, f"{prefix}_loss": 0.3, f"{prefix}_runtime": 1.0})
    nested = nest_metrics(metrics, ["chosen", *names], prefix, "validation_mismatched")
    assert nested == {
        "live": {"validation_mismatched": {"matthews_correlation": 0.9, "loss": 0.3}},
        **{name: {"validation_mismatched": {"matthews_correlation": i / 10}} for i, name in enumerate(names)},
    }


def test_a_selection_metric_the_task_does_not_produce_is_refused_before_training(tmp_path, bert, files, monkeypatch):
    _, train, dev = files
    monkeypatch.setattr(SWATrainer, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(
        ValueError,
        match=r"--swa_select_metric 'eval_f1': the evaluation of this task produces only "
        r"loss, accuracy\. Set --swa_select_metric to one of these\.",
    ):
        glue(bert, tmp_path / "out", train, dev, max_steps=2, swa_select_metric="eval_f1")


@pytest.mark.parametrize("task,metric", [("stsb", "pearson"), ("mrpc", "f1"), ("cola", "matthews_correlation")])
def test_the_metrics_a_task_produces_pass_the_check(task, metric):
    from hf_swa.glue.tasks import get_task

    spec = get_task(task)
    args = GlueTrainingArguments(output_dir="unused", report_to="none", use_cpu=True, swa_select_metric=metric)
    produced = metric_names(task)
    assert set(produced) == set(spec.metrics) and produced[0] == spec.main_metric
    check_select_metric(args, produced)
    with pytest.raises(ValueError, match="produces only"):
        check_select_metric(dataclasses.replace(args, swa_select_metric="spearman_r"), produced)


def test_glue_defaults_are_the_measured_recipe_and_each_can_be_turned_off():
    from transformers import HfArgumentParser

    args = GlueTrainingArguments(output_dir="unused", report_to="none", use_cpu=True)
    assert (args.swa_windows, args.swa_windows_at_most, args.swa_ema_decays, args.swa_select_metric) == (
        4,
        True,
        [],
        "loss",
    )
    assert (
        GlueTrainingArguments.DEFAULT_SWA_WINDOWS,
        GlueTrainingArguments.DEFAULT_SWA_WINDOWS_AT_MOST,
        GlueTrainingArguments.DEFAULT_SWA_EMA_DECAYS,
        GlueTrainingArguments.DEFAULT_SWA_SELECT_METRIC,
        DataTrainingArguments.DEFAULT_SWA_SELECT_SPLIT,
    ) == (4, True, (), "loss", 0.2)
    assert DataTrainingArguments(task_name="rte").swa_select_split == 0.2
    # The defaults fit short runs: 3 snapshots get 3 windows; a strict run refuses them.
    config = args.to_swa_config()
    assert config.window_starts(max_steps=4) == [2, 3, 4]
    assert config.window_starts(max_steps=40) == [20, 25, 30, 35]
    parser = HfArgumentParser((DataTrainingArguments, GlueTrainingArguments))
    data, training = parser.parse_args_into_dataclasses(
        [
            "--task_name",
            "rte",
            "--output_dir",
            "/tmp/unused",
            "--swa_select_split",
            "0",
            "--swa_windows",
            "3",
            "--swa_windows_at_most",
            "false",
            "--swa_ema_decays",
            "0.9",
            "0.99",
            "--swa_select_metric",
            "none",
            "--report_to",
            "none",
        ]
    )
    assert data.swa_select_split is None and training.swa_select_metric is None
    config = training.to_swa_config()
    assert (config.swa_windows, config.swa_ema_decays, config.swa_select_metric) == (3, [0.9, 0.99], None)
    with pytest.raises(ValueError, match="only 2 snapshot"):
        config.window_starts(max_steps=2)


@pytest.mark.slow
def test_regression_rows_are_held_out_at_random(tmp_path, bert):
    rows = [
        dict(r, label=f"{(i * 0.37) % 5:.2f}") for i, r in enumerate(pair_rows(24, 0, keys=("sentence1", "sentence2")))
    ]
    train = write_rows(tmp_path / "train.tsv", rows)
    dev = write_rows(tmp_path / "dev.tsv", rows[:8])
    results = glue(bert, tmp_path / "out", train, dev, task="stsb", split=0.25, max_steps=4, swa_select_metric="loss")
    held = json.loads((tmp_path / "out" / SELECT_ROWS_FILE).read_text())["held_out_rows"]
    assert held == hold_out_rows(_values(rows), share=0.25, seed=3, column="label") and len(held) == 6
    assert results["train"]["select_samples"] == 6 and results["train"]["train_samples"] == 18
    assert results["eval"]["chosen"] == results["eval"][results["chosen"]]


def _values(rows):
    import datasets

    return datasets.Dataset.from_dict({"label": [float(r["label"]) for r in rows]})
