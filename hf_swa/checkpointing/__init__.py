"""Files on disk: the SWA state inside ``checkpoint-N/``, saved checkpoints read lazily, atomic writes, resume.

- :mod:`.names`: every file and folder name, and the ``checkpoint-N`` rule (no torch needed);
- :mod:`.state`: the SWA state beside a checkpoint's live weights, written atomically;
- :mod:`.resume`: the newest *complete* checkpoint, so a kill -9 at any moment loses nothing;
- :mod:`.files`: saved checkpoints found and read one tensor at a time;
- :mod:`.writer`: a model folder written tensor by tensor, staged and renamed into place;
- :mod:`.power_ema_snapshots`: power-EMA snapshots written atomically (one file per width and step) and listed.

The submodules are imported where they are used, so a command line that only needs a
name does not load torch.

Example:
    >>> import tempfile
    >>> from hf_swa.checkpointing.names import checkpoint_folder
    >>> from hf_swa.checkpointing.resume import last_complete_checkpoint
    >>> run = tempfile.mkdtemp()
    >>> checkpoint_folder(run, 30).endswith("checkpoint-30")
    True
    >>> last_complete_checkpoint(run) is None      # nothing saved yet
    True
"""
