"""The checkpoint contract: checkpoint-N/ is live training state, the shipped model is the average."""

import json
import logging

import pytest
import torch
from safetensors.torch import load, load_file, save_file
from tiny_models import (
    QUICK_RUN,
    SnapshotRecorder,
    StopAt,
    checkpoint_swa_average,
    classification_data,
    max_relative_error,
    tiny_bert,
    trainable_float_weights,
)
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_swa import SWACallback, SWAConfig, SWATrainer, SWATrainingArguments, last_complete_checkpoint
from hf_swa.checkpointing.resume import checkpoint_problems

# One window: windows split the steps up to max_steps, so a run continued for longer keeps its average only with one.
SWA = dict(
    swa_start=3,
    swa_freq=1,
    swa_lr=4e-3,
    swa_anneal_steps=2,
    swa_anneal_strategy="linear",
    swa_windows=1,
    swa_ship="swa",
)
COMMON = dict(QUICK_RUN, save_strategy="steps", save_steps=2, lr_scheduler_type="constant")
DATA = classification_data(24)  # 6 batches an epoch


def trainer(output_dir, max_steps, callbacks=(), **swa):
    args = SWATrainingArguments(output_dir=str(output_dir), max_steps=max_steps, **{**SWA, **swa}, **COMMON)
    return SWATrainer(model=tiny_bert(), args=args, train_dataset=DATA, callbacks=list(callbacks))


def result(run):
    """The averages, the live weights and what the model holds, copied."""
    averager = run.swa_callback.averager
    averages = {k: v.clone() for k, v in averager.averages().items()}
    model = {k: v.clone() for k, v in run.model.state_dict().items()}
    with averager.live_weights(run.model):
        live = {k: v.clone() for k, v in run.model.state_dict().items()}
    return averager.n_averaged, averages, live, model


def assert_bit_exact(actual, expected):
    assert actual[0] == expected[0]
    for got, want in zip(actual[1:], expected[1:], strict=True):
        assert set(got) == set(want)
        for name, value in want.items():
            assert torch.equal(got[name], value), name


@pytest.fixture(scope="module")
def twelve_steps(tmp_path_factory):
    run = trainer(tmp_path_factory.mktemp("twelve"), 12)
    run.train()
    return result(run)


def test_continuing_a_finished_run_follows_the_live_trajectory(tmp_path, twelve_steps):
    finished = trainer(tmp_path, 8)
    finished.train()
    final = load_file(tmp_path / "checkpoint-8" / "model.safetensors")
    _, _, live, model = result(finished)
    assert all(torch.equal(final[k], live[k]) for k in final)  # the final checkpoint: the live weights
    assert not all(torch.equal(final[k], model[k]) for k in final)  # ... not the average the model holds

    longer = trainer(tmp_path, 12)
    longer.train(resume_from_checkpoint=True)
    assert longer.state.global_step == 12
    assert_bit_exact(result(longer), twelve_steps)


def test_a_new_max_steps_under_a_fractional_start_keeps_the_start(tmp_path, twelve_steps):
    """swa_start=0.5 of 8 steps is step 4; trained on to 12, the averaging keeps its start (not 6) and goes on."""
    trainer(tmp_path, 8, swa_start=0.5).train()
    longer = trainer(tmp_path, 12, swa_start=0.5)
    longer.train(resume_from_checkpoint=True)
    assert longer.swa_callback.start_step == 4 and longer.swa_callback.averager.n_averaged == 9  # steps 4..12


def test_a_changed_swa_start_on_resume_is_refused_and_trains_nothing(tmp_path):
    trainer(tmp_path, 8, swa_start=0.5).train()
    longer = trainer(tmp_path, 12, swa_start=0.6)
    with pytest.raises(ValueError, match=r"start_step: checkpoint 4, now 8"):
        longer.train(resume_from_checkpoint=True)
    assert longer.state.global_step == 8  # nothing trained


