"""Finding saved checkpoints and reading their weights lazily, one tensor at a time.

A checkpoint folder is any folder written by ``save_pretrained``, a ``Trainer`` or
``SWATrainer``: a full model (``model.safetensors``), a sharded one
(``model.safetensors.index.json`` and its shards) or a PEFT adapter
(``adapter_model.safetensors``). :class:`CheckpointWeights` reads the tensor names,
dtypes and shapes from the file headers and a tensor's data only when asked for it,
through ``safetensors.safe_open``; :func:`find_checkpoints` picks ``checkpoint-N``
folders of a run.

Example:
    >>> import os, tempfile, torch
    >>> from safetensors.torch import save_file
    >>> run = tempfile.mkdtemp()
    >>> for step in (10, 20, 30):
    ...     os.makedirs(f"{run}/checkpoint-{step}")
    ...     save_file({"w": torch.full((2,), float(step))}, f"{run}/checkpoint-{step}/model.safetensors")
    >>> [os.path.basename(f) for f in find_checkpoints(run, last=2)]
    ['checkpoint-20', 'checkpoint-30']
    >>> weights = CheckpointWeights(find_checkpoints(run, steps="10:10")[0])
    >>> weights.step, weights.kind, weights.dtype("w"), weights.shape("w")
    (10, 'full', torch.float32, (2,))
    >>> weights.tensor("w")
    tensor([10., 10.])
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from typing import Iterator, Optional, Union

import torch
from safetensors import SafetensorError, safe_open

from .names import ADAPTER_FILE, CHECKPOINT_FOLDER, CHECKPOINT_PREFIX, MODEL_FILE, MODEL_INDEX_FILE, checkpoint_step

__all__ = [
    "CheckpointWeights",
    "find_checkpoints",
    "open_safetensors",
    "parse_steps",
    "row_chunks",
]

_UNSUPPORTED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "adapter_model.bin")
# safetensors' dtype names, as the file headers spell them.
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


_CHECKPOINT_ADVICE = (
    "Leave this checkpoint out (with --run_dir, choose the others with --steps or pass the folders you want), "
    "or copy it again."
)


@contextlib.contextmanager
def open_safetensors(path: str, advice: str = _CHECKPOINT_ADVICE) -> Iterator:
    """``safe_open(path)``; a ``ValueError`` naming the file and ``advice`` when it is truncated or damaged.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        >>> _ = open(path, "wb").write(b"cut")
        >>> with open_safetensors(path):  # doctest: +ELLIPSIS
        ...     pass
        Traceback (most recent call last):
        ...
        ValueError: ...model.safetensors is not a readable safetensors file (...): it is truncated or damaged...
    """
    try:
        handle = safe_open(path, framework="pt")
    except SafetensorError as error:
        raise ValueError(
            f"{path} is not a readable safetensors file ({error}): it is truncated or damaged, as a save or copy "
            f"that was interrupted leaves it. {advice}"
        ) from None
    with handle:
        yield handle


def saved_step(folder: str) -> Optional[int]:
    """The N of a ``checkpoint-N`` folder, else the ``global_step`` of its ``trainer_state.json``, else None."""
    if (step := checkpoint_step(folder)) is not None:
        return step
    try:
        with open(os.path.join(folder, "trainer_state.json"), encoding="utf-8") as f:
            return int(json.load(f)["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def parse_steps(steps: Union[str, tuple]) -> tuple:
    """``"300:600"`` -> ``(300, 600)``; either end may be left open (``"300:"`` -> ``(300, None)``).

    Example:
        >>> parse_steps("300:600"), parse_steps(":600"), parse_steps((1, 2))
        ((300, 600), (None, 600), (1, 2))
    """
    if isinstance(steps, tuple):
        return steps
    parts = str(steps).split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        low, high = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise ValueError(
            f"--steps {steps!r}: expected FIRST:LAST optimizer steps, e.g. 300:600 (or 300: / :600)."
        ) from None
    if low is not None and high is not None and low > high:
        raise ValueError(f"--steps {steps!r}: the first step {low} is after the last step {high}.")
    return low, high


def find_checkpoints(run_dir: str, last: Optional[int] = None, steps: Union[None, str, tuple] = None) -> list:
    """The ``checkpoint-N`` folders of a run, oldest first: those with ``low <= N <= high``, then the last ``last``.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist.
        ValueError: the selection is empty, or ``last`` asks for more checkpoints than there are.
    """
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"--run_dir {run_dir!r}: no such folder.")
    found = sorted(
        (int(m.group(1)), os.path.join(run_dir, name))
        for name in os.listdir(run_dir)
        if (m := CHECKPOINT_FOLDER.match(name)) and os.path.isdir(os.path.join(run_dir, name))
    )
    selected = found
    if steps is not None:
        low, high = parse_steps(steps)
        selected = [(n, f) for n, f in found if (low is None or n >= low) and (high is None or n <= high)]
    have = ", ".join(os.path.basename(f) for _, f in found) or "none"
    if not selected:
        raise ValueError(
            f"No checkpoint of {run_dir} matches --steps {steps}: it has {have}. Pick steps among these."
            if steps is not None
            else f"{run_dir} has no {CHECKPOINT_PREFIX}-N folders to average."
        )
    if last is not None:
        if last < 1:
            raise ValueError(f"--last must be >= 1, got {last}.")
        if last > len(selected):
            raise ValueError(
                f"--last {last} asks for {last} checkpoints but {run_dir} has {len(selected)}"
                f"{' within --steps ' + str(steps) if steps is not None else ''} ({have}). "
                f"Pass --last {len(selected)} or fewer."
            )
        selected = selected[-last:]
    return [f for _, f in selected]


class CheckpointWeights:
    """The weight files of one checkpoint folder, read lazily.

    ``kind`` is ``"full"``, ``"sharded"`` or ``"adapter"``; ``names`` the stored tensors
    in file order; ``dtype(name)``, ``shape(name)`` come from the headers and
    ``tensor(name)`` reads one tensor. ``files`` maps each weight file to its tensor
    names, which is the layout an average is written in.

    Raises:
        FileNotFoundError: the folder does not exist or holds no safetensors weights.
    """

    def __init__(self, folder: Union[str, os.PathLike]):
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Checkpoint folder {folder!r} does not exist.")
        self.folder = folder
        self.step = saved_step(folder)
        self.kind, self.files, self.index = self._layout(folder)
        self._dtypes, self._shapes, self.names, self.metadata = {}, {}, [], {}
        self._file_of = {}
        for file, names in self.files.items():
            with open_safetensors(os.path.join(folder, file)) as handle:
                self.metadata.setdefault(file, handle.metadata() or {})
                for name in names:
                    view = handle.get_slice(name)
                    self._dtypes[name] = _DTYPES.get(view.get_dtype())
                    self._shapes[name] = tuple(view.get_shape())
                    self._file_of[name] = file
                    self.names.append(name)

    def __repr__(self) -> str:
        return f"CheckpointWeights({self.folder!r}, kind={self.kind!r}, tensors={len(self.names)})"

    @staticmethod
    def _layout(folder: str) -> tuple:
        index_path = os.path.join(folder, MODEL_INDEX_FILE)
        if os.path.isfile(index_path):
            with open(index_path, encoding="utf-8") as f:
                index = json.load(f)
            files: dict = {}
            for name, file in index["weight_map"].items():
                files.setdefault(file, []).append(name)
            missing = [file for file in files if not os.path.isfile(os.path.join(folder, file))]
            if missing:
                raise FileNotFoundError(f"{index_path} names shards that are missing: {', '.join(missing)}.")
            return "sharded", {file: _ordered(folder, file, names) for file, names in files.items()}, index
        for kind, file in (("full", MODEL_FILE), ("adapter", ADAPTER_FILE)):
            if os.path.isfile(os.path.join(folder, file)):
                with open_safetensors(os.path.join(folder, file)) as handle:
                    return kind, {file: list(handle.keys())}, None
        other = [name for name in _UNSUPPORTED_WEIGHTS if os.path.isfile(os.path.join(folder, name))]
        hint = (
            f"It holds {other[0]}: re-save it with save_pretrained(safe_serialization=True)."
            if other
            else "A checkpoint interrupted while saving looks like this; leave it out."
        )
        raise FileNotFoundError(
            f"{folder} holds no weights to average (expected {MODEL_FILE}, {MODEL_INDEX_FILE} with its shards, "
            f"or {ADAPTER_FILE}). {hint}"
        )

    def dtype(self, name: str) -> Optional[torch.dtype]:
        return self._dtypes[name]

    def shape(self, name: str) -> tuple:
        return self._shapes[name]

    def file_of(self, name: str) -> str:
        return self._file_of[name]

    def tensor(self, name: str, rows: Optional[tuple] = None) -> torch.Tensor:
        """Read one tensor, or its rows ``rows[0]:rows[1]`` along the first dimension, from disk.

        The file is opened for this read only, so nothing stays mapped once the tensor is freed.
        """
        with open_safetensors(os.path.join(self.folder, self._file_of[name])) as handle:
            tensor = handle.get_tensor(name)  # mapped, not read: only the rows used are read from disk
        return tensor if rows is None else tensor[rows[0] : rows[1]]


def row_chunks(shape: tuple, dtype: torch.dtype, max_bytes: int = 16 * 2**20) -> list:
    """Split a tensor into ranges of rows (first dimension) of about ``max_bytes`` in fp32; ``[None]`` if it fits whole.

    Example:
        >>> row_chunks((10, 4), torch.bfloat16, max_bytes=64)
        [(0, 4), (4, 8), (8, 10)]
        >>> row_chunks((), torch.float32)
        [None]
    """
    row_bytes = 4 * math.prod(shape[1:]) if shape else 0
    if not shape or shape[0] * row_bytes <= max_bytes:
        return [None]
    rows = max(1, max_bytes // max(row_bytes, 1))
    return [(start, min(start + rows, shape[0])) for start in range(0, shape[0], rows)]


def _ordered(folder: str, file: str, names: list) -> list:
    """The index's names for one shard, in the shard's own order."""
    wanted = set(names)
    with open_safetensors(os.path.join(folder, file)) as handle:
        return [name for name in handle.keys() if name in wanted]
