"""The SWA settings as `TrainingArguments` fields: `SWAArgumentsMixin` and `SWATrainingArguments`."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import ClassVar, Union, get_args, get_origin, get_type_hints

from transformers import TrainingArguments

from ..averaging.distributed import FSDP1_MESSAGE
from . import defaults
from .checks import LOAD_BEST_MESSAGE
from .config import SWAConfig, parse_select_metric, parse_swa_start
from .defaults import lr_tail_is_on

#: The switch `SWATrainingArguments` has beside the settings of `SWAConfig`.
SWA_SWITCH = ("swa", bool, field(default=defaults.SWA, metadata={"help": "Average (False: a plain Trainer run)."}))


def flag_type(hint):
    """The type ``HfArgumentParser`` reads a setting as: its own, but text for a union such as ``swa_start``'s
    int or float (argparse takes one type; the config parses the text)."""
    if get_origin(hint) is Union and type(None) not in get_args(hint):
        return str
    return hint


def setting_flags(config_class: type) -> list:
    """Each field of `config_class` as ``(name, type, field)`` for `dataclasses.make_dataclass`: a ``--flag`` with
    the field's default and help."""
    hints = get_type_hints(config_class)
    flags = []
    for setting in dataclasses.fields(config_class):
        if setting.default is dataclasses.MISSING:
            default = {"default_factory": setting.default_factory}
        else:
            default = {"default": setting.default}
        help = {"help": setting.metadata["help"]} if "help" in setting.metadata else {}
        flags.append((setting.name, flag_type(hints[setting.name]), field(**default, metadata=help)))
    return flags


# The fields of SWAArgumentsMixin: the switch, then one per SWAConfig field (generated, never written by hand).
_SWAConfigFlags = dataclasses.make_dataclass(
    "_SWAConfigFlags", [SWA_SWITCH, *setting_flags(SWAConfig)], namespace={"__module__": __name__}
)