def unreleased_format(checkpoint):
    """SWA state in the one-average layout of hf_swa's development (never released): averages keyed by name."""
    averages = {k.split("/", 1)[1]: v for k, v in load_file(checkpoint / "swa_averages.safetensors").items()}
    save_file(averages, checkpoint / "swa_averages.safetensors")
    state = json.loads((checkpoint / "swa_state.json").read_text())
    state.pop("slots")
    (checkpoint / "swa_state.json").write_text(json.dumps({**state, "format_version": 1}))


def test_swa_state_in_another_format_is_refused_naming_the_format(tmp_path):
    trainer(tmp_path, 6).train()  # checkpoints 2, 4 and 6
    unreleased_format(tmp_path / "checkpoint-6")
    assert last_complete_checkpoint(str(tmp_path), 3) == str(tmp_path / "checkpoint-4")
    longer = trainer(tmp_path, 8)
    with pytest.raises(ValueError, match=r"format_version 1.*reads format 2"):
        longer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))


def damage(path, how):
    if how == "remove":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.fixture(scope="module")
def eight_steps(tmp_path_factory):
    run = trainer(tmp_path_factory.mktemp("eight"), 8)
    run.train()
    return result(run)


@pytest.mark.parametrize(
    "name,how,problem",
    [
        ("trainer_state.json", "remove", "no trainer_state.json"),
        ("trainer_state.json", "truncate", "trainer_state.json is unreadable"),
        ("model.safetensors", "truncate", "model.safetensors is unreadable"),
        ("model.safetensors", "remove", "no model weights"),
        ("optimizer.pt", "truncate", "optimizer.pt is unreadable"),
        ("scheduler.pt", "remove", "no scheduler state"),
        ("swa_averages.safetensors", "truncate", "swa_averages.safetensors is missing or unreadable"),
        ("swa_state.json", "remove", "no SWA state"),
    ],
)
def test_swa_trainer_resumes_from_the_newest_complete_checkpoint(tmp_path, eight_steps, caplog, name, how, problem):
    trainer(tmp_path, 8, callbacks=[StopAt(6)]).train()
    newest = tmp_path / "checkpoint-6"
    assert checkpoint_problems(str(newest)) == []
    damage(newest / name, how)
    assert any(problem in p for p in checkpoint_problems(str(newest)))

    resumed_at = ResumedAt()
    resumed = trainer(tmp_path, 8, callbacks=[resumed_at])
    with caplog.at_level(logging.WARNING, logger="hf_swa"):
        resumed.train(resume_from_checkpoint=True)
    assert f"Skipping the incomplete checkpoint {newest}: " in caplog.text and problem in caplog.text
    assert resumed_at.step == 4  # skipped checkpoint-6, took checkpoint-4
    assert_bit_exact(result(resumed), eight_steps)


def test_swa_state_is_needed_only_from_the_start_step(tmp_path):
    trainer(tmp_path, 8, callbacks=[StopAt(4)]).train()
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}" / "swa_state.json").unlink()
    assert last_complete_checkpoint(str(tmp_path)) is None  # the default: every checkpoint of an SWA run has it
    assert last_complete_checkpoint(str(tmp_path), swa_start_step=3).endswith("checkpoint-2")
    assert last_complete_checkpoint(str(tmp_path), swa_start_step=None).endswith("checkpoint-4")
    with pytest.raises(ValueError, match="No complete checkpoint"):
        trainer(tmp_path, 8, swa_start=2).train(resume_from_checkpoint=True)


def test_callback_users_resume_with_last_complete_checkpoint(tmp_path, eight_steps):
    def plain(callbacks):
        args = TrainingArguments(output_dir=str(tmp_path), max_steps=8, **COMMON)
        return Trainer(
            model=tiny_bert(), args=args, train_dataset=DATA, callbacks=callbacks + [SWACallback(SWAConfig(**SWA))]
        )

    plain([StopAt(6)]).train()
    damage(tmp_path / "checkpoint-6" / "optimizer.pt", "truncate")
    resumed = plain([])
    resumed.train(resume_from_checkpoint=last_complete_checkpoint(str(tmp_path)))
    callback = next(c for c in resumed.callback_handler.callbacks if isinstance(c, SWACallback))
    averages = {k: v for k, v in callback.averager.averages().items()}
    assert callback.averager.n_averaged == eight_steps[0]
    assert all(torch.equal(averages[k], v) for k, v in eight_steps[1].items())
    assert all(torch.equal(resumed.model.state_dict()[k], v) for k, v in eight_steps[3].items())


