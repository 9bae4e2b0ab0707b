"""run_glue with candidates and selection: the held-out split, and the chosen model's scores in the results."""

import dataclasses
import json
import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
from glue_fixtures import pair_rows, save_tiny_bert, sentiment_rows, write_rows
from test_glue_run import TRAIN as GLUE_RUN_TRAIN
from transformers import AutoTokenizer

import hf_swa.glue.run as run_module
import hf_swa.training.selection as selection_module
from hf_swa import selection_split
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
from hf_swa.training import defaults
from hf_swa.training.selection import refit_candidate
from hf_swa.training.trainer import SWATrainer

TRAIN = {**GLUE_RUN_TRAIN, "seed": 3, "learning_rate": 5e-3}


def glue(bert, out, train, dev=None, task="sst2", split=0, **training):
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
    assert rows == selection_split(0.2, labels, seed=1)[1]  # the core's rule, the one home of it
    assert hold_out_rows(labelled(labels), share=0.2, seed=1, column="label") == rows
    assert hold_out_rows(labelled(labels), share=0.2, seed=2, column="label") != rows


def test_split_of_regression_rows_is_plain_random():
    import datasets

    values = datasets.Dataset.from_dict({"label": [i / 10 for i in range(23)]})
    rows = hold_out_rows(values, share=0.25, seed=0, column="label")
    assert len(rows) == 6 and len(set(rows)) == 6 and all(0 <= i < 23 for i in rows)  # round(5.75)
    assert rows == selection_split(0.25, labels=[None] * 23, seed=0)[1]
    assert rows == hold_out_rows(values, 0.25, 0, "label") != hold_out_rows(values, 0.25, 1, "label")


@pytest.mark.parametrize("share", [1.0, 1.5, -0.2])
def test_split_outside_zero_one_is_refused(share):
    with pytest.raises(ValueError, match=r"--swa_select_split .*must be a share of the training rows in \(0, 1\)"):
        DataTrainingArguments(task_name="sst2", swa_select_split=share)


def test_a_split_above_one_half_is_refused_naming_the_share_meant_before_anything_loads(tmp_path, bert, files):
    # 0.9 on 10 rows trained on 2 rows without a word: almost always the share kept typed for the share held out.
    with pytest.raises(ValueError, match=r"--swa_select_split 0.9 holds out more rows than it trains on .*"):
        DataTrainingArguments(task_name="sst2", swa_select_split=0.9)
    _, train, dev = files
    with pytest.raises(ValueError, match=r"pass --swa_select_split 0.4"):
        glue(bert, tmp_path / "out", train, dev, split=0.6)
    assert not (tmp_path / "out").exists()
    DataTrainingArguments(task_name="sst2", swa_select_split=0.5)  # half is the most held out


def test_split_zero_turns_the_held_out_rows_off():
    assert DataTrainingArguments(task_name="sst2", swa_select_split=0).swa_select_split == 0
    assert DataTrainingArguments(task_name="sst2").swa_select_split == defaults.SWA_SELECT_SPLIT


def test_a_class_too_small_to_split_stays_in_training_and_nothing_to_hold_out_is_refused_in_flag_terms():
    rows = hold_out_rows(labelled(["a"] + ["b"] * 40), share=0.2, seed=0, column="label")
    assert 0 not in rows and len(rows) == 8  # the one "a" row trains; 0.2 of the 40 "b" rows are held out
    assert rows == selection_split(0.2, [0] + [1] * 40, seed=0)[1]
    with pytest.raises(ValueError, match=r"--swa_select_split 0.2 cannot hold out a stratified share of 2 training"):
        hold_out_rows(labelled(["a", "b"]), share=0.2, seed=0, column="label")
    with pytest.raises(ValueError, match=r"pass --swa_select_split 0 to train on every row"):
        hold_out_rows(labelled(["a", "b"]), share=0.5, seed=0, column="label")


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
                "select_labels": None if select is None else list(select["labels"]),
            }
        )


def token_ids(bert, rows):
    tokenizer = AutoTokenizer.from_pretrained(str(bert))
    return [tuple(tokenizer(row["sentence"], truncation=True, max_length=128)["input_ids"]) for row in rows]


