"""Power EMAs in a training run: their snapshots in ``output_dir/swa_power_ema/``, and widths reconstructed at the end.

`SWACallback` updates the power EMAs after every optimizer step (`WeightAverager.update_step`) and calls these:

- `write_if_due` after each step, which calls `write_snapshots` every ``swa_power_ema_every``
  steps and at the last step: each width is written as one file, atomically
  (`hf_swa.checkpointing.power_ema_snapshots`). Under FSDP2/ZeRO-3 every rank gathers its shard
  (collective) and the main process writes, as for checkpoints.
- `prune_snapshots` once a run has started or resumed, after every check of the resume has
  passed: snapshots after the step it starts from belong to the trajectory it replaces (a
  run killed after writing them, or a finished run resumed from an earlier checkpoint), and
  the resumed run writes its own. A refused resume deletes nothing. The folder sits beside
  the checkpoints, so ``save_total_limit`` never deletes it.
- `add_reconstructed_candidates` at the end: each width of ``swa_power_ema_candidates`` is
  reconstructed from the snapshots (EDM2's least-squares solve, `hf_swa.posthoc.power_ema_reconstruction`)
  and joins the candidates as ``pema_{σ_rel}``.

Example:
    >>> import os, tempfile, torch
    >>> from torch import nn
    >>> from hf_swa import WeightAverager
    >>> model, run = nn.Linear(2, 1), tempfile.mkdtemp()
    >>> averager = WeightAverager(model, power_ema_stds=[0.05, 0.1])
    >>> for step in range(1, 21):
    ...     with torch.no_grad():
    ...         _ = model.bias.fill_(float(step))
    ...     _ = averager.update_power_emas(model, step)
    ...     if step % 10 == 0:
    ...         _ = write_snapshots(averager, model, run, "float32", should_save=True)
    >>> sorted(os.listdir(os.path.join(run, "swa_power_ema")))[:2]
    ['pema-0.05-000000010.safetensors', 'pema-0.05-000000020.safetensors']
    >>> add_reconstructed_candidates(averager, run, [0.07], step=20)
    >>> averager.candidate_names()
    ['pema_0.05', 'pema_0.1', 'pema_0.07']
    >>> prune_snapshots(run, after_step=10, should_save=True)
    2
"""

from __future__ import annotations

import logging
import os
from typing import List, Sequence

from ..averaging import distributed
from ..averaging.candidates import power_ema_candidate_name
from ..checkpointing.names import POWER_EMA_DIR, POWER_EMA_FILE
from ..checkpointing.power_ema_snapshots import save_power_ema_snapshots

logger = logging.getLogger(__name__)

SHARDED_CANDIDATES_MESSAGE = (
    "swa_power_ema_candidates reconstructs widths into the model at the end of training, but this run shards the "
    "averages (FSDP2 / ZeRO-3), where that is not supported. Keep swa_power_ema_stds (the stored widths are "
    "candidates) and reconstruct other widths after training: hf-swa-average --power_ema_dir OUT/swa_power_ema "
    "--power_ema_std 0.07 ... --output_dir OUT/pema."
)


def check(config, averager, state) -> None:
    """When training starts, before anything is written or deleted: refuse what power EMAs cannot do here."""
    if state.is_hyper_param_search:
        raise ValueError("Power EMAs write snapshots into output_dir, which trials would share: unset them.")
    if config.swa_power_ema_candidates and averager.sharded:
        raise ValueError(SHARDED_CANDIDATES_MESSAGE)


def write_if_due(config, averager, model, args, state) -> None:
    """After each optimizer step (the averager has updated the power EMAs): write them on the snapshot steps."""
    if config.is_power_ema_snapshot_step(state.global_step, state.max_steps):
        write_snapshots(averager, model, args.output_dir, config.swa_power_ema_dtype, args.should_save)


def reconstruct_at_the_end(config, averager, model, args, state) -> None:
    """When training ends: snapshot the last step if that was not a snapshot step, then add the reconstructed widths."""
    last = averager.power_ema_last_step
    if not last:
        return
    if not config.is_power_ema_snapshot_step(last, state.max_steps):
        write_snapshots(averager, model, args.output_dir, config.swa_power_ema_dtype, args.should_save)
    add_reconstructed_candidates(averager, args.output_dir, config.swa_power_ema_candidates, last)


def snapshot_folder(output_dir: str) -> str:
    return os.path.join(output_dir, POWER_EMA_DIR)


def write_snapshots(averager, model, output_dir: str, dtype: str, should_save: bool) -> List[str]:
    """Write every power EMA at the step of its last update; collective under FSDP2/ZeRO-3."""
    folder = snapshot_folder(output_dir)
    if averager.sharded:
        gather = lambda name: distributed.full_averages(averager, model, name=name)  # noqa: E731
        return save_power_ema_snapshots(averager, folder, dtype, tensors_for=gather, write=should_save)
    return save_power_ema_snapshots(averager, folder, dtype) if should_save else []


def prune_snapshots(output_dir: str, after_step: int, should_save: bool) -> int:
    """Delete the snapshots written after ``after_step``; returns how many."""
    folder = snapshot_folder(output_dir)
    if not should_save or not os.path.isdir(folder):
        return 0
    later = [f for f in os.listdir(folder) if (m := POWER_EMA_FILE.fullmatch(f)) and int(m.group(1)) > after_step]
    for name in later:
        os.remove(os.path.join(folder, name))
    if later:
        logger.warning(
            "SWA: removed %d power-EMA snapshot(s) after step %d from %s: they belong to the trajectory this run "
            "replaces from that step (a run stopped after writing them, or resumed from an earlier checkpoint); this "
            "run writes its own.",
            len(later),
            after_step,
            folder,
        )
    return len(later)


def add_reconstructed_candidates(averager, output_dir: str, stds: Sequence[float], step: int) -> None:
    """Reconstruct each width at ``step`` from the run's snapshots and add it to the averager's candidates."""
    from ..posthoc.power_ema_reconstruction import reconstruct_power_ema

    distributed.barrier()  # the main process has written the last snapshots
    for std in stds:
        name = power_ema_candidate_name(std)
        if name in averager.candidate_names():
            continue  # a stored width: its running EMA is that candidate already
        result = reconstruct_power_ema(snapshot_folder(output_dir), std, step)
        tensors = result.state_dict()
        record = {key: value for key, value in result.record().items() if key in ("std", "gamma", "step", "fit_error")}
        record.update(kind="power_ema_posthoc", n_averaged=len(result.sources))
        averager.add_candidate(name, [tensors[n] for n in averager.names], record)
