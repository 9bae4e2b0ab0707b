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
        entry = {key: record["refit"][key] for key in ("chosen_on_split", "shipped", "fallback", "selection_run")}
        assert entry == {"chosen_on_split": name, "shipped": name, "fallback": None, "selection_run": "first"}
        assert record["refit"]["chosen_steps"]["max_steps"] == record["refit"]["shipped_steps"]["max_steps"] == 12
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


def test_a_window_ships_at_the_share_of_training_it_was_chosen_at_not_by_its_name(tmp_path, caplog):
    refit = trainer(tmp_path, "refit", classification_data(40), max_steps=16)
    refit.train()
    windows = [c for c in refit.swa_callback.candidates if c["kind"] == "window_mean"]
    starts = {c["name"]: c["start_step"] for c in windows}
    assert starts == {"swa": 8, "swa_from10": 10, "swa_from12": 12, "swa_from14": 14}
    # A first run of 14 steps that chose swa_from12 (at 12/14 = 86% of its training): the refit run of 16 steps has
    # a window of that name too, at 75%; the window at the same share is swa_from14 (88%), and it ships.
    first = {
        "max_steps": 14,
        "candidates": [{"name": "swa_from12", "kind": "window_mean", "start_step": 12}],
        "selection": {"metric": "loss", "chosen": "swa_from12", "scores": {}, "optimistic": False},
    }
    with caplog.at_level(logging.INFO, logger="hf_swa"):
        record = refit.ship_refit(first)
    assert record["chosen"] == "swa_from14" and "swa_from12 starts at 86% of the first run" in caplog.text
    assert record["refit"]["chosen_steps"] == {"start_step": 12, "max_steps": 14, "start_share": 0.8571}
    assert record["refit"]["shipped_steps"] == {"start_step": 14, "max_steps": 16, "start_share": 0.875}
    held = trainable_float_weights(refit.model)
    expected = refit.swa_callback.averager.averages("swa_from14")
    assert all(torch.equal(held[k], expected[k].float().double()) for k in expected)
    refit_logs = [r for r in caplog.records if "SWA refit" in r.getMessage()]
    assert [r.levelno for r in refit_logs] == [logging.INFO]  # the rule, not a fallback
    assert refit_candidate("pema_0.1", first, ["swa"], {}, 16) == (
        "swa",
        "pema_0.1 is not a refit candidate: swa, the average of every snapshot, instead",
    )