@pytest.mark.slow
def test_swa_holds_out_rows_and_the_baseline_trains_on_every_row(tmp_path, bert, files, monkeypatch):
    rows, train, dev = files
    monkeypatch.setattr(run_module, "SWATrainer", RecordingTrainer)
    RecordingTrainer.seen = []
    results = {}
    for swa in (True, False):
        out = tmp_path / f"swa{swa}"
        results[swa] = glue(bert, out, train, dev, split=0.25, max_steps=4, swa=swa, swa_select_metric="accuracy")
    held = json.loads((tmp_path / "swaTrue" / SELECT_ROWS_FILE).read_text())
    assert not (tmp_path / "swaFalse" / SELECT_ROWS_FILE).exists()  # the baseline holds out nothing
    assert held["seed"] == 3 and held["train_rows"] == 60 and held["swa_select_split"] == held["held_out_share"] == 0.25
    rows_out = held["held_out_rows"]
    labels = [int(r["label"]) for r in rows]
    assert rows_out == selection_split(0.25, labels, seed=3)[1]  # 26 negative and 34 positive: 6.5 and 8.5 of them
    counts = Counter(labels[i] for i in rows_out)
    assert counts[0] in (6, 7) and counts[1] in (8, 9)
    assert results[True]["train"]["select_samples"] == len(rows_out) and "select_samples" not in results[False]["train"]
    assert [r["train"]["train_samples"] for r in results.values()] == [60 - len(rows_out), 60]
    swa_run, baseline_run = RecordingTrainer.seen
    # The rows held out are the recorded ones; every other row is trained on, in the file's order.
    ids = token_ids(bert, rows)
    assert swa_run["select"] == [ids[i] for i in rows_out]
    assert swa_run["train"] == [ids[i] for i in range(60) if i not in rows_out]
    # The baseline, what a user runs without hf_swa, trains on every labelled row.
    assert baseline_run["train"] == ids and baseline_run["select"] is None
    # Another seed holds out other rows.
    assert selection_split(0.25, labels, seed=4)[1] != rows_out


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
    held = len(selection_split(0.3, [int(r["label"]) for r in files[0]], seed=3)[1])
    split = {"kind": "rows", "share": 0.3, "held_out_share": 0.3, "seed": 3, "held_out_rows": held}
    assert selection["split"] == split and held == 18
    assert selection["optimistic"] is False
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
    # Flagged as optimistic in results.json, swa_config.json and the model card.
    split = {"kind": "eval_set", "set": "validation", "held_out_rows": 0}
    saved = json.loads((tmp_path / "out" / "results.json").read_text())["selection"]
    assert saved["split"] == record["split"] == results["selection"]["split"] == split and saved["optimistic"] is True
    card = (tmp_path / "out" / "README.md").read_text()
    assert "**These scores are optimistic:** the weights were chosen on this same evaluation set." in card
    assert f"SWA candidate {results['chosen']}, chosen on this evaluation set: optimistic" in card
    assert "select_samples" not in results["train"] and results["train"]["train_samples"] == 60
    assert not (tmp_path / "out" / SELECT_ROWS_FILE).exists()


def test_rows_with_nothing_to_hold_out_are_refused_before_training(tmp_path, bert, monkeypatch):
    rows = pair_rows(2, seed=0, label_names=("entailment", "not_entailment"), keys=("sentence1", "sentence2"))
    train = write_rows(tmp_path / "train.jsonl", rows)  # one row of each class: each must train
    monkeypatch.setattr(SWATrainer, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ValueError, match="--swa_select_split 0.5 cannot hold out a stratified share of 2 training"):
        glue(bert, tmp_path / "out", train, task="rte", split=0.5, max_steps=2)


