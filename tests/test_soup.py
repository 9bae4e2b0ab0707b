"""Greedy soups: a bad input is left out, the soup is the mean of its members, its score reproduces."""

from __future__ import annotations

import json

import pytest
import torch
from posthoc_fixtures import float64_mean, folder_snapshot, stored_tensors
from tiny_models import max_relative_error, tiny_bert
from transformers import AutoModelForSequenceClassification

from hf_swa import greedy_soup

NOISE = {"good0": 0.01, "good1": 0.01, "good2": 0.01, "bad": 0.5}


def noisy_copies(root, dtype=torch.float32):
    """A target model and copies of it with noise: three small, one large."""
    target = tiny_bert(seed=0)
    reference = {n: p.detach().clone() for n, p in target.named_parameters()}
    folders = {}
    for i, (name, scale) in enumerate(NOISE.items()):
        model = tiny_bert(seed=0)
        generator = torch.Generator().manual_seed(10 + i)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn(param.shape, generator=generator), alpha=scale)
        model.to(dtype).save_pretrained(root / name)
        folders[name] = root / name
    return folders, reference


def closeness(reference):
    """Higher is better: minus the squared distance of the model's weights to the target's."""

    def score(model):
        return -sum(
            float(((p.detach().double() - reference[n].double()) ** 2).sum()) for n, p in model.named_parameters()
        )

    return score


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_soup_leaves_the_bad_input_out_and_its_score_reproduces(tmp_path, dtype):
    folders, reference = noisy_copies(tmp_path, dtype)
    order = [folders["bad"], folders["good0"], folders["good1"], folders["good2"]]
    score = closeness(reference)
    record = greedy_soup(order, tmp_path / "soup", score, progress=False)
    soup = record["soup"]

    good = [str(folders[n]) for n in ("good0", "good1", "good2")]
    assert sorted(soup["members"]) == sorted(good)
    assert soup["score"] > max(soup["input_scores"].values())
    assert [t["kept"] for t in soup["tried"]] == [True, True, True, False]
    assert soup["tried"][-1]["members"][-1] == str(folders["bad"])
    assert soup["tried"][-1]["score"] < soup["tried"][-2]["score"]
    assert record["n_averaged"] == 3 and record["method"] == "greedy_soup"
    weight_of = {source["folder"]: weight for source, weight in zip(record["sources"], record["weights"], strict=True)}
    assert weight_of[str(folders["bad"])] == 0.0

    # Each input's recorded score is the score of that input loaded with plain transformers.
    for folder in order:
        loaded = AutoModelForSequenceClassification.from_pretrained(folder, dtype="auto")
        assert score(loaded.eval()) == soup["input_scores"][str(folder)]
    # The saved soup is the mean of its members, and scores exactly what was recorded.
    saved = stored_tensors(tmp_path / "soup")
    expected = float64_mean([folders[n] for n in ("good0", "good1", "good2")])
    if dtype == torch.float32:
        assert max_relative_error(saved, expected) < 1e-6
    else:
        assert all(torch.equal(saved[n], v.to(dtype)) for n, v in expected.items())
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "soup", dtype="auto")
    assert score(loaded.eval()) == soup["score"]


