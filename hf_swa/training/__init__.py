"""The Trainer integration: when to average, the LR tail, the callback, the trainer, the choice.

- :mod:`.defaults`: the one set of SWA defaults, which every entry point takes;
- :mod:`.settings`: how a setting is declared once (default and help), its old names, its value from text;
- :mod:`.config`: `SWAConfig`, the settings validated up front (the snapshot and window rules);
- :mod:`.arguments`: the same settings as ``TrainingArguments`` fields (`SWATrainingArguments`), made from the config;
- :mod:`.schedule`: the SWA LR tail, composed with the Trainer's schedule;
- :mod:`.callback`: `SWACallback`, averaging inside any ``Trainer``;
- :mod:`.trainer`: `SWATrainerMixin` / `SWATrainer`: evaluation of the averages, selection, crash-safe saving;
- :mod:`.selection`: what ships and why (`decide`, the `swa_ship` rule by kind, the choice on held-out data, the refit);
- :mod:`.weights_record`: the record of the shipped weights, in words;
- :mod:`.resumption`: a checkpoint's SWA state checked against the run and loaded (a longer run keeps its windows);
- :mod:`.splits`: `selection_split`, the rows or whole groups held out to choose on;
- :mod:`.checks`: a run's settings checked against SWA when training starts;
- :mod:`.power_ema_hooks`: power EMAs in a run (snapshots, pruning on resume, widths reconstructed at the end);
- :mod:`.batchnorm`: BatchNorm statistics recomputed for averaged weights (`swa_update_bn`), as torch's `update_bn`;
- :mod:`.loss_kwargs`: which models compute a plain mean loss (`declare_mean_loss`, the user's opt-in);
- :mod:`.compat`: what differs between the oldest and the newest supported transformers, in one place.

The modules are imported where they are used (``from hf_swa import SWAConfig`` loads the
config, not the Trainer).

Example:
    >>> from hf_swa import SWAConfig, SWATrainingArguments
    >>> SWAConfig(swa_start=0.75, swa_freq=10).swa_start
    0.75
    >>> args = SWATrainingArguments(output_dir="unused", swa_start=0.5, swa_windows=4, report_to="none")
    >>> args.to_swa_config().swa_windows
    4
"""
