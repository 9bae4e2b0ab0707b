"""The model card of an averaged model: YAML metadata with a ``model-index``, settings, results, limits.

The template is ``model_cards/swa_model_card.md`` (installed as ``hf_swa.model_cards``).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Union

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_swa.averaging.names import LIVE, MAIN_CANDIDATE
from hf_swa.hub.folder import TOKENIZER_FILES, PathLike, load_adapter_config, load_swa_config
from hf_swa.hub.results import load_results, lower_is_better, metric_names
from hf_swa.hub.shipped import ShippedWeights, shipped_weights
from hf_swa.training.defaults import lr_tail_is_on

__all__ = ["MODEL_CARD_NAME", "TEMPLATE_NAME", "build_model_card", "render_model_card", "write_model_card"]

MODEL_CARD_NAME = "README.md"
TEMPLATE_NAME = "swa_model_card.md"
# The transformers class a PEFT task type loads its base model with.
_PEFT_AUTO_CLASSES = {
    "SEQ_CLS": "AutoModelForSequenceClassification",
    "CAUSAL_LM": "AutoModelForCausalLM",
    "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
    "TOKEN_CLS": "AutoModelForTokenClassification",
    "QUESTION_ANS": "AutoModelForQuestionAnswering",
    "FEATURE_EXTRACTION": "AutoModel",
}
#: The pipeline a results file names (``results["pipeline_tag"]``; GLUE's: text classification) and the
#: transformers class its model loads with.
_PIPELINES = {
    "text-classification": ("Text Classification", "AutoModelForSequenceClassification"),
    "text-generation": ("Text Generation", "AutoModelForCausalLM"),
}
DEFAULT_PIPELINE = "text-classification"


def _template() -> str:
    # A source checkout's own template (the folder sits at the repository root, beside hf_swa/), even where another
    # copy of hf_swa is installed; else the installed package's.
    beside = Path(__file__).resolve().parents[2] / "model_cards" / TEMPLATE_NAME
    if beside.is_file():
        return beside.read_text(encoding="utf-8")
    return resources.files("hf_swa.model_cards").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _strategy(swa: Mapping[str, Any]) -> str:
    """How the weights were averaged: a training run's ``swa_strategy`` (``strategy`` in hf_swa 0.3, and in the
    records of hf-swa-average)."""
    return swa.get("swa_strategy", swa.get("strategy", "uniform"))


def _settings_rows(swa: Mapping[str, Any], results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The SWA settings as (label, value) rows, in reading order."""
    strategy = _strategy(swa)
    rows = [("Averaging strategy", "uniform (SWA: equal-weight mean)" if strategy == "uniform" else _fmt(strategy))]
    decay = swa.get("swa_ema_decay", swa.get("ema_decay"))  # ema_decay: written by hf_swa 0.3
    if strategy == "ema" and decay is not None:
        rows.append(("EMA decay", _fmt(decay)))
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
    count = _fmt(swa.get("n_averaged", "unknown"))
    name = swa.get("shipped")
    candidates = swa.get("candidates", []) if name != MAIN_CANDIDATE else []
    shipped = next((c for c in candidates if c.get("name") == name), None)
    if shipped and shipped.get("n_averaged") is not None:  # a later window or an EMA: its own share of them
        count += f" (in `{shipped['name']}`, which this model holds: {_fmt(shipped['n_averaged'])})"
    rows.append(("Snapshots averaged (`n_averaged`)", count))
    if swa.get("n_skipped"):
        rows.append(("Snapshots skipped (`n_skipped`)", _fmt(swa["n_skipped"])))
    swa_lr, ratio = swa.get("swa_lr"), swa.get("swa_lr_ratio", 0)
    if not lr_tail_is_on(swa_lr, ratio):
        rows.append(("SWA learning rate (`swa_lr`)", "none: the base schedule ran unchanged"))
    else:
        text = _fmt(swa_lr) if swa_lr is not None else f"{_fmt(ratio)} of the peak learning rate (`swa_lr_ratio`)"
        rows.append(("SWA learning rate (`swa_lr`)", text))
        steps = swa.get("swa_anneal_steps", 0)
        target = "`swa_lr`" if swa_lr is not None else "the tail LR"
        anneal = f"{swa.get('swa_anneal_strategy', 'cos')} over {steps} steps" if steps else f"none (jump to {target})"
        rows.append(("LR anneal (`swa_anneal_strategy`, `swa_anneal_steps`)", anneal))
    runtime = results.get("train", results).get("train_runtime")
    if runtime is not None:
        rows.append(("Training time", f"{float(runtime):.0f} s"))
    return rows


