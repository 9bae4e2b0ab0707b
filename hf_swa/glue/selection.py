"""Selection in ``run_glue``: the rows held out of training to choose among the SWA candidates on
(``--swa_select_split``), the check of the selection metric, and what the results record.

A share ``F`` of the training rows is held out: for classification each class gives
``round(F × its rows)`` of them (a stratified split), for regression ``round(F × rows)``
rows are drawn at random. Which rows depends only on the data, ``F`` and the seed, so a
baseline run (``--no_swa``) given the same split and seed trains on exactly the rows the
SWA run trains on. Rounding is half up.

Example:
    >>> labels = ["pos"] * 6 + ["neg"] * 4
    >>> held_out = selection_rows(labels, share=0.5, seed=0)
    >>> sorted(labels[i] for i in held_out)
    ['neg', 'neg', 'pos', 'pos', 'pos']
    >>> held_out == selection_rows(labels, share=0.5, seed=0)
    True
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from collections.abc import Hashable, Sequence
from typing import Optional

import numpy as np
from transformers import EvalPrediction

from hf_swa.glue.metric_keys import CHOSEN_NAME_KEY, select_key

logger = logging.getLogger(__name__)

__all__ = [
    "SELECT_SPLIT",
    "SELECT_ROWS_FILE",
    "check_share",
    "selection_rows",
    "split_rows",
    "hold_out_selection_rows",
    "write_selection_rows",
    "check_selection_data",
    "check_select_metric",
    "selection_results",
    "prepare_selection",
]

#: The name of the held-out split among the data set's splits.
SELECT_SPLIT = "swa_select"
#: Written beside a run's results: the share, the seed and the numbers of the rows held out.
SELECT_ROWS_FILE = "swa_select_rows.json"


def check_share(share: Optional[float]) -> None:
    """``--swa_select_split`` is unset, 0 (off) or a share of the training rows in (0, 1)."""
    if share is not None and share != 0 and not (0.0 < share < 1.0):
        raise ValueError(
            f"--swa_select_split {share}: must be a share of the training rows in (0, 1), e.g. 0.2 to hold out "
            "20% of them for choosing among the SWA candidates; 0 trains on every row."
        )


def _held_out_count(share: float, rows: int) -> int:
    return math.floor(share * rows + 0.5)


def selection_rows(labels: Sequence[Optional[Hashable]], share: float, seed: int) -> list[int]:
    """The indices (increasing) of the rows to hold out; ``labels`` are the classes, ``None`` for regression.

    Raises:
        ValueError: the share is outside (0, 1), a class would have no row held out, or no
            row left to train on.
    """
    check_share(share)
    rng = random.Random(seed)
    if labels and all(label is None for label in labels):  # regression: one group
        groups = {None: list(range(len(labels)))}
    else:
        groups = {}
        for index, label in enumerate(labels):
            groups.setdefault(label, []).append(index)
    held_out = []
    for label in sorted(groups, key=str):
        indices = groups[label]
        count = _held_out_count(share, len(indices))
        what = "rows" if label is None else f"rows of class {label!r}"
        if count == 0:
            raise ValueError(
                f"--swa_select_split {share} holds out no row of the {len(indices)} training {what}: the selection "
                f"data needs at least one. Raise --swa_select_split to at least {0.5 / len(indices):.3g}, train "
                "on more rows, or pass --swa_select_split 0 to train on every row (then --swa_select_metric none, "
                "or --do_eval to choose on the evaluation set)."
            )
        if count == len(indices):
            raise ValueError(
                f"--swa_select_split {share} holds out all {len(indices)} training {what}, leaving none to train "
                "on. Lower --swa_select_split, train on more rows, or pass --swa_select_split 0 to train on every row."
            )
        rng.shuffle(indices)
        held_out.extend(indices[:count])
    return sorted(held_out)


def split_rows(n_rows: int, held_out: Sequence[int]) -> list[int]:
    """The rows to train on: every row of ``range(n_rows)`` not held out, in order.

    >>> split_rows(5, [1, 3])
    [0, 2, 4]
    """
    excluded = set(held_out)
    return [i for i in range(n_rows) if i not in excluded]


def hold_out_selection_rows(data, id2label: Optional[dict], share: float, training_args) -> dict:
    """Move a stratified, seeded share of the tokenized training rows into the selection split; return the record.

    `id2label` names the classes (None: regression, rows drawn at random). The record names the held-out
    rows by their number in the training data (from 0, after max_train_samples).
    """
    train = data["train"]
    seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    labels = [None] * len(train) if id2label is None else [id2label[i] for i in train["labels"]]
    held_out = selection_rows(labels, share, seed)
    data[SELECT_SPLIT] = train.select(held_out)
    data["train"] = train.select(split_rows(len(train), held_out))
    if training_args.swa and not training_args.swa_select_metric:
        logger.warning(
            "--swa_select_split %s holds out %d training rows, but no --swa_select_metric uses them "
            "(--swa_select_split 0 trains on every row).",
            share,
            len(held_out),
        )
    return {"swa_select_split": share, "seed": seed, "train_rows": len(train), "held_out_rows": held_out}


def check_selection_data(share: Optional[float], training_args) -> None:
    """Refuse, before anything loads and in the flags' terms, a training run that selects with no data to
    choose on (no held-out rows, no evaluation set)."""
    metric = training_args.swa_select_metric
    if training_args.do_train and training_args.swa and metric and not share and not training_args.do_eval:
        raise ValueError(
            f"--swa_select_metric {metric} (run_glue's default is loss) chooses the shipped weights on held-out "
            "data, but --swa_select_split 0 holds out no training row and there is no --do_eval: keep "
            "--swa_select_split above 0 (default 0.2), add --do_eval with a validation set, or pass "
            "--swa_select_metric none to ship the SWA average."
        )


def check_select_metric(training_args, compute_metrics, num_labels: int, is_regression: bool) -> None:
    """Refuse, before training, a selection metric that the evaluation does not produce."""
    if not (training_args.swa and training_args.swa_select_metric):
        return
    wanted = training_args.to_swa_config().select_metric_name()
    count = max(2, num_labels)  # a perfect prediction of every class (or of two distinct scores)
    labels = np.arange(count, dtype=float) if is_regression else np.arange(count) % num_labels
    predictions = labels[:, None] if is_regression else np.eye(num_labels)[labels]
    produced = ["loss", *compute_metrics(EvalPrediction(predictions=predictions, label_ids=labels))]
    if wanted not in produced:
        raise ValueError(
            f"--swa_select_metric {training_args.swa_select_metric!r}: the evaluation of this task produces only "
            f"{', '.join(produced)}. Set --swa_select_metric to one of these."
        )


def prepare_selection(data, share: Optional[float], training_args, compute_metrics, model_config) -> Optional[dict]:
    """Check the selection metric; with a `share`, hold out the selection rows (see `hold_out_selection_rows`)."""
    is_regression = model_config.problem_type == "regression"
    check_select_metric(training_args, compute_metrics, model_config.num_labels, is_regression)
    if not share:
        return None
    return hold_out_selection_rows(data, None if is_regression else model_config.id2label, share, training_args)


def write_selection_rows(output_dir: str, record: dict) -> None:
    """Write the record of the held-out rows beside the run's results."""
    with open(os.path.join(output_dir, SELECT_ROWS_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f)


def selection_results(trainer) -> dict:
    """The chosen candidate's name and every candidate's selection score (``select_<name>_<metric>``), if any."""
    selection = trainer.swa_callback.selection if trainer.swa_callback is not None else None
    if not selection:
        return {}
    scores = {select_key(name, selection["metric"]): score for name, score in selection["scores"].items()}
    return {CHOSEN_NAME_KEY: selection["chosen"], **scores}
