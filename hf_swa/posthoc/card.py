"""The model card of a post-hoc average: which checkpoints, with which weights, and how each scored.

``averaging_section(record)`` turns what ``swa_config.json`` records about a post-hoc
average or a greedy soup into the Markdown that the hf_swa card shows in place of the
in-training SWA settings; ``write_posthoc_card`` writes the card into the output folder.

Example:
    >>> record = {"method": "average", "strategy": "uniform", "n_averaged": 2, "dtype": "bfloat16",
    ...           "format": "full", "weights": [0.5, 0.5],
    ...           "sources": [{"folder": "/runs/a/checkpoint-300", "step": 300},
    ...                       {"folder": "/runs/a/checkpoint-400", "step": 400}]}
    >>> print(averaging_section(record).splitlines()[0])
    ## Post-hoc average of 2 checkpoints
    >>> "| a/checkpoint-400 | 400 | 0.5 |" in averaging_section(record)
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from hf_swa.hub import write_model_card

__all__ = ["averaging_section", "power_ema_section", "write_posthoc_card"]


def _short(folder: str) -> str:
    """The last two parts of a path (``run/checkpoint-400``): enough to tell inputs apart, no local paths."""
    parts = Path(folder).parts
    return os.path.join(*parts[-2:]) if len(parts) >= 2 else folder


def _score(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def averaging_section(record: Mapping[str, Any]) -> str:
    """Markdown describing a post-hoc average, greedy soup or power EMA from its ``swa_config.json`` record."""
    if record.get("method") == "power_ema":
        return power_ema_section(record)
    soup = record.get("soup")
    scores = record.get("scores") or {}
    input_scores = (soup or {}).get("input_scores") or scores.get("inputs") or {}
    metric = ((soup or scores).get("metric") or "score").removeprefix("eval_")
    sources = record["sources"]
    how = (
        "a greedy soup (Wortsman et al., 2022) of checkpoints saved during fine-tuning: every input was scored, "
        "the inputs were sorted best first, and each joined the soup when the mean with it scored no worse. "
        "The mean was taken"
        if soup
        else f"the {record['strategy']} mean of checkpoints saved during fine-tuning, taken"
    )
    lines = [
        f"## Post-hoc average of {record['n_averaged']} checkpoints",
        "",
        f"The weights in this repository are {how} after training with `hf-swa-average` (tensor by tensor, in fp32) "
        f"and stored in {record.get('dtype')}{' as a PEFT adapter' if record.get('format') == 'adapter' else ''}. "
        "Such an average sees only the weights that were saved, not every training step as averaging during "
        "training does.",
        "",
        f"| Checkpoint | Step | Weight | {metric} |",
        "|---|---:|---:|---:|",
    ]
    for source, weight in zip(sources, record["weights"], strict=True):
        step = "–" if source.get("step") is None else source["step"]
        score = input_scores.get(source["folder"])
        lines.append(
            f"| {_short(source['folder'])} | {step} | {weight:.4g} |"
            + (f" {_score(score)} |" if input_scores else " – |")
        )
    if soup:
        lines += [
            "",
            f"Soups tried ({metric}; higher is better{', the loss negated' if 'loss' in metric else ''}):",
            "",
            "| Members | Score | Kept |",
            "|---|---:|---|",
        ]
        for tried in soup["tried"]:
            members = ", ".join(_short(m) for m in tried["members"])
            lines.append(f"| {members} | {_score(tried['score'])} | {'yes' if tried['kept'] else 'no'} |")
        lines += ["", f"The soup in this repository scores {_score(soup['score'])}."]
    elif "average" in scores:
        lines += ["", f"The average in this repository scores {_score(scores['average'])} ({metric})."]
    return "\n".join(lines)


def power_ema_section(record: Mapping[str, Any]) -> str:
    """Markdown describing a post-hoc power EMA: its width, step, and each snapshot's coefficient.

    >>> record = {"std": 0.07, "gamma": 4.83, "step": 200, "n_averaged": 2, "dtype": "float32",
    ...           "sources": [{"std": 0.05, "step": 200}, {"std": 0.1, "step": 200}], "weights": [0.6, 0.4]}
    >>> print(power_ema_section(record).splitlines()[0])
    ## Post-hoc power EMA, σ_rel = 0.07
    """
    widths = ", ".join(f"{w:g}" for w in sorted({s["std"] for s in record["sources"]}))
    lines = [
        f"## Post-hoc power EMA, σ_rel = {record['std']:g}",
        "",
        f"The weights in this repository are a power-function EMA of the training weights (Karras et al., 2024, "
        f"EDM2) of relative width σ_rel = {record['std']:g} (exponent γ = {record['gamma']:.3f}) at step "
        f"{record['step']}. `hf-swa-average --power_ema_std` reconstructed it after training from "
        f"{record['n_averaged']} snapshots of power EMAs of widths {widths}, by EDM2's least-squares solve "
        f"(tensor by tensor, in fp32), and stored it in {record.get('dtype')}. The combined profile is "
        f"{record.get('fit_error', float('nan')):.2%} off the target's (relative L2).",
        "",
        "| Snapshot step | Stored σ_rel | Coefficient |",
        "|---:|---:|---:|",
    ]
    for source, weight in zip(record["sources"], record["weights"], strict=True):
        lines.append(f"| {source['step']} | {source['std']:g} | {weight:.4g} |")
    return "\n".join(lines)


def write_posthoc_card(output_dir: str, record: Mapping[str, Any], **card_kwargs: Any) -> Path:
    """Write the hf_swa model card, with the post-hoc section, as ``README.md`` in ``output_dir``."""
    return write_model_card(output_dir, {}, averaging_section=averaging_section(record), **card_kwargs)
