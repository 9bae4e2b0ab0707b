"""Greedy model soups (Wortsman et al., 2022) of saved checkpoints, chosen by a score on held-out data.

1. Every input is scored with ``score_fn(model) -> float`` (higher is better).
2. The inputs are sorted by score, best first; the soup starts as the best one.
3. Each next input joins the soup when the mean of the soup and it scores no worse than the soup.

The soup is kept as a running fp32 sum of its members. A candidate (the sum plus one
more checkpoint, divided by the new count) is streamed into the scoring model tensor
by tensor in the checkpoints' dtype; it is added to the sum only when accepted, so a
rejected candidate leaves the sum as it was. Memory: one model plus one fp32 copy of
its weights, whatever the number of inputs. The written soup is the sum divided by the
count, rounded exactly as the scored model was, so its recorded score reproduces.

Example:
    >>> import os, tempfile, torch
    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> root = tempfile.mkdtemp()
    >>> config = BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                     intermediate_size=8, max_position_embeddings=8)
    >>> for seed in range(3):
    ...     _ = torch.manual_seed(seed)
    ...     BertForSequenceClassification(config).save_pretrained(f"{root}/seed{seed}")
    >>> score = lambda model: -model.classifier.weight.abs().sum().item()  # prefers small classifier weights
    >>> record = greedy_soup([f"{root}/seed{s}" for s in range(3)], f"{root}/soup", score, progress=False)
    >>> record["soup"]["score"] >= max(record["soup"]["input_scores"].values())
    True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Callable, Optional

import torch
from transformers.utils import logging

from ..checkpointing.files import CheckpointWeights, row_chunks
from ..checkpointing.writer import check_output_dir
from .average import (
    check_equal_across,
    find_non_finite,
    open_checkpoints,
    source_record,
    write_averaged_checkpoint,
)

__all__ = ["greedy_soup", "score_checkpoints", "load_model_for_soup"]

logger = logging.get_logger(__name__)


def load_model_for_soup(folder: str) -> torch.nn.Module:
    """The model class named in ``config.json`` (``architectures``), loaded from ``folder`` in its saved dtype."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    architectures = getattr(config, "architectures", None) or []
    model_class = getattr(transformers, architectures[0], None) if architectures else None
    if model_class is None:
        raise ValueError(
            f"{folder}/config.json names no Transformers model class (architectures={architectures}); "
            "pass load_model=... returning the model to score."
        )
    return model_class.from_pretrained(folder, dtype="auto")


class _ScoringModel:
    """The model the soup scores, and the tensors of it that the checkpoints hold."""

    def __init__(self, model: torch.nn.Module, newest: CheckpointWeights, float_names: list):
        self.model = model
        targets = model.state_dict(keep_vars=True)
        missing = [name for name in float_names if name not in targets]
        if missing:
            raise ValueError(
                f"The model to score has no tensor(s) {missing[:3]} that {newest.folder} holds; "
                "pass load_model=... building the model these checkpoints belong to."
            )
        self.names = float_names

    @torch.no_grad()
    def load(self, chunks_for: Callable) -> None:
        # Looked up each time: score_fn may have moved the model (and so replaced its buffers) to a device.
        targets = self.model.state_dict(keep_vars=True)
        for name in self.names:
            target = targets[name]
            for rows, value in chunks_for(name):
                (target if rows is None else target[rows[0] : rows[1]]).copy_(value)

    @torch.no_grad()
    def score(self, score_fn: Callable) -> float:
        was_training = self.model.training
        self.model.eval()
        try:
            value = float(score_fn(self.model))
        finally:
            self.model.train(was_training)
        if value != value:
            raise ValueError("score_fn returned NaN; a soup needs a score to compare.")
        return value


def _input_chunks(reader: CheckpointWeights):
    def chunks(name):
        for rows in row_chunks(reader.shape(name), reader.dtype(name)):
            value = reader.tensor(name, rows)
            if not torch.isfinite(value.sum()):
                find_non_finite([reader], name, rows)
            yield rows, value

    return chunks


def _candidate_chunks(total: dict, reader: Optional[CheckpointWeights], count: int, dtypes: dict):
    """(sum [+ reader's tensor]) / count in each tensor's dtype, in rows."""

    def chunks(name):
        for rows in row_chunks(tuple(total[name].shape), dtypes[name]):
            part = total[name] if rows is None else total[name][rows[0] : rows[1]]
            if reader is not None:
                part = part + reader.tensor(name, rows)
            yield rows, (part / count).to(dtypes[name])

    return chunks


def _score_each(readers: list, scorer: _ScoringModel, score_fn: Callable, bar) -> dict:
    scores = {}
    for reader in readers:
        scorer.load(_input_chunks(reader))
        scores[_path(reader)] = scorer.score(score_fn)
        bar.update(1)
    return scores


