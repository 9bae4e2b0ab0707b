"""SWA with the Trainer features people combine it with: early stopping, save_total_limit,
gradient checkpointing, torch.compile, hyperparameter search."""

import json
import logging
import os

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import (
    QUICK_RUN,
    TRANSFORMERS_4,
    SnapshotRecorder,
    StopAt,
    classification_data,
    expected_snapshot_steps,
    max_relative_error,
    tiny_bert,
    trainable_float_weights,
)
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from hf_swa import SWACallback, SWAConfig, SWATrainer, SWATrainingArguments
from hf_swa.checkpointing.resume import checkpoint_problems

COMMON = QUICK_RUN
DATA = classification_data(32)


def swa_args(output_dir, **kwargs):
    """Arguments whose model ships `swa`, the mean of every snapshot, which these tests compute by hand."""
    return SWATrainingArguments(output_dir=str(output_dir), **{**COMMON, "swa_ship": "swa", **kwargs})


def assert_model_holds_mean(trainer, recorder):
    mean = recorder.mean()
    assert max_relative_error(trainer.swa_callback.averager.averages(), mean) <= 1e-6
    assert max_relative_error(trainable_float_weights(trainer.model), mean) <= 1e-6


def assert_saved_model_is_average(trainer, folder, prefix=""):
    trainer.save_model(str(folder))
    saved = load_file(folder / "model.safetensors")
    averages = trainer.swa_callback.averager.averages()
    assert all(torch.equal(saved[prefix + k], v) for k, v in averages.items())


# ---------------------------------------------------------------- early stopping


class EvaluationsSeen(TrainerCallback):
    def __init__(self):
        self.metrics = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.metrics.append(dict(metrics))


@pytest.fixture
def transformers_warnings(caplog):
    """Warnings of transformers' own loggers (which do not propagate to the root logger)."""
    library = logging.getLogger("transformers")
    library.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        library.removeHandler(caplog.handler)


def expected_stop(values, patience, threshold):
    """EarlyStoppingCallback's rule, on the logged values of the metric (lower is better)."""
    best, waited = None, 0
    for index, value in enumerate(values):
        if best is None or (value < best and abs(value - best) > threshold):
            waited = 0
        else:
            waited += 1
        best = value if best is None else min(best, value)
        if waited >= patience:
            return index
    return None


@pytest.mark.parametrize("metric,threshold", [("loss", 1e9), ("swa_loss", 1e9), ("swa_loss", 0.0)])
def test_early_stopping_on_a_live_or_an_averaged_metric(tmp_path, transformers_warnings, metric, threshold):
    max_steps, eval_steps, patience = 20, 2, 2
    seen, recorder = EvaluationsSeen(), SnapshotRecorder(range(2, max_steps + 1))
    args = swa_args(
        tmp_path,
        max_steps=max_steps,
        swa_start=2,
        swa_lr=5e-3,
        eval_strategy="steps",
        eval_steps=eval_steps,
        metric_for_best_model=metric,
        greater_is_better=False,
    )
    stopper = EarlyStoppingCallback(early_stopping_patience=patience, early_stopping_threshold=threshold)
    trainer = SWATrainer(
        model=tiny_bert(), args=args, train_dataset=DATA, eval_dataset=DATA[:16], callbacks=[recorder, stopper, seen]
    )
    trainer.train()

    # One on_evaluate an evaluation, holding the live and the averaged metrics.
    assert all("eval_loss" in m and "eval_swa_loss" in m for m in seen.metrics)
    assert [e["step"] for e in trainer.state.log_history if "eval_loss" in e] == [
        eval_steps * (i + 1) for i in range(len(seen.metrics))
    ]
    assert "did not find" not in transformers_warnings.text
    # It stopped where the rule says, on the values of the metric it was given.
    stop = expected_stop([m[f"eval_{metric}"] for m in seen.metrics], patience, threshold)
    if threshold:
        assert stop == patience  # every later value counts as no improvement
    assert trainer.state.global_step == (eval_steps * (stop + 1) if stop is not None else max_steps)
    # The model holds the average of the snapshots up to the stop.
    recorder.snapshots = {s: w for s, w in recorder.snapshots.items() if s <= trainer.state.global_step}
    assert trainer.swa_callback.averager.n_averaged == len(recorder.snapshots)
    assert_model_holds_mean(trainer, recorder)


