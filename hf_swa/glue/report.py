"""The baseline-vs-SWA report: a Markdown table with a verdict per task, a plot and a JSON copy.

The report only reads result files (see :mod:`hf_swa.glue.summary` for the layout), so it
does not care how the runs were launched.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Mapping, Optional, Union

from hf_swa.glue.metric_keys import candidate_order, is_lower_better
from hf_swa.glue.report_plot import plot_curves
from hf_swa.glue.summary import ReportSummary, Stat, collect_runs, summarize
from hf_swa.glue.tasks import find_task

__all__ = ["REPORT_NAME", "render_markdown", "render_candidates", "write_report"]

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


_INTRO = (
    "Scores ×{scale:g}, mean ± sample std over seeds. **SWA** is the averaged weights (`eval_swa_*`); "
    "*SWA live* is the same SWA runs evaluated with their last-step weights (`eval_*`). "
    "Δ = mean(SWA) − mean(baseline); a negative Δ means SWA did worse."
)
_INTRO_SELECTED = (
    "Scores ×{scale:g}, mean ± sample std over seeds. **SWA** is the averaged weights (`eval_swa_*`); "
    "**SWA (chosen)** is what each SWA run shipped: the candidate average, or the live weights, that scored "
    "best on its selection data (`eval_chosen_*`; the average where a run did not select); "
    "*SWA live* is the same SWA runs evaluated with their last-step weights (`eval_*`). "
    "Δ = mean(SWA (chosen)) − mean(baseline); a negative Δ means SWA did worse."
)


def _columns(selected: bool) -> list:
    if selected:
        return [
            "| Task | Metric | Baseline | SWA | SWA (chosen) | Δ chosen − baseline | SWA live "
            "| Seeds (baseline / SWA) |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
    return [
        "| Task | Metric | Baseline | SWA | Δ SWA − baseline | SWA live | Seeds (baseline / SWA) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]


def _shipped_cell(value: str, selected: bool) -> str:
    return f" {value} |" if selected else ""


def render_markdown(summary: ReportSummary, scale: float = 100.0, plot_name: Optional[str] = None) -> str:
    """The report as Markdown: one row per task and metric, a GLUE-average row, a verdict per task, and with
    selection the candidates."""
    avg = summary.glue_average()
    selected = summary.selected
    # One task needs no average; tasks outside GLUE make an average, not a GLUE score.
    show_average = len(avg["tasks"]) > 1
    average_name = "GLUE average" if all(find_task(t) for t in avg["tasks"]) else "Average"
    lines = [
        "# SWA vs baseline",
        "",
        (_INTRO_SELECTED if selected else _INTRO).format(scale=scale),
        *(
            [
                f"The {average_name} is the mean over tasks of each task's main metric (MNLI: matched and mismatched "
                "averaged).",
                "",
            ]
            if show_average
            else [""]
        ),
        *_columns(selected),
    ]
    for task in summary.tasks:
        for m in task.metrics:
            label = f"**{m.metric}** (main)" if m.metric == task.main_metric else m.metric
            lines.append(
                f"| {task.task} | {label} | {_mean_std(m.baseline, scale)} | {_mean_std(m.swa, scale)} |"
                f"{_shipped_cell(_mean_std(m.chosen, scale), selected)} "
                f"{_signed(m.delta, scale)} | {_mean_std(m.swa_live, scale)} | {m.baseline.n} / {m.swa.n} |"
            )
    if show_average:
        lines.append(
            f"| **{average_name}** | main metrics of {len(avg['tasks'])} task(s) | {_plain(avg['baseline'], scale)} | "
            f"{_plain(avg['swa'], scale)} |{_shipped_cell(_plain(avg['chosen'], scale), selected)} "
            f"{_signed(avg['delta'], scale)} | {_plain(avg['swa_live'], scale)} | |"
        )
    lines += ["", "## Verdict", ""]
    lines += [f"- **{task.task}**: {task.verdict(scale)}" for task in summary.tasks]
    if show_average:
        delta = round(avg["delta"] * scale, 2) + 0.0
        word = "helped" if delta > 0 else "did not help" if delta < 0 else "made no difference"
        shipped = "SWA (chosen)" if selected else "SWA"
        lines.append(f"- **{average_name}** ({', '.join(avg['tasks'])}): {shipped} {word} ({delta:+.2f} points).")
    lines += render_candidates(summary, scale)
    if plot_name:
        lines += ["", "## Evaluation during training", "", f"![eval metric over steps]({plot_name})"]
    if summary.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in summary.notes]
    return "\n".join(lines) + "\n"


def _score(value: Optional[float], metric: str, scale: float) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if is_lower_better(metric) else f"{value * scale:.2f}"


def render_candidates(summary: ReportSummary, scale: float = 100.0) -> list:
    """Markdown lines for the candidates: a table of mean scores per candidate, and the one each seed chose."""
    tasks = [t for t in summary.tasks if t.candidates is not None]
    if not tasks:
        return []
    names = sorted({name for t in tasks for name in t.candidates.names}, key=candidate_order)
    lines = [
        "",
        "## Candidates",
        "",
        f"Means over each task's SWA runs. *eval*: on the evaluation set (×{scale:g}); *selection*: on the "
        "held-out data the choice was made on (losses not scaled); *chosen*: how many seeds shipped it. "
        "`live` is the last-step weights.",
        "",
        "| Task | Scores | " + " | ".join(f"`{name}`" for name in names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    for task in tasks:
        c = task.candidates
        rows = []
        if c.eval_means:
            rows.append((f"eval {c.metric}", [_score(c.eval_means.get(n), c.metric, scale) for n in names]))
        if c.select_means:
            better = "lower" if is_lower_better(c.select_metric) else "higher"
            rows.append(
                (
                    f"selection {c.select_metric} ({better} is better)",
                    [_score(c.select_means.get(n), c.select_metric, scale) for n in names],
                )
            )
        if c.chosen_by_seed:
            rows.append((f"chosen (of {len(c.chosen_by_seed)} seeds)", [str(c.times_chosen(n)) for n in names]))
        lines += [f"| {task.task} | {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    chosen = [t for t in tasks if t.candidates.chosen_by_seed]
    if chosen:
        lines += ["", "Chosen per seed:", ""]
        lines += [
            f"- **{t.task}**: "
            + ", ".join(f"seed {seed} → `{name}`" for seed, name in t.candidates.chosen_by_seed.items())
            for t in chosen
        ]
    return lines


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

    def comparison(m) -> dict:
        sides = {"baseline": stat(m.baseline), "swa": stat(m.swa), "swa_live": stat(m.swa_live)}
        if m.selected:
            sides["swa_chosen"] = stat(m.chosen)
        return {**sides, "delta": num(m.delta)}

    def task(t) -> dict:
        out = {
            "main_metric": t.main_metric,
            "verdict": t.verdict(),
            "metrics": {m.metric: comparison(m) for m in t.metrics},
        }
        if t.candidates is not None:
            out["candidates"] = dataclasses.asdict(t.candidates)
        return out

    avg = summary.glue_average()
    if not summary.selected:  # the shipped weights are the average: nothing to add
        avg = {k: v for k, v in avg.items() if k not in ("chosen", "shipped")}
    return {
        "tasks": {t.task: task(t) for t in summary.tasks},
        "glue_average": {k: (num(v) if isinstance(v, float) else v) for k, v in avg.items()},
        "notes": summary.notes,
    }