def _scores(results: Mapping[str, Any], weights: str) -> dict:
    """``{eval_set: {metric: value}}`` of `weights`; the shipped weights' own scores if ``chosen`` is not recorded."""
    by_weights = results.get("eval", {})
    return by_weights.get(weights) or by_weights.get(results.get("chosen") or "", {})


def _rows(results: Mapping[str, Any], shipped: str):
    """``(eval_set, metric, live, shipped)`` for every metric of every evaluation set, scores first."""
    live, ours = _scores(results, LIVE), _scores(results, shipped)
    names = metric_names(results)
    for eval_set in dict.fromkeys([*live, *ours]):
        for name in names:
            a, b = live.get(eval_set, {}).get(name), ours.get(eval_set, {}).get(name)
            if a is not None or b is not None:
                yield eval_set, name, a, b


def _result_rows(results: Mapping[str, Any], shipped: str = MAIN_CANDIDATE) -> tuple[list[dict], list[str], list[str]]:
    """The live and the `shipped` weights' scores side by side."""
    rows, better, worse = [], [], []
    lower_names = lower_is_better(results)
    several = len({row[0] for row in _rows(results, shipped)}) > 1
    for eval_set, name, live, averaged in _rows(results, shipped):
        label = f"{name} ({eval_set})" if several else name
        # Rounded to the shown precision, so "+0.0000" never counts as better or worse.
        delta = round(averaged - live, 4) + 0.0 if live is not None and averaged is not None else None
        lower = name in lower_names
        if delta:
            (better if (delta < 0) == lower else worse).append(f"{label} ({delta:+.4f})")
        rows.append(
            {
                "metric": label,
                "lower_is_better": lower,
                "live": "–" if live is None else f"{live:.4f}",
                "averaged": "–" if averaged is None else f"{averaged:.4f}",
                "delta": "–" if delta is None else f"{delta:+.4f}",
            }
        )
    return rows, better, worse


def _verdict(rows: list[dict], better: list[str], worse: list[str], weights: str = "averaged weights") -> str:
    if not any(row["delta"] != "–" for row in rows):
        return "No metric has both a live and an averaged score, so the two cannot be compared here."
    if not better and not worse:
        return f"On this run the {weights} scored the same as the live weights (to 4 decimals)."
    parts = []
    if better:
        parts.append("better than the live weights on " + ", ".join(better))
    if worse:
        parts.append("worse on " + ", ".join(worse))
    return f"On this run the {weights} did " + "; ".join(parts) + "."


def _eval_results(results: Mapping[str, Any], dataset: Mapping[str, Any], shipped: ShippedWeights) -> list[EvalResult]:
    """The shipped weights' scores as ``model-index`` entries, one per evaluation set and quality metric."""
    if not dataset.get("id"):
        return []
    weights = f"SWA candidate {shipped.name}, chosen on held-out data" if shipped.chosen else "SWA-averaged weights"
    if shipped.live:
        weights = "the live weights of the last training step (swa_ship='live')"
    if shipped.optimistic:
        weights = f"SWA candidate {shipped.name}, chosen on this evaluation set: optimistic"
    quality = [m for m in metric_names(results) if m not in lower_is_better(results)]
    if results.get("metrics"):
        quality = [m for m in quality if m in results["metrics"]]
    return [
        EvalResult(
            task_type=_pipeline(results),
            task_name=_PIPELINES[_pipeline(results)][0],
            dataset_type=dataset["id"],
            dataset_name=dataset.get("name") or dataset["id"],
            dataset_config=dataset.get("config"),
            dataset_split=eval_set,
            metric_type=name,
            metric_name=f"{name} ({weights})",
            metric_value=scores[name],
        )
        for eval_set, scores in _scores(results, shipped.name).items()
        for name in quality
        if scores.get(name) is not None
    ]


