"""End-to-end `run_glue` on tiny BERT/GPT-2 models built from config and tiny local files."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from glue_fixtures import (
    accuracy,
    f1,
    matthews,
    pair_rows,
    pearson,
    predict_rows,
    save_tiny_bert,
    save_tiny_gpt2,
    sentiment_rows,
    spearman,
    write_rows,
)
from test_distributed import accelerate_launch
from transformers import AutoModelForSequenceClassification

from hf_swa.checkpointing.names import CONFIG_FILE
from hf_swa.glue.run import SELECT_ROWS_FILE, DataTrainingArguments, GlueTrainingArguments, ModelArguments, run_glue

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TRAIN = dict(
    per_device_train_batch_size=8,
    per_device_eval_batch_size=16,
    report_to="none",
    save_strategy="no",
    use_cpu=True,
    disable_tqdm=True,
    seed=1,
)


def read_tsv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def unlabelled(rows):
    return [{k: v for k, v in r.items() if k != "label"} for r in rows]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("models") / "bert")


def test_sst2_train_eval_predict_with_the_default_recipe(tmp_path, bert):
    train = write_rows(tmp_path / "train.tsv", sentiment_rows(80, seed=0))
    dev = write_rows(tmp_path / "dev.tsv", sentiment_rows(32, seed=1))
    test_rows = unlabelled(sentiment_rows(10, seed=2))
    for i, row in enumerate(test_rows):
        row["idx"] = 100 + i
    test = write_rows(tmp_path / "test.tsv", test_rows)
    out = tmp_path / "out"
    results = run_glue(
        ModelArguments(model_name_or_path=str(bert)),
        DataTrainingArguments(task_name="sst2", train_file=str(train), validation_file=str(dev), test_file=str(test)),
        GlueTrainingArguments(
            output_dir=str(out),
            do_train=True,
            do_eval=True,
            do_predict=True,
            num_train_epochs=6,
            learning_rate=5e-3,
            **dict(TRAIN, seed=2),  # seed 1 leaves this tiny model stuck at chance on these rows
        ),
    )
    # Live, averaged and shipped scores, per weights, per evaluation set, per metric; all learnt the keyword task.
    scores = results["eval"]
    assert {"live", "swa", "chosen"} <= set(scores) and set(scores["live"]) == {"validation"}
    assert set(scores["swa"]["validation"]) == {"accuracy", "loss"}
    assert scores["live"]["validation"]["accuracy"] >= 0.8 and scores["swa"]["validation"]["accuracy"] >= 0.8
    assert "train_runtime" in results["train"] and results["metrics"] == ["accuracy"]
    # The defaults: every one of the 80 training rows trains, 4 windows evaluated, the live weights shipped.
    assert results["eval_samples"] == {"validation": 32}
    assert results["train"]["train_samples"] == 80 and "select_samples" not in results["train"]
    assert results["selection"] is None and not (out / SELECT_ROWS_FILE).exists()
    windows = [c for c in json.loads((out / CONFIG_FILE).read_text())["candidates"] if c["kind"] == "window_mean"]
    assert len(windows) == 4 and results["chosen"] == "live"
    assert scores["chosen"] == scores["live"] != scores["swa"]
    assert json.loads((out / "results.json").read_text()) == results
    assert results["dataset"] == {"id": "nyu-mll/glue", "config": "sst2", "name": "GLUE SST2",
                                  "purpose": "classifying the sentiment of a sentence"}  # fmt: skip
    assert (out / CONFIG_FILE).is_file()
    # The model card, written without a push (as transformers' run_glue does): this run's numbers.
    card = (out / "README.md").read_text()
    n_averaged = json.loads((out / CONFIG_FILE).read_text())["n_averaged"]
    assert f"| Snapshots averaged (`n_averaged`) | {n_averaged} |" in card
    assert "are the weights of the last training step" in card and "Averaged weights (not shipped)" in card
    assert f"{scores['chosen']['validation']['accuracy']:.4f}" in card
    assert f"{scores['live']['validation']['accuracy']:.4f}" in card
    assert 'from_pretrained("out")' in card and "PEFT" not in card
    # Submission file: GLUE format, the test file's ids, SST-2 spelled 0/1.
    rows = read_tsv(out / "SST-2.tsv")
    assert rows[0] == ["index", "prediction"] and len(rows) == 11
    assert [r[0] for r in rows[1:]] == [str(100 + i) for i in range(10)]
    assert {r[1] for r in rows[1:]} <= {"0", "1"}
    # The saved model is the chosen weights: evaluating it plainly reproduces eval_chosen_*.
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    again = run_glue(
        ModelArguments(model_name_or_path=str(out)),
        DataTrainingArguments(task_name="sst2", validation_file=str(dev)),
        GlueTrainingArguments(output_dir=str(tmp_path / "again"), do_eval=True, swa=False, **TRAIN),
    )
    assert again["eval"]["live"]["validation"]["loss"] == pytest.approx(
        scores["chosen"]["validation"]["loss"], rel=1e-5
    )
    assert again["eval"]["live"]["validation"]["accuracy"] == scores["chosen"]["validation"]["accuracy"]
    assert set(again["eval"]) == {"live"} and "chosen" not in again


def test_mnli_matched_and_mismatched(tmp_path, bert):
    data = {
        "train": pair_rows(48, seed=0),
        "dev_m": pair_rows(12, seed=1),
        "dev_mm": pair_rows(9, seed=2),
        "test_m": unlabelled(pair_rows(5, seed=3)),
        "test_mm": unlabelled(pair_rows(4, seed=4)),
    }
    files = {name: str(write_rows(tmp_path / f"{name}.jsonl", rows)) for name, rows in data.items()}
    out = tmp_path / "out"
    results = run_glue(
        ModelArguments(model_name_or_path=str(bert)),
        DataTrainingArguments(
            task_name="mnli",
            train_file=files["train"],
            validation_file=files["dev_m"],
            validation_mismatched_file=files["dev_mm"],
            test_file=files["test_m"],
            test_mismatched_file=files["test_mm"],
        ),
        GlueTrainingArguments(
            output_dir=str(out),
            do_train=True,
            do_eval=True,
            do_predict=True,
            max_steps=6,
            learning_rate=1e-3,
            swa_start="0.5",
            **TRAIN,
        ),
    )
    sets = ["validation_matched", "validation_mismatched"]
    assert {w: list(results["eval"][w]) for w in ("live", "swa", "chosen")} == dict.fromkeys(
        ("live", "swa", "chosen"), sets
    )
    # The saved model is the chosen weights: its answers, one example at a time, give their scores by hand.
    for split, eval_set in zip(("dev_m", "dev_mm"), sets):
        predicted = predict_rows(out, data[split], ("premise", "hypothesis"))
        expected = accuracy([r["label"] for r in data[split]], predicted)
        assert results["eval"]["chosen"][eval_set]["accuracy"] == pytest.approx(expected), split
    assert results["eval_samples"] == dict(zip(sets, (12, 9)))
    for name, n in (("MNLI-m.tsv", 5), ("MNLI-mm.tsv", 4)):
        rows = read_tsv(out / name)
        assert rows[0] == ["index", "prediction"] and [r[0] for r in rows[1:]] == [str(i) for i in range(n)]
        assert {r[1] for r in rows[1:]} <= {"entailment", "neutral", "contradiction"}


def test_gpt2_custom_columns_string_labels(tmp_path):
    gpt2 = save_tiny_gpt2(tmp_path / "gpt2")

    def rows(n, seed):
        return [
            {"review": r["sentence"], "stars": {"0": "low", "1": "high"}[r["label"]]} for r in sentiment_rows(n, seed)
        ]

    out = tmp_path / "out"
    dev = rows(16, 1)
    results = run_glue(
        ModelArguments(model_name_or_path=str(gpt2)),
        DataTrainingArguments(
            train_file=str(write_rows(tmp_path / "train.csv", rows(32, 0))),
            validation_file=str(write_rows(tmp_path / "dev.csv", dev)),
            test_file=str(write_rows(tmp_path / "test.csv", [{"review": r["review"]} for r in rows(6, 2)])),
            text_columns=["review"],
            label_column="stars",
            max_seq_length=16,
        ),
        GlueTrainingArguments(
            output_dir=str(out), do_train=True, do_eval=True, do_predict=True, max_steps=8, learning_rate=1e-3, **TRAIN
        ),
    )
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "high", 1: "low"}
    # Two custom classes are scored like MRPC: accuracy and F1 of label id 1 ("low"), F1 first.
    gold, predicted = [r["stars"] for r in dev], predict_rows(out, dev, ("review",), max_length=16)
    expected = {"accuracy": accuracy(gold, predicted), "f1": f1(gold, predicted, positive="low")}
    chosen = results["eval"]["chosen"]["validation"]
    assert {k: chosen[k] for k in expected} == pytest.approx(expected) and results["metrics"] == ["f1", "accuracy"]
    assert model.config.pad_token_id == model.config.eos_token_id is not None
    rows_out = read_tsv(out / "predictions.tsv")
    assert len(rows_out) == 7 and {r[1] for r in rows_out[1:]} <= {"high", "low"}


def test_stsb_regression_and_baseline_without_swa(tmp_path, bert):
    def rows(n, seed):
        return [
            dict(r, label=f"{(i * 0.37) % 5:.2f}")
            for i, r in enumerate(pair_rows(n, seed, keys=("sentence1", "sentence2")))
        ]

    out = tmp_path / "out"
    dev = rows(12, 1)
    results = run_glue(
        ModelArguments(model_name_or_path=str(bert)),
        DataTrainingArguments(
            task_name="stsb",
            train_file=str(write_rows(tmp_path / "train.tsv", rows(24, 0))),
            validation_file=str(write_rows(tmp_path / "dev.tsv", dev)),
            test_file=str(write_rows(tmp_path / "test.tsv", unlabelled(rows(5, 2)))),
        ),
        GlueTrainingArguments(
            output_dir=str(out),
            do_train=True,
            do_eval=True,
            do_predict=True,
            max_steps=4,
            learning_rate=1e-3,
            swa=False,
            **TRAIN,
        ),
    )
    # A baseline saves its last weights: their scores, one example at a time, give the correlations by hand.
    gold, predicted = [float(r["label"]) for r in dev], predict_rows(out, dev, ("sentence1", "sentence2"))
    assert len(set(predicted)) == len(predicted)  # no ties: the rank correlation is well defined
    expected = {"pearson": pearson(predicted, gold), "spearmanr": spearman(predicted, gold)}
    live = results["eval"]["live"]["validation"]
    assert {k: live[k] for k in expected} == pytest.approx(expected, abs=1e-4)  # float32 in the metric
    assert set(results["eval"]) == {"live"} and results["chosen"] is None  # a baseline run
    assert not (out / CONFIG_FILE).exists() and not (out / "README.md").exists()  # no averaged model, no card
    rows_out = read_tsv(out / "STS-B.tsv")
    assert rows_out[0] == ["index", "prediction"] and len(rows_out) == 6
    for _, value in rows_out[1:]:
        assert len(value.split(".")[1]) == 3 and float(value) == float(value)


def _script_config(tmp_path, bert, **extra):
    train = write_rows(tmp_path / "train.tsv", sentiment_rows(32, seed=0))
    dev = write_rows(tmp_path / "dev.tsv", sentiment_rows(16, seed=1))
    config = dict(
        model_name_or_path=str(bert),
        task_name="sst2",
        train_file=str(train),
        validation_file=str(dev),
        output_dir=str(tmp_path / "out"),
        do_train=True,
        do_eval=True,
        max_steps=4,
        learning_rate=1e-3,
        swa_start="0.5",
        **TRAIN,
        **extra,
    )
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    return env  # the script finds hf_swa by itself, installed or not


def test_script_with_a_json_config(tmp_path, bert):
    config = _script_config(tmp_path, bert)
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_glue.py"), str(config)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {"live", "swa", "chosen"} <= set(results["eval"]) and "train_runtime" in results["train"]


@pytest.mark.distributed
def test_accelerate_launch_two_processes(tmp_path, bert):
    config = _script_config(tmp_path, bert)
    launcher = [sys.executable, "-m", *accelerate_launch(tmp_path)]  # two gloo processes, a port of their own
    done = subprocess.run(
        launcher + [str(REPO / "scripts" / "run_glue.py"), str(config)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    train = results["train"]
    # 32 rows, every one trained on: 4 steps x 8 examples x 2 processes are two epochs, so both ranks trained.
    assert train["train_samples"] == 32 and "select_samples" not in train
    assert train["epoch"] == 2.0
    assert results["eval_samples"] == {"validation": 16}
    dev = sentiment_rows(16, seed=1)  # as _script_config wrote it
    gold = [("negative", "positive")[int(r["label"])] for r in dev]
    assert results["eval"]["chosen"]["validation"]["accuracy"] == pytest.approx(  # the saved model is chosen
        accuracy(gold, predict_rows(tmp_path / "out", dev, ("sentence",)))
    )
    # Loss near ln(2) for an untrained-ish binary head: not inflated by the world size.
    assert train["train_loss"] < 1.0, results


def test_hub_layout_end_to_end(tmp_path, bert, monkeypatch):
    """The nyu-mll/glue layout (ClassLabel ids, test labels -1, idx), served by a stub of load_dataset."""
    import datasets

    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["unacceptable", "acceptable"]),
            "idx": datasets.Value("int32"),
        }
    )

    def split(rows, test=False):
        return datasets.Dataset.from_dict(
            {
                "sentence": [r["sentence"] for r in rows],
                "label": [-1 if test else int(r["label"]) for r in rows],
                "idx": [500 + i for i in range(len(rows))],
            },
            features=features,
        )

    hub = datasets.DatasetDict(
        {
            "train": split(sentiment_rows(24, 0)),
            "validation": split(sentiment_rows(12, 1)),
            "test": split(sentiment_rows(7, 2), test=True),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name, **kwargs: hub.copy())
    out = tmp_path / "out"
    results = run_glue(
        ModelArguments(model_name_or_path=str(bert)),
        DataTrainingArguments(task_name="cola", max_train_samples=16, max_predict_samples=5, swa_select_split=0),
        GlueTrainingArguments(
            output_dir=str(out),
            do_train=True,
            do_eval=True,
            do_predict=True,
            max_steps=24,
            learning_rate=1e-3,
            swa_windows=1,
            swa_select_metric="none",
            swa_ship="swa",
            **TRAIN,
        ),
    )
    # Selection off (split 0, metric none), one window, swa_ship swa: every row trained on, the classic average.
    assert results["train"]["train_samples"] == 16 and results["eval_samples"] == {"validation": 12}
    assert "select_samples" not in results["train"] and results["chosen"] == "swa"
    assert results["eval"]["chosen"] == results["eval"]["swa"]
    dev = sentiment_rows(12, 1)
    gold = [("unacceptable", "acceptable")[int(r["label"])] for r in dev]
    expected = matthews(gold, predict_rows(out, dev, ("sentence",)), positive="acceptable")
    assert expected > 0.2  # the model learnt something, so a wrongly scaled or signed MCC shows
    swa = results["eval"]["swa"]["validation"]["matthews_correlation"]
    assert swa == pytest.approx(expected)  # the saved model is the average
    assert "matthews_correlation" in results["eval"]["live"]["validation"]
    rows = read_tsv(out / "CoLA.tsv")
    assert [r[0] for r in rows] == ["index"] + [str(500 + i) for i in range(5)]
    assert {r[1] for r in rows[1:]} <= {"0", "1"}


def test_mrpc_f1_is_about_equivalent_whatever_the_models_label_order(tmp_path):
    import torch
    from sklearn.metrics import f1_score
    from transformers import AutoConfig, AutoTokenizer

    folder = save_tiny_bert(tmp_path / "bert", head=True)
    config = AutoConfig.from_pretrained(folder)  # a model fine-tuned with the opposite label order
    config.id2label, config.label2id = {0: "equivalent", 1: "not_equivalent"}, {"equivalent": 0, "not_equivalent": 1}
    AutoModelForSequenceClassification.from_pretrained(folder, config=config).save_pretrained(folder)
    rows = pair_rows(40, 0, label_names=("0", "1"), keys=("sentence1", "sentence2"))
    dev = write_rows(tmp_path / "dev.tsv", rows)
    results = run_glue(
        ModelArguments(str(folder)),
        DataTrainingArguments(task_name="mrpc", validation_file=str(dev)),
        GlueTrainingArguments(output_dir=str(tmp_path / "out"), do_eval=True, swa=False, **TRAIN),
    )

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer([r["sentence1"] for r in rows], [r["sentence2"] for r in rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        predicted = [model.config.id2label[int(i)] for i in model(**batch).logits.argmax(-1)]
    gold = ["equivalent" if r["label"] == "1" else "not_equivalent" for r in rows]  # GLUE: 1 = equivalent
    expected = f1_score(gold, predicted, pos_label="equivalent")
    assert expected != f1_score(gold, predicted, pos_label="not_equivalent")  # the order matters here
    assert results["eval"]["live"]["validation"]["f1"] == pytest.approx(expected)
