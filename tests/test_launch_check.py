"""A launch that asked for several processes and got one says so in the log (no launch needed: its environment)."""

import logging
import types

import pytest
from tiny_models import classification_data, tiny_bert

from hf_swa import SWATrainer, SWATrainingArguments
from hf_swa.training.checks import warn_if_fewer_processes_than_launched

# What `accelerate launch --cpu --num_processes 2 train.py` puts in the one process it starts (accelerate 1.x's
# simple launcher: MASTER_ADDR/MASTER_PORT for more than one process, no WORLD_SIZE, no RANK).
ONE_OF_TWO = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def _launched(monkeypatch, env):
    for name in ("ACCELERATE_USE_CPU", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    "env, world_size, warned",
    [
        (ONE_OF_TWO, 1, True),
        ({**ONE_OF_TWO, "WORLD_SIZE": "1"}, 1, False),  # a launcher that started the processes it set up
        (ONE_OF_TWO, 2, False),  # several processes after all (mpirun)
        ({"ACCELERATE_USE_CPU": "True"}, 1, False),  # accelerate launch --cpu, one process asked for
        ({}, 1, False),  # python train.py
    ],
)
def test_warns_only_where_several_processes_were_asked_for_and_one_runs(monkeypatch, caplog, env, world_size, warned):
    _launched(monkeypatch, env)
    with caplog.at_level(logging.WARNING, logger="hf_swa.training.checks"):
        warn_if_fewer_processes_than_launched(types.SimpleNamespace(world_size=world_size))
    assert ("started only this one" in caplog.text) == warned
    if warned:
        assert "--multi_gpu --num_processes N" in caplog.text and "use_cpu=True" in caplog.text


def test_training_start_logs_it(tmp_path, monkeypatch, caplog):
    _launched(monkeypatch, ONE_OF_TWO)
    args = SWATrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, use_cpu=True, report_to="none"
    )
    with caplog.at_level(logging.WARNING, logger="hf_swa.training.checks"):
        SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(8)).train()
    assert "This run trains on 1 process" in caplog.text
