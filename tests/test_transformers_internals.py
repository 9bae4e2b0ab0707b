"""What hf_swa relies on inside transformers and torch, one test each (docs/semantics.md keeps the list).

Each test fails naming the installed version when upstream changes shape, so that an upgrade
breaks here, loudly, rather than silently in a run.
"""

import inspect

import torch
import transformers
from tiny_models import QUICK_RUN, classification_data, tiny_bert
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_swa import SWAConfig, SWATrainerMixin

VERSIONS = f"transformers {transformers.__version__}, torch {torch.__version__}"


class EvaluateWithOptions(Trainer):
    """A Trainer subclass whose evaluate takes options of its own, as Seq2SeqTrainer's takes **gen_kwargs."""

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", **options):
        self.options_seen = getattr(self, "options_seen", []) + [options]
        return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)


class SWAEvaluateWithOptions(SWATrainerMixin, EvaluateWithOptions):
    pass


def trained(trainer_class, tmp_path, **kwargs):
    args = TrainingArguments(**{**QUICK_RUN, "max_steps": 4, "output_dir": str(tmp_path / "out")})
    trainer = trainer_class(
        model=tiny_bert(),
        args=args,
        train_dataset=classification_data(16),
        eval_dataset=classification_data(8),
        **kwargs,
    )
    trainer.train()
    return trainer


def test_evaluate_passes_the_subclass_options_on_to_every_evaluation(tmp_path):
    trainer = trained(SWAEvaluateWithOptions, tmp_path, swa_config=SWAConfig(swa_start=2))
    metrics = trainer.evaluate(num_beams=3)
    assert "eval_loss" in metrics and "eval_swa_loss" in metrics
    assert trainer.options_seen[-2:] == [{"num_beams": 3}, {"num_beams": 3}]  # the live weights and the average


def test_save_model_passes_the_trainers_arguments_on(tmp_path):
    trainer = trained(SWAEvaluateWithOptions, tmp_path, swa_config=SWAConfig(swa_start=2))
    upstream = inspect.signature(Trainer.save_model).parameters
    assert list(upstream)[:2] == ["self", "output_dir"], f"{VERSIONS}: Trainer.save_model changed: {upstream}"
    trainer.save_model(str(tmp_path / "final"), **{name: False for name in list(upstream)[2:]})
    assert (tmp_path / "final" / "swa_config.json").is_file()


class CountEvents(TrainerCallback):
    def __init__(self):
        self.on_evaluate_calls, self.on_log_calls = 0, 0

    def on_evaluate(self, args, state, control, **kwargs):
        self.on_evaluate_calls += 1

    def on_log(self, args, state, control, **kwargs):
        self.on_log_calls += 1


def test_trainer_evaluate_logs_once_and_fires_on_evaluate_once():
    """SWATrainer.evaluate silences Trainer.evaluate's own log and on_evaluate (`_one_evaluation_event`), then
    sends one of each with every metric: upstream must still send exactly one of each, through these two."""
    counter = CountEvents()
    args = TrainingArguments("unused", **{**QUICK_RUN, "logging_strategy": "steps"})
    trainer = Trainer(model=tiny_bert(), args=args, eval_dataset=classification_data(8), callbacks=[counter])
    trainer.evaluate()
    assert (counter.on_log_calls, counter.on_evaluate_calls) == (1, 1), (
        f"{VERSIONS}: Trainer.evaluate no longer logs once and fires on_evaluate once; review "
        "SWATrainerMixin._one_evaluation_event."
    )
    source = inspect.getsource(Trainer.evaluate)
    assert "self.log(" in source and "self.callback_handler.on_evaluate(" in source, (
        f"{VERSIONS}: Trainer.evaluate no longer calls self.log and self.callback_handler.on_evaluate; review "
        "SWATrainerMixin._one_evaluation_event."
    )


def test_save_checkpoint_names_the_folder_then_pushes_then_rotates():
    """SWATrainerMixin._save_checkpoint writes the SWA state into the folder Trainer._save_checkpoint is about to
    fill, named by `_get_output_dir(trial)` and PREFIX_CHECKPOINT_DIR, before the push and the rotation."""
    for method, parameters in (
        (Trainer._save_checkpoint, ["self", "model", "trial"]),
        (Trainer._get_output_dir, ["self", "trial"]),
        (Trainer._push_from_checkpoint, ["self", "checkpoint_folder"]),
    ):
        assert list(inspect.signature(method).parameters) == parameters, f"{VERSIONS}: {method.__qualname__} changed"
    source = inspect.getsource(Trainer._save_checkpoint)
    order = [
        source.find(call)
        for call in (
            "self._get_output_dir(trial=trial)",
            "self.save_model(output_dir",
            "self._push_from_checkpoint(output_dir)",
            "rotate_checkpoints(",
        )
    ]
    assert -1 not in order and order == sorted(order), (
        f"{VERSIONS}: Trainer._save_checkpoint no longer names the folder, saves, pushes and rotates in that order; "
        "review SWATrainerMixin._save_checkpoint and _push_from_checkpoint."
    )


def test_lambda_lr_reports_the_lr_set_by_the_swa_tail():
    """The SWA tail sets LambdaLR's `_last_lr` (what get_last_lr() returns, and the Trainer logs)."""
    from hf_swa.training.schedule import set_last_lr

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    set_last_lr(scheduler, [0.25])
    assert scheduler.get_last_lr() == [0.25], f"{VERSIONS}: LambdaLR.get_last_lr() no longer returns _last_lr"


def test_checkpoint_push_is_still_an_upload_folder_in_the_background():
    """SWATrainerMixin._push_from_checkpoint is a copy of upstream's checkpoint push (through
    `hf_swa.training.compat.hf_api` on every supported transformers): upstream must still push that way."""
    source = inspect.getsource(Trainer._push_from_checkpoint)
    assert "upload_folder(" in source and "run_as_future=True" in source and "PushInProgress(" in source, (
        f"{VERSIONS}: Trainer._push_from_checkpoint no longer uploads the folder in the background; review "
        "SWATrainerMixin._push_from_checkpoint."
    )