# ---------------------------------------------------------------- save_total_limit


@pytest.fixture(scope="module")
def eight_steps(tmp_path_factory):
    trainer = SWATrainer(
        model=tiny_bert(),
        args=swa_args(tmp_path_factory.mktemp("eight"), max_steps=8, swa_start=3, swa_lr=5e-3),
        train_dataset=DATA,
    )
    trainer.train()
    return {k: v.clone() for k, v in trainer.swa_callback.averager.averages().items()}


def test_save_total_limit_rotates_only_after_the_swa_state_is_written(tmp_path, monkeypatch, eight_steps):
    import transformers.trainer

    at_rotation = []

    def record(output_dir):
        newest = max(os.listdir(output_dir), key=lambda n: int(n.split("-")[1]) if n.startswith("checkpoint-") else -1)
        at_rotation.append((newest, checkpoint_problems(os.path.join(output_dir, newest))))

    if TRANSFORMERS_4:  # transformers 4.x rotates in a Trainer method
        rotate = Trainer._rotate_checkpoints

        def recording_method(self, use_mtime=False, output_dir=None):
            record(output_dir)
            rotate(self, use_mtime=use_mtime, output_dir=output_dir)

        monkeypatch.setattr(Trainer, "_rotate_checkpoints", recording_method)
    else:
        rotate = transformers.trainer.rotate_checkpoints

        def recording_rotate(output_dir, *args, **kwargs):
            record(output_dir)
            rotate(output_dir, *args, **kwargs)

        monkeypatch.setattr(transformers.trainer, "rotate_checkpoints", recording_rotate)

    def run(callbacks=()):
        args = swa_args(
            tmp_path, max_steps=8, swa_start=3, swa_lr=5e-3, save_strategy="steps", save_steps=2, save_total_limit=1
        )
        return SWATrainer(model=tiny_bert(), args=args, train_dataset=DATA, callbacks=list(callbacks))

    run([StopAt(6)]).train()
    # Each checkpoint was complete, SWA state included, before transformers deleted the older ones.
    assert at_rotation == [(f"checkpoint-{s}", []) for s in (2, 4, 6)]
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("checkpoint-")) == ["checkpoint-6"]
    resumed = run()
    resumed.train(resume_from_checkpoint=True)
    averages = resumed.swa_callback.averager.averages()
    assert all(torch.equal(averages[k], v) for k, v in eight_steps.items())
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("checkpoint-")) == ["checkpoint-8"]


# ---------------------------------------------------------------- gradient checkpointing, torch.compile


CHECKPOINTING_ARGUMENT = "gradient_checkpointing" if TRANSFORMERS_4 else "activation_checkpointing"  # renamed in 5.0


class CheckpointingOn(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kwargs):
        flag = "is_gradient_checkpointing" if TRANSFORMERS_4 else "is_activation_checkpointing"  # renamed in 5.0
        self.on = getattr(model, flag, None)


def test_gradient_checkpointing(tmp_path):
    steps = expected_snapshot_steps(0.5, 2, 8)
    recorder, checkpointing = SnapshotRecorder(steps), CheckpointingOn()
    args = swa_args(
        tmp_path / "out", max_steps=8, swa_start=0.5, swa_freq=2, swa_lr=5e-3, **{CHECKPOINTING_ARGUMENT: True}
    )
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=DATA, callbacks=[recorder, checkpointing])
    trainer.train()
    assert checkpointing.on is True
    assert_model_holds_mean(trainer, recorder)
    assert_saved_model_is_average(trainer, tmp_path / "final")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["torch_compile", "compiled_model"])
