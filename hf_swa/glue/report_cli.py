"""Baseline vs SWA over seeds and tasks: run both (or collect finished runs) and write the report.

    # run baseline and SWA on three tasks, three seeds each, then report
    hf-swa-report --model_name_or_path bert-base-cased --tasks rte mrpc stsb \\
        --seeds 1 2 3 --runs_root outputs/glue --num_train_epochs 3 --learning_rate 2e-5
    # only collect runs that exist already
    hf-swa-report --runs_root outputs/glue --collect_only

Runs land in ``<runs_root>/<task>/<baseline|swa>/seed<k>/`` (finished ones are not run
again); the report is ``glue_report.md`` / ``.png`` / ``.json`` in ``--report_dir``
(default: ``--runs_root``). Every hf-swa-glue flag works (data, model, TrainingArguments,
SWA) except --push_to_hub: no run is pushed here; push the one you choose with
hf-swa-push. The runs are made by :mod:`hf_swa.glue.compare`, the report by :mod:`hf_swa.glue.report`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from typing import Optional

from hf_swa.glue.report import write_report


@dataclass
class ReportArguments:
    runs_root: str = field(default="outputs/glue", metadata={"help": "Folder of <task>/<baseline|swa>/seed<k>/ runs."})
    report_dir: Optional[str] = field(
        default=None, metadata={"help": "Where to write the report (default: runs_root)."}
    )
    tasks: Optional[list[str]] = field(default=None, metadata={"help": "GLUE tasks to run (default: --task_name)."})
    seeds: list[int] = field(default_factory=lambda: [42], metadata={"help": "Seeds; each runs baseline and SWA."})
    main_metric: Optional[list[str]] = field(
        default=None, metadata={"help": "TASK=METRIC overrides of a task's main metric, e.g. mrpc=accuracy."}
    )


def parse_overrides(items) -> dict:
    bad = [item for item in items or [] if "=" not in item]
    if bad:
        raise ValueError(f"--main_metric expects TASK=METRIC (e.g. mrpc=accuracy), got {bad}")
    return dict(item.split("=", 1) for item in items or [])


def collect_only(argv) -> int:
    parser = argparse.ArgumentParser(description="Collect finished runs and write the report.")
    parser.add_argument("--collect_only", action="store_true")
    parser.add_argument("--runs_root", required=True, help="folder holding <task>/<baseline|swa>/seed<k>/ runs")
    parser.add_argument("--report_dir", "--output_dir", default=None, help="where to write (default: --runs_root)")
    parser.add_argument("--main_metric", action="append", default=[], metavar="TASK=METRIC")
    args = parser.parse_args(argv)
    return report(args.runs_root, args.report_dir, args.main_metric)


def report(runs_root: str, report_dir: Optional[str], main_metric) -> int:
    try:
        path = write_report(runs_root, report_dir or runs_root, main_metrics=parse_overrides(main_metric))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path.read_text(encoding="utf-8"))
    print(f"wrote {path}")
    return 0


def run_and_report(argv) -> int:
    from transformers import HfArgumentParser

    from hf_swa.glue.compare import run_comparison
    from hf_swa.glue.run import DataTrainingArguments, GlueTrainingArguments, ModelArguments
    from hf_swa.glue.tasks import get_task

    argv = list(argv)
    if "--tasks" in argv and "--task_name" not in argv:  # --tasks stands in for --task_name
        argv += ["--task_name", argv[argv.index("--tasks") + 1]]
    if "--output_dir" not in argv:
        argv += ["--output_dir", "outputs/glue"]
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, GlueTrainingArguments, ReportArguments))
    model_args, data_args, training_args, report_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    parse_overrides(report_args.main_metric)  # fail before training, not after
    tasks = report_args.tasks or [data_args.task_name]
    tasks = [get_task(task).name if task else task for task in tasks]  # an unknown task fails here, not later
    for task in tasks:
        data_args.task_name = task
        run_comparison(
            model_args, data_args, training_args, report_args.seeds, report_args.runs_root, task_label=task or None
        )
    return report(report_args.runs_root, report_args.report_dir, report_args.main_metric)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return collect_only(argv) if "--collect_only" in argv else run_and_report(argv)
