"""Candidate averages (window suffixes, EMAs) and selection: numbers against independently recorded snapshots."""

import json
import logging
import math

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import (
    QUICK_RUN,
    SnapshotRecorder,
    StopAt,
    classification_data,
    max_relative_error,
    tiny_bert,
    trainable_float_weights,
)
from torch import nn
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

from hf_swa import SWACallback, SWAConfig, SWATrainer, SWATrainingArguments, WeightAverager

COMMON = QUICK_RUN
MAX_STEPS = 14
# Snapshots at 4, 6, 8, 10, 12, 14: three windows of two, starting at 4, 8 and 12.
SWA = dict(swa_start=4, swa_freq=2, swa_lr=5e-3, swa_windows=3, swa_ema_decays=[0.5, 0.9])
SNAPSHOT_STEPS = [4, 6, 8, 10, 12, 14]


def mean_of(snapshots, steps):
    return {k: torch.stack([snapshots[s][k] for s in steps]).mean(0) for k in snapshots[steps[0]]}


def ema_of(snapshots, steps, decay):
    """The bias-corrected EMA in closed form: sum_i d^(n-i) w_i / sum_i d^(n-i)."""
    coefficients = [decay ** (len(steps) - 1 - i) for i in range(len(steps))]
    total = sum(coefficients)
    return {k: sum(c * snapshots[s][k] for c, s in zip(coefficients, steps)) / total for k in snapshots[steps[0]]}


def expected_candidates(snapshots):
    return {
        "swa": mean_of(snapshots, SNAPSHOT_STEPS),
        "swa_from8": mean_of(snapshots, [8, 10, 12, 14]),
        "swa_from12": mean_of(snapshots, [12, 14]),
        "ema_0.5": ema_of(snapshots, SNAPSHOT_STEPS, 0.5),
        "ema_0.9": ema_of(snapshots, SNAPSHOT_STEPS, 0.9),
    }


def swa_trainer(tmp_path, callbacks=(), select_dataset=None, **kwargs):
    settings = {**COMMON, **SWA, "max_steps": MAX_STEPS, "output_dir": str(tmp_path / "out"), **kwargs}
    return SWATrainer(
        model=tiny_bert(),
        args=SWATrainingArguments(**settings),
        train_dataset=classification_data(40),
        eval_dataset=classification_data(16, seed=7),
        swa_select_dataset=select_dataset,
        callbacks=list(callbacks),
    )


def test_engine_candidates_equal_independent_means():
    model = nn.Linear(4, 3)
    averager = WeightAverager(model, window_starts=[1, 4, 6], ema_decays=[0.8])
    snapshots = {}
    for step in range(1, 8):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(step)))
        assert averager.update(model, step=step)
        snapshots[step] = trainable_float_weights(model)
    expected = {
        "swa": mean_of(snapshots, list(range(1, 8))),
        "swa_from4": mean_of(snapshots, [4, 5, 6, 7]),
        "swa_from6": mean_of(snapshots, [6, 7]),
        "ema_0.8": ema_of(snapshots, list(range(1, 8)), 0.8),
    }
    assert averager.candidate_names() == list(expected)
    for name, mean in expected.items():
        assert max_relative_error(averager.averages(name), mean) <= 1e-6, name
    counts = {r["name"]: r["n_averaged"] for r in averager.candidates()}
    assert counts == {"swa": 7, "swa_from4": 4, "swa_from6": 2, "ema_0.8": 7}


def test_trainer_candidates_equal_recorded_snapshots(tmp_path):
    recorder = SnapshotRecorder(SNAPSHOT_STEPS)
    trainer = swa_trainer(tmp_path, callbacks=[recorder], swa_ship="last_window")
    trainer.train()
    averager = trainer.swa_callback.averager
    assert averager.candidate_names() == ["swa", "swa_from8", "swa_from12", "ema_0.5", "ema_0.9"]
    for name, mean in expected_candidates(recorder.snapshots).items():
        assert max_relative_error(averager.averages(name), mean) <= 1e-6, name
    # Without selection the model ships what swa_ship names: the last window.
    assert (
        max_relative_error(
            trainable_float_weights(trainer.model), expected_candidates(recorder.snapshots)["swa_from12"]
        )
        <= 1e-6
    )
    trainer.save_model()
    record = json.loads((tmp_path / "out" / "swa_config.json").read_text())
    assert record["shipped"] == "swa_from12"
    by_name = {c["name"]: c for c in record["candidates"]}
    assert by_name["swa_from8"] == {"name": "swa_from8", "kind": "window_mean", "start_step": 8, "n_averaged": 4}
    assert by_name["ema_0.9"] == {"name": "ema_0.9", "kind": "ema", "decay": 0.9, "start_step": 4, "n_averaged": 6}


