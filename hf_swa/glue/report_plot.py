"""The report's plot: each task's main metric over training steps, baseline vs SWA live vs averaged."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

SERIES = (  # variant, the logged key of the weights, label, colour, line style
    ("baseline", "eval_{}", "baseline", "tab:gray", "--"),
    ("swa", "eval_{}", "SWA run, live weights", "tab:blue", "-"),
    ("swa", "eval_swa_{}", "SWA run, averaged weights", "tab:orange", "-"),
)


def plot_curves(runs, tasks, path, scale: float = 100.0) -> Path:
    """PNG of each task's main metric over training steps, the mean over seeds in a min-max band: baseline, SWA
    live and SWA averaged."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(3, max(1, len(tasks)))
    rows = math.ceil(max(1, len(tasks)) / cols)
    fig = Figure(figsize=(5 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, task in zip(axes, tasks, strict=False):  # the grid may have more axes than tasks
        for variant, key, label, color, style in SERIES:
            key, by_step = key.format(task.main_metric), {}
            task_runs = [r for r in runs if r.task == task.task and r.variant == variant]
            for entry in (entry for run in task_runs for entry in run.history if key in entry and "step" in entry):
                by_step.setdefault(entry["step"], []).append(float(entry[key]) * scale)
            steps = sorted(by_step)
            if steps:
                ax.plot(
                    steps, [statistics.fmean(by_step[s]) for s in steps], style, color=color, marker=".", label=label
                )
            if steps and len(task_runs) > 1:
                low, high = [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps]
                ax.fill_between(steps, low, high, color=color, alpha=0.15)
        ax.set(
            title=f"{task.task}: {task.main_metric}", xlabel="optimizer step", ylabel=f"{task.main_metric} ×{scale:g}"
        )
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no eval logs in trainer_state.json", ha="center", va="center", transform=ax.transAxes)
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    fig.savefig(path, dpi=110)
    return Path(path)
