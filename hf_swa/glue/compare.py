"""Baseline vs SWA over seeds: both runs of every seed on one task, in ``<runs_root>/<task>/<baseline|swa>/seed<k>/``.

The baseline is what a user runs without hf_swa (the same model, seed and base schedule, on every labelled row);
the SWA run differs in the averaging, its LR tail and the rows it holds out to choose on (docs/glue.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from hf_swa.glue.report import VARIANTS
from hf_swa.glue.run import run_glue
from hf_swa.hub.results import LIVE, RESULTS_FILE

logger = logging.getLogger(__name__)


def run_dir(runs_root: str, task: str, mode: str, seed: int) -> str:
    """Where one run writes its model and results.

    >>> run_dir("outputs/runs", "rte", "swa", 42)
    'outputs/runs/rte/swa/seed42'
    """
    return os.path.join(runs_root, task, mode, f"seed{seed}")


def is_finished(output_dir: str, mode: str) -> bool:
    """A run is finished when its results hold the evaluation (of the average too, in an SWA run); a baseline
    that held training rows out (as before version 0.2) is run again, on every row."""
    try:
        results = json.loads(Path(output_dir, RESULTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    scores, held_out = results.get("eval", {}), results.get("train", {}).get("select_samples")
    return LIVE in scores and ("swa" in scores if mode == "swa" else not held_out)


def run_comparison(model_args, data_args, training_args, seeds, runs_root: str, task_label=None) -> dict:
    """The baseline and SWA runs of every seed on one task, into the folder `task_label` (default: the GLUE task
    name, or ``custom``); a finished run is not run again. ``{(mode, seed): results}``."""
    task, results = task_label or data_args.task_name or "custom", {}
    for seed in seeds:
        for mode in VARIANTS:
            output_dir = run_dir(runs_root, task, mode, seed)
            if is_finished(output_dir, mode):
                logger.info("%s: finished already, skipped", output_dir)
                continue
            args = dataclasses.replace(  # push a chosen run afterwards: here every checkpoint would go up
                training_args, output_dir=output_dir, seed=seed, swa=mode == "swa", do_train=True, do_eval=True,
                push_to_hub=False,
            )  # fmt: skip
            logger.info("Running %s on %s, seed %d -> %s", mode, task, seed, output_dir)
            results[(mode, seed)] = run_glue(model_args, data_args, args)
    return results
