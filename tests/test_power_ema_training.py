"""Power EMAs inside training: the stored widths, their snapshots, widths reconstructed at the end, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_models import QUICK_RUN, SnapshotRecorder, StopAt, classification_data, tiny_bert

from hf_swa import SWAConfig, SWATrainer, SWATrainingArguments
from hf_swa.posthoc.power_ema_reconstruction import reconstruct_power_ema

MAX_STEPS = 24
STORED, RECONSTRUCTED = (0.05, 0.15), 0.1
PEMA = dict(swa_power_ema_stds=list(STORED), swa_power_ema_every=6, swa_power_ema_candidates=[RECONSTRUCTED])
SWA = dict(swa_start=13, swa_lr=4e-3, swa_select_metric="loss", **PEMA)
DATA, HELD_OUT = classification_data(40), classification_data(16, seed=7)


def trainer_for(output_dir, callbacks=(), **overrides) -> SWATrainer:
    common = dict(QUICK_RUN, max_steps=MAX_STEPS, save_strategy="steps", save_steps=5)
    args = SWATrainingArguments(output_dir=str(output_dir), **{**common, **SWA, **overrides})
    return SWATrainer(
        model=tiny_bert(), args=args, train_dataset=DATA, swa_select_dataset=HELD_OUT, callbacks=list(callbacks)
    )


def gamma_of(std: float) -> float:
    """γ with σ_rel² = (γ+1) / ((γ+2)² (γ+3)): the largest real root of that cubic, found here with numpy."""
    # std² (γ+2)² (γ+3) − (γ+1) = 0, expanded in powers of γ.
    s = std**2
    roots = np.roots([s, 7 * s, 16 * s - 1, 12 * s - 1])
    return float(max(r.real for r in roots if abs(r.imag) < 1e-9))


def profile_mean(history: dict, std: float, t: int) -> dict:
    """The power-profile mean at step t: step k's weights carry (k^(γ+1) − (k−1)^(γ+1)) / t^(γ+1), in float64."""
    g = gamma_of(std) + 1
    mass = {k: (k**g - (k - 1) ** g) / t**g for k in range(1, t + 1)}
    return {n: sum(mass[k] * history[k][n] for k in mass) for n in history[1]}


def max_difference(a: dict, b: dict) -> float:
    return max(float((a[n].double() - b[n].double()).abs().max()) for n in b)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("pema")
    recorder = SnapshotRecorder(range(1, MAX_STEPS + 1))
    trainer = trainer_for(root, callbacks=[recorder])
    trainer.train()
    return trainer, recorder.snapshots, root


def test_stored_widths_are_the_power_profile_means_of_every_step(finished):
    trainer, history, _ = finished
    averager = trainer.swa_callback.averager
    for std in STORED:
        expected = profile_mean(history, std, MAX_STEPS)
        assert max_difference(averager.averages(f"pema_{std:g}"), expected) < 1e-5


def test_snapshots_are_written_every_n_steps_and_at_the_end(finished):
    trainer, history, root = finished
    folder = root / "swa_power_ema"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"pema-{std:g}-{step:09d}.safetensors" for std in STORED for step in (6, 12, 18, 24))
    at_12 = load_file(folder / "pema-0.05-000000012.safetensors")
    assert max_difference(at_12, profile_mean(history, 0.05, 12)) < 1e-5  # the EMA as it was at step 12


def test_a_reconstructed_width_joins_the_candidates_and_the_selection(finished):
    trainer, history, root = finished
    averager, name = trainer.swa_callback.averager, f"pema_{RECONSTRUCTED:g}"
    assert {"swa", "pema_0.05", "pema_0.15", name} <= set(averager.candidate_names())
    reconstructed = averager.averages(name)
    # The same solve as hf-swa-average on the run's snapshots ...
    after = reconstruct_power_ema(str(root / "swa_power_ema"), RECONSTRUCTED).state_dict()
    assert max_difference(reconstructed, after) == 0.0
    # ... close to a power EMA of that width run directly on every step, far closer than the stored widths are.
    error = max_difference(reconstructed, profile_mean(history, RECONSTRUCTED, MAX_STEPS))
    apart = max_difference(averager.averages("pema_0.05"), averager.averages("pema_0.15"))
    assert error < apart / 20, (error, apart)
    selection = trainer.swa_callback.selection
    assert {"live", "swa", "pema_0.05", "pema_0.15", name} <= set(selection["scores"])
    record = json.loads((root / "swa_config.json").read_text())
    pema = next(c for c in record["candidates"] if c["name"] == name)
    assert pema["kind"] == "power_ema_posthoc" and pema["step"] == MAX_STEPS and 0 <= pema["fit_error"] < 0.1