def test_no_split_and_no_eval_set_is_refused_in_flag_terms_before_anything_loads(tmp_path, bert, files, monkeypatch):
    _, train, _ = files
    monkeypatch.setattr(run_module, "_prepare", lambda *a, **k: pytest.fail("data loaded"))
    with pytest.raises(ValueError, match=r"--swa_select_split 0 holds out no training row and there is no --do_eval"):
        glue(bert, tmp_path / "out", train, split=0, max_steps=2, swa_select_metric="loss")
    assert not (tmp_path / "out").exists()
    # The default 'auto' has nothing to choose on there: no selection, the run ships swa_ship (nothing refused).
    data = DataTrainingArguments(task_name="sst2", train_file=str(train), swa_select_split=0)
    run_module.check_selection_data(data, GlueTrainingArguments(output_dir=str(tmp_path / "out"), do_train=True))


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
        "auto",
    )
    assert (
        defaults.SWA_WINDOWS,
        defaults.SWA_WINDOWS_AT_MOST,
        defaults.SWA_EMA_DECAYS,
        defaults.SWA_SELECT_METRIC,
        defaults.SWA_SELECT_SPLIT,
    ) == (4, True, (), "auto", 0.0)
    assert DataTrainingArguments(task_name="rte").swa_select_split == 0.0  # every row trains; the last window ships
    assert DataTrainingArguments(task_name="rte", swa_select_split=0.2).swa_select_split == 0.2
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
    assert data.swa_select_split == 0 and training.swa_select_metric is None
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
    assert held == selection_split(0.25, labels=[None] * 24, seed=3)[1] and len(held) == 6
    assert results["train"]["select_samples"] == 6 and results["train"]["train_samples"] == 18
    assert results["eval"]["chosen"] == results["eval"][results["chosen"]]


# -- whole groups, a selection file, refit, the report's flag ---------------------------------------------


def grouped_rows(n=60):
    """Sentiment rows from 7 sources, each source with both labels."""
    return [dict(r, source=f"site{i % 7}") for i, r in enumerate(sentiment_rows(n, seed=0))]


def test_groups_are_held_out_whole_as_selection_split_holds_them_out():
    rows = grouped_rows()
    labels, sources = [r["label"] for r in rows], [r["source"] for r in rows]
    held = hold_out_rows(labelled(labels).add_column("source", sources), 0.25, seed=3, column="label", groups="source")
    trained = [i for i in range(60) if i not in held]
    assert {sources[i] for i in held}.isdisjoint(sources[i] for i in trained) and 0 < len(held) < 60
    assert held == selection_split(0.25, labels, sources, seed=3)[1]
    with pytest.raises(ValueError, match=r"--swa_select_group_column 'author': the training data has no such column"):
        hold_out_rows(labelled(labels), 0.25, seed=3, column="label", groups="author")


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_a_group_column_is_checked_against_the_training_file_before_anything_loads(tmp_path, suffix):
    train = str(write_rows(tmp_path / f"train{suffix}", grouped_rows(4)))
    found = r"\['idx', 'sentence', 'label', 'source'\]"
    with pytest.raises(ValueError, match=rf"'author': --train_file has no such column \(columns: {found}\)"):
        DataTrainingArguments(
            task_name="sst2", train_file=train, swa_select_group_column="author", swa_select_split=0.2
        )
    data = DataTrainingArguments(
        task_name="sst2", train_file=train, swa_select_group_column="source", swa_select_split=0.2
    )
    assert (data.swa_select_group_column, data.swa_select_split) == ("source", 0.2)
    with pytest.raises(ValueError, match=r"give that share with --swa_select_split"):
        DataTrainingArguments(task_name="sst2", train_file=train, swa_select_split=0, swa_select_group_column="source")


@pytest.mark.slow
def test_whole_groups_are_held_out_by_swa_and_the_baseline_trains_on_every_row(tmp_path, bert, monkeypatch):
    rows = grouped_rows()
    train = write_rows(tmp_path / "train.tsv", rows)
    expected = selection_split(0.25, [r["label"] for r in rows], [r["source"] for r in rows], seed=3)[1]
    monkeypatch.setattr(run_module, "SWATrainer", RecordingTrainer)
    RecordingTrainer.seen, results = [], {}
    for swa in (True, False):
        data = DataTrainingArguments("sst2", str(train), swa_select_split=0.25, swa_select_group_column="source")
        args = GlueTrainingArguments(
            output_dir=str(tmp_path / f"swa{swa}"), do_train=True, max_steps=2, swa=swa, **TRAIN
        )
        results[swa] = run_glue(ModelArguments(model_name_or_path=str(bert)), data, args)
    held = json.loads((tmp_path / "swaTrue" / SELECT_ROWS_FILE).read_text())
    assert held["held_out_rows"] == expected and held["group_column"] == "source"
    assert results[True]["train"]["select_samples"] == len(expected)
    actual = round(len(expected) / 60, 4)
    split = {"kind": "groups", "column": "source", "share": 0.25, "held_out_share": actual, "seed": 3}
    split["held_out_rows"] = len(expected)
    assert results[True]["selection"]["split"] == split
    # The baseline is what a user runs without hf_swa: every labelled row, nothing held out.
    assert not (tmp_path / "swaFalse" / SELECT_ROWS_FILE).exists() and "select_samples" not in results[False]["train"]
    swa_run, baseline_run = RecordingTrainer.seen
    ids = token_ids(bert, rows)
    assert swa_run["select"] == [ids[i] for i in expected]
    assert swa_run["train"] == [ids[i] for i in range(60) if i not in expected]
    assert baseline_run["train"] == ids and baseline_run["select"] is None
    held_groups = {rows[i]["source"] for i in expected}
    assert held_groups.isdisjoint(rows[i]["source"] for i in range(60) if i not in expected)


