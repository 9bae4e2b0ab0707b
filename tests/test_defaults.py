"""One set of SWA defaults (hf_swa/training/defaults.py) for every entry point; "auto" selection; the ratio tail."""

import logging

import pytest
import torch
from tiny_models import QUICK_RUN, LearningRateRecorder, classification_data, tiny_bert, trainable_float_weights
from transformers import HfArgumentParser

from hf_swa import SWACallback, SWAConfig, SWATrainer, SWATrainingArguments
from hf_swa.demo.arguments import SELECT_SHARE
from hf_swa.glue.arguments import DataTrainingArguments, GlueTrainingArguments
from hf_swa.training import defaults
from hf_swa.training.schedule import install_lr_tail

EXPECTED = {
    "swa_start": defaults.SWA_START,
    "swa_lr_ratio": defaults.SWA_LR_RATIO,
    "swa_freq": defaults.SWA_FREQ,
    "swa_windows": defaults.SWA_WINDOWS,
    "swa_windows_at_most": defaults.SWA_WINDOWS_AT_MOST,
    "swa_ema_decays": defaults.SWA_EMA_DECAYS,
    "swa_select_metric": defaults.SWA_SELECT_METRIC,
    "swa_ship": defaults.SWA_SHIP,
}


def settings_of(obj) -> dict:
    values = {name: getattr(obj, name) for name in EXPECTED}
    values["swa_ema_decays"] = tuple(values["swa_ema_decays"])
    return values


def test_the_defaults_have_one_home(tmp_path):
    assert (defaults.SWA_START, defaults.SWA_LR_RATIO, defaults.SWA_FREQ, defaults.SWA_WINDOWS) == (0.5, 0.5, 1, 4)
    assert (defaults.SWA_WINDOWS_AT_MOST, defaults.SWA_EMA_DECAYS, defaults.SWA_SELECT_METRIC) == (True, (), "auto")
    assert (defaults.SWA_SELECT_SPLIT, defaults.SWA_SHIP) == (0.0, "live")
    common = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    (parsed,) = HfArgumentParser(SWATrainingArguments).parse_args_into_dataclasses(["--output_dir", str(tmp_path)])
    for obj in (
        SWAConfig(),
        SWATrainingArguments(**common),
        SWATrainingArguments(**common).to_swa_config(),
        GlueTrainingArguments(**common),
        GlueTrainingArguments(**common).to_swa_config(),
        parsed,
    ):
        assert settings_of(obj) == EXPECTED, type(obj).__name__
    train_file = tmp_path / "train.csv"
    train_file.write_text("sentence,label\nfine,1\n")
    assert DataTrainingArguments(train_file=str(train_file)).swa_select_split == defaults.SWA_SELECT_SPLIT
    assert SELECT_SHARE == defaults.SWA_SELECT_SPLIT
    assert not [name for name in vars(GlueTrainingArguments) if name.startswith("DEFAULT_")]
    assert not [name for name in vars(DataTrainingArguments) if name.startswith("DEFAULT_")]


def test_the_ratio_is_validated(tmp_path):
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="swa_lr_ratio"):
            SWAConfig(swa_lr_ratio=bad)
        with pytest.raises(ValueError, match="swa_lr_ratio"):
            SWATrainingArguments(str(tmp_path), report_to="none", use_cpu=True, swa_lr_ratio=bad)
    assert not SWAConfig(swa_lr_ratio=0).has_lr_tail and SWAConfig(swa_lr_ratio=0, swa_lr=1e-3).has_lr_tail


# ---------------------------------------------------------------- "auto" selection

MAX_STEPS = 8


def auto_trainer(tmp_path, select_dataset=None, **kwargs):
    args = SWATrainingArguments(**{**QUICK_RUN, "max_steps": MAX_STEPS, "output_dir": str(tmp_path / "out")}, **kwargs)
    return SWATrainer(
        model=tiny_bert(),
        args=args,
        train_dataset=classification_data(40),
        eval_dataset=classification_data(16, seed=7),
        swa_select_dataset=select_dataset,
    )


def mean_loss(weights: dict, rows: list) -> float:
    """The mean cross-entropy of a fresh tiny BERT holding `weights` over `rows`, computed here."""
    model = tiny_bert()
    model.load_state_dict({k: v.to(torch.float32) for k, v in weights.items()}, strict=False)
    model.eval()
    ids = torch.stack([r["input_ids"] for r in rows])
    mask = torch.stack([r["attention_mask"] for r in rows])
    labels = torch.stack([r["labels"] for r in rows])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    return torch.nn.functional.cross_entropy(logits.double(), labels).item()


def test_auto_selects_by_loss_on_the_selection_dataset(tmp_path):
    select = classification_data(16, seed=11)
    trainer = auto_trainer(tmp_path, select_dataset=select)
    trainer.train()
    callback = trainer.swa_callback
    averager = callback.averager
    with averager.live_weights(trainer.model):
        live = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    losses = {name: mean_loss(averager.averages(name), select) for name in averager.candidate_names()}
    losses["live"] = mean_loss(live, select)
    record = callback.selection
    assert record["metric"] == "loss" and record["dataset"] == {"name": "swa_select_dataset", "size": 16}
    assert record["optimistic"] is False
    assert set(record["scores"]) == set(losses) and len(losses) == 1 + 3 + 1  # swa, 3 later windows, live
    assert record["chosen"] == min(losses, key=losses.get)
    for name, loss in losses.items():
        assert record["scores"][name] == pytest.approx(loss, rel=1e-5)