def test_nan_input_is_refused_and_the_output_untouched(tmp_path):
    folders, reference = noisy_copies(tmp_path / "inputs")
    model = AutoModelForSequenceClassification.from_pretrained(folders["good1"])
    with torch.no_grad():
        model.classifier.bias[1] = float("nan")
    model.save_pretrained(folders["good1"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier")
    before = folder_snapshot(out)
    with pytest.raises(ValueError, match=rf"{folders['good1']}: tensor 'classifier.bias' holds 1 NaN/inf"):
        greedy_soup(list(folders.values()), out, closeness(reference), overwrite_output_dir=True, progress=False)
    assert folder_snapshot(out) == before


def test_score_fn_returning_nan_is_refused(tmp_path):
    folders, _ = noisy_copies(tmp_path)
    with pytest.raises(ValueError, match="score_fn returned NaN"):
        greedy_soup(list(folders.values()), tmp_path / "soup", lambda model: float("nan"), progress=False)
    assert not (tmp_path / "soup").exists()


# -- through the command line, scored on a labelled file with the GLUE runner's metrics -----------


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory):
    """A fine-tuning run (SWA off, so a plain Trainer's checkpoints) on a keyword sentiment task, and its dev file."""
    from glue_fixtures import save_tiny_bert, sentiment_rows, write_rows

    from hf_swa.glue.run import DataTrainingArguments, GlueTrainingArguments, ModelArguments, run_glue

    root = tmp_path_factory.mktemp("sentiment")
    train = write_rows(root / "train.csv", sentiment_rows(64, seed=0))
    dev = write_rows(root / "dev.csv", [{"text": r["sentence"], "y": r["label"]} for r in sentiment_rows(32, seed=1)])
    run_glue(
        ModelArguments(model_name_or_path=str(save_tiny_bert(root / "bert"))),
        DataTrainingArguments(train_file=str(train), swa_select_split=0),  # every row: 8 steps an epoch
        GlueTrainingArguments(
            output_dir=str(root / "run"),
            do_train=True,
            num_train_epochs=8,
            learning_rate=5e-3,
            per_device_train_batch_size=8,
            save_strategy="steps",
            save_steps=8,
            swa=False,
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            seed=1,
        ),
    )
    return root, dev


@pytest.mark.slow
def test_cli_greedy_soup_scored_on_a_file_leaves_a_broken_checkpoint_out(sentiment_run, tmp_path):
    from hf_swa.posthoc.arguments import SoupEvaluationArguments
    from hf_swa.posthoc.cli import main
    from hf_swa.posthoc.scoring import glue_score_fn

    root, dev = sentiment_run
    run = root / "run"
    good = [run / f"checkpoint-{step}" for step in (48, 56, 64)]
    broken = tmp_path / "broken"
    model = AutoModelForSequenceClassification.from_pretrained(good[-1])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator))
    model.save_pretrained(broken)
    out = tmp_path / "soup"
    evaluation = [
        "--validation_file",
        str(dev),
        "--text_columns",
        "text",
        "--label_column",
        "y",
        "--metric",
        "accuracy",
        "--per_device_eval_batch_size",
        "16",
        "--use_cpu",
    ]
    assert main([*map(str, good), str(broken), "--soup", "greedy", "--output_dir", str(out), *evaluation]) == 0

    record = json.loads((out / "swa_config.json").read_text())
    soup = record["soup"]
    # Ties count as "no worse": the fine-tuned checkpoints all join, the broken one does not.
    assert soup["metric"] == "eval_accuracy" and sorted(soup["members"]) == sorted(map(str, good))
    assert soup["input_scores"][str(broken)] == min(soup["input_scores"].values())
    assert len(soup["tried"]) == 4 and soup["score"] == max(t["score"] for t in soup["tried"] if t["kept"])
    members = sorted(soup["members"])
    assert max_relative_error(stored_tensors(out), float64_mean(members)) < 1e-6
    # The recorded score is the score of the saved model, evaluated afresh.
    score_fn, _ = glue_score_fn(
        SoupEvaluationArguments(
            validation_file=str(dev),
            text_columns=["text"],
            label_column="y",
            metric="accuracy",
            per_device_eval_batch_size=16,
            use_cpu=True,
        ),
        str(out),
    )
    assert score_fn(AutoModelForSequenceClassification.from_pretrained(out).eval()) == soup["score"]
    # The card lists every input with its weight and score, and every soup tried.
    card = (out / "README.md").read_text()
    assert "## Post-hoc average of 3 checkpoints" in card and "a greedy soup" in card
    assert f"| {tmp_path.name}/broken | – | 0 | {soup['input_scores'][str(broken)]:.4f} |" in card
    assert f"| run/checkpoint-64 | 64 | 0.3333 | {soup['input_scores'][str(good[-1])]:.4f} |" in card
    assert f", {tmp_path.name}/broken | {soup['tried'][-1]['score']:.4f} | no |" in card


