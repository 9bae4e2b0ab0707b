"""`swa_ship`: what the model holds after training when nothing chooses among the candidates."""

import json

import pytest
from tiny_models import (
    QUICK_RUN,
    SnapshotRecorder,
    classification_data,
    max_relative_error,
    tiny_bert,
    trainable_float_weights,
)
from transformers import Trainer, TrainingArguments

from hf_swa import SWACallback, SWAConfig, SWATrainer, SWATrainingArguments

MAX_STEPS = 8  # swa_start 0.5: snapshots after steps 4..8; 4 windows from steps 4, 5, 6 and 7


def train(tmp_path, steps, callbacks=(), select_dataset=None, **swa):
    args = SWATrainingArguments(**{**QUICK_RUN, "max_steps": MAX_STEPS, "output_dir": str(tmp_path)}, **swa)
    recorder = SnapshotRecorder(steps)
    trainer = SWATrainer(
        model=tiny_bert(),
        args=args,
        train_dataset=classification_data(40),
        swa_select_dataset=select_dataset,
        callbacks=[recorder, *callbacks],
    )
    trainer.train()
    return trainer, recorder


def test_last_window_ships_the_mean_of_the_last_windows_snapshots(tmp_path):
    # The rule of SWAConfig.window_starts, written out: 5 snapshots in 4 windows start at 4 + k*5//4.
    last_start = 4 + 3 * 5 // 4
    trainer, recorder = train(tmp_path, range(last_start, MAX_STEPS + 1), swa_ship="last_window")
    assert sorted(recorder.snapshots) == [7, 8]
    name = f"swa_from{last_start}"
    summary = trainer.swa_callback.summary()
    assert summary["shipped"] == name and summary["swa_ship"] == "last_window"
    assert max_relative_error(trainable_float_weights(trainer.model), recorder.mean()) < 1e-6
    trainer.save_model()
    with open(tmp_path / "swa_config.json", encoding="utf-8") as f:
        assert json.load(f)["shipped"] == name


def test_swa_ships_every_snapshot_from_the_start(tmp_path):
    trainer, recorder = train(tmp_path, range(4, MAX_STEPS + 1), swa_ship="swa", swa_select_metric="none")
    assert trainer.swa_callback.summary()["shipped"] == "swa"
    assert max_relative_error(trainable_float_weights(trainer.model), recorder.mean()) < 1e-6


def test_an_ema_candidate_can_be_shipped(tmp_path):
    trainer, _ = train(tmp_path, [], swa_ship="ema_0.5", swa_ema_decays=[0.5], swa_select_metric="none")
    averager = trainer.swa_callback.averager
    assert trainer.swa_callback.summary()["shipped"] == "ema_0.5"
    weights = trainable_float_weights(trainer.model)
    expected = {k: v.double() for k, v in averager.averages("ema_0.5").items() if k in weights}
    assert expected and all(weights[k].equal(v) for k, v in expected.items())


def test_one_window_makes_the_last_window_swa(tmp_path):
    trainer, recorder = train(tmp_path, range(4, MAX_STEPS + 1), swa_ship="last_window", swa_windows=1)
    assert trainer.swa_callback.summary()["shipped"] == "swa"
    assert max_relative_error(trainable_float_weights(trainer.model), recorder.mean()) < 1e-6


def test_a_selection_overrides_swa_ship(tmp_path):
    trainer, _ = train(tmp_path, [], select_dataset=classification_data(16, seed=11), swa_ship="last_window")
    record = trainer.swa_callback.selection
    assert trainer.swa_callback.summary()["shipped"] == record["chosen"]


def test_the_plain_trainer_with_the_callback_ships_swa_ship(tmp_path):
    args = TrainingArguments(**{**QUICK_RUN, "max_steps": MAX_STEPS, "output_dir": str(tmp_path)})
    recorder = SnapshotRecorder([7, 8])
    callback = SWACallback(swa_ship="last_window", swa_select_metric="none")
    trainer = Trainer(
        model=tiny_bert(), args=args, train_dataset=classification_data(40), callbacks=[recorder, callback]
    )
    trainer.train()
    assert callback.summary()["shipped"] == "swa_from7"
    assert max_relative_error(trainable_float_weights(trainer.model), recorder.mean()) < 1e-6


@pytest.mark.parametrize("bad", ["Live", "ema_0.9", "pema_0.05", "swa_from7", "", "last"])
def test_a_name_these_settings_do_not_make_is_refused_up_front(tmp_path, bad):
    with pytest.raises(ValueError, match="swa_ship"):
        SWAConfig(swa_ship=bad)
    with pytest.raises(ValueError, match="swa_ship"):
        SWATrainingArguments(str(tmp_path), report_to="none", use_cpu=True, swa_ship=bad)
    assert SWAConfig(swa_ship="pema_0.05", swa_power_ema_stds=[0.05, 0.1]).swa_ship == "pema_0.05"
    assert SWAConfig(swa_ship="pema_0.2", swa_power_ema_stds=[0.05, 0.1], swa_power_ema_candidates=[0.2])


def test_an_ema_strategy_has_one_window_its_ema(tmp_path):
    trainer, _ = train(tmp_path, [], swa_ship="last_window", swa_strategy="ema", swa_ema_decay=0.5)
    assert trainer.swa_callback.summary()["shipped"] == "swa"
    weights = trainable_float_weights(trainer.model)
    expected = {k: v.double() for k, v in trainer.swa_callback.averager.averages("swa").items() if k in weights}
    assert expected and all(weights[k].equal(v) for k, v in expected.items())


def test_a_run_that_ends_before_any_snapshot_leaves_no_earlier_record_beside_its_live_weights(tmp_path):
    """The callback on a plain Trainer: an earlier run's swa_config.json in output_dir would describe an average
    that this run's model (the live weights, saved next) is not."""
    (tmp_path / "swa_config.json").write_text('{"shipped": "swa"}')
    from tiny_models import StopAt

    callback = SWACallback(SWAConfig(swa_start=6))
    args = TrainingArguments(str(tmp_path), max_steps=MAX_STEPS, **QUICK_RUN)
    stopped = [StopAt(3), callback]  # stopped early, before averaging starts
    Trainer(model=tiny_bert(), args=args, train_dataset=classification_data(40), callbacks=stopped).train()
    assert not callback.has_average and not (tmp_path / "swa_config.json").exists()
