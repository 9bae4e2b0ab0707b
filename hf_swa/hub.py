"""Model cards and Hub pushes for averaged models.

A folder written by ``SWATrainer.save_model`` holds a plain Transformers checkpoint (the
averaged weights) plus ``swa_config.json`` (the averaging settings and ``n_averaged``).
This module turns that folder into a Hub repository:

- :func:`render_model_card` builds the card (YAML metadata with a ``model-index`` of the
  averaged model's results, SWA settings, live vs averaged results, how to load, limits);
- :func:`write_model_card` reads ``swa_config.json`` (and ``all_results.json``) from the
  folder and writes ``README.md`` next to the weights;
- :func:`push_to_hub` checks the folder really is an averaged model, then creates the repo
  and uploads the folder.

The card template is ``model_cards/swa_model_card.md`` (installed as ``hf_swa.model_cards``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Union

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from hf_swa.glue.tasks import find_task

__all__ = ["SWA_CONFIG_NAME", "load_swa_config", "load_results", "find_weight_files", "check_pushable",
           "render_model_card", "write_model_card", "push_to_hub"]

SWA_CONFIG_NAME = "swa_config.json"
MODEL_CARD_NAME = "README.md"
TEMPLATE_NAME = "swa_model_card.md"
RESULTS_FILES = ("all_results.json", "eval_results.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Training leftovers a Trainer output folder may hold; they are not part of the model.
PUSH_IGNORE_PATTERNS = ["checkpoint-*/", "runs/", "optimizer.pt", "scheduler.pt", "rng_state*.pth", ".tmp-*"]

GLUE_DATASET_ID = "nyu-mll/glue"
_GLUE_PURPOSE = {
    "cola": "judging whether a sentence is grammatically acceptable",
    "sst2": "classifying the sentiment of a sentence",
    "mrpc": "deciding whether two sentences are paraphrases",
    "qqp": "deciding whether two questions are duplicates",
    "stsb": "scoring the semantic similarity of two sentences (regression)",
    "mnli": "natural language inference (entailment, neutral, contradiction)",
    "qnli": "deciding whether a sentence answers a question",
    "rte": "recognising textual entailment",
    "wnli": "pronoun-resolution entailment",
}
GLUE_TASKS = tuple(_GLUE_PURPOSE)
# Keys of a Trainer metrics dict that are bookkeeping, not scores.
_NOT_SCORES = ("runtime", "samples_per_second", "steps_per_second", "samples", "epoch", "model_preparation_time")
_LOWER_IS_BETTER = ("loss",)
_NOT_IN_MODEL_INDEX = ("combined_score",)  # run_glue's mean of the task's metrics, not a metric id

PathLike = Union[str, Path]


# -- reading a saved folder -------------------------------------------------------


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
    path = Path(output_dir) / SWA_CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {output_dir} is not an averaged model saved by SWATrainer.save_model "
            f"(which writes {SWA_CONFIG_NAME} next to the weights). Point to the final output_dir of an "
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


# -- the card ------------------------------------------------------------------------


def _template() -> str:
    try:
        return resources.files("hf_swa.model_cards").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")
    except ModuleNotFoundError:
        # Running from a source checkout: the folder sits at the repository root, beside hf_swa/.
        return (Path(__file__).resolve().parent.parent / "model_cards" / TEMPLATE_NAME).read_text(encoding="utf-8")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _settings_rows(swa: Mapping[str, Any], results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The SWA settings as (label, value) rows, in reading order."""
    strategy = swa.get("strategy", "uniform")
    rows = [("Averaging strategy", "uniform (SWA: equal-weight mean)" if strategy == "uniform" else _fmt(strategy))]
    if strategy == "ema" and "ema_decay" in swa:
        rows.append(("EMA decay", _fmt(swa["ema_decay"])))
    start, start_step = swa.get("swa_start"), swa.get("swa_start_step", swa.get("start_step"))
    max_steps = swa.get("max_steps")
    if isinstance(start, float):
        text = f"{start * 100:g}% of training"
    elif start is not None:
        text = f"optimizer step {start}"
    else:
        text = "unknown"
    if start_step is not None and not (isinstance(start, int) and start == start_step):
        text += f" (optimizer step {start_step}{f' of {max_steps}' if max_steps else ''})"
    rows.append(("Averaging starts (`swa_start`)", text))
    if "swa_freq" in swa:
        rows.append(("Snapshot every (`swa_freq`)", f"{swa['swa_freq']} optimizer steps"))
    rows.append(("Snapshots averaged (`n_averaged`)", _fmt(swa.get("n_averaged", "unknown"))))
    if swa.get("n_skipped"):
        rows.append(("Snapshots skipped (`n_skipped`)", _fmt(swa["n_skipped"])))
    swa_lr = swa.get("swa_lr")
    if swa_lr is None:
        rows.append(("SWA learning rate (`swa_lr`)", "none: the base schedule ran unchanged"))
    else:
        rows.append(("SWA learning rate (`swa_lr`)", _fmt(swa_lr)))
        steps = swa.get("swa_anneal_steps", 0)
        anneal = f"{swa.get('swa_anneal_strategy', 'cos')} over {steps} steps" if steps else "none (jump to `swa_lr`)"
        rows.append(("LR anneal (`swa_anneal_strategy`, `swa_anneal_steps`)", anneal))
    if "train_runtime" in results:
        rows.append(("Training time", f"{float(results['train_runtime']):.0f} s"))
    return rows


