"""The baseline-vs-SWA report: a Markdown table with a verdict per task, a plot and a JSON copy.

The report only reads result files (see :mod:`hf_swa.glue.summary` for the layout), so it
does not care how the runs were launched.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Optional, Union

from hf_swa.glue.report_plot import plot_curves
from hf_swa.glue.summary import ReportSummary, Stat, collect_runs, summarize
from hf_swa.glue.tasks import find_task

__all__ = ["REPORT_NAME", "render_markdown", "write_report"]

REPORT_NAME = "glue_report"


# -- rendering ---------------------------------------------------------------------------------


def _mean_std(stat: Stat, scale: float) -> str:
    if not stat.n:
        return "–"
    if stat.n == 1:
        return f"{stat.mean * scale:.2f}"
    return f"{stat.mean * scale:.2f} ± {stat.std * scale:.2f}"


def _signed(value: float, scale: float) -> str:
    return "–" if math.isnan(value) else f"{round(value * scale, 2) + 0.0:+.2f}"  # + 0.0: no "-0.00"


def _plain(value: float, scale: float) -> str:
    return "–" if math.isnan(value) else f"{value * scale:.2f}"


def render_markdown(summary: ReportSummary, scale: float = 100.0, plot_name: Optional[str] = None) -> str:
    """The report as Markdown: one row per task and metric, a GLUE-average row, a verdict per task."""
    avg = summary.glue_average()
    # One task needs no average; tasks outside GLUE make an average, not a GLUE score.
    show_average = len(avg["tasks"]) > 1
    average_name = "GLUE average" if all(find_task(t) for t in avg["tasks"]) else "Average"
    lines = [
        "# SWA vs baseline",
        "",
        f"Scores ×{scale:g}, mean ± sample std over seeds. **SWA** is the averaged weights (`eval_swa_*`); "
        "*SWA live* is the same SWA runs evaluated with their last-step weights (`eval_*`). "
        "Δ = mean(SWA) − mean(baseline); a negative Δ means SWA did worse.",
        *(
            [
                f"The {average_name} is the mean over tasks of each task's main metric (MNLI: matched and mismatched "
                "averaged).",
                "",
            ]
            if show_average
            else [""]
        ),
        "| Task | Metric | Baseline | SWA | Δ SWA − baseline | SWA live | Seeds (baseline / SWA) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for task in summary.tasks:
        for m in task.metrics:
            label = f"**{m.metric}** (main)" if m.metric == task.main_metric else m.metric
            lines.append(
                f"| {task.task} | {label} | {_mean_std(m.baseline, scale)} | {_mean_std(m.swa, scale)} | "
                f"{_signed(m.delta, scale)} | {_mean_std(m.swa_live, scale)} | {m.baseline.n} / {m.swa.n} |"
            )
    if show_average:
        lines.append(
            f"| **{average_name}** | main metrics of {len(avg['tasks'])} task(s) | {_plain(avg['baseline'], scale)} | "
            f"{_plain(avg['swa'], scale)} | {_signed(avg['delta'], scale)} | {_plain(avg['swa_live'], scale)} | |"
        )
    lines += ["", "## Verdict", ""]
    lines += [f"- **{task.task}**: {task.verdict(scale)}" for task in summary.tasks]
    if show_average:
        delta = round(avg["delta"] * scale, 2) + 0.0
        word = "helped" if delta > 0 else "did not help" if delta < 0 else "made no difference"
        lines.append(f"- **{average_name}** ({', '.join(avg['tasks'])}): SWA {word} ({delta:+.2f} points).")
    if plot_name:
        lines += ["", "## Evaluation during training", "", f"![eval metric over steps]({plot_name})"]
    if summary.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in summary.notes]
    return "\n".join(lines) + "\n"


def write_report(
    runs_root: Union[str, Path],
    output_dir: Union[str, Path],
    *,
    main_metrics: Optional[Mapping[str, str]] = None,
    scale: float = 100.0,
) -> Path:
    """Collect the runs under ``runs_root`` and write ``glue_report.md``, ``.png`` and ``.json``.

    Returns the path of the Markdown file; the PNG is linked from it and the JSON holds the
    same numbers (unscaled) for other tools.

    Example:
        >>> import json, pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for variant, metrics in [("baseline", {"eval_accuracy": 0.70}),
        ...                          ("swa", {"eval_accuracy": 0.69, "eval_swa_accuracy": 0.68})]:
        ...     (root / "rte" / variant / "seed1").mkdir(parents=True)
        ...     _ = (root / "rte" / variant / "seed1" / "all_results.json").write_text(json.dumps(metrics))
        >>> path = write_report(root, root / "report")
        >>> sorted(p.name for p in path.parent.iterdir())
        ['glue_report.json', 'glue_report.md', 'glue_report.png']
        >>> print([line for line in path.read_text().splitlines() if line.startswith("| rte")][0])
        | rte | **accuracy** (main) | 70.00 | 68.00 | -2.00 | 69.00 | 1 / 1 |
    """
    runs = collect_runs(runs_root)
    summary = summarize(runs, main_metrics)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_curves(runs, summary, out / f"{REPORT_NAME}.png", scale)
    md = out / f"{REPORT_NAME}.md"
    md.write_text(render_markdown(summary, scale, plot_name=png.name), encoding="utf-8")
    (out / f"{REPORT_NAME}.json").write_text(json.dumps(_to_json(summary), indent=2, allow_nan=False), encoding="utf-8")
    return md


def _to_json(summary: ReportSummary) -> dict:
    def num(x: float):
        return None if math.isnan(x) else x

    def stat(s: Stat) -> dict:
        return {"values": [num(v) for v in s.values], "mean": num(s.mean), "std": num(s.std), "n": s.n}

    avg = summary.glue_average()
    return {
        "tasks": {
            t.task: {
                "main_metric": t.main_metric,
                "verdict": t.verdict(),
                "metrics": {
                    m.metric: {
                        "baseline": stat(m.baseline),
                        "swa": stat(m.swa),
                        "swa_live": stat(m.swa_live),
                        "delta": num(m.delta),
                    }
                    for m in t.metrics
                },
            }
            for t in summary.tasks
        },
        "glue_average": {k: (num(v) if isinstance(v, float) else v) for k, v in avg.items()},
        "notes": summary.notes,
    }
