"""Pushing an averaged model folder to the Hugging Face Hub, after checking it is one.

The push writes nothing into the folder until the Hub has the commit: a generated card is
uploaded from memory, in the same commit as the weights, and saved as the folder's
``README.md`` only once the upload succeeded. A failed push leaves every file as it was and
says in one line what to do (the token, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub import errors as hub_errors
from huggingface_hub.utils import filter_repo_objects

from hf_swa.checkpointing.names import CONFIG_FILE
from hf_swa.hub.card import MODEL_CARD_NAME, build_model_card
from hf_swa.hub.folder import WEIGHT_FILES, PathLike, find_weight_files, load_swa_config
from hf_swa.hub.shipped import shipped_weights

__all__ = ["PUSH_IGNORE_PATTERNS", "HubPushError", "check_pushable", "push_to_hub"]

# Training leftovers a Trainer output folder may hold; they are not part of the model. Git and the client's cache too.
PUSH_IGNORE_PATTERNS = ["checkpoint-*/", "runs/", "optimizer.pt", "scheduler.pt", "rng_state*.pth", ".tmp-*"]
_CLIENT_IGNORE_PATTERNS = [".git/", "*/.git/", ".cache/huggingface/", "*/.cache/huggingface/"]
# What a push can fail with: HTTP answers (HfHubHTTPError), offline mode and unreachable servers (OSError under
# requests, the client's HTTP library's own errors otherwise).
_NETWORK_ERRORS = tuple({OSError, hub_errors.HfHubHTTPError, getattr(hub_errors, "HTTPError", OSError)})


class HubPushError(RuntimeError):
    """A push the Hub did not take; the message says why and what to do. The local folder is unchanged."""


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


#: A line of huggingface_hub's model-card template left unfilled (PEFT's save_pretrained writes one).
_TEMPLATE_MARK = "<!-- Provide a quick summary of what the model is/does. -->"


def _written_by_hand(card: Path) -> bool:
    """Whether the folder's README.md is a card someone wrote, not missing and not the Hub's unfilled template."""
    return card.is_file() and _TEMPLATE_MARK not in card.read_text(encoding="utf-8", errors="replace")


def push_to_hub(
    output_dir: PathLike,
    repo_id: str,
    *,
    token: Optional[str] = None,
    private: bool = False,
    commit_message: Optional[str] = None,
    results: Union[None, PathLike, Mapping[str, Any]] = None,
    replace_card: bool = False,
    **card_kwargs: Any,
) -> str:
    """Push an averaged model folder (weights, config, tokenizer, card) to the Hub in one commit.

    The folder must hold ``swa_config.json`` and model weights (see :func:`check_pushable`).
    Its ``README.md`` is pushed as it is; where there is none (or only the Hub's unfilled template, which PEFT's
    ``save_pretrained`` writes beside an adapter), or ``replace_card`` is set, the card is
    generated (:func:`~hf_swa.hub.card.build_model_card` with ``results`` and ``card_kwargs``), pushed
    from memory and written to the folder only after the Hub took the commit. Checkpoints
    (``checkpoint-*/``), TensorBoard ``runs/`` and optimizer/scheduler/RNG state are not uploaded.
    The repo is created if needed. The endpoint comes from ``HF_ENDPOINT``, the token from ``token``
    or the usual login/``HF_TOKEN``. Returns the URL of the commit.

    Raises:
        HubPushError: the Hub could not be reached or refused the push (nothing local was changed).

    Example (needs a Hub and a token, so not run here)::

        push_to_hub("outputs/sst2-swa", "me/bert-sst2-swa", private=True)
    """
    swa_config = check_pushable(output_dir)
    folder = Path(output_dir)
    card = None
    if replace_card or not _written_by_hand(folder / MODEL_CARD_NAME):
        card = build_model_card(folder, results, repo_id=repo_id, **card_kwargs)
    operations = _upload_operations(folder, None if card is None else str(card).encode("utf-8"))
    api = HfApi(token=token)
    try:
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.create_commit(
            repo_id=repo_url.repo_id,
            repo_type="model",
            operations=operations,
            commit_message=commit_message or _default_message(swa_config),
        )
    except _NETWORK_ERRORS as err:
        raise HubPushError(_explain(err, api.endpoint, repo_id, folder)) from err
    if card is not None:
        from hf_swa.checkpointing.state import atomic_write

        atomic_write(str(folder / MODEL_CARD_NAME), card.save)  # the folder now matches the repo
    return str(commit)


def _upload_operations(folder: Path, card: Optional[bytes]) -> list:
    """One ``CommitOperationAdd`` per file of the model (the card from memory where given)."""
    files = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}
    ignored = PUSH_IGNORE_PATTERNS + _CLIENT_IGNORE_PATTERNS + ([MODEL_CARD_NAME] if card is not None else [])
    kept = filter_repo_objects(list(files), ignore_patterns=ignored)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(files[name])) for name in kept]
    if card is not None:
        operations.append(CommitOperationAdd(path_in_repo=MODEL_CARD_NAME, path_or_fileobj=card))
    return operations


def _default_message(swa_config: dict) -> str:
    shipped = shipped_weights(swa_config)
    n_averaged = swa_config.get("n_averaged", "?")
    what = (
        f"SWA candidate {shipped.name}, chosen on held-out data,"
        if shipped.chosen
        else f"SWA-averaged model ({shipped.name if shipped.phrase else f'{n_averaged} snapshots'})"
    )
    return f"Upload {what} with hf_swa"


def _explain(err: BaseException, endpoint: str, repo_id: str, folder: Path) -> str:
    """One line: why the push to ``repo_id`` failed and what to do."""
    unchanged = f"Nothing was pushed and nothing in {folder} was changed."
    if isinstance(err, hub_errors.OfflineModeIsEnabled):
        return f"HF_HUB_OFFLINE is set, so {repo_id} cannot be pushed: unset HF_HUB_OFFLINE to push. {unchanged}"
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(err, hub_errors.HfHubHTTPError) and status is not None:
        said = str(err).splitlines()[0]
        if status == 401:
            todo = "pass a valid write token with --token, set HF_TOKEN, or run `hf auth login`"
            return f"the Hub at {endpoint} refused the token (HTTP 401: {said}): {todo}. {unchanged}"
        if status == 403:
            todo = f"use a token with write access to {repo_id} (--token or HF_TOKEN), or a repository you own"
            return f"the Hub at {endpoint} forbids this push (HTTP 403: {said}): {todo}. {unchanged}"
        return f"the Hub at {endpoint} answered HTTP {status} while pushing to {repo_id} ({said}). {unchanged}"
    todo = "check the network, and HF_ENDPOINT if you push to a mirror or a private Hub"
    return f"could not reach the Hub at {endpoint} ({type(err).__name__}: {err}): {todo}. {unchanged}"


def push_after_training(training_args, card: dict, command: str) -> int:
    """Push the model an application's SWA run saved in ``output_dir`` once, after training, with its card (`card`:
    the card's fields and ``repo_id``); the exit code of `command` (0, or 1 with one line saying how to push later).
    """
    folder, repo_id = training_args.output_dir, card.pop("repo_id")
    token, private = training_args.hub_token, bool(training_args.hub_private_repo)
    try:
        url = push_to_hub(folder, repo_id, token=token, private=private, **card)
    except HubPushError as err:  # the run is saved: say how to push it, without a traceback
        again = f"hf-swa-push --model_dir {folder} --repo_id {repo_id}"
        print(f"{command}: error: {err} The model is saved; push it later with: {again}", file=sys.stderr)
        return 1
    print(f"Pushed the shipped model: {url}")
    return 0