def _paired_metrics(results: Mapping[str, Any]) -> list[str]:
    """Metric names with an ``eval_<m>`` or ``eval_swa_<m>`` score, scores first, loss last."""
    names: list[str] = []
    for key, value in results.items():
        if not key.startswith("eval_") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = key[len("eval_swa_"):] if key.startswith("eval_swa_") else key[len("eval_"):]
        if name and name not in names and not name.removesuffix("_mm").endswith(_NOT_SCORES):
            names.append(name)
    return sorted(names, key=lambda n: (_lower_is_better(n), names.index(n)))


def _lower_is_better(name: str) -> bool:
    return name.removesuffix("_mm") in _LOWER_IS_BETTER


def _result_rows(results: Mapping[str, Any]) -> tuple[list[dict], list[str], list[str]]:
    rows, better, worse = [], [], []
    for name in _paired_metrics(results):
        live, averaged = results.get(f"eval_{name}"), results.get(f"eval_swa_{name}")
        # Rounded to the shown precision, so "+0.0000" never counts as better or worse.
        delta = round(averaged - live, 4) + 0.0 if live is not None and averaged is not None else None
        lower = _lower_is_better(name)
        if delta:
            (better if (delta < 0) == lower else worse).append(f"{name} ({delta:+.4f})")
        rows.append(
            {
                "metric": name,
                "lower_is_better": lower,
                "live": "–" if live is None else f"{live:.4f}",
                "averaged": "–" if averaged is None else f"{averaged:.4f}",
                "delta": "–" if delta is None else f"{delta:+.4f}",
            }
        )
    return rows, better, worse


def _verdict(rows: list[dict], better: list[str], worse: list[str]) -> str:
    if not any(row["delta"] != "–" for row in rows):
        return "No metric has both a live and an averaged score, so the two cannot be compared here."
    if not better and not worse:
        return "On this run the averaged weights scored the same as the live weights (to 4 decimals)."
    parts = []
    if better:
        parts.append("better than the live weights on " + ", ".join(better))
    if worse:
        parts.append("worse on " + ", ".join(worse))
    return "On this run the averaged weights did " + "; ".join(parts) + "."


def _task_id(task_name: Optional[str]) -> Optional[str]:
    """A GLUE task's id however it is spelled ("SST-2" -> "sst2"); other names lower-cased."""
    task = find_task(task_name)
    return task.name if task else (task_name.lower() if task_name else None)


