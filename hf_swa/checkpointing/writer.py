"""Writing an averaged checkpoint folder: streamed safetensors files, staged and renamed into place.

The weights are written one tensor at a time straight into the file (the safetensors
header is computed from the dtypes and shapes up front), so writing holds one tensor
in memory, not the model. The whole folder is built in a temporary sibling folder and
renamed into place at the end: on any error the output folder is left as it was.

Example:
    >>> import os, tempfile, torch
    >>> from safetensors.torch import load_file
    >>> out = os.path.join(tempfile.mkdtemp(), "out")
    >>> with staged_folder(out) as stage:
    ...     write_safetensors(os.path.join(stage, "w.safetensors"), [("a", torch.bfloat16, (2,))],
    ...                       lambda name: [torch.ones(2, dtype=torch.bfloat16)], {"format": "pt"})
    >>> load_file(os.path.join(out, "w.safetensors"))
    {'a': tensor([1., 1.], dtype=torch.bfloat16)}
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import struct
import tempfile
from typing import Callable, Iterable, Iterator, Optional

import torch

from .files import DTYPE_NAMES

__all__ = ["write_safetensors", "staged_folder", "check_output_dir"]


def write_safetensors(
    path: str, entries: list, chunks_for: Callable[[str], Iterable[torch.Tensor]], metadata: Optional[dict] = None
) -> None:
    """Write ``entries`` (``(name, dtype, shape)``) to a safetensors file.

    ``chunks_for(name)`` yields each tensor in pieces along its first dimension (or whole), in order.
    """
    header, offset = {}, 0
    for name, dtype, shape in entries:
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, dtype, shape in entries:
            written = 0
            for chunk in chunks_for(name):
                if chunk.dtype != dtype:
                    raise RuntimeError(f"{name}: got a {chunk.dtype} piece for a {dtype} tensor")
                data = chunk.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
                f.write(data.data)
                written += data.nbytes
            begin, end = header[name]["data_offsets"]
            if written != end - begin:
                raise RuntimeError(f"{name}: wrote {written} bytes, expected {end - begin} for shape {tuple(shape)}")


@contextlib.contextmanager
def staged_folder(output_dir: str) -> Iterator[str]:
    """Yield a temporary folder beside ``output_dir``; on success it replaces ``output_dir``, on error it is removed."""
    output_dir = os.path.abspath(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(output_dir)}-", dir=parent)
    try:
        yield stage
        if os.path.exists(output_dir):
            old = tempfile.mkdtemp(prefix=f".old-{os.path.basename(output_dir)}-", dir=parent)
            os.replace(output_dir, os.path.join(old, "replaced"))
            try:
                os.replace(stage, output_dir)
            except BaseException:
                os.replace(os.path.join(old, "replaced"), output_dir)  # the old folder goes back where it was
                os.rmdir(old)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, output_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def check_output_dir(output_dir: str, inputs: list, overwrite: bool) -> None:
    """Refuse an output folder that is, holds or lies inside an input, or that holds files (unless ``overwrite``)."""
    out = os.path.realpath(output_dir)
    for folder in inputs:
        real = os.path.realpath(folder)
        if _inside(real, out) or _inside(out, real):
            relation = "is" if real == out else ("contains" if _inside(real, out) else "lies inside")
            raise ValueError(
                f"--output_dir {output_dir} {relation} the input {folder}: writing there would replace an input. "
                "Choose an output folder outside the checkpoints."
            )
    if os.path.isfile(out):
        raise ValueError(f"--output_dir {output_dir} is a file; pass a folder.")
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise ValueError(
            f"--output_dir {output_dir} already holds files. Choose a new folder, or pass --overwrite_output_dir "
            "to replace it (it is replaced only once the new average is complete)."
        )