def score_checkpoints(
    checkpoints: Sequence[str],
    score_fn: Callable[[torch.nn.Module], float],
    *,
    load_model: Optional[Callable[[str], torch.nn.Module]] = None,
    progress: bool = True,
) -> dict:
    """``{absolute folder: score_fn(model)}`` for each checkpoint, streamed into one model built from the newest."""
    readers, scorer = _open_for_scoring(checkpoints, load_model)
    bar = logging.tqdm(total=len(readers), desc="Scoring", unit="checkpoint", disable=not progress)
    scores = _score_each(readers, scorer, score_fn, bar)
    bar.close()
    return scores


def _open_for_scoring(checkpoints: Sequence[str], load_model: Optional[Callable]) -> tuple:
    """The inputs, oldest first, and the model built from the newest to stream each one into."""
    readers = open_checkpoints(list(checkpoints))
    readers.sort(key=lambda r: (r.step is not None, r.step or 0))
    newest = readers[-1]
    if newest.kind == "adapter":
        raise ValueError("Scoring and greedy soups take full checkpoints; average PEFT adapters with the uniform mean.")
    float_names = [n for n in newest.names if newest.dtype(n).is_floating_point]
    return readers, _ScoringModel((load_model or load_model_for_soup)(newest.folder), newest, float_names)


def _grow_soup(ranked: list, scores: dict, scorer: _ScoringModel, score_fn: Callable, dtypes: dict, bar) -> tuple:
    """The greedy loop: ``(fp32 sum of the members, members, every soup tried)``."""
    total = {name: ranked[0].tensor(name).to(torch.float32, copy=True) for name in dtypes}
    members, soup_score = [ranked[0]], scores[_path(ranked[0])]
    tried = [{"members": [_path(ranked[0])], "score": soup_score, "kept": True}]
    for reader in ranked[1:]:
        scorer.load(_candidate_chunks(total, reader, len(members) + 1, dtypes))
        score = scorer.score(score_fn)
        kept = score >= soup_score
        tried.append({"members": [_path(m) for m in members + [reader]], "score": score, "kept": kept})
        if kept:  # else the sum is left as it was: the candidate only ever lived in the scored model
            for name in dtypes:
                total[name].add_(reader.tensor(name))
            members.append(reader)
            soup_score = score
        bar.update(1)
    return total, members, tried


def greedy_soup(
    checkpoints: Sequence[str],
    output_dir: str,
    score_fn: Callable[[torch.nn.Module], float],
    *,
    load_model: Optional[Callable[[str], torch.nn.Module]] = None,
    overwrite_output_dir: bool = False,
    progress: bool = True,
) -> dict:
    """Build the greedy soup of ``checkpoints`` (full models) and write it to ``output_dir``.

    Args:
        score_fn: ``score_fn(model) -> float``, higher is better; called in eval mode under ``no_grad``.
        load_model: ``load_model(folder) -> model`` builds the model to score (default:
            :func:`load_model_for_soup` on the newest input).

    Returns what ``swa_config.json`` records; ``record["soup"]`` holds ``input_scores``,
    every soup ``tried`` (with its members and score), the final ``members`` and ``score``.
    """
    check_output_dir(output_dir, list(checkpoints), overwrite_output_dir)
    readers, scorer = _open_for_scoring(checkpoints, load_model)
    newest = readers[-1]
    float_names = scorer.names
    copied = {n: check_equal_across(readers, n) for n in newest.names if n not in float_names}

    bar = logging.tqdm(total=2 * len(readers) - 1, desc="Greedy soup", unit="score", disable=not progress)
    scores = _score_each(readers, scorer, score_fn, bar)
    ranked = sorted(readers, key=lambda r: -scores[_path(r)])
    dtypes = {name: newest.dtype(name) for name in float_names}
    total, members, tried = _grow_soup(ranked, scores, scorer, score_fn, dtypes, bar)
    bar.close()
    soup_score = [t["score"] for t in tried if t["kept"]][-1]
    logger.info("Greedy soup of %d of %d checkpoints scores %s", len(members), len(readers), soup_score)

    mean = _candidate_chunks(total, None, len(members), dtypes)
    weights = [1.0 / len(members) if r in members else 0.0 for r in readers]
    record = source_record(readers, "greedy_soup", weights)
    record["soup"] = {
        "input_scores": scores,
        "tried": tried,
        "members": [_path(m) for m in members],
        "score": soup_score,
    }
    write_averaged_checkpoint(
        output_dir,
        readers,
        lambda name: copied_or_mean(name, copied, mean),
        record,
        desc="Writing the soup",
        progress=progress,
    )
    return record


def _path(reader: CheckpointWeights) -> str:
    return os.path.abspath(reader.folder)


def copied_or_mean(name: str, copied: dict, mean: Callable):
    if name in copied:
        return [copied[name]]
    return (value for _, value in mean(name))
