"""Reading and writing SWA state inside `checkpoint-N/` folders, atomically.

Files: ``swa_state.json`` (counters, settings, parameter names) and, once a snapshot
exists, ``swa_averages.safetensors`` (fp32 averages). Each is written to a temporary
file in the same folder and renamed into place, tensors first, so a crash leaves
either the old state or the new one, never half of one.

Sharded averages (FSDP2, ZeRO-3: each rank holds a different shard) go into one file a
rank, ``swa_averages-rank{r}.safetensors``, each written by its rank and stamped with
the rank, the world size and the step; ``swa_state.json`` records the world size, and
resuming needs the same number of processes.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Optional, Tuple

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .names import AVERAGES_FILE, SHARDED_AVERAGES_FILE, STATE_FILE

FORMAT_VERSION = 2  # averages keyed "slot/name" (one slot a candidate store); the only format hf_swa reads


def atomic_write(path: str, write) -> None:
    """Write `path` whole or not at all: ``write(tmp)`` fills a temporary file beside it, renamed into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, data: dict) -> None:
    """Write `data` as indented JSON to `path` through a temporary file and a rename."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")

    atomic_write(path, write)


def save_swa_state(
    folder: str,
    averager_state: dict,
    metadata: dict,
    shard: Optional[Tuple[int, int]] = None,
    write_averages: bool = True,
    write_record: bool = True,
) -> None:
    """Write an averager's `state_dict()` plus `metadata` into `folder`.

    Replicated averages (``shard=None``): one ``swa_averages.safetensors``. Sharded
    averages: ``shard=(rank, world_size)``; every rank writes its own
    ``swa_averages-rank{rank}.safetensors`` (``write_averages``) and one process writes
    ``swa_state.json`` (``write_record``) once all ranks have written theirs.
    """
    os.makedirs(folder, exist_ok=True)
    averages = averager_state["averages"]
    # Power EMAs hold averages from the first step, before any SWA snapshot.
    has_averages = averager_state["n_averaged"] > 0 or any((averager_state.get("slots") or {}).values())
    if has_averages and write_averages:
        tensors = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in averages.items()}
        if shard is None:
            path, stamp = os.path.join(folder, AVERAGES_FILE), None
        else:
            rank, world_size = shard
            path = os.path.join(folder, SHARDED_AVERAGES_FILE.format(rank=rank))
            stamp = {
                "rank": str(rank),
                "world_size": str(world_size),
                "global_step": str(metadata.get("global_step")),
                "n_averaged": str(averager_state["n_averaged"]),
            }
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=stamp))
    if not write_record:
        return
    record = dict(metadata)
    record.update(
        format_version=FORMAT_VERSION,
        names=averager_state.get("names", list(averages)),
        slots=averager_state.get("slots"),
        candidates=averager_state.get("candidates"),
        last_steps=averager_state.get("last_steps") or {},
        n_averaged=averager_state["n_averaged"],
        n_skipped=averager_state["n_skipped"],
        strategy=averager_state["strategy"],
        has_averages=has_averages,
        sharded_world_size=shard[1] if shard is not None else None,
    )
    write_json_atomic(os.path.join(folder, STATE_FILE), record)


def load_swa_state(folder: str, shard: Optional[Tuple[int, int]] = None) -> Optional[dict]:
    """Read the SWA state in `folder`, or ``None`` if it has none.

    Returns a dict with the averager state (``averages``, or ``None`` before the
    first snapshot; ``names``, ``n_averaged``, ``n_skipped``, ``strategy``) and the
    metadata saved beside it. A state file
    that cannot be read, or averages that are missing or do not match the names
    recorded, raise ``ValueError`` naming the file. ``shard=(rank, world_size)`` reads
    this rank's file of sharded averages; sharded state read without it (or with
    another world size), or replicated state read with it, raises ``ValueError``.
    """
    record = _read_record(folder)
    if record is None:
        return None
    state_path = os.path.join(folder, STATE_FILE)
    n_averaged = int(record["n_averaged"])
    saved_world_size = record.get("sharded_world_size")
    if saved_world_size is not None and (shard is None or shard[1] != saved_world_size):
        now = "unsharded averages" if shard is None else f"{shard[1]} processes"
        raise ValueError(
            f"The SWA state in {folder} holds averages sharded over {saved_world_size} processes (FSDP2 / ZeRO-3), "
            f"but this run has {now}. Resume with the same sharding and number of processes."
        )
    if saved_world_size is None and shard is not None and record.get("has_averages", n_averaged > 0):
        raise ValueError(
            f"The SWA state in {folder} holds unsharded averages (single process, DDP or ZeRO-1/2), but this run "
            f"shards them over {shard[1]} processes (FSDP2 / ZeRO-3). Resume with the sharding it was saved with."
        )
    averages = {}
    if record.get("has_averages", n_averaged > 0):
        if shard is None:
            averages_path = os.path.join(folder, AVERAGES_FILE)
        else:
            averages_path = os.path.join(folder, SHARDED_AVERAGES_FILE.format(rank=shard[0]))
        try:
            averages = load_file(averages_path)
            stamp = _file_metadata(averages_path) if shard is not None else None
        except (OSError, SafetensorError, ValueError) as error:
            raise ValueError(
                f"The SWA averages file {averages_path} is missing or corrupt ({error}); "
                f"{state_path} says {n_averaged} snapshots were averaged. Resume from another checkpoint."
            ) from None
        if stamp is not None and (
            stamp.get("n_averaged") != str(n_averaged) or stamp.get("global_step") != str(record.get("global_step"))
        ):
            raise ValueError(
                f"{averages_path} was written at step {stamp.get('global_step')} with {stamp.get('n_averaged')} "
                f"snapshots but {state_path} says step {record.get('global_step')} with {n_averaged}: the checkpoint's "
                "SWA state is inconsistent (a save was interrupted). Resume from another checkpoint."
            )
        expected = expected_tensor_keys(record)
        if set(averages) != expected:
            raise ValueError(
                f"{averages_path} holds {len(averages)} tensors but {state_path} names {len(expected)}: "
                "the checkpoint's SWA state is inconsistent. Resume from another checkpoint."
            )
        record["averages"] = averages
    else:
        record["averages"] = None
    return record


def _read_record(folder: str) -> Optional[dict]:
    """The parsed ``swa_state.json`` in `folder`, ``None`` if absent; ``ValueError`` naming it if unreadable."""
    state_path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(state_path):
        return None
    try:
        with open(state_path, encoding="utf-8") as f:
            record = json.load(f)
        record["names"], record["n_averaged"] = list(record["names"]), int(record["n_averaged"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"The SWA state file {state_path} is corrupt ({error}). Resume from another checkpoint, "
            "or delete this file to restart averaging from this checkpoint."
        ) from None
    if record.get("format_version") != FORMAT_VERSION or not record.get("slots"):
        raise ValueError(
            f"The SWA state file {state_path} has format_version {record.get('format_version')}, but this hf_swa "
            f"reads format {FORMAT_VERSION} only. Resume with the hf_swa that wrote it, or delete the SWA state "
            "files to restart averaging from this checkpoint."
        )
    return record


def swa_state_problem(folder: str) -> Optional[str]:
    """Why the SWA state in `folder` cannot be resumed from, or ``None`` when it is absent or whole.

    Reads ``swa_state.json`` and the headers of the averages files only (not the tensors):
    every averages file the record names must be present, fully written and hold the
    recorded parameters.
    """
    try:
        record = _read_record(folder)
    except ValueError as error:
        return str(error)
    if record is None or not record.get("has_averages", record["n_averaged"] > 0):
        return None
    world_size = record.get("sharded_world_size")
    files = [AVERAGES_FILE] if world_size is None else [SHARDED_AVERAGES_FILE.format(rank=r) for r in range(world_size)]
    for name in files:
        path = os.path.join(folder, name)
        try:
            keys = _file_keys(path)
        except (OSError, SafetensorError, ValueError) as error:
            return f"{path} is missing or unreadable ({error})"
        expected = expected_tensor_keys(record)
        if keys != expected:
            return f"{path} holds {len(keys)} tensors but {STATE_FILE} names {len(expected)}"
    return None


def expected_tensor_keys(record: dict) -> set:
    """The tensors an averages file holds: ``slot/name`` for each slot and parameter."""
    return {f"{slot}/{name}" for slot in record["slots"] for name in record["names"]}


def _file_keys(path: str) -> set:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:  # checks the header and that the file is fully written
        return set(f.keys())


def _file_metadata(path: str) -> dict:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return f.metadata() or {}