@pytest.mark.slow
def test_cli_uniform_mean_with_evaluation_data_records_every_score(sentiment_run, tmp_path):
    from hf_swa.posthoc.arguments import SoupEvaluationArguments
    from hf_swa.posthoc.cli import main
    from hf_swa.posthoc.scoring import glue_score_fn

    root, dev = sentiment_run
    out = tmp_path / "avg"
    evaluation = ["--validation_file", str(dev), "--text_columns", "text", "--label_column", "y", "--metric", "loss"]
    assert main(["--run_dir", str(root / "run"), "--last", "3", "--output_dir", str(out), *evaluation]) == 0
    record = json.loads((out / "swa_config.json").read_text())
    scores = record["scores"]
    inputs = [str(root / "run" / f"checkpoint-{step}") for step in (48, 56, 64)]
    assert scores["metric"] == "eval_loss" and sorted(scores["inputs"]) == inputs
    assert max_relative_error(stored_tensors(out), float64_mean(inputs)) < 1e-6
    score_fn, _ = glue_score_fn(
        SoupEvaluationArguments(validation_file=str(dev), text_columns=["text"], label_column="y", metric="loss"),
        str(out),
    )
    for folder, score in [*scores["inputs"].items(), (str(out), scores["average"])]:
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        assert score_fn(model) == score < 0  # the loss, negated: higher is better
    card = (out / "README.md").read_text()
    assert f"| run/checkpoint-64 | 64 | 0.3333 | {scores['inputs'][inputs[-1]]:.4f} |" in card
    assert f"The average in this repository scores {scores['average']:.4f} (loss)." in card


def test_offline_task_soup_names_the_data_set_not_the_tokenizer(tmp_path):
    """Offline, --task_name cannot fetch its data set: say so (and how to score offline), not "no tokenizer"."""
    import os
    import subprocess
    import sys

    from glue_fixtures import save_tiny_bert

    inputs = [save_tiny_bert(tmp_path / f"seed{seed}", seed=seed, head=True) for seed in (0, 1)]
    assert all((folder / "tokenizer.json").is_file() for folder in inputs)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    env.pop("HF_DATASETS_OFFLINE", None)
    out = tmp_path / "soup"
    args = [*map(str, inputs), "--soup", "greedy", "--task_name", "sst2", "--output_dir", str(out), "--use_cpu"]
    done = subprocess.run(
        [sys.executable, "-m", "hf_swa.posthoc.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr[-3000:]
    err = done.stderr.strip().splitlines()[-1]
    assert "no tokenizer" not in err and "Traceback" not in done.stderr, err
    for words in ("--task_name sst2", "nyu-mll/glue", "HF_HUB_OFFLINE is set", "--validation_file"):
        assert words in err, (words, err)
    assert not out.exists()


def test_a_folder_without_tokenizer_is_named(tmp_path):
    from glue_fixtures import sentiment_rows, write_rows

    from hf_swa.posthoc.arguments import SoupEvaluationArguments
    from hf_swa.posthoc.scoring import glue_score_fn

    tiny_bert(seed=0).save_pretrained(tmp_path / "no-tokenizer")
    dev = write_rows(tmp_path / "dev.csv", sentiment_rows(8, seed=1))
    with pytest.raises(ValueError, match="no-tokenizer holds no tokenizer to score with"):
        glue_score_fn(SoupEvaluationArguments(validation_file=str(dev)), str(tmp_path / "no-tokenizer"))


@pytest.mark.slow
def test_average_and_report_read_the_same_main_metric_of_the_same_files(sentiment_run, tmp_path):
    """Two classes in a file of one's own: hf-swa-glue records f1 first, hf-swa-report and hf-swa-average use it."""
    from hf_swa.glue.report import collect_runs, summarize
    from hf_swa.posthoc.cli import main

    root, dev = sentiment_run
    out = tmp_path / "avg"
    evaluation = ["--validation_file", str(dev), "--text_columns", "text", "--label_column", "y", "--use_cpu"]
    assert main(["--run_dir", str(root / "run"), "--last", "2", "--output_dir", str(out), *evaluation]) == 0
    averaged = json.loads((out / "swa_config.json").read_text())["scores"]["metric"].removeprefix("eval_")

    results = json.loads((root / "run" / "results.json").read_text())  # as hf-swa-glue wrote it for these files
    scores = {"validation": {"accuracy": 0.5, "f1": 0.5, "loss": 0.7}}
    for variant in ("baseline", "swa"):
        folder = tmp_path / "runs" / "sentiment" / variant / "seed1"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({**results, "eval": {"live": scores, "swa": scores}}))
    (task,), _ = summarize(collect_runs(tmp_path / "runs"))
    assert averaged == task.main_metric == "f1"