def test_the_shipped_model_is_the_chosen_candidate(finished):
    """Whatever wins, the model holds it: a candidate's fp32 average, or the weights of the last step."""
    trainer, history, _ = finished
    chosen = trainer.swa_callback.selection["chosen"]
    averager = trainer.swa_callback.averager
    expected = history[MAX_STEPS] if chosen == "live" else averager.averages(chosen)
    shipped = dict(trainer.model.named_parameters())
    assert set(expected) <= set(shipped)
    for key, value in expected.items():
        assert torch.equal(shipped[key].detach(), value.to(shipped[key].dtype)), key


def test_a_power_ema_named_by_swa_ship_is_the_model(tmp_path, finished):
    """Without a choice, swa_ship names a power EMA: the model holds it, and the record says what it is."""
    reference, history, _ = finished
    trainer = trainer_for(tmp_path, swa_select_metric="none", swa_ship="pema_0.05")
    trainer.train()
    shipped = dict(trainer.model.named_parameters())
    expected = profile_mean(history, 0.05, MAX_STEPS)
    assert max(float((shipped[k].detach().double() - v.double()).abs().max()) for k, v in expected.items()) < 1e-5
    record = json.loads((tmp_path / "swa_config.json").read_text())
    assert record["shipped"] == "pema_0.05"
    weights = record["shipped_weights"]
    assert weights["kind"] == "power_ema" and weights["first_step"] == 1 and weights["last_step"] == MAX_STEPS
    assert "power-function" in weights["description"] and "from optimizer step 13" not in weights["description"]


def test_resume_prunes_later_snapshots_and_ends_bit_exact(tmp_path, finished):
    reference, _, reference_root = finished
    trainer_for(tmp_path, callbacks=[StopAt(13)]).train()  # checkpoint-10, snapshots at 6 and 12
    folder = tmp_path / "swa_power_ema"
    assert (folder / "pema-0.05-000000012.safetensors").exists()
    # A snapshot the resumed run will not write again (as from a run with another swa_power_ema_every).
    (folder / "pema-0.05-000000014.safetensors").write_bytes((folder / "pema-0.05-000000012.safetensors").read_bytes())
    resumed = trainer_for(tmp_path)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-10"))
    for name in ("pema_0.05", "pema_0.15", "pema_0.1", "swa"):
        a, b = resumed.swa_callback.averager.averages(name), reference.swa_callback.averager.averages(name)
        assert all(torch.equal(a[k], b[k]) for k in b), name
    files = sorted(p.name for p in (reference_root / "swa_power_ema").iterdir())
    assert sorted(p.name for p in (tmp_path / "swa_power_ema").iterdir()) == files
    for file in files:
        a, b = (load_file(root / "swa_power_ema" / file) for root in (tmp_path, reference_root))
        assert all(torch.equal(a[k], b[k]) for k in b), file


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(swa_power_ema_stds=[0.05], swa_power_ema_candidates=[0.1]), "at least two widths"),
        (dict(swa_power_ema_stds=[0.05, 0.3]), "swa_power_ema_stds=0.3: .* 0 < σ_rel < 0.289"),
        (dict(swa_power_ema_stds=[0.05, 0.1], swa_power_ema_candidates=[0.0]), "swa_power_ema_candidates"),
        (dict(swa_power_ema_stds=[0.05, 0.1], swa_power_ema_every=0), "swa_power_ema_every"),
        (dict(swa_power_ema_stds=[0.05, 0.1], swa_power_ema_dtype="float16"), "swa_power_ema_dtype"),
    ],
)
def test_bad_power_ema_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        SWAConfig(**settings)