def test_a_selection_file_with_held_out_rows_or_groups_is_refused(tmp_path):
    train = str(write_rows(tmp_path / "train.tsv", grouped_rows(4)))
    select = str(write_rows(tmp_path / "select.tsv", grouped_rows(4)))
    assert DataTrainingArguments("sst2", train, select_file=select).swa_select_split == 0  # the default split is off
    for extra in ({"swa_select_split": 0.2}, {"swa_select_group_column": "source"}):
        with pytest.raises(ValueError, match=r"--select_file is the selection set: no training row is held out"):
            DataTrainingArguments("sst2", train, select_file=select, **extra)
    with pytest.raises(FileNotFoundError, match=r"--select_file .*: no such file"):
        DataTrainingArguments("sst2", train, select_file=str(tmp_path / "none.tsv"))


@pytest.mark.slow
def test_a_selection_file_is_chosen_on_and_every_training_row_trains(tmp_path, bert, monkeypatch):
    rows, chosen_on = sentiment_rows(40, seed=0), sentiment_rows(10, seed=5, labels=("1", "0"))  # labels swapped
    train = write_rows(tmp_path / "train.tsv", rows)
    select = write_rows(tmp_path / "select.tsv", chosen_on)
    monkeypatch.setattr(run_module, "SWATrainer", RecordingTrainer)
    RecordingTrainer.seen = []
    data = DataTrainingArguments("sst2", str(train), select_file=str(select))
    args = GlueTrainingArguments(output_dir=str(tmp_path / "out"), do_train=True, max_steps=2, **TRAIN)
    results = run_glue(ModelArguments(model_name_or_path=str(bert)), data, args)
    (seen,) = RecordingTrainer.seen
    assert seen["train"] == token_ids(bert, rows) and seen["select"] == token_ids(bert, chosen_on)
    assert seen["select_labels"] == [int(r["label"]) for r in chosen_on]  # the training's label mapping
    assert results["train"]["train_samples"] == 40 and "select_samples" not in results["train"]
    assert results["selection"]["split"] == {"kind": "file", "file": str(select), "rows": 10, "held_out_rows": 0}
    assert results["selection"]["dataset"]["size"] == 10 and not (tmp_path / "out" / SELECT_ROWS_FILE).exists()


