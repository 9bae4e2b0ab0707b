"""Average checkpoints you already have: a streamed fp32 mean, written as a plain Transformers model.

``average_checkpoints`` reads the checkpoints tensor by tensor, in pieces of about
16 MiB (see :mod:`hf_swa.checkpointing.files`), and writes each piece of the mean as it
is done, so memory stays near a few such pieces however many checkpoints are averaged. Each mean is taken in
fp32 and written in the checkpoints' dtype. Tensors that are not floating point are
copied and must be equal in every input. The output has the layout of the newest
input (single file, shards, or a PEFT adapter), its config, tokenizer and generation
config, and an ``swa_config.json`` recording the sources, their steps and weights.

Every input is checked before anything is computed (weights present, same
architecture, tensor names, shapes and dtypes); NaN or inf found while averaging
stops the job. The output is written into a temporary folder and renamed into
place, so on any error the output folder is left as it was.

Example:
    >>> import json, os, tempfile, torch
    >>> from safetensors.torch import load_file, save_file
    >>> run = tempfile.mkdtemp()
    >>> for step in (10, 20, 30):
    ...     os.makedirs(f"{run}/checkpoint-{step}")
    ...     save_file({"w": torch.full((2,), float(step))}, f"{run}/checkpoint-{step}/model.safetensors")
    >>> out = os.path.join(run, "..", os.path.basename(run) + "-avg")
    >>> record = average_checkpoints(run_dir=run, last=2, output_dir=out, progress=False)
    >>> load_file(os.path.join(out, "model.safetensors"))["w"]
    tensor([25., 25.])
    >>> record["n_averaged"], [s["step"] for s in record["sources"]], record["weights"]
    (2, [20, 30], [0.5, 0.5])
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from collections.abc import Sequence
from typing import Callable, Iterable, Iterator, Optional

import torch
from transformers.utils import logging

from ..checkpointing.files import CheckpointWeights, find_checkpoints, row_chunks
from ..checkpointing.names import CONFIG_FILE, MODEL_INDEX_FILE
from ..checkpointing.writer import check_output_dir, staged_folder, write_safetensors

__all__ = ["average_checkpoints", "open_checkpoints", "resolve_checkpoints", "write_averaged_checkpoint"]

logger = logging.get_logger(__name__)

# What is copied from the newest input besides the weights: config, generation config, tokenizer, processor.
COPIED_FILES = (
    "config.json",
    "generation_config.json",
    "adapter_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "*.model",
    "chat_template.*",
    "preprocessor_config.json",
    "processor_config.json",
)
_ARCHITECTURE_KEYS = {
    "config.json": ("model_type", "architectures"),
    "adapter_config.json": ("peft_type", "base_model_name_or_path", "r", "target_modules"),
}


def resolve_checkpoints(
    checkpoints: Optional[Sequence[str]] = None, run_dir: Optional[str] = None, last: Optional[int] = None, steps=None
) -> list:
    """The input folders: ``checkpoints`` as given, or those :func:`find_checkpoints` selects in ``run_dir``."""
    if run_dir is not None:
        if checkpoints:
            raise ValueError("Pass checkpoint folders or --run_dir (with --last / --steps), not both.")
        return find_checkpoints(run_dir, last=last, steps=steps)
    if last is not None or steps is not None:
        raise ValueError("--last and --steps select checkpoints of a run: pass --run_dir with them.")
    if not checkpoints:
        raise ValueError("Nothing to average: pass checkpoint folders, or --run_dir with --last N or --steps A:B.")
    return list(checkpoints)


def open_checkpoints(folders: Sequence[str], min_count: int = 1) -> list:
    """Open each folder's weights and check that all of them can be averaged together.

    Raises:
        FileNotFoundError: a folder without weights.
        ValueError: fewer than ``min_count`` inputs, a folder given twice, or inputs of different
            architectures, tensor names, shapes or dtypes (each named with its folders).
    """
    if len(folders) < min_count:
        raise ValueError(f"Averaging needs at least {min_count} checkpoints, got {len(folders)}: {list(folders)}.")
    real = [os.path.realpath(f) for f in folders]
    twice = sorted({f for f, r in zip(folders, real, strict=True) if real.count(r) > 1})
    if twice:
        raise ValueError(f"Checkpoint folder(s) given more than once: {twice}. Use --weights to weight a checkpoint.")
    readers = [CheckpointWeights(folder) for folder in folders]
    _check_same_architecture(readers)
    _check_same_tensors(readers)
    return readers


def _config_signature(folder: str) -> dict:
    signature = {}
    for file, keys in _ARCHITECTURE_KEYS.items():
        path = os.path.join(folder, file)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            signature.update({f"{file}:{key}": config.get(key) for key in keys})
    return signature


def _check_same_architecture(readers: list) -> None:
    first = readers[0]
    kinds = {r.folder: r.kind for r in readers}
    if len(set(kinds.values())) > 1 and "adapter" in kinds.values():
        raise ValueError(f"Some inputs are PEFT adapters and others full models: {kinds}. Average one kind at a time.")
    reference = _config_signature(first.folder)
    for reader in readers[1:]:
        signature = _config_signature(reader.folder)
        for key in (key for key in reference if key in signature):
            if reference[key] != signature[key]:
                raise ValueError(
                    f"Different architectures: {key.replace(':', ' ')} is {reference[key]!r} in {first.folder} but "
                    f"{signature[key]!r} in {reader.folder}. Only checkpoints of one model can be averaged."
                )


def _check_same_tensors(readers: list) -> None:
    first = readers[0]
    names = set(first.names)
    unknown = [name for name in first.names if first.dtype(name) is None]
    if unknown:
        raise ValueError(f"{first.folder}: tensor {unknown[0]!r} has a dtype hf_swa cannot read (e.g. fp8).")
    for reader in readers[1:]:
        missing, extra = sorted(names - set(reader.names)), sorted(set(reader.names) - names)
        if missing or extra:
            parts = [f"lacks {_few(missing)}" if missing else "", f"has extra {_few(extra)}" if extra else ""]
            raise ValueError(
                f"Different tensors: {reader.folder} {' and '.join(p for p in parts if p)} compared with "
                f"{first.folder}. Only checkpoints of one model (and one adapter setup) can be averaged."
            )
        for name in first.names:
            for what, get in (("shape", reader.shape), ("dtype", reader.dtype)):
                mine, theirs = getattr(first, what)(name), get(name)
                if mine != theirs:
                    raise ValueError(
                        f"Tensor {name!r} has {what} {theirs} in {reader.folder} but {mine} in {first.folder}. "
                        + (
                            "Only checkpoints of one model can be averaged."
                            if what == "shape"
                            else "Save the checkpoints in one dtype to average them."
                        )
                    )


def _few(names: list) -> str:
    shown = ", ".join(repr(n) for n in names[:3])
    return f"{len(names)} tensor(s): {shown}{', ...' if len(names) > 3 else ''}"


def normalised_weights(weights: Optional[Sequence[float]], count: int) -> list:
    """Weights that sum to 1 (uniform when ``None``).

    Example:
        >>> normalised_weights([1, 1, 2], 3)
        [0.25, 0.25, 0.5]
    """
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise ValueError(f"--weights has {len(weights)} values for {count} checkpoints; give one per checkpoint.")
    if any(not w >= 0 or w == float("inf") for w in weights) or sum(weights) <= 0:
        raise ValueError(f"--weights must be finite, >= 0 and not all 0, got {weights}.")
    total = sum(weights)
    return [w / total for w in weights]


def find_non_finite(readers: list, name: str, rows: Optional[tuple] = None) -> None:
    """Raise naming the first input whose tensor ``name`` (or these rows of it) holds NaN or inf."""
    for reader in readers:
        tensor = reader.tensor(name, rows)
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(
                f"{reader.folder}: tensor {name!r} holds {bad}{' more' if rows and rows[0] else ''} NaN/inf value(s). "
                "That checkpoint is broken (a diverged step?); leave it out of the average."
            )


def check_equal_across(readers: list, name: str) -> torch.Tensor:
    """A tensor that is copied, not averaged (not floating point): equal in every input, else an error naming both."""
    reference = readers[-1].tensor(name)
    for reader in readers[:-1]:
        if not torch.equal(reader.tensor(name), reference):
            raise ValueError(
                f"Tensor {name!r} is not floating point and differs between {reader.folder} and "
                f"{readers[-1].folder}; such tensors are copied, not averaged, so they must be equal."
            )
    return reference


def weighted_sum(readers: list, name: str, scales: Sequence[float], rows: Optional[tuple] = None) -> torch.Tensor:
    """``sum(scale * tensor)`` over the inputs in fp32, for tensor ``name`` or its ``rows``; NaN/inf is named."""
    total = None
    for reader, scale in zip(readers, scales, strict=True):
        if scale:
            tensor = reader.tensor(name, rows)
            total = (
                tensor.to(torch.float32, copy=True).mul_(scale) if total is None else total.add_(tensor, alpha=scale)
            )
    if not torch.isfinite(total.sum()):  # NaN/inf in any input makes the sum of the sum non-finite
        find_non_finite(readers, name, rows)
    return total


def mean_chunks(readers: list, name: str, weights: Sequence[float]) -> Iterator[torch.Tensor]:
    """The weighted mean of tensor ``name`` over ``readers``, in fp32, in pieces of rows, in the inputs' dtype.

    The weights are scaled so that the smallest is 1 and the sum is divided once at the
    end: the uniform mean of bf16 or fp16 inputs is then exact in fp32 before its one
    rounding to the output dtype. Non-float tensors must be equal in every input and are copied.
    """
    newest = readers[-1]
    dtype = newest.dtype(name)
    if not dtype.is_floating_point:
        yield check_equal_across(readers, name)
        return
    unit = min(w for w in weights if w > 0)
    scales = [w / unit for w in weights]
    for rows in row_chunks(newest.shape(name), dtype):
        yield weighted_sum(readers, name, scales, rows).div_(sum(scales)).to(dtype)


def write_averaged_checkpoint(
    output_dir: str,
    readers: list,
    chunks_for: Callable[[str], Iterable[torch.Tensor]],
    record: dict,
    *,
    desc: str = "Writing",
    progress: bool = True,
) -> None:
    """Write ``chunks_for(name)`` for every tensor in the newest input's layout, its config files and ``record``."""
    newest = readers[-1]
    bar = logging.tqdm(total=len(newest.names), desc=desc, unit="tensor", disable=not progress)
    with staged_folder(output_dir) as stage:

        def produce(name):
            yield from chunks_for(name)
            bar.update(1)

        for file, names in newest.files.items():
            entries = [(name, newest.dtype(name), newest.shape(name)) for name in names]
            write_safetensors(os.path.join(stage, file), entries, produce, newest.metadata.get(file))
        if newest.index is not None:
            with open(os.path.join(stage, MODEL_INDEX_FILE), "w", encoding="utf-8") as f:
                json.dump(newest.index, f, indent=2, sort_keys=True)
        for name in sorted(os.listdir(newest.folder)):
            path = os.path.join(newest.folder, name)
            if os.path.isfile(path) and any(fnmatch.fnmatch(name, pattern) for pattern in COPIED_FILES):
                shutil.copy2(path, os.path.join(stage, name))
        with open(os.path.join(stage, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
    bar.close()


def source_record(readers: list, method: str, weights: Sequence[float]) -> dict:
    """What ``swa_config.json`` records about a post-hoc average: method, sources with steps, weights, dtype."""
    from .. import __version__

    newest = readers[-1]
    dtypes = sorted(
        {str(newest.dtype(n)).removeprefix("torch.") for n in newest.names if newest.dtype(n).is_floating_point}
    )
    return {
        "method": method,
        "strategy": "uniform" if len({w for w in weights if w > 0}) == 1 else "weighted",
        "n_averaged": sum(1 for w in weights if w > 0),
        "sources": [{"folder": os.path.abspath(r.folder), "step": r.step} for r in readers],
        "weights": list(weights),
        "dtype": ", ".join(dtypes),
        "format": newest.kind,
        "hf_swa_version": __version__,
    }


def average_checkpoints(
    checkpoints: Optional[Sequence[str]] = None,
    output_dir: str = None,
    *,
    run_dir: Optional[str] = None,
    last: Optional[int] = None,
    steps=None,
    weights: Optional[Sequence[float]] = None,
    overwrite_output_dir: bool = False,
    progress: bool = True,
) -> dict:
    """Average saved checkpoints into ``output_dir``; return what ``swa_config.json`` records.

    Args:
        checkpoints: checkpoint folders (full, sharded, or PEFT adapters), or ``None`` with ``run_dir``.
        output_dir: where the averaged model goes; it must not be, hold or lie in an input.
        run_dir, last, steps: take the ``checkpoint-N`` folders of a run, those with
            ``A <= N <= B`` for ``steps="A:B"``, then the newest ``last`` of them.
        weights: one per checkpoint, normalised to sum to 1 (default: the uniform mean).
        overwrite_output_dir: replace an ``output_dir`` that already holds files.
        progress: show a progress bar (also off with ``transformers.utils.logging.disable_progress_bar()``).

    The newest input (highest step, else the last given) provides the config,
    tokenizer and file layout. Raises ``ValueError`` / ``FileNotFoundError`` on bad
    input, before writing anything.
    """
    if output_dir is None:
        raise ValueError("Pass output_dir: the folder the averaged model is written to.")
    folders = resolve_checkpoints(checkpoints, run_dir, last, steps)
    weights = normalised_weights(weights, len(folders))
    check_output_dir(output_dir, folders, overwrite_output_dir)
    readers = open_checkpoints(folders)
    order = sorted(range(len(readers)), key=lambda i: (readers[i].step is not None, readers[i].step or 0, i))
    readers, weights = [readers[i] for i in order], [weights[i] for i in order]
    record = source_record(readers, "average", weights)
    write_averaged_checkpoint(
        output_dir,
        readers,
        lambda name: mean_chunks(readers, name, weights),
        record,
        desc=f"Averaging {len(readers)} checkpoints",
        progress=progress,
    )
    logger.info("Averaged %d checkpoints into %s", len(readers), output_dir)
    return record
