"""What the model holds: `copy_to`, `swap_in`/`swap_out` and the live weights kept aside, against recorded means."""

import pytest
import torch
from tiny_models import QUICK_RUN, classification_data, tiny_bert, trainable_float_weights
from torch import nn
from transformers import TrainerCallback

from hf_swa import SWATrainer, SWATrainingArguments, WeightAverager


def averaged_linear():
    """A linear model averaged over 4 snapshots (windows from steps 1 and 3), and its float64 snapshots by step."""
    model = nn.Linear(3, 2)
    averager = WeightAverager(model, window_starts=[1, 3])
    snapshots = {}
    for step in range(1, 5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(step)))
        averager.update(model, step=step)
        snapshots[step] = trainable_float_weights(model)
    return model, averager, snapshots


def mean_of(snapshots, steps):
    return {k: torch.stack([snapshots[s][k] for s in steps]).mean(0) for k in snapshots[steps[0]]}


def assert_model_holds(model, expected):
    for name, value in trainable_float_weights(model).items():
        assert torch.allclose(value, expected[name], rtol=0, atol=1e-6), name


def test_copy_to_makes_the_model_hold_that_candidate_for_later_swaps():
    model, averager, snapshots = averaged_linear()
    live = trainable_float_weights(model)
    averager.swap_in(model, "swa")  # as at the end of training: the average in, the live weights kept aside
    averager.copy_to(model, "swa_from3")
    assert averager.held == "swa_from3"
    with averager.averaged_weights(model, "swa"):  # an evaluation of another candidate
        assert_model_holds(model, mean_of(snapshots, [1, 2, 3, 4]))
    assert_model_holds(model, mean_of(snapshots, [3, 4]))  # not the previously held "swa"
    with averager.live_weights(model):
        assert all(torch.equal(v, live[k]) for k, v in trainable_float_weights(model).items())
    assert_model_holds(model, mean_of(snapshots, [3, 4]))


def test_copy_to_over_the_live_weights_holds_the_candidate_and_says_the_live_ones_are_gone():
    model, averager, snapshots = averaged_linear()
    averager.copy_to(model, "swa_from3")
    assert averager.held == "swa_from3"
    with averager.averaged_weights(model, "swa"):
        assert_model_holds(model, mean_of(snapshots, [1, 2, 3, 4]))
    assert_model_holds(model, mean_of(snapshots, [3, 4]))
    with pytest.raises(RuntimeError, match="copy_to overwrote the live weights"):
        averager.swap_out(model)
    assert_model_holds(model, mean_of(snapshots, [3, 4]))


def test_summary_names_the_candidate_copied_into_the_model(tmp_path):
    settings = {**QUICK_RUN, "max_steps": 6, "output_dir": str(tmp_path / "out")}
    args = SWATrainingArguments(**settings, swa_start=2, swa_windows=2, swa_ship="swa")
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(24))
    trainer.train()
    callback = trainer.swa_callback
    assert callback.summary()["shipped"] == "swa"
    later = callback.averager.candidate_names()[1]
    callback.averager.copy_to(trainer.model, later)
    assert callback.summary()["shipped"] == later
    trainer.evaluate(classification_data(8, seed=5))
    expected = callback.averager.averages(later)
    weights = dict(trainer.model.named_parameters())
    assert all(torch.equal(weights[k], v) for k, v in expected.items())


def test_live_weights_kept_aside_are_freed_after_the_swap_back_and_come_back_bit_for_bit():
    model, averager, _ = averaged_linear()
    live = {k: v.detach().clone() for k, v in model.named_parameters()}
    with averager.averaged_weights(model, "swa"):
        assert averager.keeps_live_weights  # the live weights, kept aside while the candidate is in
        kept = averager.kept_live_weights()
        assert kept.keys() == live.keys() and all(torch.equal(kept[k], v) for k, v in live.items())
    assert not averager.keeps_live_weights
    with pytest.raises(ZeroDivisionError):
        with averager.averaged_weights(model, "swa_from3"):
            raise ZeroDivisionError
    assert not averager.keeps_live_weights
    assert all(torch.equal(p, live[k]) for k, p in model.named_parameters())


class BackupAfterEvaluation(TrainerCallback):
    """Whether the averager still keeps a copy of the weights once each evaluation has ended."""

    def __init__(self):
        self.trainer, self.kept = None, []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        averager = self.trainer.swa_callback.averager
        self.kept.append((state.global_step, "eval_swa_loss" in metrics, averager.keeps_live_weights))


def test_evaluation_during_training_frees_the_copy_of_the_live_weights(tmp_path):
    recorder = BackupAfterEvaluation()
    settings = {**QUICK_RUN, "max_steps": 6, "output_dir": str(tmp_path / "out")}
    args = SWATrainingArguments(**settings, swa_start=2, eval_strategy="steps", eval_steps=3, swa_ship="swa")
    trainer = SWATrainer(
        model=tiny_bert(),
        args=args,
        train_dataset=classification_data(24),
        eval_dataset=classification_data(8, seed=5),
        callbacks=[recorder],
    )
    recorder.trainer = trainer
    trainer.train()
    assert recorder.kept == [(3, True, False), (6, True, False)]
    # After training the model holds the average: the live weights stay kept aside for live_weights().
    assert trainer.swa_callback.averager.keeps_live_weights