def render_model_card(
    swa_config: Mapping[str, Any],
    results: Optional[Mapping[str, Any]] = None,
    *,
    repo_id: Optional[str] = None,
    model_name: Optional[str] = None,
    base_model: Optional[str] = None,
    task_name: Optional[str] = None,
    dataset_id: Optional[str] = None,
    dataset_name: Optional[str] = None,
    eval_split: str = "validation",
    license: Optional[str] = None,
    language: Optional[str] = None,
    has_tokenizer: bool = False,
) -> ModelCard:
    """Build the model card of an averaged model.

    Args:
        swa_config: the contents of ``swa_config.json``.
        results: a Trainer metrics dict: ``eval_<m>`` is the live weights' score and
            ``eval_swa_<m>`` the averaged weights' (``all_results.json`` of an SWA run).
            The averaged scores go into the ``model-index`` metadata.
        repo_id: where the model will live; used in "How to use" and as the default title.
        base_model: Hub id of the model that was fine-tuned (metadata ``base_model``).
        task_name: a GLUE task (``"sst2"``) selects the ``nyu-mll/glue`` dataset and config;
            for other data pass ``dataset_id`` (a Hub dataset id) and ``dataset_name``.
        has_tokenizer: whether the folder holds a tokenizer (adds ``AutoTokenizer`` to the snippet).

    Example:
        >>> card = render_model_card(
        ...     {"swa_start": 0.75, "swa_start_step": 150, "swa_freq": 10, "swa_lr": 2e-05, "n_averaged": 12},
        ...     {"eval_accuracy": 0.90, "eval_swa_accuracy": 0.91},
        ...     repo_id="me/bert-sst2-swa", base_model="bert-base-uncased", task_name="sst2",
        ... )
        >>> card.data.to_dict()["model-index"][0]["results"][0]["metrics"][0]["value"]
        0.91
        >>> "| Snapshots averaged (`n_averaged`) | 12 |" in str(card)
        True
    """
    results = dict(results or {})
    task = _task_id(task_name)
    if dataset_id is None and task in GLUE_TASKS:
        dataset_id = GLUE_DATASET_ID
    if dataset_name is None and dataset_id is not None:
        dataset_name = f"GLUE {task.upper()}" if dataset_id == GLUE_DATASET_ID and task else (task or dataset_id)
    title = model_name or (repo_id.split("/")[-1] if repo_id else "SWA-averaged model")

    eval_results = []
    if dataset_id is not None:
        for name in _paired_metrics(results):
            value = results.get(f"eval_swa_{name}")
            if value is None or _lower_is_better(name) or name in _NOT_IN_MODEL_INDEX:
                continue
            split, metric = eval_split, name
            if task == "mnli" and dataset_id == GLUE_DATASET_ID:  # GLUE MNLI has no plain "validation" split
                mismatched = name.endswith("_mm")
                split = "validation_mismatched" if mismatched else "validation_matched"
                metric = name.removesuffix("_mm")
            eval_results.append(
                EvalResult(
                    task_type="text-classification",
                    task_name="Text Classification",
                    dataset_type=dataset_id,
                    dataset_name=dataset_name,
                    dataset_config=task if dataset_id == GLUE_DATASET_ID else None,
                    dataset_split=split,
                    metric_type=metric,
                    metric_name=f"{name} (SWA-averaged weights)",
                    metric_value=value,
                )
            )
    card_data = ModelCardData(
        base_model=base_model,
        datasets=[dataset_id] if dataset_id else None,
        language=language,
        library_name="transformers",
        license=license,
        metrics=[r.metric_type for r in eval_results] or None,
        pipeline_tag="text-classification",
        tags=["stochastic-weight-averaging", "swa", "hf_swa"] + ([task] if task else []),
        model_name=title,
        eval_results=eval_results or None,
    )
    rows, better, worse = _result_rows(results)
    strategy = swa_config.get("strategy", "uniform")
    return ModelCard.from_template(
        card_data,
        template_str=_template(),
        title=title,
        base_model=base_model,
        dataset_pretty=dataset_name,
        hf_swa_version=swa_config.get("hf_swa_version"),
        strategy_phrase="equal-weight mean" if strategy == "uniform" else f"{strategy} average",
        n_averaged=swa_config.get("n_averaged", "an unknown number of"),
        settings=_settings_rows(swa_config, results),
        results=rows,
        eval_split=eval_split,
        verdict=_verdict(rows, better, worse),
        swa_worse=", ".join(worse),
        load_id=repo_id or "path/to/this/model",
        has_tokenizer=has_tokenizer,
        task_phrase=_GLUE_PURPOSE.get(task or "", "sequence classification"),
    )


def write_model_card(
    output_dir: PathLike,
    results: Union[None, PathLike, Mapping[str, Any]] = None,
    **card_kwargs: Any,
) -> Path:
    """Render the card of the averaged model in ``output_dir`` and write it as ``README.md``.

    Reads ``swa_config.json`` (required) and, unless ``results`` is given, the folder's
    ``all_results.json``. ``card_kwargs`` go to :func:`render_model_card`. Returns the
    path of the written ``README.md`` (an existing one is replaced).

    Example:
        >>> import json, tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "swa_config.json").write_text(json.dumps({"swa_freq": 10, "n_averaged": 12}))
        >>> path = write_model_card(folder, {"eval_f1": 0.88, "eval_swa_f1": 0.9}, task_name="mrpc")
        >>> "| f1 | 0.8800 | 0.9000 | +0.0200 |" in path.read_text()
        True
    """
    folder = Path(output_dir)
    swa_config = load_swa_config(folder)
    card_kwargs.setdefault("has_tokenizer", any((folder / name).is_file() for name in TOKENIZER_FILES))
    card = render_model_card(swa_config, load_results(results, folder), **card_kwargs)
    path = folder / MODEL_CARD_NAME
    card.save(path)
    return path


# -- the push -----------------------------------------------------------------------------


def check_pushable(output_dir: PathLike) -> dict:
    """Refuse a folder that is not a saved averaged model; return its SWA config if it is one."""
    folder = Path(output_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist.")
    swa_config = load_swa_config(folder)
    if not find_weight_files(folder):
        raise FileNotFoundError(
            f"{folder} has {SWA_CONFIG_NAME} but no model weights (expected one of {', '.join(WEIGHT_FILES)} "
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
    return str(
        api.upload_folder(
            repo_id=repo_url.repo_id,
            folder_path=folder,
            commit_message=commit_message or f"Upload SWA-averaged model ({n_averaged} snapshots) with hf_swa",
            ignore_patterns=list(PUSH_IGNORE_PATTERNS),
        )
    )
