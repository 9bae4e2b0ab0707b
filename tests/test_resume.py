"""Interrupted-and-resumed runs end with the same averaged weights as uninterrupted ones."""

import json

import pytest
import torch
from tiny_models import QUICK_RUN, StopAt, classification_data, tiny_bert
from transformers import Trainer, TrainingArguments

from hf_swa import SWACallback, SWAConfig, SWATrainer, SWATrainingArguments

MAX_STEPS = 12
SWA = dict(
    swa_start=5,
    swa_freq=2,
    swa_lr=4e-3,
    swa_anneal_steps=3,
    swa_anneal_strategy="linear",
    swa_windows=1,
    swa_ship="swa",
)
COMMON = dict(QUICK_RUN, save_strategy="steps", save_steps=3, max_steps=MAX_STEPS)
DATA = classification_data(40)  # 10 batches an epoch: resuming also crosses an epoch boundary


def swa_trainer(output_dir, callbacks=()):
    args = SWATrainingArguments(output_dir=str(output_dir), **SWA, **COMMON)
    return SWATrainer(model=tiny_bert(), args=args, train_dataset=DATA, callbacks=list(callbacks))


def final_state(trainer):
    callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, SWACallback))
    return (
        callback.averager.n_averaged,
        {k: v.clone() for k, v in callback.averager.averages().items()},
        {k: v.clone() for k, v in trainer.model.state_dict().items()},
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    trainer = swa_trainer(tmp_path_factory.mktemp("full"))
    trainer.train()
    return final_state(trainer)


def assert_same(resumed, reference):
    n, averages, weights = resumed
    ref_n, ref_averages, ref_weights = reference
    assert n == ref_n == 4  # snapshots at steps 5, 7, 9, 11
    for name, value in ref_averages.items():
        assert torch.equal(averages[name], value), name
    for name, value in ref_weights.items():
        assert torch.equal(weights[name], value), name


@pytest.mark.parametrize("interrupt_at", [3, 9])
def test_resumed_swa_trainer_equals_uninterrupted(tmp_path, uninterrupted, interrupt_at):
    interrupted = swa_trainer(tmp_path, callbacks=[StopAt(interrupt_at)])
    interrupted.train()
    assert interrupted.state.global_step == interrupt_at
    saved = json.loads((tmp_path / f"checkpoint-{interrupt_at}" / "swa_state.json").read_text())
    assert saved["n_averaged"] == (0 if interrupt_at == 3 else 3)

    resumed = swa_trainer(tmp_path)
    resumed.train(resume_from_checkpoint=True)
    assert_same(final_state(resumed), uninterrupted)


def test_resumed_plain_trainer_with_callback_equals_uninterrupted(tmp_path, uninterrupted):
    def trainer(callbacks):
        args = TrainingArguments(output_dir=str(tmp_path), **COMMON)
        return Trainer(
            model=tiny_bert(), args=args, train_dataset=DATA, callbacks=callbacks + [SWACallback(SWAConfig(**SWA))]
        )

    trainer([StopAt(6)]).train()
    resumed = trainer([])
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))
    assert_same(final_state(resumed), uninterrupted)


@pytest.fixture
def checkpoint_9(tmp_path):
    swa_trainer(tmp_path / "run", callbacks=[StopAt(9)]).train()
    return tmp_path / "run" / "checkpoint-9"


def resume_error(checkpoint, **swa_overrides):
    args = SWATrainingArguments(output_dir=str(checkpoint.parent), **{**SWA, **swa_overrides}, **COMMON)
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=DATA)
    with pytest.raises(ValueError) as error:
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.state.global_step == 9  # nothing trained
    return str(error.value)


def test_checkpoint_without_swa_state_past_start_is_refused(checkpoint_9):
    (checkpoint_9 / "swa_state.json").unlink()
    message = resume_error(checkpoint_9)
    assert "no SWA state" in message and "swa_start" in message


def test_checkpoint_without_swa_state_before_start_starts_averaging_there(tmp_path, uninterrupted):
    swa_trainer(tmp_path, callbacks=[StopAt(3)]).train()
    (tmp_path / "checkpoint-3" / "swa_state.json").unlink()  # e.g. written by a run without SWA
    resumed = swa_trainer(tmp_path)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    assert_same(final_state(resumed), uninterrupted)


def test_checkpoint_with_state_of_another_model_is_refused(checkpoint_9):
    from hf_swa import WeightAverager
    from hf_swa.checkpointing.names import STATE_FILE
    from hf_swa.checkpointing.state import save_swa_state

    state = json.loads((checkpoint_9 / STATE_FILE).read_text())
    other = tiny_bert(num_labels=3)  # same parameter names, another classifier shape
    averager = WeightAverager(other, window_starts=[state["start_step"]])
    averager.update(other)
    metadata = {k: state[k] for k in ("global_step", "start_step", "swa_freq", "config")}
    save_swa_state(str(checkpoint_9), averager.state_dict(), metadata)
    message = resume_error(checkpoint_9)
    assert "shape" in message and "classifier.weight" in message


def test_changed_averaging_settings_are_refused(checkpoint_9):
    message = resume_error(checkpoint_9, swa_freq=3)
    assert "swa_freq" in message and "checkpoint 2" in message


def test_a_changed_lr_tail_is_refused(checkpoint_9):
    # SWA (swa_lr=4e-3) wrote the checkpoint; the default ratio instead would move the LR at the resume step.
    message = resume_error(checkpoint_9, swa_lr=None)
    assert "LR tail: checkpoint swa_lr=0.004, now swa_lr_ratio=0.5" in message