def _card_data(
    eval_results: list[EvalResult],
    title: str,
    task: Optional[str],
    dataset_id: Optional[str],
    base_model: Optional[str],
    license: Optional[str],
    language: Optional[str],
    adapter: bool = False,
) -> ModelCardData:
    return ModelCardData(
        base_model=base_model,
        datasets=[dataset_id] if dataset_id else None,
        language=language,
        library_name="peft" if adapter else "transformers",
        license=license,
        metrics=[r.metric_type for r in eval_results] or None,
        pipeline_tag=DEFAULT_PIPELINE,  # the results' own: see _fill_template
        tags=["stochastic-weight-averaging", "swa", "hf_swa"] + ([task] if task else []),
        model_name=title,
        eval_results=eval_results or None,
    )


def _fill_template(
    card_data: ModelCardData, swa_config: Mapping[str, Any], results: Mapping[str, Any], **fields: Any
) -> ModelCard:
    """The card's text: the template filled with the settings, the results and ``fields``."""
    shipped = shipped_weights(swa_config)
    card_data.pipeline_tag = _pipeline(results)
    # The live weights shipped: their scores beside those of the SWA average, which was evaluated and not shipped.
    rows, better, worse = _result_rows(results, MAIN_CANDIDATE if shipped.live else shipped.name)
    strategy = _strategy(swa_config)
    return ModelCard.from_template(
        card_data,
        template_str=_template(),
        hf_swa_version=swa_config.get("hf_swa_version"),
        strategy_phrase="equal-weight mean" if strategy == "uniform" else f"{strategy} average",
        n_averaged=swa_config.get("n_averaged", "an unknown number of"),
        settings=_settings_rows(swa_config, results),
        results=rows,
        verdict=_verdict(rows, better, worse, "SWA average (not shipped)" if shipped.live else shipped.label.lower()),
        shipped=shipped,
        ship_rule=swa_config.get("swa_ship", LIVE),
        swa_worse=", ".join(worse),
        **fields,
    )


def _dataset(results: Mapping[str, Any], **given: Optional[str]) -> dict:
    """What the results say of the data set, overridden by what is `given`."""
    dataset = {**results.get("dataset", {}), **{k: v for k, v in given.items() if v}}
    dataset.setdefault("name", dataset.get("id"))
    return dataset


def _pipeline(results: Mapping[str, Any]) -> str:
    """The pipeline the results name, if known (``text-generation`` for ``run_clm``), else text classification."""
    tag = results.get("pipeline_tag")
    return tag if tag in _PIPELINES else DEFAULT_PIPELINE


