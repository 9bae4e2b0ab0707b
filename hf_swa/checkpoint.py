"""Reading and writing SWA state inside `checkpoint-N/` folders, atomically.

Files: ``swa_state.json`` (counters, settings, parameter names) and, once a snapshot
exists, ``swa_averages.safetensors`` (fp32 averages). Each is written to a temporary
file in the same folder and renamed into place, tensors first, so a crash leaves
either the old state or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Optional

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

STATE_FILE = "swa_state.json"
AVERAGES_FILE = "swa_averages.safetensors"
CONFIG_FILE = "swa_config.json"
FORMAT_VERSION = 1


def _atomic_write(path: str, write) -> None:
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

    _atomic_write(path, write)


def save_swa_state(folder: str, averager_state: dict, metadata: dict) -> None:
    """Write an averager's `state_dict()` plus `metadata` into `folder`."""
    os.makedirs(folder, exist_ok=True)
    averages = averager_state["averages"]
    has_averages = averager_state["n_averaged"] > 0
    if has_averages:
        tensors = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in averages.items()}
        _atomic_write(os.path.join(folder, AVERAGES_FILE), lambda tmp: save_file(tensors, tmp))
    record = dict(metadata)
    record.update(
        format_version=FORMAT_VERSION,
        names=list(averages),
        n_averaged=averager_state["n_averaged"],
        n_skipped=averager_state["n_skipped"],
        strategy=averager_state["strategy"],
        has_averages=has_averages,
    )
    write_json_atomic(os.path.join(folder, STATE_FILE), record)


def load_swa_state(folder: str) -> Optional[dict]:
    """Read the SWA state in `folder`, or ``None`` if it has none.

    Returns a dict with the averager state (``averages``, or ``None`` before the
    first snapshot; ``names``, ``n_averaged``, ``n_skipped``, ``strategy``) and the
    metadata saved beside it. A state file
    that cannot be read, or averages that are missing or do not match the names
    recorded, raise ``ValueError`` naming the file.
    """
    state_path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(state_path):
        return None
    try:
        with open(state_path, encoding="utf-8") as f:
            record = json.load(f)
        names, n_averaged = record["names"], int(record["n_averaged"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"The SWA state file {state_path} is corrupt ({error}). Resume from another checkpoint, "
            "or delete this file to restart averaging from this checkpoint."
        ) from None
    averages = {}
    if record.get("has_averages", n_averaged > 0):
        averages_path = os.path.join(folder, AVERAGES_FILE)
        try:
            averages = load_file(averages_path)
        except (OSError, SafetensorError, ValueError) as error:
            raise ValueError(
                f"The SWA averages file {averages_path} is missing or corrupt ({error}); "
                f"{state_path} says {n_averaged} snapshots were averaged. Resume from another checkpoint."
            ) from None
        if set(averages) != set(names):
            raise ValueError(
                f"{averages_path} holds {len(averages)} tensors but {state_path} names {len(names)}: "
                "the checkpoint's SWA state is inconsistent. Resume from another checkpoint."
            )
        record["averages"] = {name: averages[name] for name in names}
    else:
        record["averages"] = None
    return record