def test_a_checkpoint_written_before_the_defaults_moved_names_its_settings(checkpoint_9):
    from hf_swa.checkpointing.names import STATE_FILE

    state = json.loads((checkpoint_9 / STATE_FILE).read_text())
    for key in ("swa_lr", "swa_lr_ratio"):  # as written by a run that had no ratio and no tail
        state["config"].pop(key)
    (checkpoint_9 / STATE_FILE).write_text(json.dumps(state))
    message = resume_error(checkpoint_9)  # now swa_lr=4e-3: the checkpoint ran without a tail
    assert "LR tail: checkpoint swa_lr_ratio=0.0, now swa_lr=0.004" in message
    assert "It was written with swa_start=5, swa_lr=None, swa_windows=1" in message


@pytest.mark.parametrize("damage", ["state", "averages"])
def test_corrupt_state_files_are_refused_and_kept(checkpoint_9, damage):
    name = "swa_state.json" if damage == "state" else "swa_averages.safetensors"
    path = checkpoint_9 / name
    path.write_bytes(path.read_bytes()[:40])
    message = resume_error(checkpoint_9)
    assert name in message and "corrupt" in message
    assert path.exists()  # nothing already saved is deleted


def test_state_is_written_atomically(checkpoint_9, monkeypatch):
    from hf_swa.checkpointing import state as checkpoint

    before = {name: (checkpoint_9 / name).read_bytes() for name in ("swa_state.json", "swa_averages.safetensors")}
    saved = checkpoint.load_swa_state(str(checkpoint_9))

    def write_half_then_die(tensors, path, metadata=None):  # a crash in the middle of writing the averages
        with open(path, "wb") as f:
            f.write(b"\x00" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", write_half_then_die)
    state = {**saved, "n_averaged": saved["n_averaged"] + 1, "averages": saved["averages"]}
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_swa_state(str(checkpoint_9), state, {"global_step": 10})
    # The old state survives whole and still loads; the half-written file is gone.
    assert {name: (checkpoint_9 / name).read_bytes() for name in before} == before
    assert checkpoint.load_swa_state(str(checkpoint_9))["n_averaged"] == saved["n_averaged"]
    assert [p.name for p in checkpoint_9.iterdir() if p.name.startswith(".tmp-")] == []


def test_rerunning_a_finished_run_with_resume_keeps_the_average(tmp_path, uninterrupted):
    finished = swa_trainer(tmp_path)
    finished.train()
    assert_same(final_state(finished), uninterrupted)
    # transformers may run one step past max_steps when resuming from the final checkpoint: never averaged.
    rerun = swa_trainer(tmp_path)
    rerun.train(resume_from_checkpoint=True)
    n, averages, weights = final_state(rerun)
    assert_same((n, averages, {k: v for k, v in weights.items()}), uninterrupted)


def test_state_from_another_step_is_refused(tmp_path):
    swa_trainer(tmp_path, callbacks=[StopAt(9)]).train()
    args = TrainingArguments(output_dir=str(tmp_path), resume_from_checkpoint=str(tmp_path / "checkpoint-6"), **COMMON)
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=DATA, callbacks=[SWACallback(SWAConfig(**SWA))])
    with pytest.raises(ValueError, match="saved at step 6, but training resumes at step 9"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-9"))


@pytest.mark.parametrize("stopped_at, windows", [(30, [15, 19, 23, 27]), (20, [15, 19, 33, 42])])
def test_a_run_trained_longer_under_the_defaults_keeps_the_windows_that_started(tmp_path, stopped_at, windows):
    """A run of 30 steps (defaults: swa_start 0.5, 4 windows from 15, 19, 23, 27), finished or stopped at step 20,
    trained again to max_steps=50: the averaging keeps its start and the windows that had started; those that had
    not are planned anew over the longer run. Every average is the mean of its snapshots over both runs."""
    from tiny_models import SnapshotRecorder, trainable_float_weights

    def run(max_steps, recorder, callbacks=(), **resume):
        args = SWATrainingArguments(
            output_dir=str(tmp_path), **{**QUICK_RUN, "max_steps": max_steps, "save_strategy": "steps"}, save_steps=10
        )
        trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=DATA, callbacks=[recorder, *callbacks])
        trainer.train(**resume)
        return trainer

    first, more = SnapshotRecorder(range(1, 31)), SnapshotRecorder(range(1, 51))
    assert run(30, first, [StopAt(stopped_at)]).swa_callback.averager.settings()[0]["starts"] == [15, 19, 23, 27]
    trainer = run(50, more, resume_from_checkpoint=True)
    callback = trainer.swa_callback
    assert callback.start_step == 15 and callback.averager.settings()[0]["starts"] == windows
    history = {**first.snapshots, **more.snapshots}
    for name, start in (("swa", 15), (f"swa_from{windows[-1]}", windows[-1])):
        expected = {n: torch.stack([history[s][n] for s in range(start, 51)]).mean(0) for n in history[50]}
        averages = callback.averager.averages(name)
        assert max(float((averages[n].double() - v.double()).abs().max()) for n, v in expected.items()) < 1e-6, name
    # The default ships the live weights: those of step 50.
    shipped = trainable_float_weights(trainer.model)
    assert callback.averager.held is None and all(torch.equal(shipped[n], v) for n, v in history[50].items())
