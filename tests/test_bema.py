"""BEMA as a candidate: against TRL's BEMACallback itself, against its formula on recorded weights, resumed, shipped."""

import json

import pytest
import torch
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

from hf_swa import SWAConfig, SWATrainer, SWATrainingArguments, WeightAverager
from hf_swa.averaging.bema import BEMASettings
from hf_swa.training import defaults

MAX_STEPS = 12
SWA = dict(swa_start=4, swa_freq=2, swa_lr_ratio=0.0, swa_windows=2)


def bema_trainer(folder, callbacks=(), **kwargs):
    settings = {**QUICK_RUN, **SWA, "max_steps": MAX_STEPS, "output_dir": str(folder), "swa_bema": True, **kwargs}
    return SWATrainer(
        model=tiny_bert(),
        args=SWATrainingArguments(**settings),
        train_dataset=classification_data(40),
        eval_dataset=classification_data(16, seed=7),
        callbacks=list(callbacks),
    )


def bema_by_formula(weights: dict, schedule: BEMASettings, last_step: int) -> dict:
    """BEMA from the weights after each step (step 0: before training), in float64, as the paper writes it."""
    anchor = weights[schedule.update_after]
    ema = dict(anchor)
    steps = [s for s in sorted(weights) if s > schedule.update_after and s <= last_step]
    steps = [s for s in steps if (s - schedule.update_after) % schedule.update_freq == 0]
    for step in steps:
        x = schedule.lag + schedule.multiplier * step
        beta = x ** (-schedule.ema_power)
        ema = {k: (1 - beta) * ema[k] + beta * weights[step][k] for k in ema}
    alpha = (schedule.lag + schedule.multiplier * steps[-1]) ** (-schedule.bias_power)
    return {k: ema[k] + alpha * (weights[steps[-1]][k] - anchor[k]) for k in ema}


@pytest.mark.parametrize("schedule", [BEMASettings(update_freq=1), BEMASettings(update_after=3, update_freq=2, lag=4)])
def test_engine_bema_equals_its_formula_on_recorded_weights(schedule):
    model = nn.Linear(4, 3)
    averager = WeightAverager(model, bema=schedule)
    weights = {}
    for step in range(0, 10):
        if step:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(step)))
        averager.update_bema(model, step)
        weights[step] = trainable_float_weights(model)
    assert averager.candidate_names() == ["bema"]
    assert max_relative_error(averager.averages("bema"), bema_by_formula(weights, schedule, 9)) <= 1e-6
    (record,) = averager.candidates()
    assert (record["kind"], record["start_step"], record["step"]) == ("bema", schedule.update_after, 9)


def test_bema_state_exports_and_imports_bit_exactly():
    model = nn.Linear(4, 3)
    schedule = BEMASettings(update_after=1, update_freq=2)
    averager = WeightAverager(model, bema=schedule)
    for step in range(0, 6):
        with torch.no_grad():
            model.weight.add_(float(step) / 7)
        averager.update_bema(model, step)
    restored = WeightAverager(model, bema=schedule)
    restored.load_state_dict(averager.state_dict())
    assert restored.candidates() == averager.candidates()
    for name, value in averager.averages("bema").items():
        assert torch.equal(restored.averages("bema")[name], value), name
    with pytest.raises(ValueError, match="bema"):
        WeightAverager(model).load_state_dict(averager.state_dict())


def test_defaults_are_trls():
    trl = pytest.importorskip("trl")
    import inspect

    trl_defaults = {k: v.default for k, v in inspect.signature(trl.BEMACallback.__init__).parameters.items()}
    ours = BEMASettings().to_dict()
    assert {k: trl_defaults[k] for k in ours} == ours
    config = SWAConfig()
    assert {k: getattr(config, f"swa_bema_{k}") for k in ours} == ours
    assert defaults.SWA_BEMA is False and config.bema_settings() is None


@pytest.mark.parametrize("schedule", [dict(update_after=0, update_freq=1), dict(update_after=3, update_freq=2, lag=4)])
def test_bema_equals_trls_bema_callback_in_one_run(tmp_path, schedule):
    trl = pytest.importorskip("trl")
    theirs = trl.BEMACallback(device="cpu", **schedule)
    ours = {f"swa_bema_{k}": v for k, v in schedule.items()}
    trainer = bema_trainer(tmp_path / "out", callbacks=[theirs], **ours)
    trainer.train()
    averager = trainer.swa_callback.averager
    expected = {n: p.detach().to(torch.float64) for n, p in theirs.running_model.named_parameters()}
    expected = {n: expected[n] for n in averager.names}
    assert max_relative_error(averager.averages("bema"), expected) <= 1e-6
    live = trainable_float_weights(trainer.model)
    assert max_relative_error(averager.averages("bema"), live) > 1e-3  # BEMA is not the live weights