def test_windows_at_most_gives_one_window_per_snapshot_when_the_run_takes_fewer(tmp_path):
    recorder = SnapshotRecorder(SNAPSHOT_STEPS)
    trainer = swa_trainer(tmp_path, callbacks=[recorder], swa_windows=8, swa_windows_at_most=True, swa_ema_decays=[])
    trainer.train()
    averager = trainer.swa_callback.averager
    expected = {"swa": SNAPSHOT_STEPS, **{f"swa_from{s}": SNAPSHOT_STEPS[i:] for i, s in enumerate(SNAPSHOT_STEPS)}}
    expected.pop("swa_from4")  # the first window's suffix is swa itself
    assert averager.candidate_names() == list(expected)
    for name, steps in expected.items():
        assert max_relative_error(averager.averages(name), mean_of(recorder.snapshots, steps)) <= 1e-6, name


def test_evaluate_reports_every_candidate_on_request(tmp_path):
    trainer = swa_trainer(tmp_path, swa_eval_candidates=True)
    trainer.train()
    metrics = trainer.evaluate()
    for name in ("", "swa_", "swa_from8_", "swa_from12_", "ema_0.5_", "ema_0.9_"):
        assert f"eval_{name}loss" in metrics, name
    with trainer.swa_callback.averaged_weights(trainer.model, "swa_from12"):
        alone = Trainer.evaluate(trainer, metric_key_prefix="check")
    assert metrics["eval_swa_from12_loss"] == alone["check_loss"]


def accuracy(eval_prediction):
    predictions = eval_prediction.predictions.argmax(-1)
    return {"accuracy": float((predictions == eval_prediction.label_ids).mean())}


@pytest.mark.parametrize("metric,greater", [("loss", None), ("eval_accuracy", None), ("loss", True)])
def test_selection_ships_the_best_scored_weights(tmp_path, metric, greater):
    select = classification_data(24, seed=11)
    trainer = swa_trainer(
        tmp_path, select_dataset=select, swa_select_metric=metric, swa_select_greater_is_better=greater
    )
    trainer.compute_metrics = accuracy
    trainer.train()
    selection = trainer.swa_callback.selection
    name = metric.replace("eval_", "")
    scores = selection["scores"]
    assert list(scores) == ["swa", "swa_from8", "swa_from12", "ema_0.5", "ema_0.9", "live"]
    greater_is_better = greater if greater is not None else name != "loss"
    best = (max if greater_is_better else min)(scores.values())
    assert selection["chosen"] == next(n for n, s in scores.items() if s == best)  # ties: the first in order
    assert selection["dataset"] == {"name": "swa_select_dataset", "size": 24} and selection["optimistic"] is False
    logged = {k: v for entry in trainer.state.log_history for k, v in entry.items() if k.startswith("select_")}
    for candidate, score in scores.items():
        assert logged[f"select_{candidate}_{name}"] == score

    # The saved model is the chosen candidate, and scoring it again gives the recorded score.
    trainer.save_model()
    out = tmp_path / "out"
    record = json.loads((out / "swa_config.json").read_text())
    assert record["selection"]["chosen"] == record["shipped"] == selection["chosen"]
    chosen = selection["chosen"]
    averager = trainer.swa_callback.averager
    if chosen == "live":
        with averager.live_weights(trainer.model):
            expected = trainable_float_weights(trainer.model)
    else:
        expected = {k: v.double() for k, v in averager.averages(chosen).items()}
    saved = load_file(str(out / "model.safetensors"))
    assert max_relative_error({k: saved[k] for k in expected}, expected) == 0.0
    reloaded = AutoModelForSequenceClassification.from_pretrained(str(out))
    rescore = Trainer(
        model=reloaded, args=TrainingArguments(str(tmp_path / "rescore"), **COMMON), compute_metrics=accuracy
    ).evaluate(select)
    assert math.isclose(rescore[f"eval_{name}"], scores[chosen], rel_tol=1e-6)


def test_selection_on_eval_dataset_is_noted(tmp_path, caplog):
    trainer = swa_trainer(tmp_path, swa_select_metric="loss")
    assert "optimistic" in caplog.text
    trainer.train()
    assert trainer.swa_callback.selection["dataset"]["name"] == "eval_dataset"
    assert "optimistic" in trainer.swa_callback.selection["dataset"]["note"]
    assert trainer.swa_callback.selection["optimistic"] is True


