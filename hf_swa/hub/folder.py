"""Reading a folder saved by ``SWATrainer.save_model``: its SWA settings, results and weight files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Union

from hf_swa.checkpointing.names import CONFIG_FILE
from hf_swa.glue.metric_keys import RESULTS_FILES

__all__ = ["RESULTS_FILES", "WEIGHT_FILES", "TOKENIZER_FILES", "load_swa_config", "load_results", "find_weight_files"]

ADAPTER_CONFIG = "adapter_config.json"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

PathLike = Union[str, Path]


def load_swa_config(output_dir: PathLike) -> dict:
    """Read ``swa_config.json`` from a folder saved by ``SWATrainer.save_model``.

    Raises:
        FileNotFoundError: the folder has no ``swa_config.json``, so it is not an averaged model.
        ValueError: the file is not a JSON object.

    Example:
        >>> import json, tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "swa_config.json").write_text(json.dumps({"n_averaged": 12}))
        >>> load_swa_config(folder)["n_averaged"]
        12
    """
    path = Path(output_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {output_dir} is not an averaged model saved by SWATrainer.save_model "
            f"(which writes {CONFIG_FILE} next to the weights). Point to the final output_dir of an "
            "SWA run, not to a checkpoint-N/ folder or a plain Trainer output."
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-save the model with SWATrainer.save_model.") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object of SWA settings, got {type(config).__name__}.")
    return config


def load_results(results: Union[None, PathLike, Mapping[str, Any]], output_dir: Optional[PathLike] = None) -> dict:
    """Return a metrics dict: ``results`` itself, the JSON file it names, or the folder's own.

    With ``results=None`` the first of ``all_results.json`` / ``eval_results.json`` found in
    ``output_dir`` is used, and ``{}`` when there is none (the card then has no results).

    Example:
        >>> load_results({"eval_accuracy": 0.9, "eval_swa_accuracy": 0.91})["eval_swa_accuracy"]
        0.91
    """
    if isinstance(results, Mapping):
        return dict(results)
    if results is None:
        if output_dir is None:
            return {}
        found = [Path(output_dir) / name for name in RESULTS_FILES if (Path(output_dir) / name).is_file()]
        if not found:
            return {}
        results = found[0]
    path = Path(results)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} not found (expected a JSON file such as all_results.json).")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of metrics, got {type(data).__name__}.")
    return data


def find_weight_files(output_dir: PathLike) -> list[str]:
    """Names of the model weight files in ``output_dir`` (safetensors or PyTorch, single or sharded).

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "model.safetensors").write_bytes(b"")
        >>> find_weight_files(folder)
        ['model.safetensors']
    """
    folder = Path(output_dir)
    names = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    names += sorted(p.name for p in folder.glob("model-*-of-*.safetensors"))
    names += sorted(p.name for p in folder.glob("pytorch_model-*-of-*.bin"))
    return names


def load_adapter_config(output_dir: PathLike) -> Optional[dict]:
    """The folder's PEFT ``adapter_config.json`` (the folder holds an adapter, not a full model), or ``None``."""
    path = Path(output_dir) / ADAPTER_CONFIG
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from None
