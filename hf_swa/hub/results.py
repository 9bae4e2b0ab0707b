"""A run's results as the model card reads them: scores per weights, per evaluation set, per metric.

The layout (``results.json``, written by ``run_glue``; any JSON object of this shape works)::

    {"eval": {"live":   {"validation": {"accuracy": 0.84, "loss": 0.41}},
              "swa":    {"validation": {"accuracy": 0.86, "loss": 0.37}},
              "chosen": {"validation": {"accuracy": 0.86, "loss": 0.37}}},
     "chosen": "swa",                        # the weights shipped, when a selection ran
     "metrics": ["accuracy"],                # optional: the quality metrics, main first
     "lower_is_better": ["loss"],            # optional: default ["loss"]
     "dataset": {"id": "nyu-mll/glue", "config": "sst2", "name": "GLUE SST2", "purpose": "..."}}  # optional

A plain Trainer metrics dict (``all_results.json`` of an ``SWATrainer`` run) is nested by
:func:`nest_metrics`, given the weights' names (``swa_config.json`` lists the candidates).

Example:
    >>> nest_metrics({"eval_accuracy": 0.9, "eval_swa_accuracy": 0.91, "eval_swa_from75_accuracy": 0.92,
    ...               "eval_runtime": 1.0}, ["swa", "swa_from75"])
    {'live': {'validation': {'accuracy': 0.9}}, 'swa': {'validation': {'accuracy': 0.91}}, \
'swa_from75': {'validation': {'accuracy': 0.92}}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional, Union

from hf_swa.averaging.names import LIVE, MAIN_CANDIDATE
from hf_swa.hub.folder import PathLike, read_json_object

__all__ = ["RESULTS_FILE", "TRAINER_RESULTS_FILES", "LIVE", "CHOSEN", "nest_metrics", "load_results", "metric_names"]

#: The nested results file ``run_glue`` writes beside the model.
RESULTS_FILE = "results.json"
#: What a plain Trainer writes (flat keys), read when a folder has no ``results.json``.
TRAINER_RESULTS_FILES = ("all_results.json", "eval_results.json")
#: The weights a selection shipped, whichever candidate (or ``live``) they are.
CHOSEN = "chosen"
#: What the Trainer adds beside the scores: not a measure of the model.
BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second", "samples", "epoch", "model_preparation_time")


def nest_metrics(
    metrics: Mapping[str, Any], names: Iterable[str], prefix: str = "eval", eval_set: str = "validation"
) -> dict:
    """``{weights: {eval_set: {metric: value}}}`` from one evaluation's flat keys ``<prefix>[_<weights>]_<metric>``.

    `names` are the weights evaluated besides the live ones (``swa``, ``swa_from75``, ``chosen``);
    the longest name that prefixes a key claims it, the live weights take the rest.
    """
    names = sorted(set(names), key=len, reverse=True)
    out: dict = {}
    for key, value in metrics.items():
        if not key.startswith(prefix + "_") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        rest = key[len(prefix) + 1 :]
        weights = next((name for name in names if rest.startswith(name + "_")), LIVE)
        metric = rest if weights == LIVE else rest[len(weights) + 1 :]
        if not metric.endswith(BOOKKEEPING):
            out.setdefault(weights, {}).setdefault(eval_set, {})[metric] = value
    return out


def load_results(
    results: Union[None, PathLike, Mapping[str, Any]],
    output_dir: Optional[PathLike] = None,
    swa_config: Optional[Mapping[str, Any]] = None,
) -> dict:
    """The nested results: ``results`` itself, the JSON file it names, or the folder's own (``{}`` if none).

    Flat Trainer metrics are nested with the weights ``swa_config`` names (its candidates, ``swa``, ``chosen``).

    Example:
        >>> load_results({"eval_loss": 0.3, "eval_swa_loss": 0.2})["eval"]["swa"]
        {'validation': {'loss': 0.2}}
    """
    if results is None and output_dir is not None:
        found = [
            Path(output_dir) / n for n in (RESULTS_FILE, *TRAINER_RESULTS_FILES) if (Path(output_dir) / n).is_file()
        ]
        results = found[0] if found else {}
    if not isinstance(results, Mapping):
        path = Path(results)
        if not path.is_file():
            raise FileNotFoundError(f"results file {path} not found (expected {RESULTS_FILE} or all_results.json).")
        results = read_json_object(path, "results")
    if not results or isinstance(results.get("eval"), Mapping):
        return dict(results)
    config = swa_config or {}
    names = [MAIN_CANDIDATE, CHOSEN, *(c.get("name") for c in config.get("candidates", []) if c.get("name"))]
    chosen = (config.get("selection") or {}).get("chosen") or results.get("swa_chosen")
    train = {k: v for k, v in results.items() if k.startswith("train_")}
    return {"eval": nest_metrics(results, names), "chosen": chosen, "train": train}


def metric_names(results: Mapping[str, Any]) -> list:
    """The metrics the results hold (``results["metrics"]`` first, in order), lower-is-better ones last."""
    lower = lower_is_better(results)
    names = list(results.get("metrics") or [])
    for sets in results.get("eval", {}).values():
        for scores in sets.values():
            names += [m for m in scores if m not in names]
    return sorted(names, key=lambda m: m in lower)


def lower_is_better(results: Mapping[str, Any]) -> tuple:
    return tuple(results.get("lower_is_better") or ("loss",))
