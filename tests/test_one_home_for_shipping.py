"""What ships, and why, is decided in one place (hf_swa.training.selection): the trainer, the callback and the GLUE
app ask it and hold no rule of their own, so the same settings give the same decision through each."""

from pathlib import Path

import pytest
from tiny_models import QUICK_RUN, classification_data, tiny_bert
from transformers import Trainer, TrainingArguments

from hf_swa import SWACallback, SWAConfig, SWATrainer, SWATrainingArguments
from hf_swa.glue.arguments import DataTrainingArguments, GlueTrainingArguments
from hf_swa.glue.run import check_selection_data
from hf_swa.training.selection import decide, rule_candidate

PACKAGE = Path(__file__).resolve().parents[1] / "hf_swa"
CASES = [  # settings, has a selection set, has an evaluation set
    (dict(), False, True),
    (dict(), True, True),
    (dict(swa_select_metric="none"), True, True),
    (dict(swa_select_metric="loss"), False, True),
    (dict(swa_select_metric="accuracy"), True, False),
    (dict(swa_ship="swa"), False, False),
]


@pytest.mark.parametrize("settings, has_select, has_eval", CASES)
def test_the_trainer_and_the_glue_app_take_the_decision_of_the_core(tmp_path, settings, has_select, has_eval):
    expected = decide(SWAConfig(**settings), has_select, has_eval)
    data = classification_data(8)
    trainer = SWATrainer(
        model=tiny_bert(),
        args=SWATrainingArguments(str(tmp_path), max_steps=2, **QUICK_RUN, **settings),
        train_dataset=data,
        eval_dataset=data if has_eval else None,
        swa_select_dataset=data if has_select else None,
    )
    assert trainer.swa_decision == expected
    glue = GlueTrainingArguments(str(tmp_path), do_train=True, do_eval=has_eval, **settings)
    check_selection_data(DataTrainingArguments(task_name="sst2", swa_select_split=0.2 if has_select else 0), glue)


def test_a_choice_with_nothing_to_score_on_is_refused_alike():
    settings = dict(swa_select_metric="loss")
    with pytest.raises(ValueError, match="swa_select_dataset"):
        decide(SWAConfig(**settings), has_select_dataset=False, has_eval_dataset=False)
    glue = GlueTrainingArguments("out", do_train=True, do_eval=False, **settings)
    with pytest.raises(ValueError, match="--swa_select_split 0 holds out no training row"):
        check_selection_data(DataTrainingArguments(task_name="sst2", swa_select_split=0), glue)


@pytest.mark.parametrize("ship", ["live", "swa", "last_window"])
def test_the_callback_on_a_plain_trainer_ships_the_rule_of_the_core(tmp_path, ship):
    callback = SWACallback(SWAConfig(swa_start=2, swa_windows=2, swa_ship=ship))
    args = TrainingArguments(str(tmp_path), max_steps=6, **QUICK_RUN)
    Trainer(model=tiny_bert(), args=args, train_dataset=classification_data(24), callbacks=[callback]).train()
    assert callback.summary()["shipped"] == rule_candidate(callback.candidates, ship)
    assert callback.summary()["shipped"] == {"live": "live", "swa": "swa", "last_window": "swa_from4"}[ship]


def test_no_module_outside_the_decision_holds_a_rule_of_what_ships():
    """Candidate kinds are never re-derived from name patterns, and the ship and selection rules are not
    re-implemented: only training/selection.py (and config.py, which declares the settings) name them."""
    rules = ('startswith("swa_from")', "LAST_WINDOW", "selects_automatically", '== "last_window"')
    home = {PACKAGE / "training" / "selection.py", PACKAGE / "training" / "config.py"}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in home:
            continue
        text = path.read_text(encoding="utf-8")
        assert not [rule for rule in rules if rule in text], path.relative_to(PACKAGE)
