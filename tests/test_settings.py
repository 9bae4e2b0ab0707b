"""Each setting is declared once, as an `SWAConfig` field: its flag, its default, its help and its record follow."""

import dataclasses
import json
import warnings
from typing import List

import pytest
from tiny_models import QUICK_RUN, classification_data, tiny_bert
from transformers import HfArgumentParser, TrainingArguments

from hf_swa import SWACallback, SWAConfig, SWATrainer, SWATrainingArguments
from hf_swa.checkpointing.names import CONFIG_FILE
from hf_swa.glue.arguments import GlueTrainingArguments
from hf_swa.training import defaults
from hf_swa.training.arguments import SWAArgumentsMixin, swa_arguments_mixin
from hf_swa.training.settings import RENAMED_SETTINGS, setting


@dataclasses.dataclass
class ConfigWithOneMore(SWAConfig):
    """A throwaway setting, added the one way a setting is added: one field."""

    swa_extra_widths: List[float] = setting((0.25,), "A throwaway setting of the tests.")


@dataclasses.dataclass
class ArgumentsWithOneMore(swa_arguments_mixin(ConfigWithOneMore), TrainingArguments):
    pass


def test_a_field_added_to_the_config_is_a_flag_a_config_value_and_a_record(tmp_path):
    parser = HfArgumentParser(ArgumentsWithOneMore)
    assert "--swa_extra_widths" in parser.format_help() and "A throwaway setting of the tests." in parser.format_help()
    flags = ["--output_dir", str(tmp_path / "out"), "--swa_extra_widths", "0.5", "0.75", "--swa_freq", "2"]
    flags += ["--max_steps", "4", "--per_device_train_batch_size", "4", "--report_to", "none", "--use_cpu", "true"]
    flags += ["--save_strategy", "no", "--swa_select_metric", "none"]
    (args,) = parser.parse_args_into_dataclasses(flags)
    assert isinstance(args, SWAArgumentsMixin) and args.swa_extra_widths == [0.5, 0.75]
    config = args.to_swa_config()
    assert type(config) is ConfigWithOneMore and (config.swa_extra_widths, config.swa_freq) == ([0.5, 0.75], 2)
    (unset,) = parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path)])
    assert unset.to_swa_config().swa_extra_widths == [0.25]

    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(16))
    trainer.train()
    trainer.save_model(str(tmp_path / "model"))
    record = json.loads((tmp_path / "model" / CONFIG_FILE).read_text())
    assert record["swa_extra_widths"] == [0.5, 0.75] and record["swa_freq"] == 2
    assert record["n_averaged"] == 2  # steps 2 and 4 of 4, from swa_start 0.5 every 2 steps


def test_every_flag_is_its_config_field_with_the_same_default_and_help(tmp_path):
    flags = {f.name: f for f in dataclasses.fields(SWATrainingArguments)}
    args = SWATrainingArguments(str(tmp_path), report_to="none", use_cpu=True)
    for field in dataclasses.fields(SWAConfig):
        assert field.name.startswith("swa_"), field.name
        assert field.metadata["help"] and flags[field.name].metadata["help"] == field.metadata["help"]
        assert getattr(args, field.name) == getattr(SWAConfig(), field.name), field.name
    assert not {f.name for f in dataclasses.fields(SWAConfig)} & set(RENAMED_SETTINGS)
    assert set(dataclasses.fields(args.to_swa_config())) == set(dataclasses.fields(SWAConfig))


def test_every_default_lives_in_defaults_py(tmp_path):
    """Each setting's default is the constant of its name in hf_swa/training/defaults.py, in every entry point."""
    common = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    (parsed,) = HfArgumentParser(GlueTrainingArguments).parse_args_into_dataclasses(["--output_dir", str(tmp_path)])
    for holder in (SWAConfig(), SWATrainingArguments(**common), GlueTrainingArguments(**common), parsed):
        for field in dataclasses.fields(SWAConfig):
            value, default = getattr(holder, field.name), getattr(defaults, field.name.upper())
            assert (tuple(value) if isinstance(value, list) else value) == default, (type(holder), field.name)
    assert SWATrainingArguments(**common).swa is defaults.SWA is True
    assert GlueTrainingArguments(**common).swa_refit is defaults.SWA_REFIT is False


def test_the_old_names_still_work_with_a_warning_naming_the_new_one():
    with pytest.warns(FutureWarning, match="'strategy' is renamed 'swa_strategy'"):
        config = SWAConfig(strategy="ema", swa_windows=1)
    assert (config.swa_strategy, config.swa_ema_decay) == ("ema", defaults.SWA_EMA_DECAY)
    with pytest.warns(FutureWarning) as caught:
        callback = SWACallback(strategy="ema", ema_decay=0.9, swa_windows=1)
    assert [str(w.message).split(":")[0] for w in caught] == [
        "The setting 'strategy' is renamed 'swa_strategy'",
        "The setting 'ema_decay' is renamed 'swa_ema_decay'",
    ]
    assert callback.config == SWAConfig(swa_strategy="ema", swa_ema_decay=0.9, swa_windows=1)
    with pytest.warns(FutureWarning, match="swa_ema_decay"):
        assert callback.config.ema_decay == 0.9
    with pytest.raises(ValueError, match="pass swa_strategy only"), pytest.warns(FutureWarning):
        SWAConfig(strategy="uniform", swa_strategy="ema")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names and a record of the old ones: no warning
        assert SWAConfig(swa_strategy="ema", swa_windows=1).swa_strategy == "ema"
        old_record = {"swa_start": 0.5, "strategy": "ema", "ema_decay": 0.9, "swa_windows": 1, "n_averaged": 3}
        assert SWAConfig.from_dict(old_record) == SWAConfig(swa_strategy="ema", swa_ema_decay=0.9, swa_windows=1)


def test_an_ema_run_named_the_new_way_averages_by_ema(tmp_path):
    args = SWATrainingArguments(
        **{**QUICK_RUN, "output_dir": str(tmp_path)}, max_steps=4, swa_strategy="ema", swa_ema_decay=0.5
    )
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(16))
    assert trainer.swa_callback.config.swa_strategy == "ema"
    trainer.train()
    assert trainer.swa_callback.averager.strategy.to_dict() == {"name": "ema", "decay": 0.5, "bias_corrected": True}