def test_torch_compile(tmp_path, how):
    steps = expected_snapshot_steps(4, 2, 8)
    recorder = SnapshotRecorder(steps)
    model = tiny_bert()
    if how == "torch_compile":
        args = swa_args(
            tmp_path / "out",
            max_steps=8,
            swa_start=4,
            swa_freq=2,
            swa_lr=5e-3,
            torch_compile=True,
            torch_compile_backend="aot_eager",
        )
    else:  # a model compiled by the user: its parameter names carry an _orig_mod. prefix
        model = torch.compile(model, backend="aot_eager")
        assert all(name.startswith("_orig_mod.") for name, _ in model.named_parameters())
        # (remove_unused_columns=False: transformers cannot read the compiled forward's signature)
        args = swa_args(
            tmp_path / "out", max_steps=8, swa_start=4, swa_freq=2, swa_lr=5e-3, remove_unused_columns=False
        )
    trainer = SWATrainer(model=model, args=args, train_dataset=DATA, callbacks=[recorder])
    trainer.train()
    names = trainer.swa_callback.averager.names
    assert names == [n for n, _ in tiny_bert().named_parameters()]  # mapped to the model's own names
    recorded = {k.removeprefix("_orig_mod."): v for k, v in recorder.mean().items()}
    assert max_relative_error(trainer.swa_callback.averager.averages(), recorded) <= 1e-6
    # Saved as a plain Trainer saves that model: torch_compile=True saves the model itself, a compiled
    # model is saved as the compiled module (its keys prefixed).
    assert_saved_model_is_average(trainer, tmp_path / "final", "" if how == "torch_compile" else "_orig_mod.")


# ---------------------------------------------------------------- hyperparameter search


@pytest.mark.slow  # a fresh interpreter, a subprocess or many trainings
def test_hyperparameter_search_keeps_swa_state_in_each_run_folder(tmp_path):
    pytest.importorskip("optuna")
    args = swa_args(
        tmp_path, max_steps=6, swa_start=3, swa_lr=5e-3, save_strategy="steps", save_steps=3, eval_strategy="no"
    )
    trainer = SWATrainer(model_init=lambda: tiny_bert(), args=args, train_dataset=DATA, eval_dataset=DATA[:8])
    best = trainer.hyperparameter_search(
        hp_space=lambda trial: {"learning_rate": trial.suggest_float("learning_rate", 1e-3, 1e-2, log=True)},
        compute_objective=lambda metrics: metrics["eval_swa_loss"],
        n_trials=2,
        direction="minimize",
        backend="optuna",
    )
    assert best.objective is not None
    runs = sorted(n for n in os.listdir(tmp_path) if n.startswith("run-"))
    assert runs == ["run-0", "run-1"]
    for run in runs:
        for step, n_averaged in ((3, 1), (6, 4)):
            folder = tmp_path / run / f"checkpoint-{step}"
            assert checkpoint_problems(str(folder)) == []
            assert json.loads((folder / "swa_state.json").read_text())["n_averaged"] == n_averaged


@pytest.mark.slow  # a fresh interpreter, a subprocess or many trainings
def test_hyperparameter_search_with_the_callback_alone_is_refused(tmp_path):
    pytest.importorskip("optuna")
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=4,
        save_strategy="steps",
        save_steps=2,
        **{k: v for k, v in COMMON.items() if k != "save_strategy"},
    )
    trainer = Trainer(
        model_init=lambda: tiny_bert(),
        args=args,
        train_dataset=DATA,
        eval_dataset=DATA[:8],
        callbacks=[SWACallback(SWAConfig(swa_start=2))],
    )
    with pytest.raises(ValueError, match="run-\\* folder.*SWATrainer"):
        trainer.hyperparameter_search(hp_space=lambda trial: {}, n_trials=1, backend="optuna")