class CandidateSavingTrainer(RecordingTrainer):
    """Saves every candidate of the run (``output_dir/candidates/<name>``) after training."""

    def train(self, *args, **kwargs):
        output = super().train(*args, **kwargs)
        self.save_candidates(str(Path(self.args.output_dir) / "candidates"))
        return output


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.mark.slow
def test_refit_ships_the_chosen_candidate_of_a_run_on_every_row(tmp_path, bert, files, monkeypatch):
    rows, train, _ = files
    settings = dict(max_steps=6, swa_start="0.5", swa_windows=2, swa_ema_decays=[0.5], swa_select_metric="loss")
    monkeypatch.setattr(run_module, "SWATrainer", RecordingTrainer)
    RecordingTrainer.seen = []
    out = tmp_path / "refit"
    results = glue(bert, out, train, split=0.25, swa_refit=True, **settings)
    # An independent run on every row with the same seed and settings, keeping every candidate.
    monkeypatch.setattr(run_module, "SWATrainer", CandidateSavingTrainer)
    glue(bert, tmp_path / "all", train, split=0, **{**settings, "swa_select_metric": "none"})
    chosen, first = results["chosen"], json.loads((out / "selection_run" / CONFIG_FILE).read_text())["selection"]
    assert chosen == first["chosen"]  # as many steps in both runs: the same name exists
    shipped, candidates = weights(out), tmp_path / "all" / "candidates"
    same = {n.name: all(torch.equal(shipped[k], t) for k, t in weights(n).items()) for n in candidates.iterdir()}
    assert same == {n.name: n.name == chosen for n in candidates.iterdir()} and len(same) == 4  # 2 windows, EMA, live
    # The record: refit, the candidate, the split it was chosen on.
    refit = {
        "chosen_on_split": chosen,
        "shipped": chosen,
        "fallback": None,
        "selection_run": str(out / "selection_run"),
    }
    record = json.loads((out / CONFIG_FILE).read_text())
    steps = {key: record["selection"]["refit"].pop(key) for key in ("chosen_steps", "shipped_steps")}
    assert steps["chosen_steps"] == steps["shipped_steps"] and steps["chosen_steps"]["max_steps"] == 6
    assert {k: v for k, v in results["selection"]["refit"].items() if k not in steps} == refit
    assert record["selection"]["refit"] == refit and record["shipped"] == chosen
    held = selection_split(0.25, [int(r["label"]) for r in rows], seed=3)[1]
    split = {"kind": "rows", "share": 0.25, "held_out_share": 0.25, "seed": 3, "held_out_rows": len(held)}
    assert (
        results["selection"]["split"] == json.loads((out / "results.json").read_text())["selection"]["split"] == split
    )
    assert "this is the " + chosen + " of a second run trained on every row" in (out / "README.md").read_text()
    # The first run chose on the held-out rows; the refit run trained on every row, as the independent run did.
    first_run, refit_run, independent = RecordingTrainer.seen
    ids = token_ids(bert, rows)
    assert first_run["select"] == [ids[i] for i in held] and first_run["train"] == [
        ids[i] for i in range(60) if i not in held
    ]
    assert refit_run["train"] == independent["train"] == ids and refit_run["select"] is None
    assert results["train"]["train_samples"] == 60 and "select_samples" not in results["train"]


@pytest.mark.slow
def test_a_refit_with_more_steps_ships_the_window_at_the_chosen_share_not_the_same_name(
    tmp_path, bert, files, monkeypatch
):
    # By epochs, the refit run (60 rows) trains more steps than the run that chose (45 rows): the same window name
    # sits at another share of training there. The window at the chosen share ships, and both are recorded.
    _, train, _ = files
    settings = dict(num_train_epochs=1, swa_start="0.5", swa_windows=4, swa_select_metric="loss")
    monkeypatch.setattr(run_module, "SWATrainer", CandidateSavingTrainer)
    glue(bert, tmp_path / "all", train, split=0, **{**settings, "swa_select_metric": "none"})
    every_row = json.loads((tmp_path / "all" / CONFIG_FILE).read_text())
    refit_starts = {c["name"]: c["start_step"] for c in every_row["candidates"] if c["kind"] == "window_mean"}

    def choose_a_window_named_in_both_runs(scores, greater_is_better):
        return next(name for name in scores if name in refit_starts and name != "swa")

    monkeypatch.setattr(selection_module, "choose", choose_a_window_named_in_both_runs)
    results = glue(bert, tmp_path / "refit", train, split=0.25, swa_refit=True, **settings)
    refit = results["selection"]["refit"]
    chosen, first = refit["chosen_on_split"], refit["chosen_steps"]
    assert chosen in refit_starts and first["max_steps"] < every_row["max_steps"]  # the same name in both runs...
    share = first["start_step"] / first["max_steps"]
    nearest = min(refit_starts, key=lambda n: abs(refit_starts[n] / every_row["max_steps"] - share))
    assert nearest != chosen  # ...at different shares of training: the name alone would ship another window
    assert results["chosen"] == refit["shipped"] == nearest
    assert refit["shipped_steps"] == {
        "start_step": refit_starts[nearest],
        "max_steps": every_row["max_steps"],
        "start_share": round(refit_starts[nearest] / every_row["max_steps"], 4),
    }
    shipped, expected = weights(tmp_path / "refit"), weights(tmp_path / "all" / "candidates" / nearest)
    assert all(torch.equal(shipped[k], t) for k, t in expected.items())