def test_bema_equals_its_formula_in_a_run_and_resumes_bit_exactly(tmp_path):
    recorder = SnapshotRecorder(range(0, MAX_STEPS + 1))
    full = bema_trainer(tmp_path / "full", callbacks=[recorder], swa_bema_update_freq=3, save_strategy="no")
    weights = {0: trainable_float_weights(full.model)}
    full.train()
    weights.update(recorder.snapshots)
    reference = full.swa_callback.averager.averages("bema")
    schedule = BEMASettings(update_freq=3)
    assert max_relative_error(reference, bema_by_formula(weights, schedule, MAX_STEPS)) <= 1e-6

    cut = tmp_path / "cut"
    kwargs = dict(swa_bema_update_freq=3, save_strategy="steps", save_steps=4)
    bema_trainer(cut, callbacks=[StopAt(7)], **kwargs).train()  # checkpoint-4 between updates 3 and 6
    resumed = bema_trainer(cut, **kwargs)
    resumed.train(resume_from_checkpoint=str(cut / "checkpoint-4"))
    again = resumed.swa_callback.averager.averages("bema")
    for name, value in reference.items():
        assert torch.equal(again[name], value), name


def test_resuming_bema_from_a_checkpoint_without_its_state_is_refused(tmp_path):
    kwargs = dict(swa_bema_update_freq=2, save_strategy="steps", save_steps=2)
    bema_trainer(tmp_path / "run", callbacks=[StopAt(3)], **kwargs).train()
    checkpoint = tmp_path / "run" / "checkpoint-2"  # before swa_start (4), after BEMA's anchor (step 0)
    (checkpoint / "swa_state.json").unlink()  # e.g. written by a run without SWA
    resumed = bema_trainer(tmp_path / "run", **kwargs)
    with pytest.raises(ValueError, match="BEMA was anchored at step swa_bema_update_after=0"):
        resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 2  # nothing trained


def test_bema_ships_and_is_evaluated(tmp_path):
    trainer = bema_trainer(tmp_path / "out", swa_bema_update_freq=2, swa_ship="bema", swa_eval_candidates=True)
    trainer.train()
    averager = trainer.swa_callback.averager
    assert averager.held == "bema"
    bema = {k: v.to(torch.float64) for k, v in averager.averages("bema").items()}
    assert max_relative_error(trainable_float_weights(trainer.model), bema) == 0.0
    metrics = trainer.evaluate()
    assert "eval_bema_loss" in metrics and "eval_loss" in metrics
    trainer.save_model()
    record = json.loads((tmp_path / "out" / "swa_config.json").read_text())
    assert record["shipped"] == "bema"
    (bema_record,) = [c for c in record["candidates"] if c["name"] == "bema"]
    assert bema_record["kind"] == "bema" and bema_record["n_averaged"] == MAX_STEPS // 2
    weights = record["shipped_weights"]  # what ships, in words: BEMA's steps and schedule, not a window mean
    assert (weights["kind"], weights["first_step"], weights["last_step"], weights["every"]) == ("bema", 0, MAX_STEPS, 2)
    assert (
        weights["description"].startswith("BEMA (Block & Zhang 2025") and "equal-weight" not in weights["description"]
    )


@pytest.mark.parametrize(
    "settings,message",
    [
        (dict(swa_ship="bema"), "swa_ship='bema'"),
        (dict(swa_bema=True, swa_bema_lag=-1), "swa_bema_lag=-1"),
        (dict(swa_bema=True, swa_bema_update_freq=0), "swa_bema_update_freq=0"),
        (dict(swa_bema=True, swa_bema_ema_power=float("nan")), "swa_bema_ema_power=nan"),
    ],
)
def test_bad_bema_settings_are_refused_up_front(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        SWAConfig(**settings)


def test_a_bema_that_would_never_update_is_refused_before_training(tmp_path):
    trainer = bema_trainer(tmp_path / "out")  # TRL's update_freq 400 > 12 steps
    with pytest.raises(ValueError, match="swa_bema_update_freq=400"):
        trainer.train()
    assert not (tmp_path / "out" / "swa_config.json").exists()


@pytest.mark.distributed
def test_bema_is_shard_local_under_fsdp2_and_resumes_bit_exactly(tmp_path):
    from safetensors.torch import load_file
    from test_distributed import TOLERANCE, launch, relative_error, reports, torchrun

    launch(torchrun(), "bema_fsdp2_worker.py", tmp_path, tmp_path=tmp_path)
    reference = load_file(tmp_path / "reference-rank0.safetensors")
    scale = max(value.abs().max().item() for value in reference.values())
    for rank, report in enumerate(reports(tmp_path)):
        assert report["sharded"] and report["held"] == "bema"
        calls = report["collectives_in_updates"]
        # One NaN/inf check (a scalar all-reduce) a step that anything takes: the anchor at step 1, then steps
        # 3, 5 and 7, where the snapshot and BEMA share it.
        assert calls.pop("all_reduce") == 4
        assert sum(calls.values()) == 0, calls  # no gather per step
        local = load_file(tmp_path / f"local-rank{rank}.safetensors")
        numel = sum(v.numel() for v in local.values())
        assert numel <= 0.55 * sum(v.numel() for v in reference.values())  # this rank's shard only
        for name, value in local.items():
            expected = torch.chunk(reference[name], 2, dim=0)[rank]
            assert value.shape == expected.shape, name
            if value.numel():
                assert (value - expected).abs().max().item() <= TOLERANCE * scale, name
        assert relative_error(load_file(tmp_path / f"full-rank{rank}.safetensors"), reference) <= TOLERANCE
        resumed = load_file(tmp_path / f"resumed-rank{rank}.safetensors")
        assert all(torch.equal(resumed[k], local[k]) for k in local)
