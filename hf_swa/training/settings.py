"""How a setting is declared once: its field, default and help (`setting`); its old names; its value from text.

`SWAConfig` declares each setting with `setting`; `SWATrainingArguments` makes a ``--flag`` of each
field, and ``swa_config.json`` records each under its name. An old name (`RENAMED_SETTINGS`) still
works for one version, with a FutureWarning that names the new one.

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Settings:
    ...     swa_freq: int = setting(1, "A snapshot every this many optimizer steps.")
    >>> print(settings_doc(Settings).strip())
    Args:
            swa_freq: A snapshot every this many optimizer steps.
"""

from __future__ import annotations

import dataclasses
import functools
import textwrap
import warnings
from typing import Any, Optional, Union

#: Old names of settings, kept for one version: each still works as a keyword argument, with a FutureWarning.
RENAMED_SETTINGS = {"strategy": "swa_strategy", "ema_decay": "swa_ema_decay"}
#: `swa_select_metric` "auto": loss on swa_select_dataset when given, else no selection.
AUTO = "auto"


def setting(default: Any, help: str) -> Any:
    """A field of `SWAConfig`: its default (from :mod:`hf_swa.training.defaults`) and what it does.

    The one declaration of a setting: the ``--flag`` of `SWATrainingArguments` (with `help` as its help),
    the value `to_swa_config` passes and the key of ``swa_config.json`` all come from it. A list default
    (a tuple in defaults.py) gives each config its own list.
    """
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=functools.partial(list, default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def settings_doc(config_class: type) -> str:
    """The ``Args:`` section of a config's docstring: each setting with its help."""
    lines = ["", "    Args:"]
    for field in dataclasses.fields(config_class):
        text = f"{field.name}: {field.metadata.get('help', '')}"
        lines += textwrap.wrap(text, 100, initial_indent=" " * 8, subsequent_indent=" " * 12)
    return "\n".join(lines) + "\n"


def renamed_message(old: str) -> str:
    """The warning for a setting's old name: it names the new one."""
    new = RENAMED_SETTINGS[old]
    return f"The setting {old!r} is renamed {new!r}: use {new} (the old name goes in the next version)."


def take_renamed(config, old_values: dict) -> None:
    """Old names given as keyword arguments (`RENAMED_SETTINGS`): warn, and set the new ones."""
    for old, value in old_values.items():
        if value is None:
            continue
        new = RENAMED_SETTINGS[old]
        warnings.warn(renamed_message(old), FutureWarning, stacklevel=4)
        default = next(f.default for f in dataclasses.fields(config) if f.name == new)
        if getattr(config, new) not in (default, value):
            raise ValueError(f"{old}={value!r} and {new}={getattr(config, new)!r}: pass {new} only.")
        setattr(config, new, value)


def _renamed_attribute(old: str) -> property:
    """Reading a setting by its old name: the new one's value, with a FutureWarning."""

    def read(config):
        warnings.warn(renamed_message(old), FutureWarning, stacklevel=2)
        return getattr(config, RENAMED_SETTINGS[old])

    return property(read, doc=f"Renamed {RENAMED_SETTINGS[old]} (deprecated).")


def install_renamed_attributes(config_class: type) -> None:
    """Let a config read its settings by their old names too (`RENAMED_SETTINGS`), with a FutureWarning."""
    for old in RENAMED_SETTINGS:
        setattr(config_class, old, _renamed_attribute(old))


def parse_select_metric(value: Optional[str]) -> Optional[str]:
    """A `swa_select_metric` setting: ``"none"`` (any case) turns selection off, like ``report_to="none"``;
    ``"auto"`` (any case) is the default.

    >>> parse_select_metric("loss"), parse_select_metric("None"), parse_select_metric(None), parse_select_metric("Auto")
    ('loss', None, None, 'auto')
    """
    if value is not None and str(value).strip().lower() == "none":
        return None
    if value is not None and str(value).strip().lower() == AUTO:
        return AUTO
    return value


def parse_swa_start(value: Union[str, int, float]) -> Union[int, float]:
    """Turn a `swa_start` setting into an int step or a float fraction.

    An int (or a string of digits such as ``"100"``) is an optimizer step; a float
    (or a string with a decimal point such as ``"0.75"`` or ``"1.0"``) is a fraction
    of the total optimizer steps.

    >>> parse_swa_start("0.75"), parse_swa_start("100"), parse_swa_start(1.0)
    (0.75, 100, 1.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"swa_start must be a fraction in (0, 1] or a step >= 1, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"swa_start must be a fraction in (0, 1] such as 0.75 or an optimizer step >= 1 such as 100, got {value!r}"
        ) from None
