"""Bad settings stop before the first training step with an error naming the setting and the fix."""

import math

import pytest
import torch
from tiny_models import SnapshotRecorder, classification_data, max_relative_error, tiny_bert
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments

from hf_swa import SWACallback, SWAConfig, SWATrainer, SWATrainingArguments

COMMON = dict(
    per_device_train_batch_size=4,
    report_to="none",
    use_cpu=True,
    disable_tqdm=True,
    logging_strategy="no",
    save_strategy="no",
    max_steps=12,
)

BAD_SETTINGS = [
    ({"swa_start": 0}, r"swa_start=0.*>= 1"),
    ({"swa_start": -3}, r"swa_start=-3.*>= 1"),
    ({"swa_start": 0.0}, r"swa_start=0\.0.*\(0, 1\]"),
    ({"swa_start": 1.5}, r"swa_start=1\.5.*as a float.*\(0, 1\]"),
    ({"swa_start": "soon"}, r"swa_start must be a fraction"),
    ({"swa_freq": 0}, r"swa_freq=0.*>= 1"),
    ({"swa_lr": 0.0}, r"swa_lr=0\.0.*> 0"),
    ({"swa_lr": -1e-5}, r"swa_lr=-1e-05.*> 0"),
    ({"swa_anneal_steps": -1}, r"swa_anneal_steps=-1.*>= 0"),
    ({"swa_anneal_strategy": "step"}, r"swa_anneal_strategy='step'.*cos, linear"),
]


@pytest.mark.parametrize("settings,message", BAD_SETTINGS)
def test_bad_swa_config(settings, message):
    with pytest.raises(ValueError, match=message):
        SWAConfig(**settings)


@pytest.mark.parametrize("settings,message", BAD_SETTINGS)
def test_bad_training_arguments(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        SWATrainingArguments(output_dir=str(tmp_path), **settings, **COMMON)


def test_bad_flags_on_the_command_line(tmp_path):
    parser = HfArgumentParser(SWATrainingArguments)
    with pytest.raises(ValueError, match="swa_freq"):
        parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--swa_freq", "0"])
    with pytest.raises(SystemExit):  # argparse lists the accepted choices
        parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--swa_anneal_strategy", "step"])
    (args,) = parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--swa_start", "100"])
    assert args.swa_start == 100 and isinstance(args.swa_start, int)
    (args,) = parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--swa_start", "1.0"])
    assert args.swa_start == 1.0 and isinstance(args.swa_start, float)


def test_flags_have_help_text():
    help_text = HfArgumentParser(SWATrainingArguments).format_help()
    for flag in (
        "--swa_start",
        "--swa_freq",
        "--swa_lr",
        "--swa_anneal_steps",
        "--swa_anneal_strategy",
        "--swa_device",
        "--no_swa",
    ):
        assert flag in help_text


def test_start_past_the_end_of_training_stops_before_the_first_step(tmp_path):
    args = SWATrainingArguments(output_dir=str(tmp_path), swa_start=20, **COMMON)
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(16))
    with pytest.raises(ValueError, match=r"swa_start=20 is step 20, past the end of training \(max_steps=12\)"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_model_without_trainable_float_parameters(tmp_path):
    model = tiny_bert().requires_grad_(False)
    args = SWATrainingArguments(output_dir=str(tmp_path), **COMMON)
    with pytest.raises(ValueError, match="no trainable floating-point parameters"):
        SWATrainer(model=model, args=args, train_dataset=classification_data(16))


def test_load_best_model_at_end_is_refused(tmp_path):
    best = dict(
        load_best_model_at_end=True,
        eval_strategy="steps",
        eval_steps=4,
        **{**COMMON, "save_strategy": "steps", "save_steps": 4},
    )
    with pytest.raises(ValueError, match="load_best_model_at_end"):
        SWATrainingArguments(output_dir=str(tmp_path), **best)
    data = classification_data(16)
    with pytest.raises(ValueError, match="load_best_model_at_end"):
        SWATrainer(
            model=tiny_bert(),
            args=TrainingArguments(output_dir=str(tmp_path), **best),
            train_dataset=data,
            eval_dataset=data,
            swa_config=SWAConfig(),
        )
    trainer = Trainer(
        model=tiny_bert(),
        args=TrainingArguments(output_dir=str(tmp_path), **best),
        train_dataset=data,
        eval_dataset=data,
        callbacks=[SWACallback()],
    )
    with pytest.raises(ValueError, match="load_best_model_at_end"):
        trainer.train()
    assert trainer.state.global_step == 0


class PoisonAt(TrainerCallback):
    """Puts a NaN into the weights after optimizer step `step` (training then carries it on)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.classifier.weight[0, 0] = math.nan


def test_non_finite_snapshots_are_skipped_and_counted(tmp_path, caplog):
    recorder = SnapshotRecorder([6, 7])
    callback = SWACallback(SWAConfig(swa_start=6, swa_lr=1e-3))
    trainer = Trainer(
        model=tiny_bert(),
        args=TrainingArguments(output_dir=str(tmp_path), **COMMON),
        train_dataset=classification_data(48),
        callbacks=[recorder, PoisonAt(8), callback],
    )
    trainer.train()
    averager = callback.averager
    assert averager.n_averaged == 2 and averager.n_skipped == 5  # steps 8..12 hold NaN
    assert all(torch.isfinite(a).all() for a in averager.averages().values())
    assert max_relative_error(averager.averages(), recorder.mean()) <= 1e-6
    assert "skipped a snapshot" in caplog.text


def test_best_metric_on_the_average_before_averaging_starts_is_refused(tmp_path):
    data = classification_data(48)
    args = SWATrainingArguments(
        output_dir=str(tmp_path),
        swa_start=6,
        eval_strategy="steps",
        eval_steps=2,
        metric_for_best_model="eval_swa_loss",
        **COMMON,
    )
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data[:8])
    with pytest.raises(ValueError, match=r"first evaluation \(step 2\) comes before averaging starts \(step 6\)"):
        trainer.train()
    assert trainer.state.global_step == 0