@dataclass
class SWAArgumentsMixin(_SWAConfigFlags):
    """The SWA settings, to mix into any `TrainingArguments` subclass (each a `--flag` through `HfArgumentParser`).

    One field per `SWAConfig` field, of the same name, default and help (made from
    ``dataclasses.fields(SWAConfig)``), plus ``swa`` (False: a plain Trainer run). For a subclass
    of `SWAConfig` with more settings, `swa_arguments_mixin` makes the mixin with their flags.

    Put it first, and make the new class a dataclass, e.g. for TRL:
    ``@dataclass class SWASFTConfig(SWAArgumentsMixin, SFTConfig): pass``.
    `SWATrainingArguments` is this mixin on `TrainingArguments`.

    Example:
        >>> from dataclasses import dataclass
        >>> from transformers import HfArgumentParser, Seq2SeqTrainingArguments
        >>> from hf_swa import SWAArgumentsMixin
        >>> @dataclass
        ... class SWASeq2SeqArguments(SWAArgumentsMixin, Seq2SeqTrainingArguments):
        ...     pass
        >>> (args,) = HfArgumentParser(SWASeq2SeqArguments).parse_args_into_dataclasses(
        ...     ["--output_dir", "/tmp/out", "--swa_start", "100", "--predict_with_generate", "true"])
        >>> args.swa_start, args.predict_with_generate, args.to_swa_config().swa_freq
        (100, True, 1)
    """

    #: The config `to_swa_config` builds, whose fields are these arguments' settings.
    swa_config_class: ClassVar[type] = SWAConfig

    def __post_init__(self):
        # Checked before TrainingArguments sets up DeepSpeed and the process group.
        tail = lr_tail_is_on(self.swa_lr, self.swa_lr_ratio)
        if self.swa and tail and "scheduler" in _deepspeed_config(self.deepspeed):
            raise ValueError(
                "The SWA LR tail (swa_lr, else swa_lr_ratio of the peak) is composed with the Trainer's schedule, "
                "but the DeepSpeed config has its own 'scheduler' section, which replaces it (and is not a LambdaLR). "
                "Remove 'scheduler' from the DeepSpeed config (the Trainer then builds lr_scheduler_type and "
                "DeepSpeed steps it), or leave swa_lr unset and set swa_lr_ratio=0 to keep that schedule."
            )
        super().__post_init__()
        self.swa_start = parse_swa_start(self.swa_start)
        self.swa_select_metric = parse_select_metric(self.swa_select_metric)
        if self.swa and self.fsdp and int((self.fsdp_config or {}).get("version", 2)) == 1:
            raise ValueError(FSDP1_MESSAGE)
        if self.swa:
            config = self.to_swa_config()  # validate now, before any model is built or trained
            schedule = str(getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type))
            if self.load_best_model_at_end:
                raise ValueError(LOAD_BEST_MESSAGE)
            if config.has_lr_tail and schedule == "reduce_lr_on_plateau":
                raise ValueError(
                    "The SWA LR tail (swa_lr, else swa_lr_ratio of the peak) needs a LambdaLR-based schedule, and "
                    "lr_scheduler_type='reduce_lr_on_plateau' is not one: choose another lr_scheduler_type (e.g. "
                    "'linear' or 'constant'), or leave swa_lr unset and set swa_lr_ratio=0."
                )

    def to_swa_config(self) -> SWAConfig:
        """The `SWAConfig` (a `swa_config_class`) these arguments describe: each of its fields from the flag
        of that name."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self.swa_config_class)}
        return self.swa_config_class(**{k: list(v) if isinstance(v, list) else v for k, v in values.items()})


def swa_arguments_mixin(config_class: type) -> type:
    """`SWAArgumentsMixin` for a subclass of `SWAConfig` with settings of its own: one ``--flag`` per field.

    Example:
        >>> from dataclasses import dataclass
        >>> from transformers import HfArgumentParser, TrainingArguments
        >>> from hf_swa.training.config import SWAConfig
        >>> from hf_swa.training.settings import setting
        >>> @dataclass
        ... class MyConfig(SWAConfig):
        ...     swa_note: str = setting("", "A note kept in swa_config.json.")
        >>> @dataclass
        ... class MyArguments(swa_arguments_mixin(MyConfig), TrainingArguments):
        ...     pass
        >>> (args,) = HfArgumentParser(MyArguments).parse_args_into_dataclasses(
        ...     ["--output_dir", "/tmp/out", "--swa_note", "first try"])
        >>> args.to_swa_config().swa_note
        'first try'
    """
    if not (isinstance(config_class, type) and issubclass(config_class, SWAConfig)):
        raise TypeError(f"swa_arguments_mixin({config_class!r}): pass SWAConfig or a dataclass subclass of it.")
    return dataclasses.make_dataclass(
        f"{config_class.__name__}ArgumentsMixin",
        setting_flags(config_class),
        bases=(SWAArgumentsMixin,),
        namespace={"swa_config_class": config_class, "__module__": config_class.__module__},
    )


@dataclass
class SWATrainingArguments(SWAArgumentsMixin, TrainingArguments):
    """`TrainingArguments` plus the SWA settings (each also a `--flag` through `HfArgumentParser`).

    Example:
        >>> from transformers import HfArgumentParser
        >>> from hf_swa import SWATrainingArguments
        >>> (args,) = HfArgumentParser(SWATrainingArguments).parse_args_into_dataclasses(
        ...     ["--output_dir", "/tmp/out", "--swa_start", "0.5", "--swa_freq", "10", "--swa_lr", "2e-5"])
        >>> args.swa_start, args.swa_freq, args.to_swa_config().swa_lr
        (0.5, 10, 2e-05)
    """


def _deepspeed_config(deepspeed) -> dict:
    """The DeepSpeed config given to TrainingArguments (a dict or a JSON file), or {}."""
    if isinstance(deepspeed, dict):
        return deepspeed
    if isinstance(deepspeed, str) and os.path.isfile(deepspeed):
        with open(deepspeed, encoding="utf-8") as f:
            return json.load(f)
    return {}