def test_refit_matches_windows_by_their_share_of_training_not_their_name():
    def window(name, start):
        return {"name": name, "kind": "window_mean", "start_step": start}

    first = {"max_steps": 30, "candidates": [window("swa", 15), window("swa_from15", 15), window("swa_from24", 24)]}
    starts = {"swa": 20, "swa_from25": 25, "swa_from30": 30, "swa_from35": 35}  # the refit run: 40 steps
    name, why = refit_candidate("swa_from24", first, ["swa", *starts], starts, 40)
    assert (
        name == "swa_from30" and why == "swa_from24 starts at 80% of the first run, swa_from30 at 75% of the refit run"
    )
    assert refit_candidate("swa_from15", first, ["swa", *starts], starts, 40)[0] == "swa"  # 0.5 x 40 = 20
    assert refit_candidate("swa", first, ["swa", *starts], starts, 40) == ("swa", None)
    assert refit_candidate("pema_0.1", first, ["swa"], {}, 40)[0] == "swa"
    assert refit_candidate("live", first, [], {}, 40) == ("live", None)
    # The run: swa_from32 chosen at 76% of a 42-step run; the 52-step refit run has a swa_from32 too (62%),
    # but the window at 76% of it is swa_from40 (77%).
    first = {"max_steps": 42, "candidates": [window("swa", 21), window("swa_from32", 32)]}
    starts = {"swa": 26, "swa_from32": 32, "swa_from40": 40, "swa_from46": 46}
    assert refit_candidate("swa_from32", first, ["ema_0.9", *starts], starts, 52)[0] == "swa_from40"
    assert refit_candidate("ema_0.9", first, ["ema_0.9", *starts], starts, 52) == ("ema_0.9", None)


def test_refit_without_held_out_rows_is_refused_before_anything_loads(tmp_path, bert, files, monkeypatch):
    _, train, dev = files
    monkeypatch.setattr(run_module, "_prepare", lambda *a, **k: pytest.fail("data loaded"))
    with pytest.raises(ValueError, match=r"--swa_refit chooses on training rows held out by --swa_select_split"):
        glue(bert, tmp_path / "out", train, dev, split=0, swa_refit=True)
    with pytest.raises(ValueError, match=r"it needs --swa_select_split above 0 and a --swa_select_metric"):
        glue(bert, tmp_path / "out", train, dev, split=0.2, swa_refit=True, swa_select_metric="none")
    checkpoint = str(tmp_path / "out" / "checkpoint-2")
    with pytest.raises(ValueError, match=r"--swa_refit runs twice .* --resume_from_checkpoint names one checkpoint"):
        glue(bert, tmp_path / "out", train, dev, split=0.2, swa_refit=True, resume_from_checkpoint=checkpoint)


def test_the_report_and_the_card_flag_a_choice_on_the_evaluation_set_as_optimistic():
    from hf_swa.glue.report import Run, summarize
    from hf_swa.hub.card import render_model_card

    scores = {
        "metrics": ["accuracy"],
        "eval": {w: {"validation": {"accuracy": 0.8}} for w in ("live", "swa", "chosen")},
    }
    runs = [Run("rte", "baseline", 1, scores), Run("rte", "swa", 1, {**scores, "selection": {"optimistic": True}})]
    runs.append(Run("rte", "swa", 2, {**scores, "selection": {"optimistic": False}}))
    assert [n for n in summarize(runs)[1] if "optimistic" in n] == [
        "rte/swa/seed1: chose on the evaluation set: optimistic scores."
    ]
    cards = {}
    # The card reads the trainer's flag; a record written before the flag had one names the data only.
    for key, extra in [("eval", {"optimistic": True}), ("held-out", {"optimistic": False}), ("old eval", {})]:
        name = "swa_select_dataset" if key == "held-out" else "eval_dataset"
        selection = {"chosen": "swa", "metric": "loss", "scores": {"swa": 0.3, "live": 0.4}, "dataset": {"name": name}}
        selection.update(extra)
        cards[key] = str(
            render_model_card({"n_averaged": 3, "selection": selection}, scores, dataset_id="nyu-mll/glue")
        )
    flag = "**These scores are optimistic:**"
    for key in ("eval", "old eval"):
        assert flag in cards[key] and "chosen on this evaluation set: optimistic" in cards[key]
    assert flag not in cards["held-out"] and "optimistic" not in cards["held-out"]