@pytest.mark.slow
def test_cli_scores_each_width_and_the_checkpoint_and_names_the_best(tmp_path, capsys):
    """After training: hf-swa-average reconstructs widths, scores them and the checkpoint, and says which is best."""
    import csv

    from tiny_models import tiny_tokenizer
    from transformers import AutoModelForSequenceClassification

    from hf_swa.posthoc.arguments import SoupEvaluationArguments
    from hf_swa.posthoc.cli import main
    from hf_swa.posthoc.scoring import glue_score_fn

    tokenizer = tiny_tokenizer()

    def texts(rows):
        return [(" ".join(f"t{int(i)}" for i in row["input_ids"]), int(row["labels"])) for row in rows]

    train = [dict(tokenizer(text), labels=label) for text, label in texts(DATA)]
    dev = tmp_path / "dev.csv"
    with open(dev, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *texts(HELD_OUT)])
    run = tmp_path / "run"
    args = SWATrainingArguments(
        output_dir=str(run),
        **dict(QUICK_RUN, max_steps=MAX_STEPS, save_strategy="steps", save_steps=MAX_STEPS),
        swa_power_ema_stds=list(STORED),
        swa_power_ema_every=6,
    )
    SWATrainer(model=tiny_bert(), args=args, train_dataset=train, processing_class=tokenizer).train()

    out = tmp_path / "pema"
    flags = ["--validation_file", str(dev), "--text_columns", "text", "--metric", "loss"]
    assert main(["--run_dir", str(run), "--power_ema_std", "0.07", "0.1", "--output_dir", str(out), *flags]) == 0
    printed = capsys.readouterr().out
    selection = json.loads(printed.splitlines()[-2])
    assert selection["metric"] == "eval_loss" and set(selection["scores"]) == {"pema_0.07", "pema_0.1", "live"}
    assert selection["chosen"] == min(selection["scores"], key=selection["scores"].get)
    assert f"Best by eval_loss: {selection['chosen']}" in printed
    # Each recorded score is that model's loss on the file, as an independent evaluation gives it.
    evaluation = SoupEvaluationArguments(validation_file=str(dev), text_columns=["text"], metric="loss")
    score_fn, _ = glue_score_fn(evaluation, str(run / f"checkpoint-{MAX_STEPS}"))
    folders = {"pema_0.07": out / "pema_0.07", "pema_0.1": out / "pema_0.1", "live": run / f"checkpoint-{MAX_STEPS}"}
    for name, folder in folders.items():
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        assert -score_fn(model) == pytest.approx(selection["scores"][name], rel=1e-6), name
    record = json.loads((out / "pema_0.07" / "swa_config.json").read_text())
    assert record["scores"] == {
        "metric": "eval_loss",
        "average": selection["scores"]["pema_0.07"],
        "live": selection["scores"]["live"],
    }


@pytest.mark.parametrize("damage", ["other_settings", "no_swa_state"])
def test_a_refused_resume_deletes_no_snapshot(tmp_path, finished, damage):
    """Every check of a resume comes before the snapshots after its step are pruned."""
    import shutil

    _, _, root = finished
    run = tmp_path / "run"
    shutil.copytree(root, run)
    before = {p.name: p.read_bytes() for p in (run / "swa_power_ema").iterdir()}
    overrides = {}
    if damage == "other_settings":
        overrides = dict(swa_freq=2)
    else:
        for state_file in (run / "checkpoint-10").glob("swa_*"):
            state_file.unlink()
    with pytest.raises(ValueError, match="averaged with other settings" if overrides else "has no SWA state"):
        trainer_for(run, **overrides).train(resume_from_checkpoint=str(run / "checkpoint-10"))
    after = {p.name: p.read_bytes() for p in (run / "swa_power_ema").iterdir()}
    assert after == before and len(before) == 8


def test_swa_ship_power_ema_ships_when_training_stops_before_swa_start(tmp_path):
    """The power EMAs average from the first step: swa_ship names one, and it ships before any SWA snapshot."""
    recorder = SnapshotRecorder(range(1, 9))
    trainer = trainer_for(tmp_path, callbacks=[recorder, StopAt(8)], swa_select_metric="none", swa_ship="pema_0.05")
    trainer.train()
    assert trainer.swa_callback.averager.n_averaged == 0  # swa_start=13 was never reached
    shipped = dict(trainer.model.named_parameters())
    expected = profile_mean(recorder.snapshots, 0.05, 8)
    assert max(float((shipped[k].detach().double() - v.double()).abs().max()) for k, v in expected.items()) < 1e-5
    record = json.loads((tmp_path / "swa_config.json").read_text())
    assert record["shipped"] == "pema_0.05" and record["shipped_weights"]["last_step"] == 8
