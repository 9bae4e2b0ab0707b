"""A refit through the API: choose in a run with rows held out, train again on every row, ship the same candidate."""

import json
import logging

import torch
from tiny_models import QUICK_RUN, classification_data, tiny_bert, trainable_float_weights

from hf_swa import SWATrainer, SWATrainingArguments, selection_split
from hf_swa.training.selection import refit_candidate


def trainer(tmp_path, name, rows, select=None, max_steps=12):
    args = SWATrainingArguments(
        **{**QUICK_RUN, "max_steps": max_steps, "output_dir": str(tmp_path / name)}, swa_ema_decays=[0.9]
    )
    return SWATrainer(model=tiny_bert(), args=args, train_dataset=rows, swa_select_dataset=select)


def test_ship_refit_ships_the_candidate_of_the_chosen_name_from_the_run_on_every_row(tmp_path):
    rows = classification_data(40)
    train, select = selection_split(0.25, labels=[int(r["labels"]) for r in rows], seed=0)
    first = trainer(tmp_path, "first", [rows[i] for i in train], [rows[i] for i in select])
    first.train()
    chosen = first.swa_callback.selection["chosen"]
    refit = trainer(tmp_path, "refit", rows)
    refit.train()
    averager = refit.swa_callback.averager
    for name in [*averager.candidate_names(), "live"]:  # every name the first run could have chosen
        summary = first.swa_callback.summary()
        summary["selection"]["chosen"] = name
        record = refit.ship_refit(summary, selection_run="first")
        assert record["chosen"] == name and record["optimistic"] is False
        assert record["refit"] == {"chosen_on_split": name, "shipped": name, "fallback": None, "selection_run": "first"}
        assert record["scores"] == first.swa_callback.selection["scores"]  # scored in the first run, on its split
        if name == "live":
            with averager.live_weights(refit.model):
                expected = trainable_float_weights(refit.model)
        else:
            expected = {k: v.double() for k, v in averager.averages(name).items()}
        held = trainable_float_weights(refit.model)
        assert all(torch.equal(held[k], expected[k].float().double()) for k in expected), name
    refit.save_model()
    saved = json.loads((tmp_path / "refit" / "swa_config.json").read_text())
    assert saved["shipped"] == "live" and saved["selection"]["refit"]["chosen_on_split"] == "live"
    assert chosen in first.swa_callback.summary()["selection"]["scores"]


def test_a_window_the_refit_run_lacks_maps_to_the_nearest_share_of_training(tmp_path, caplog):
    refit = trainer(tmp_path, "refit", classification_data(40), max_steps=16)
    refit.train()
    starts = {c["name"]: c["start_step"] for c in refit.swa_callback.candidates if c["name"].startswith("swa_from")}
    first = {  # a run of 8 steps that chose its window from step 6 (75% of training)
        "max_steps": 8,
        "candidates": [{"name": "swa_from6", "start_step": 6}],
        "selection": {"metric": "loss", "chosen": "swa_from6", "scores": {}, "optimistic": False},
    }
    with caplog.at_level(logging.WARNING, logger="hf_swa"):
        record = refit.ship_refit(first)
    nearest = min(starts, key=lambda n: abs(starts[n] / 16 - 0.75))
    assert record["chosen"] == nearest == "swa_from12" and "swa_from6 is not a refit candidate" in caplog.text
    held = trainable_float_weights(refit.model)
    expected = refit.swa_callback.averager.averages(nearest)
    assert all(torch.equal(held[k], expected[k].float().double()) for k in expected)
    assert refit_candidate("pema_0.1", first, ["swa"], {}, 16) == (
        "swa",
        "pema_0.1 is not a refit candidate: swa, the average of every snapshot, instead",
    )
