"""hf-swa-average writes everything (model, scores, swa_config.json, card) into a staging folder that replaces the
output folder last: a failure at any point leaves the output folder, and the inputs, as they were."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from posthoc_fixtures import folder_snapshot
from safetensors.torch import save_file

import hf_swa.posthoc.card
import hf_swa.posthoc.power_ema_reconstruction
from hf_swa.averaging.power_ema_math import std_to_exp
from hf_swa.checkpointing.power_ema_snapshots import write_power_ema_snapshot
from hf_swa.posthoc.cli import main
from hf_swa.posthoc.power_ema_reconstruction import write_power_ema_models

STDS, STEPS = (0.05, 0.1), range(10, 110, 10)


def fake_run(root):
    """checkpoint-10..100 of one tensor, and power-EMA snapshots of two widths at every step."""
    for step in STEPS:
        folder = root / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        save_file({"w": torch.full((3,), float(step))}, folder / "model.safetensors", metadata={"format": "pt"})
        (folder / "config.json").write_text('{"model_type": "bert"}')
        for std in STDS:
            write_power_ema_snapshot(
                root / "swa_power_ema", std, float(std_to_exp(std)), step, {"w": torch.full((3,), step * std)}
            )
    return root


def earlier_output(out):
    """An output folder from an earlier run, which a failed job must leave as it is."""
    (out / "pema_0.07").mkdir(parents=True)
    (out / "pema_0.07" / "model.safetensors").write_bytes(b"earlier weights")
    (out / "README.md").write_text("an earlier model card")
    (out / "model.safetensors").write_bytes(b"earlier average")
    return folder_snapshot(out)


class Failure(RuntimeError):
    pass


def fail(*args, **kwargs):
    raise Failure("the card could not be written (disk full)")


def test_power_ema_models_fail_on_the_second_width_and_leave_the_output_as_it_was(tmp_path, monkeypatch):
    run = fake_run(tmp_path / "run")
    out = tmp_path / "out"
    before, inputs = earlier_output(out), folder_snapshot(run)
    write_model = hf_swa.posthoc.power_ema_reconstruction._write_model
    calls = []

    def second_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            fail()
        return write_model(*args, **kwargs)

    monkeypatch.setattr(hf_swa.posthoc.power_ema_reconstruction, "_write_model", second_fails)
    with pytest.raises(Failure):
        write_power_ema_models(
            run / "swa_power_ema", [0.07, 0.08], out, run / "checkpoint-100", overwrite_output_dir=True, progress=False
        )
    assert len(calls) == 2  # the first width was written, somewhere
    assert folder_snapshot(out) == before and folder_snapshot(run) == inputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]  # no staging folder left behind


@pytest.mark.parametrize("job", [["--last", "3"], ["--power_ema_std", "0.07", "0.08"]], ids=["mean", "power_ema"])
def test_cli_failure_after_the_weights_leaves_the_output_as_it_was(tmp_path, monkeypatch, capsys, job):
    run = fake_run(tmp_path / "run")
    out = tmp_path / "out"
    before, inputs = earlier_output(out), folder_snapshot(run)
    monkeypatch.setattr(hf_swa.posthoc.card, "write_posthoc_card", fail)  # the last step, after every model
    with pytest.raises(Failure):
        main(["--run_dir", str(run), *job, "--output_dir", str(out), "--overwrite_output_dir"])
    assert folder_snapshot(out) == before and folder_snapshot(run) == inputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]
    monkeypatch.undo()
    assert main(["--run_dir", str(run), *job, "--output_dir", str(out), "--overwrite_output_dir"]) == 0
    after = folder_snapshot(out)  # the same job, not failing, replaces the earlier output whole
    assert after and not set(after.items()) & set(before.items()) and any(p.endswith("README.md") for p in after)


def test_a_failed_rename_into_place_puts_the_earlier_output_back(tmp_path, monkeypatch):
    import os

    from hf_swa.checkpointing import writer

    out = tmp_path / "out"
    before = earlier_output(out)
    replace, calls = os.replace, []

    def second_fails(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError("no space left on device")
        replace(source, target)

    monkeypatch.setattr(writer.os, "replace", second_fails)
    with pytest.raises(OSError, match="no space"):
        with writer.staged_folder(str(out)) as stage:
            (Path(stage) / "model.safetensors").write_bytes(b"new weights")
    monkeypatch.undo()
    assert len(calls) == 3 and folder_snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_truncated_power_ema_snapshot_is_named_before_anything_is_written(tmp_path):
    run = fake_run(tmp_path / "run")
    snapshot = run / "swa_power_ema" / "pema-0.1-000000050.safetensors"
    snapshot.write_bytes(snapshot.read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"pema-0.1-000000050.safetensors is not a readable.*--power_ema_step"):
        write_power_ema_models(run / "swa_power_ema", [0.07], tmp_path / "out", run / "checkpoint-100", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
