"""``hf-swa-report``: run baseline and SWA over seeds and tasks (or collect finished runs), then write the report.

    hf-swa-report --model_name_or_path bert-base-cased --tasks rte mrpc stsb \\
        --seeds 1 2 3 --runs_root outputs/glue --num_train_epochs 3 --learning_rate 2e-5
    hf-swa-report --runs_root outputs/glue --collect_only

Runs land in ``<runs_root>/<task>/<baseline|swa>/seed<k>/`` (finished ones are not run again), made by
:mod:`hf_swa.glue.compare` with every hf-swa-glue flag but --push_to_hub (push the run you choose with hf-swa-push);
the report (:mod:`hf_swa.glue.report`) is ``glue_report.md`` / ``.png`` / ``.json`` in ``--report_dir``.
"""

from __future__ import annotations

import argparse
import logging
import sys


def parser() -> argparse.ArgumentParser:
    description = "Run baseline and SWA over seeds, then write the report. Training flags: see hf-swa-glue --help."
    p = argparse.ArgumentParser(prog="hf-swa-report", description=description)
    p.add_argument("--runs_root", default="outputs/glue", help="folder of <task>/<baseline|swa>/seed<k>/ runs")
    p.add_argument("--report_dir", "--output_dir", default=None, help="where to write the report (default: runs_root)")
    p.add_argument("--tasks", nargs="+", default=None, help="GLUE tasks to run (default: --task_name)")
    p.add_argument("--seeds", nargs="+", type=int, default=[42], help="seeds; each runs baseline and SWA")
    p.add_argument("--main_metric", nargs="+", action="extend", default=[], metavar="TASK=METRIC",
                   help="override a task's main metric, e.g. mrpc=accuracy")  # fmt: skip
    p.add_argument("--collect_only", action="store_true", help="only collect finished runs and report")
    return p


def parse_overrides(items) -> dict:
    if bad := [item for item in items if "=" not in item]:
        raise ValueError(f"--main_metric expects TASK=METRIC (e.g. mrpc=accuracy), got {bad}")
    return dict(item.split("=", 1) for item in items)


def run_all(args, rest: list) -> None:
    """Baseline and SWA runs of every task and seed, with the hf-swa-glue flags in `rest`."""
    from hf_swa.glue.cli import parse_args
    from hf_swa.glue.compare import run_comparison
    from hf_swa.glue.tasks import get_task

    if args.tasks and "--task_name" not in rest:  # --tasks stands in for --task_name
        rest += ["--task_name", args.tasks[0]]
    rest += [] if "--output_dir" in rest else ["--output_dir", args.runs_root]
    model_args, data_args, training_args = parse_args(rest)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    tasks = [get_task(t).name for t in args.tasks] if args.tasks else [data_args.task_name]  # unknown: fail now
    for task in tasks:
        data_args.task_name = task
        run_comparison(model_args, data_args, training_args, args.seeds, args.runs_root, task_label=task or None)


def main(argv=None) -> int:
    args, rest = parser().parse_known_args(sys.argv[1:] if argv is None else list(argv))
    overrides = parse_overrides(args.main_metric)  # fails before training, not after
    if not args.collect_only:
        run_all(args, rest)
    elif rest:
        parser().error(f"--collect_only takes no training flags: {' '.join(rest)}")
    from hf_swa.glue.report import write_report  # reading and reporting imports neither torch nor transformers

    try:
        path = write_report(args.runs_root, args.report_dir or args.runs_root, main_metrics=overrides)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path.read_text(encoding="utf-8"))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
