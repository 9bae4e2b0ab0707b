"""The report's plot: each task's main metric over training steps, baseline vs SWA live vs averaged."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Sequence, Union

from hf_swa.glue.summary import ReportSummary, RunResult


def _curve(runs: Sequence[RunResult], key: str) -> tuple:
    """Steps and per-step mean/min/max of ``key`` over the runs' eval logs."""
    by_step: dict = {}
    for run in runs:
        for entry in run.log_history:
            if key in entry and "step" in entry:
                by_step.setdefault(entry["step"], []).append(float(entry[key]))
    steps = sorted(by_step)
    return (
        steps,
        [statistics.fmean(by_step[s]) for s in steps],
        [min(by_step[s]) for s in steps],
        [max(by_step[s]) for s in steps],
    )


def plot_curves(
    runs: Sequence[RunResult], summary: ReportSummary, path: Union[str, Path], scale: float = 100.0
) -> Path:
    """PNG of each task's main metric over training steps: baseline, SWA live and SWA averaged."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(1, len(summary.tasks))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(5 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    series = (
        ("baseline", "eval_{}", "baseline", "tab:gray", "--"),
        ("swa", "eval_{}", "SWA run, live weights", "tab:blue", "-"),
        ("swa", "eval_swa_{}", "SWA run, averaged weights", "tab:orange", "-"),
    )
    for ax, task in zip(axes, summary.tasks, strict=False):  # the grid may have more axes than tasks
        drawn = False
        for variant, key, label, color, style in series:
            task_runs = [r for r in runs if r.task == task.task and r.variant == variant]
            steps, mean, low, high = _curve(task_runs, key.format(task.main_metric))
            if not steps:
                continue
            ax.plot(steps, [v * scale for v in mean], style, color=color, marker=".", label=label)
            if len(task_runs) > 1:
                ax.fill_between(steps, [v * scale for v in low], [v * scale for v in high], color=color, alpha=0.15)
            drawn = True
        ax.set_title(f"{task.task}: {task.main_metric}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"{task.main_metric} ×{scale:g}")
        if drawn:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no eval logs in trainer_state.json", ha="center", va="center", transform=ax.transAxes)
    for ax in axes[len(summary.tasks) :]:
        ax.set_visible(False)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
