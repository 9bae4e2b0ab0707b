"""SWATrainer / SWACallback inside real Trainer runs: the average is the mean of the right snapshots."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import (
    QUICK_RUN,
    SnapshotRecorder,
    classification_data,
    expected_snapshot_steps,
    lm_data,
    max_relative_error,
    tiny_bert,
    tiny_gpt2_classifier,
    tiny_gpt2_lm,
    trainable_float_weights,
)
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from hf_swa import SWACallback, SWAConfig, SWATrainer, SWATrainingArguments

COMMON = QUICK_RUN


def swa_args(tmp_path, **kwargs):
    """Arguments whose model ships `swa`, the mean of every snapshot, which these tests compute by hand."""
    return SWATrainingArguments(output_dir=str(tmp_path / "out"), **{**COMMON, "swa_ship": "swa", **kwargs})


def averages_and_model(trainer):
    averages = trainer.swa_callback.averager.averages()
    return averages, trainer_model_weights(trainer)


def trainer_model_weights(trainer):
    return trainable_float_weights(trainer.model)


@pytest.mark.parametrize(
    "make_model,accumulation,device",
    [
        (tiny_bert, 1, None),
        (tiny_bert, 2, None),
        (tiny_bert, 1, "cpu"),
        (tiny_gpt2_classifier, 1, None),
        (tiny_gpt2_classifier, 3, "cpu"),
    ],
)
def test_average_equals_mean_of_recorded_snapshots(tmp_path, make_model, accumulation, device):
    max_steps, swa_start, swa_freq = 12, 0.5, 2
    steps = expected_snapshot_steps(swa_start, swa_freq, max_steps)
    assert steps == [6, 8, 10, 12]
    recorder = SnapshotRecorder(steps)
    args = swa_args(
        tmp_path,
        max_steps=max_steps,
        gradient_accumulation_steps=accumulation,
        swa_start=swa_start,
        swa_freq=swa_freq,
        swa_lr=5e-3,
        swa_device=device,
    )
    trainer = SWATrainer(model=make_model(), args=args, train_dataset=classification_data(64), callbacks=[recorder])
    trainer.train()
    assert sorted(recorder.snapshots) == steps
    averager = trainer.swa_callback.averager
    assert averager.n_averaged == len(steps)
    mean = recorder.mean()
    assert max_relative_error(averager.averages(), mean) <= 1e-6
    # The model ends with the averaged weights, and they differ from the last live weights.
    assert max_relative_error(trainer_model_weights(trainer), mean) <= 1e-6
    assert max_relative_error(recorder.snapshots[12], mean) > 1e-3


def test_callback_on_plain_trainer_for_causal_lm(tmp_path):
    max_steps, swa_start, swa_freq = 10, 4, 3
    steps = expected_snapshot_steps(swa_start, swa_freq, max_steps)
    assert steps == [4, 7, 10]
    recorder = SnapshotRecorder(steps)
    callback = SWACallback(SWAConfig(swa_start=swa_start, swa_freq=swa_freq, swa_lr=5e-3, swa_ship="swa"))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=max_steps, **COMMON)
    model = tiny_gpt2_lm()
    trainer = Trainer(model=model, args=args, train_dataset=lm_data(40), callbacks=[recorder, callback])
    trainer.train()
    mean = recorder.mean()
    assert callback.averager.n_averaged == 3
    assert max_relative_error(callback.averager.averages(), mean) <= 1e-6
    assert model.lm_head.weight is model.transformer.wte.weight
    assert max_relative_error(trainable_float_weights(model), mean) <= 1e-6
    saved = json.loads((tmp_path / "out" / "swa_config.json").read_text())
    assert saved["n_averaged"] == 3 and saved["start_step"] == 4 and saved["swa_freq"] == 3

    trainer.save_model(str(tmp_path / "final"))
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "final"))
    assert reloaded.lm_head.weight.data_ptr() == reloaded.transformer.wte.weight.data_ptr()
    assert max_relative_error(trainable_float_weights(reloaded), mean) <= 1e-6


def test_saved_model_holds_the_average_and_checkpoints_the_live_weights(tmp_path):
    max_steps = 8
    steps = expected_snapshot_steps(0.5, 1, max_steps)
    recorder = SnapshotRecorder(steps + [4])
    args = swa_args(tmp_path, max_steps=max_steps, swa_start=0.5, swa_lr=5e-3, save_strategy="steps", save_steps=4)
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(32), callbacks=[recorder])
    trainer.train()
    live_4 = recorder.snapshots[4]  # step 4 is a snapshot too (swa_start=0.5 of 8 steps)
    mean = {n: torch.stack([recorder.snapshots[s][n] for s in steps]).mean(0) for n in live_4}
    out = tmp_path / "out"

    # Every checkpoint, the final one too, holds the live weights of its step, as a plain Trainer's would,
    # with the SWA state beside them; swa_config.json marks averaged models only.
    for step in (4, 8):
        checkpoint = load_file(str(out / f"checkpoint-{step}" / "model.safetensors"))
        assert all(torch.equal(checkpoint[k].double(), v) for k, v in recorder.snapshots[step].items())
        assert not (out / f"checkpoint-{step}" / "swa_config.json").exists()
    state = json.loads((out / "checkpoint-8" / "swa_state.json").read_text())
    assert state["n_averaged"] == len(steps) and state["holds_averages"] is False

    trainer.save_model(str(tmp_path / "final"))
    files = set(os.listdir(tmp_path / "final"))
    assert {"model.safetensors", "config.json", "swa_config.json"} <= files
    reloaded = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "final"))
    assert max_relative_error(trainable_float_weights(reloaded), mean) <= 1e-6
    recorded = json.loads((tmp_path / "final" / "swa_config.json").read_text())
    assert recorded["n_averaged"] == 5 and recorded["start_step"] == 4 and recorded["swa_lr"] == 5e-3


def test_evaluate_reports_live_and_averaged_and_restores_live(tmp_path):
    data = classification_data(32)
    args = swa_args(tmp_path, max_steps=8, swa_start=0.5, swa_lr=5e-3)
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data[:16])
    before = trainer.evaluate()
    assert "eval_loss" in before and not any(k.startswith("eval_swa") for k in before)

    trainer.train()
    callback = trainer.swa_callback
    with callback.live_weights(trainer.model):
        live_state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        live_loss = Trainer.evaluate(trainer)["eval_loss"]
    averaged_state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    averaged_loss = Trainer.evaluate(trainer)["eval_loss"]
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] == pytest.approx(live_loss, rel=1e-6)
    assert metrics["eval_swa_loss"] == pytest.approx(averaged_loss, rel=1e-6)
    assert metrics["eval_loss"] != pytest.approx(metrics["eval_swa_loss"], rel=1e-6)
    # After training the model holds the average; evaluation leaves it (and the kept live weights) untouched.
    assert all(torch.equal(v, averaged_state[k]) for k, v in trainer.model.state_dict().items())
    with callback.live_weights(trainer.model):
        assert all(torch.equal(v, live_state[k]) for k, v in trainer.model.state_dict().items())


def test_evaluate_during_training_restores_live_weights_even_on_error(tmp_path):
    data = classification_data(32)
    calls = {"n": 0}

    def metrics_failing_on_the_averaged_pass(prediction):
        calls["n"] += 1
        if calls["n"] == 3:  # calls: step 2 live, step 4 live, step 4 averaged
            raise RuntimeError("metric failed")
        return {"n": calls["n"]}

    recorder = SnapshotRecorder([4])
    args = swa_args(tmp_path, max_steps=8, swa_start=3, swa_lr=5e-3, eval_strategy="steps", eval_steps=2)
    trainer = SWATrainer(
        model=tiny_bert(),
        args=args,
        train_dataset=data,
        eval_dataset=data[:8],
        compute_metrics=metrics_failing_on_the_averaged_pass,
        callbacks=[recorder],
    )
    with pytest.raises(RuntimeError, match="metric failed"):
        trainer.train()
    assert trainer.state.global_step == 4
    assert not trainer.swa_callback.averager.holds_averages
    live = trainable_float_weights(trainer.model)
    assert all(torch.equal(live[k], v) for k, v in recorder.snapshots[4].items())


def test_swa_evaluation_does_not_change_the_training_trajectory(tmp_path):
    """The averaged-weights pass must not shift the random streams (dropout, data order) training uses."""
    data = classification_data(48)

    def final_live_weights(swa):
        args = swa_args(
            tmp_path / str(swa),
            max_steps=10,
            swa=swa,
            swa_start=3,
            swa_lr_ratio=0.0,  # the base schedule, as the baseline's
            eval_strategy="steps",
            eval_steps=1,
            lr_scheduler_type="constant",
        )
        trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data[:8])
        trainer.train()
        if swa:
            with trainer.swa_callback.live_weights(trainer.model):
                return trainable_float_weights(trainer.model)
        return trainable_float_weights(trainer.model)

    assert tiny_bert().config.hidden_dropout_prob > 0  # dropout draws from the random stream
    with_swa, baseline = final_live_weights(True), final_live_weights(False)
    assert all(torch.equal(with_swa[k], v) for k, v in baseline.items())


def test_a_second_train_call_continues_from_the_live_weights(tmp_path):
    class FirstStepWeights(TrainerCallback):
        def __init__(self):
            self.weights = []

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step == 0:
                self.weights.append(trainable_float_weights(model))

    first_step = FirstStepWeights()
    args = swa_args(tmp_path, max_steps=6, swa_start=2, swa_lr=5e-3)
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(32), callbacks=[first_step])
    trainer.train()
    with trainer.swa_callback.live_weights(trainer.model):
        live = trainable_float_weights(trainer.model)
    trainer.train()
    assert all(torch.equal(first_step.weights[1][k], v) for k, v in live.items())


def test_periodic_evaluation_logs_both_metric_sets(tmp_path):
    data = classification_data(32)
    args = swa_args(tmp_path, max_steps=8, swa_start=0.5, swa_lr=5e-3, eval_strategy="steps", eval_steps=2)
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data[:8])
    trainer.train()
    evals = {e["step"]: e for e in trainer.state.log_history if "eval_loss" in e or "eval_swa_loss" in e}
    swa_steps = sorted(s for s, e in evals.items() if "eval_swa_loss" in e)
    assert swa_steps == [4, 6, 8]
    assert "eval_swa_loss" not in evals[2]


def test_baseline_mode_is_a_plain_trainer(tmp_path):
    args = swa_args(tmp_path, max_steps=4, swa=False, swa_start="0.5")
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(16))
    assert trainer.swa_callback is None
    trainer.train()
    metrics = trainer.evaluate(eval_dataset=classification_data(8))
    assert "eval_swa_loss" not in metrics
    # The same run with a plain Trainer and the same seed: the same weights and evaluation, bit for bit.
    plain = Trainer(
        model=tiny_bert(),
        args=TrainingArguments(str(tmp_path / "plain"), max_steps=4, **COMMON),
        train_dataset=classification_data(16),
    )
    plain.train()
    assert all(
        torch.equal(a, b) for a, b in zip(trainer.model.state_dict().values(), plain.model.state_dict().values())
    )
    assert plain.evaluate(eval_dataset=classification_data(8))["eval_loss"] == metrics["eval_loss"]


def test_a_baseline_saved_over_an_swa_folder_is_not_taken_for_an_average(tmp_path):
    folder = tmp_path / "model"
    args = swa_args(tmp_path, max_steps=4, swa_start=2)
    swa = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(16))
    swa.train()
    swa.save_model(str(folder))
    assert (folder / "swa_config.json").exists()
    baseline = SWATrainer(
        model=tiny_bert(), args=swa_args(tmp_path, max_steps=4, swa=False), train_dataset=classification_data(16)
    )
    baseline.train()
    baseline.save_model(str(folder))
    assert not (folder / "swa_config.json").exists()
