"""Pushing an averaged model folder to the Hugging Face Hub, after checking it is one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from huggingface_hub import HfApi

from hf_swa.checkpointing.names import CONFIG_FILE
from hf_swa.hub.card import MODEL_CARD_NAME, write_model_card
from hf_swa.hub.folder import WEIGHT_FILES, PathLike, find_weight_files, load_swa_config
from hf_swa.hub.shipped import shipped_weights

__all__ = ["PUSH_IGNORE_PATTERNS", "check_pushable", "push_to_hub"]

# Training leftovers a Trainer output folder may hold; they are not part of the model.
PUSH_IGNORE_PATTERNS = ["checkpoint-*/", "runs/", "optimizer.pt", "scheduler.pt", "rng_state*.pth", ".tmp-*"]


def check_pushable(output_dir: PathLike) -> dict:
    """Refuse a folder that is not a saved averaged model; return its SWA config if it is one."""
    folder = Path(output_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist.")
    swa_config = load_swa_config(folder)
    if not find_weight_files(folder):
        raise FileNotFoundError(
            f"{folder} has {CONFIG_FILE} but no model weights (expected one of {', '.join(WEIGHT_FILES)} "
            "or sharded model-XXXXX-of-YYYYY.safetensors); save the model with trainer.save_model() first."
        )
    return swa_config


def push_to_hub(
    output_dir: PathLike,
    repo_id: str,
    *,
    token: Optional[str] = None,
    private: bool = False,
    commit_message: Optional[str] = None,
    **card_kwargs: Any,
) -> str:
    """Push an averaged model folder (weights, config, tokenizer, card) to the Hub.

    The folder must hold ``swa_config.json`` and model weights (see :func:`check_pushable`);
    if it has no ``README.md`` yet, one is written first with :func:`write_model_card`
    (``card_kwargs`` are passed on). Checkpoints (``checkpoint-*/``), TensorBoard ``runs/``
    and optimizer/scheduler/RNG state are not uploaded. The repo is created if needed
    (``exist_ok=True``). The Hub endpoint comes from ``HF_ENDPOINT``, the token from
    ``token`` or the usual login/``HF_TOKEN``. Returns the URL of the commit.

    Example (needs a Hub and a token, so not run here)::

        push_to_hub("outputs/sst2-swa", "me/bert-sst2-swa", private=True)
    """
    swa_config = check_pushable(output_dir)
    folder = Path(output_dir)
    if not (folder / MODEL_CARD_NAME).is_file():
        write_model_card(folder, repo_id=repo_id, **card_kwargs)
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    n_averaged = swa_config.get("n_averaged", "?")
    shipped = shipped_weights(swa_config)
    what = (
        f"SWA candidate {shipped.name}, chosen on held-out data,"
        if shipped.chosen
        else f"SWA-averaged model ({shipped.name if shipped.phrase else f'{n_averaged} snapshots'})"
    )
    return str(
        api.upload_folder(
            repo_id=repo_url.repo_id,
            folder_path=folder,
            commit_message=commit_message or f"Upload {what} with hf_swa",
            ignore_patterns=list(PUSH_IGNORE_PATTERNS),
        )
    )