def test_metric_not_produced_saves_candidates_then_names_the_keys(tmp_path):
    trainer = swa_trainer(tmp_path, select_dataset=classification_data(8, seed=3), swa_select_metric="f1")
    trainer.compute_metrics = accuracy
    with pytest.raises(ValueError, match="accuracy") as error:
        trainer.train()
    assert "swa_candidates" in str(error.value)
    folder = tmp_path / "out" / "swa_candidates"
    averager = trainer.swa_callback.averager
    for name in averager.candidate_names():
        saved = load_file(str(folder / name / "model.safetensors"))
        assert max_relative_error({k: saved[k] for k in averager.names}, averager.averages(name)) == 0.0
        assert json.loads((folder / name / "swa_config.json").read_text())["candidate"] == name
    assert (folder / "live" / "model.safetensors").is_file()


def test_resume_in_the_middle_of_a_window_is_bit_exact(tmp_path):
    def run(folder, stop=None, resume=False):
        trainer = swa_trainer(folder, callbacks=[StopAt(stop)] if stop else [], save_strategy="steps", save_steps=3)
        trainer.train(resume_from_checkpoint=resume or None)
        averager = trainer.swa_callback.averager
        return {name: averager.averages(name) for name in averager.candidate_names()}

    reference = run(tmp_path / "full")
    run(tmp_path / "cut", stop=9)  # step 9: inside the window that starts at step 8
    resumed = run(tmp_path / "cut", resume=True)
    assert list(resumed) == list(reference)
    for name, averages in reference.items():
        for key, value in averages.items():
            assert torch.equal(resumed[name][key], value), (name, key)


def test_callback_select_with_a_plain_trainer(tmp_path):
    callback = SWACallback(SWAConfig(**SWA))
    args = TrainingArguments(str(tmp_path / "out"), max_steps=MAX_STEPS, **COMMON)
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=classification_data(40), callbacks=[callback])
    trainer.train()
    target = callback.averager.averages("swa_from12")
    distance = {}

    def score_fn(model):  # the distance to swa_from12's weights: lowest for swa_from12 itself
        weights = trainable_float_weights(model)
        distance[len(distance)] = sum((weights[k] - target[k].double()).norm().item() for k in target)
        return distance[len(distance) - 1]

    record = callback.select(trainer.model, score_fn, metric="distance_loss")
    assert record["chosen"] == "swa_from12" and record["greater_is_better"] is False
    assert (
        max_relative_error(trainable_float_weights(trainer.model), {k: v.double() for k, v in target.items()}) <= 1e-7
    )
    assert [c["name"] for c in callback.candidates] == ["swa", "swa_from8", "swa_from12", "ema_0.5", "ema_0.9"]


@pytest.mark.parametrize(
    "settings,message",
    [
        (dict(swa_windows=0), "swa_windows=0"),
        (dict(swa_windows=7, swa_windows_at_most=False), "only 6 snapshot"),
        (dict(swa_ema_decays=[1.0]), "swa_ema_decays=1.0"),
        (dict(swa_ema_decays=[0.0]), "swa_ema_decays=0.0"),
        (dict(swa_ema_decays=[0.9, 0.9]), "once"),
        (dict(swa_windows=2, swa_windows_at_most=False, swa_strategy="ema"), "strategy='uniform'"),
    ],
)
def test_bad_candidate_settings_stop_before_training(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        trainer = swa_trainer(tmp_path, **settings)
        trainer.train()
    assert not (tmp_path / "out" / "checkpoint-1").exists()


def test_selection_without_data_is_refused_up_front(tmp_path):
    args = SWATrainingArguments(str(tmp_path), max_steps=4, swa_start=2, swa_select_metric="loss", **COMMON)
    with pytest.raises(ValueError, match="swa_select_dataset"):
        SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(8))


def test_a_trainer_that_does_not_train_needs_no_selection_data_until_train_starts(tmp_path, caplog):
    args = SWATrainingArguments(str(tmp_path), max_steps=4, swa_start=2, swa_select_metric="loss", **COMMON)
    with caplog.at_level(logging.WARNING, logger="hf_swa"):
        evaluating = SWATrainer(model=tiny_bert(), args=args, eval_dataset=classification_data(8))
        assert "eval_loss" in evaluating.evaluate()
    assert "selects among the candidates on eval_dataset" not in caplog.text  # nothing is chosen here
    later = SWATrainer(model=tiny_bert(), args=args)  # no data yet: nothing to check
    later.train_dataset = classification_data(8)
    with pytest.raises(ValueError, match="swa_select_dataset"):  # checked when train() starts, before step 1
        later.train()
    assert later.state.global_step == 0 and not (tmp_path / "checkpoint-1").exists()