def test_the_shipped_model_is_the_average(tmp_path):
    recorder = SnapshotRecorder(range(3, 9))
    run = trainer(tmp_path / "run", 8, callbacks=[recorder])
    run.train()
    mean = recorder.mean()
    assert max_relative_error(trainable_float_weights(run.model), mean) <= 1e-6
    run.save_model(str(tmp_path / "final"))
    saved = load_file(tmp_path / "final" / "model.safetensors")
    averages = run.swa_callback.averager.averages()
    assert all(torch.equal(saved[k], averages[k]) for k in averages)
    assert json.loads((tmp_path / "final" / "swa_config.json").read_text())["n_averaged"] == 6


class ResumedAt(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        self.step = state.global_step


PUSH_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from hf_swa import SWATrainer, SWATrainingArguments
from tiny_models import classification_data, tiny_bert
args = SWATrainingArguments(output_dir={out!r}, max_steps=6, push_to_hub=True, hub_model_id="me/swa",
                            hub_strategy={strategy!r}, hub_always_push=True, swa_start=3, swa_windows=1, swa_ship="swa",
                            **json.loads({common!r}))
trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(24))
trainer.train()
trainer.push_to_hub()
"""


@pytest.mark.slow  # a fresh interpreter, a subprocess or many trainings
@pytest.mark.parametrize("strategy", ["every_save", "checkpoint"])
def test_checkpoints_pushed_during_training_never_replace_the_model(tmp_path, strategy):
    import os
    import subprocess
    import sys

    from hub_server import FakeHub
    from test_hub import hub_env

    tests, out = os.path.dirname(os.path.abspath(__file__)), str(tmp_path / "out")
    common = json.dumps({k: v for k, v in COMMON.items() if k != "lr_scheduler_type"})
    script = PUSH_SCRIPT.format(tests=tests, out=out, strategy=strategy, common=common)
    with FakeHub() as fake:
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=hub_env(fake.url, tmp_path / "hf_home"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    commits = fake.repos["me/swa"].commits
    during, final = commits[:-1], commits[-1]
    # During training only checkpoint folders went up (with hub_strategy="checkpoint"), never the model.
    assert all(path.startswith("last-checkpoint/") for commit in during for path in commit["files"])
    assert len(during) == (3 if strategy == "checkpoint" else 0)  # checkpoints 2, 4 and 6
    pushed = fake.files("me/swa")
    assert "model.safetensors" in final["files"] and "swa_config.json" in final["files"]
    averages = checkpoint_swa_average(tmp_path / "out" / "checkpoint-6")
    model = load(pushed["model.safetensors"])
    assert averages and all(torch.equal(model[k], averages[k]) for k in averages)  # the average of steps 3-6
    if strategy == "checkpoint":  # the checkpoint pushed is the live training state
        assert (
            pushed["last-checkpoint/model.safetensors"]
            == (tmp_path / "out" / "checkpoint-6" / "model.safetensors").read_bytes()
        )


def test_checkpoint_folder_names_agree_with_transformers():
    """hf_swa names checkpoint folders without importing the Trainer's stack; the name must stay transformers'."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    from hf_swa.checkpointing.names import CHECKPOINT_PREFIX, checkpoint_folder, checkpoint_step

    assert CHECKPOINT_PREFIX == PREFIX_CHECKPOINT_DIR
    assert checkpoint_step(checkpoint_folder("run", 40)) == 40 and checkpoint_step("run/checkpoint-4x") is None