def _how_to_load(
    repo_id: Optional[str], has_tokenizer: bool, adapter: Optional[Mapping[str, Any]], pipeline: str = DEFAULT_PIPELINE
) -> dict:
    """The fields of the card's "How to use": where from, with a tokenizer or not, as an adapter or not."""
    fields = dict(load_id=repo_id or "path/to/this/model", has_tokenizer=has_tokenizer, adapter_type=None)
    fields.update(auto_class=_PIPELINES[pipeline][1])
    if adapter is not None:  # loaded with PEFT on top of its base model, by the class of its task
        fields.update(
            adapter_type=adapter.get("peft_type") or "PEFT",
            auto_class=_PEFT_AUTO_CLASSES.get(adapter.get("task_type"), fields["auto_class"]),
        )
    return fields


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
    dataset_config: Optional[str] = None,
    task_phrase: Optional[str] = None,
    license: Optional[str] = None,
    language: Optional[str] = None,
    has_tokenizer: bool = False,
    adapter: Optional[Mapping[str, Any]] = None,
    averaging_section: Optional[str] = None,
) -> ModelCard:
    """Build the model card of an averaged model from these arguments:

        swa_config: the contents of ``swa_config.json``. results: the nested results (:mod:`hf_swa.hub.results`;
            flat Trainer metrics are nested); the shipped weights' scores go into the ``model-index``.
        repo_id: where the model will live (in "How to use", and the default title); base_model: the Hub id
            of the model that was fine-tuned. task_name: a tag (and the dataset's config); task_phrase: what the
            model does. has_tokenizer: the folder holds a tokenizer (``AutoTokenizer`` in the snippet).
        adapter: a PEFT ``adapter_config.json`` (the folder holds an adapter of ``base_model``). averaging_section:
            Markdown replacing the SWA settings (e.g. a post-hoc average of checkpoints).

    Example:
        >>> card = render_model_card(
        ...     {"swa_start": 0.75, "swa_start_step": 150, "swa_freq": 10, "swa_lr": 2e-05, "n_averaged": 12},
        ...     {"eval": {"live": {"validation": {"accuracy": 0.90}}, "swa": {"validation": {"accuracy": 0.91}}}},
        ...     repo_id="me/bert-sst2-swa", base_model="bert-base-uncased", task_name="sst2", dataset_id="nyu-mll/glue")
        >>> card.data.to_dict()["model-index"][0]["results"][0]["metrics"][0]["value"]
        0.91
        >>> "| Snapshots averaged (`n_averaged`) | 12 |" in str(card)
        True
    """
    results = load_results(results or {}, swa_config=swa_config)
    dataset = _dataset(
        results, id=dataset_id, name=dataset_name, config=dataset_config or task_name, purpose=task_phrase
    )
    task = task_name or dataset.get("config")
    title = model_name or (repo_id.split("/")[-1] if repo_id else "SWA-averaged model")
    eval_results = _eval_results(results, dataset, shipped_weights(swa_config))
    card_data = _card_data(eval_results, title, task, dataset.get("id"), base_model, license, language, bool(adapter))
    return _fill_template(
        card_data,
        swa_config,
        results,
        title=title,
        base_model=base_model,
        dataset_pretty=dataset.get("name"),
        eval_split=" and ".join(dict.fromkeys(s for w in results.get("eval", {}).values() for s in w)) or "evaluation",
        task_phrase=dataset.get("purpose") or "sequence classification",
        **_how_to_load(repo_id, has_tokenizer, adapter, _pipeline(results)),
        averaging_section=averaging_section,
    )


def build_model_card(
    output_dir: PathLike,
    results: Union[None, PathLike, Mapping[str, Any]] = None,
    **card_kwargs: Any,
) -> ModelCard:
    """The card of the averaged model in ``output_dir``, in memory (nothing is written).

    Reads ``swa_config.json`` (required) and, unless ``results`` is given, the folder's
    ``results.json`` (else ``all_results.json``). ``card_kwargs`` go to :func:`render_model_card`.

    Example:
        >>> import json, tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "swa_config.json").write_text(json.dumps({"swa_freq": 10, "n_averaged": 12}))
        >>> "| Snapshots averaged (`n_averaged`) | 12 |" in build_model_card(folder, {}).text
        True
        >>> sorted(p.name for p in folder.iterdir())
        ['swa_config.json']
    """
    folder = Path(output_dir)
    swa_config = load_swa_config(folder)
    card_kwargs.setdefault("has_tokenizer", any((folder / name).is_file() for name in TOKENIZER_FILES))
    adapter = card_kwargs.setdefault("adapter", load_adapter_config(folder))
    if adapter is not None and card_kwargs.get("base_model") is None:  # the model the adapter goes on
        card_kwargs["base_model"] = adapter.get("base_model_name_or_path")
    return render_model_card(swa_config, load_results(results, folder, swa_config), **card_kwargs)


def write_model_card(
    output_dir: PathLike,
    results: Union[None, PathLike, Mapping[str, Any]] = None,
    **card_kwargs: Any,
) -> Path:
    """Render the card of the averaged model in ``output_dir`` (:func:`build_model_card`) and write it as ``README.md``.

    Returns the path of the written ``README.md``. An existing one is replaced, in one rename once the new card
    is complete.

    Example:
        >>> import json, tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "swa_config.json").write_text(json.dumps({"swa_freq": 10, "n_averaged": 12}))
        >>> path = write_model_card(folder, {"eval_f1": 0.88, "eval_swa_f1": 0.9})
        >>> "| f1 | 0.8800 | 0.9000 | +0.0200 |" in path.read_text()
        True
    """
    from hf_swa.checkpointing.state import atomic_write  # safetensors and torch: only to write

    card = build_model_card(output_dir, results, **card_kwargs)
    path = Path(output_dir) / MODEL_CARD_NAME
    atomic_write(str(path), card.save)  # the folder's README.md stays as it was until the new card is whole
    return path
