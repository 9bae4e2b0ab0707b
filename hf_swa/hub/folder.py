"""Reading a folder saved by ``SWATrainer.save_model``: its SWA settings, results and weight files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

from hf_swa.checkpointing.names import CONFIG_FILE

__all__ = ["WEIGHT_FILES", "TOKENIZER_FILES", "load_swa_config", "find_weight_files"]

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
    return read_json_object(path, "SWA settings", "; re-save the model with SWATrainer.save_model")


def read_json_object(path: Path, what: str, hint: str = "") -> dict:
    """The JSON object in `path`; a ValueError naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}){hint}.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of {what}, got {type(data).__name__}.")
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