def test_auto_without_a_selection_dataset_ships_swa_ship_and_never_selects_on_eval(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_swa"):
        trainer = auto_trainer(tmp_path)
        trainer.train()
    warnings = [r for r in caplog.records if "swa_select_metric='auto'" in r.getMessage()]
    assert len(warnings) == 1 and "swa_select_dataset=" in warnings[0].getMessage()
    assert "selection_split" in warnings[0].getMessage()
    callback = trainer.swa_callback
    summary = callback.summary()
    # swa_ship's default: the live weights ship, the averages beside them (evaluated, recorded, not shipped).
    assert callback.selection is None and summary["shipped"] == "live" and callback.averager.held is None
    assert summary["shipped_weights"]["kind"] == "live" and summary["shipped_weights"]["last_step"] == MAX_STEPS
    assert not [k for entry in trainer.state.log_history for k in entry if k.startswith("select_")]
    live = trainable_float_weights(trainer.model)
    with callback.averaged_weights(trainer.model):
        assert not all(torch.equal(live[k], v) for k, v in trainable_float_weights(trainer.model).items())
    assert all(torch.equal(live[k], v) for k, v in trainable_float_weights(trainer.model).items())
    with pytest.raises(ValueError, match="swa_select_dataset"):
        trainer.select_candidate()  # asked by hand: 'auto' still refuses the evaluation set


def test_an_explicit_metric_still_selects_on_eval_flagged_optimistic(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_swa"):
        trainer = auto_trainer(tmp_path, swa_select_metric="loss")
    assert "optimistic" in caplog.text
    trainer.train()
    dataset = trainer.swa_callback.selection["dataset"]
    assert dataset["name"] == "eval_dataset" and dataset["size"] == 16 and "optimistic" in dataset["note"]
    assert trainer.swa_callback.selection["optimistic"] is True


# ---------------------------------------------------------------- the ratio tail

LR, N = 1e-2, 12


def run_tail(tmp_path, **swa):
    args = SWATrainingArguments(
        output_dir=str(tmp_path),
        **{**QUICK_RUN, "learning_rate": LR, "logging_strategy": "steps", "logging_steps": 1},
        max_steps=N,
        lr_scheduler_type="linear",
        swa_start=0.5,
        swa_select_metric="none",
        **swa,
    )
    recorder = LearningRateRecorder()
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(48), callbacks=[recorder])
    trainer.train()
    logged = {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}
    assert sorted(logged) == list(range(1, N + 1))
    return logged


def base_linear(step):
    return LR * (N - (step - 1)) / N


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_the_logged_lr_from_swa_start_is_ratio_times_the_peak(tmp_path, ratio):
    logged = run_tail(tmp_path, swa_lr_ratio=ratio)
    for step, lr in logged.items():
        assert lr == pytest.approx(ratio * LR if step >= 6 else base_linear(step), rel=1e-9), step


def test_swa_lr_overrides_the_ratio_and_ratio_zero_keeps_the_schedule(tmp_path):
    logged = run_tail(tmp_path / "lr", swa_lr=2e-3, swa_lr_ratio=0.25)
    assert all(lr == pytest.approx(2e-3 if step >= 6 else base_linear(step), rel=1e-9) for step, lr in logged.items())
    logged = run_tail(tmp_path / "none", swa_lr_ratio=0.0)
    assert all(lr == pytest.approx(base_linear(step), rel=1e-9) for step, lr in logged.items())


def test_the_ratio_is_a_share_of_each_param_groups_peak():
    weight, bias = torch.nn.Linear(2, 1).parameters()
    optimizer = torch.optim.SGD([{"params": [weight], "lr": 1.0}, {"params": [bias], "lr": 0.1}])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    install_lr_tail(scheduler, SWAConfig(swa_start=2, swa_lr_ratio=0.5), start_step=2)
    optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr() == pytest.approx([0.5, 0.05], rel=1e-12)
    callback = SWACallback(swa_lr_ratio=0.3)
    assert callback.config.swa_lr_ratio == 0.3 and callback.config.swa_lr is None


def test_rows_held_out_given_after_training_are_chosen_on_by_hand(tmp_path):
    """select_candidate() decides with the data the trainer holds when it runs, not when it was built."""
    trainer = auto_trainer(tmp_path)
    trainer.train()
    assert trainer.swa_callback.selection is None  # nothing to choose on during train(): swa_ship shipped
    trainer.swa_select_dataset = classification_data(16, seed=11)
    record = trainer.select_candidate()
    assert record["dataset"]["name"] == "swa_select_dataset" and record["dataset"]["size"] == 16
    assert record["chosen"] == min(record["scores"], key=record["scores"].get) and not record["optimistic"]
