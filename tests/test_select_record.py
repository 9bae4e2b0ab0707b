"""`SWACallback.select()` on a plain Trainer: the folder `save_model()` writes names the weights it holds."""

import json

import pytest
import torch
from tiny_models import QUICK_RUN, classification_data, tiny_bert
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

from hf_swa import SWACallback, SWAConfig
from hf_swa.hub.shipped import shipped_weights


def trained(tmp_path):
    callback = SWACallback(SWAConfig(swa_start=2, swa_lr=5e-3, swa_windows=2, swa_ema_decays=[0.5]))
    args = TrainingArguments(**{**QUICK_RUN, "max_steps": 6, "output_dir": str(tmp_path / "out")})
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=classification_data(24), callbacks=[callback])
    trainer.train()
    return trainer, callback


def closeness_to(weights: dict):
    """A score that is highest for the model holding exactly `weights` (negated distance of the classifier)."""

    def score(model):
        return -(model.classifier.weight.double() - weights["classifier.weight"].double()).abs().sum().item()

    return score


@pytest.mark.parametrize("target", ["swa_from4", "ema_0.5", "live"])
def test_select_then_save_model_writes_a_record_naming_the_shipped_weights(tmp_path, target):
    trainer, callback = trained(tmp_path)
    assert callback.averager.candidate_names() == ["swa", "swa_from4", "ema_0.5"]
    if target == "live":
        with callback.live_weights(trainer.model):
            expected = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    else:
        expected = callback.averager.averages(target)
    record = callback.select(trainer.model, closeness_to(expected), metric="closeness")
    assert record["chosen"] == target
    trainer.save_model()

    folder = tmp_path / "out"
    config = json.loads((folder / "swa_config.json").read_text())
    assert config["shipped"] == target
    assert config["selection"]["chosen"] == target
    assert set(config["selection"]["scores"]) == {"swa", "swa_from4", "ema_0.5", "live"}
    assert shipped_weights(config).name == target  # what the model card describes
    saved = dict(AutoModelForSequenceClassification.from_pretrained(str(folder)).named_parameters())
    assert all(torch.equal(saved[name], value.to(saved[name].dtype)) for name, value in expected.items())


def test_swa_trainer_selection_rewrites_the_record_in_output_dir_without_save_model(tmp_path):
    from hf_swa import SWATrainer, SWATrainingArguments

    args = SWATrainingArguments(
        **{**QUICK_RUN, "max_steps": 6, "output_dir": str(tmp_path / "out")},
        swa_start=2,
        swa_windows=2,
        swa_select_metric="loss",
    )
    data = classification_data(8, seed=5)
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(24), swa_select_dataset=data)
    trainer.train()
    config = json.loads((tmp_path / "out" / "swa_config.json").read_text())
    chosen = trainer.swa_callback.selection["chosen"]
    assert config["selection"]["chosen"] == chosen and config["shipped"] == chosen
    scores = trainer.swa_callback.selection["scores"]
    assert scores[chosen] == min(scores.values())
