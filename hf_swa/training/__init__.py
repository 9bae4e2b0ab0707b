"""The Trainer integration: when to average, the LR tail, the callback, the trainer, the choice.

- :mod:`.config`: `SWAConfig`, the settings validated up front (the snapshot and window rules);
- :mod:`.arguments`: the same settings as ``TrainingArguments`` fields (`SWATrainingArguments`);
- :mod:`.schedule`: the SWA LR tail, composed with the Trainer's schedule;
- :mod:`.callback`: `SWACallback`, averaging inside any ``Trainer``;
- :mod:`.trainer`: `SWATrainerMixin` / `SWATrainer`: evaluation of the averages, selection, crash-safe saving;
- :mod:`.selection`: choosing among the candidates and the live weights on held-out data;
- :mod:`.loss_kwargs`: which models compute the plain mean loss the Trainer's scaling assumes.

Example:
    >>> from hf_swa.training import SWAConfig, SWATrainingArguments
    >>> SWAConfig(swa_start=0.75, swa_freq=10).swa_start
    0.75
    >>> args = SWATrainingArguments(output_dir="unused", swa_start=0.5, swa_windows=4, report_to="none")
    >>> args.to_swa_config().swa_windows
    4
"""

import importlib

# Loaded on first use, so that importing one module of the room (``.arguments`` for a command line's flags) does
# not import the Trainer with the rest.
_EXPORTS = {
    "SWAConfig": ".config",
    "SWACallback": ".callback",
    "SWATrainer": ".trainer",
    "SWATrainerMixin": ".trainer",
    "SWATrainingArguments": ".arguments",
    "SWAArgumentsMixin": ".arguments",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
