"""SWATrainer trains exactly as the plain Trainer does: with --no_swa bit for bit, and with SWA the live weights too.

Gradient accumulation and the loss scaling behind it (`model_accepts_loss_kwargs`) are
transformers' business: SWA averages weights and changes nothing of how they are trained.
"""

import pytest
import torch
from tiny_models import QUICK_RUN, classification_data, tiny_bert
from transformers import Trainer, TrainingArguments

from hf_swa import SWATrainer, SWATrainingArguments

RUN = dict(QUICK_RUN, max_steps=6, per_device_train_batch_size=2, gradient_accumulation_steps=3)


def final_weights(trainer) -> dict:
    return {name: value.detach().clone() for name, value in trainer.model.named_parameters()}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    args = TrainingArguments(output_dir=str(tmp_path_factory.mktemp("plain")), **RUN)
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=classification_data(36))
    loss = trainer.train().training_loss
    return trainer.model_accepts_loss_kwargs, loss, final_weights(trainer)


def assert_same_weights(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    assert all(torch.equal(actual[name], value) for name, value in expected.items())


def test_no_swa_trains_bit_for_bit_as_the_plain_trainer_with_accumulation(tmp_path, plain):
    accepts, loss, weights = plain
    args = SWATrainingArguments(output_dir=str(tmp_path), swa=False, **RUN)
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(36))
    assert trainer.model_accepts_loss_kwargs == accepts
    assert trainer.train().training_loss == loss
    assert_same_weights(final_weights(trainer), weights)


def test_swa_run_keeps_the_plain_trainers_live_trajectory_with_accumulation(tmp_path, plain):
    accepts, loss, weights = plain
    args = SWATrainingArguments(output_dir=str(tmp_path), swa_start=3, swa_lr_ratio=0.0, **RUN)  # the plain schedule
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(36))
    assert trainer.model_accepts_loss_kwargs == accepts
    assert trainer.train().training_loss == loss
    with trainer.swa_callback.live_weights(trainer.model):
        assert_same_weights(final_weights(trainer), weights)
