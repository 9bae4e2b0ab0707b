"""The baseline-vs-SWA report over seeds: a Markdown table with a verdict per task, a plot and a JSON copy.

It reads each run's ``results.json`` (:mod:`hf_swa.hub.results`) and ``trainer_state.json`` (for the plot) under
``<runs_root>/<task>/<baseline|swa>/seed<k>/``; the report itself says what each column compares (``_INTRO``).

Example:
    >>> import json, pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for variant, seed, scores in [("baseline", 1, {"live": .90}), ("baseline", 2, {"live": .92}),
    ...                               ("swa", 1, {"live": .91, "swa": .93}), ("swa", 2, {"live": .91, "swa": .93})]:
    ...     (run := root / "sst2" / variant / f"seed{seed}").mkdir(parents=True)
    ...     nested = {w: {"validation": {"accuracy": v}} for w, v in scores.items()}
    ...     _ = (run / "results.json").write_text(json.dumps({"metrics": ["accuracy"], "eval": nested}))
    >>> [line for line in write_report(root, root).read_text().splitlines() if line.startswith("- **sst2**")][0]
    '- **sst2**: SWA helped by +2.00 points (accuracy, 2 seeds baseline / 2 SWA), more than the seed-to-seed \
spread (std 1.41).'
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Union

from hf_swa.glue.tasks import find_task
from hf_swa.hub.results import CHOSEN, LIVE, RESULTS_FILE, lower_is_better

__all__ = ["REPORT_NAME", "Run", "Stat", "collect_runs", "summarize", "render_markdown", "write_report"]

REPORT_NAME = "glue_report"
VARIANTS = ("baseline", "swa")
SIDES = ("baseline", "swa", "shipped", "live")  # baseline: its live weights; live: the SWA runs' live weights


@dataclass(frozen=True)
class Run:
    """One run's nested results (``{}`` if it did not finish) and its evaluation log."""

    task: str
    variant: str
    seed: int
    results: Mapping
    history: tuple = ()

    def score(self, side: str, metric: str, eval_set: Optional[str] = None) -> Optional[float]:
        """The score of `side` on `eval_set` (None: the mean over the evaluation sets, as the GLUE average)."""
        by_weights = self.results.get("eval", {})
        weights = {"baseline": LIVE, "live": LIVE, "swa": "swa"}.get(side, CHOSEN if CHOSEN in by_weights else "swa")
        sets = by_weights.get(weights, {}).items()
        values = [scores[metric] for name, scores in sets if eval_set in (None, name) and metric in scores]
        return statistics.fmean(values) if values else None


@dataclass(frozen=True)
class Stat:
    """Values over seeds; ``std`` is the sample standard deviation (n − 1), NaN for fewer than two."""

    values: tuple
    n = property(lambda self: len(self.values))
    mean = property(lambda self: statistics.fmean(self.values) if self.values else math.nan)
    std = property(lambda self: statistics.stdev(self.values) if self.n >= 2 else math.nan)


def _delta(sides: dict) -> float:
    return sides["shipped"].mean - sides["baseline"].mean


def _points(value: float, scale: float) -> float:
    return round(value * scale, 2) + 0.0  # + 0.0: no "-0.00"


@dataclass
class TaskSummary:
    """A task's rows ``{(eval_set, metric): {side: Stat}}``, main metric first, and its main metric folded."""

    task: str
    main_metric: str
    rows: dict
    main: dict  # {side: Stat} of the main metric, the mean over the evaluation sets
    candidates: dict = field(default_factory=dict)
    lower: bool = False  # the main metric is lower-is-better (perplexity): shown unscaled, a drop is a gain

    def scale(self, scale: float) -> float:
        """The factor this task's scores are shown with: `scale` (accuracy ×100), 1 for a lower-is-better metric."""
        return 1.0 if self.lower else scale

    def verdict(self, scale: float = 100.0) -> str:
        """One plain sentence: did what SWA shipped beat the baseline on the main metric, beyond seed noise?
        A seed that shipped ``live`` shipped the SWA run's schedule, not an average: the sentence says so."""
        scale, base, shipped = self.scale(scale), self.main["baseline"], self.main["shipped"]
        if not (base.n and shipped.n):
            return f"No comparison: {base.n} baseline and {shipped.n} SWA runs report {self.main_metric}."
        folded = " (mean over the evaluation sets)" if len({eval_set for eval_set, _ in self.rows}) > 1 else ""
        lower, unit = (", lower is better", "") if self.lower else ("", " points")
        runs = (
            f"{self.main_metric}{folded}{lower}, {base.n} seed{'s' if base.n != 1 else ''} baseline / {shipped.n} SWA"
        )
        delta, chosen = _points(_delta(self.main), scale), list(self.candidates.get("chosen_by_seed", {}).values())
        name = "SWA (chosen)" if self.candidates.get("chose") else "SWA"
        delta = -delta if self.lower else delta  # a gain: lower perplexity
        if delta > 0:
            text = f"{name} helped by {delta:+.2f}{unit} ({runs})"
        elif delta < 0:
            text = f"{name} did not help ({delta:+.2f}{unit}, {runs})"
        else:
            return f"{name} made no difference ({delta:+.2f}{unit}, {runs})."
        spread = max(base.std, shipped.std) * scale
        if math.isnan(spread):  # one seed cannot tell a gain from noise: no word of helping
            text = (
                f"{name} scored {delta:+.2f}{unit} against the baseline ({runs}): one seed on a side, so not "
                "conclusive (no estimate of seed-to-seed noise; run more seeds)."
            )
        elif abs(delta) <= spread:
            text += f", within the seed-to-seed spread (std {spread:.2f}): not conclusive."
        else:
            text += f", more than the seed-to-seed spread (std {spread:.2f})."
        averages = sum(n != LIVE for n in chosen)
        if chosen and not averages and not self.candidates.get("chose"):
            text += (
                " It shipped the live weights (swa_ship='live', the default), so the difference comes from the SWA "
                "run's LR schedule, not from averaging; the averages were evaluated beside them."
            )
        elif chosen and averages < len(chosen):
            text += (
                f" It shipped an average on {averages} of {len(chosen)} seeds; on the others no average beat the live "
                "weights on the selection data, so there the difference comes from the SWA run's LR schedule, not "
                "from averaging."
            )
        return text


def collect_runs(runs_root: Union[str, Path]) -> list:
    """Every ``<task>/<baseline|swa>/seed<k>/`` run under `runs_root` (a run without results: ``results={}``)."""
    root, runs = Path(runs_root), []
    for folder in sorted(root.glob("*/*/seed*")):
        seed, task, variant = folder.name[len("seed") :], folder.parent.parent.name, folder.parent.name
        if not (seed.isdecimal() and folder.is_dir() and variant in VARIANTS):
            continue
        results, state = folder / RESULTS_FILE, folder / "trainer_state.json"
        loaded = json.loads(results.read_text(encoding="utf-8")) if results.is_file() else {}
        history = json.loads(state.read_text(encoding="utf-8")).get("log_history", ()) if state.is_file() else ()
        runs.append(Run(task, variant, int(seed), loaded, tuple(history)))
    if not runs:
        raise FileNotFoundError(f"no runs under {root}: expected <task>/<baseline|swa>/seed<k>/{RESULTS_FILE}")
    return sorted(runs, key=lambda r: (r.task, r.variant, r.seed))


def _order(name: str) -> tuple:
    """``swa``, later window starts, EMAs by decay, power EMAs by width, then ``live``."""
    for rank, prefix in ((1, "swa_from"), (2, "ema_"), (3, "pema_")):
        if name.startswith(prefix):
            return (rank, float(name[len(prefix) :]))
    return (0 if name == "swa" else 4, 0.0)


def _candidates(swa: list, metric: str) -> dict:
    """Which weights each seed shipped, each candidate's mean score (eval, main metric) and selection score."""
    chosen = {r.seed: r.results["chosen"] for r in swa if r.results.get("chosen")}
    scores, select_metric = {"eval": {}, "select": {}}, None
    for run in swa:
        for name, sets in run.results.get("eval", {}).items():
            first = next(iter(sets.values()), {})
            if name != CHOSEN and metric in first:
                scores["eval"].setdefault(name, []).append(first[metric])
        selection = run.results.get("selection") or {}
        select_metric = selection.get("metric", select_metric)
        for name, score in selection.get("scores", {}).items():
            scores["select"].setdefault(name, []).append(score)
    if not chosen and set(scores["eval"]) <= {"swa", LIVE}:
        return {}
    means = {kind: {n: statistics.fmean(v) for n, v in by_name.items()} for kind, by_name in scores.items()}
    names = sorted({*means["eval"], *means["select"]}, key=_order)
    chose = any(run.results.get("selection") for run in swa)  # else each shipped what swa_ship names
    return dict(names=names, chosen_by_seed=chosen, chose=chose, **means, select_metric=select_metric)


def _summarize_task(task: str, runs: list, main_metric: Optional[str], notes: list) -> Optional[TaskSummary]:
    first = runs[0].results
    quality = [m for m in first.get("metrics", []) if m not in lower_is_better(first)]
    lower = not quality and bool(first.get("metrics"))  # a lower-is-better main metric (perplexity)
    quality = quality or list(first.get("metrics", []))[:1]
    sets = list(dict.fromkeys(s for r in runs for s in r.results.get("eval", {}).get(LIVE, {})))
    if not quality or not sets:
        notes.append(f"{task}: no evaluation scores in any run; left out.")
        return None
    main = main_metric or quality[0]
    if main not in quality:
        notes.append(f"{task}: main metric {main!r} not reported (found {', '.join(quality)}); using {quality[0]!r}.")
        main = quality[0]
    by = {side: [r for r in runs if r.variant == ("baseline" if side == "baseline" else "swa")] for side in SIDES}
    if {r.seed for r in by["baseline"]} != {r.seed for r in by["swa"]}:
        notes.append(f"{task}: seeds differ between baseline and SWA; means use the runs each side has.")

    def stats(metric, eval_set=None):
        scores = {side: [r.score(side, metric, eval_set) for r in by[side]] for side in SIDES}
        return {side: Stat(tuple(v for v in values if v is not None)) for side, values in scores.items()}

    rows = {(s, m): stats(m, s) for s in sets for m in [main] + [q for q in quality if q != main]}
    return TaskSummary(task, main, rows, stats(main), _candidates(by["swa"], main), lower)


def summarize(runs: list, main_metrics: Optional[Mapping[str, str]] = None) -> tuple:
    """``(task summaries, notes)``: the runs grouped by task, baseline and SWA compared on every metric."""
    notes, by_task = [], {}
    for run in runs:
        name = f"{run.task}/{run.variant}/seed{run.seed}"
        if not run.results:
            notes.append(f"{name}: no {RESULTS_FILE} (did the run finish?); left out.")
            continue
        by_task.setdefault(run.task, []).append(run)
        if (run.results.get("selection") or {}).get("optimistic"):
            notes.append(f"{name}: chose on the evaluation set: optimistic scores.")
    tasks = [_summarize_task(t, rs, (main_metrics or {}).get(t), notes) for t, rs in sorted(by_task.items())]
    return [t for t in tasks if t is not None], notes


def _average(tasks: list) -> dict:
    """The mean over tasks of each side's main-metric mean, for the higher-is-better tasks both sides report."""
    included = [t for t in tasks if t.main["baseline"].n and t.main["shipped"].n and not t.lower]
    out = {side: statistics.fmean([t.main[side].mean for t in included]) if included else math.nan for side in SIDES}
    return {"tasks": [t.task for t in included], **out, "delta": out["shipped"] - out["baseline"]}


def _cells(sides: dict, scale: float) -> str:
    """Baseline, SWA average, SWA shipped, Δ and SWA live: mean ± std (× scale), "–" where a side has no run."""

    def cell(stat: Stat) -> str:
        std = f" ± {stat.std * scale:.2f}" if stat.n > 1 else ""
        return f"{stat.mean * scale:.2f}{std}" if stat.n else "–"

    delta = _delta(sides)
    signed = "–" if math.isnan(delta) else f"{_points(delta, scale):+.2f}"
    return " | ".join([*(cell(sides[k]) for k in ("baseline", "swa", "shipped")), signed, cell(sides["live"])])


_INTRO = (
    "Scores ×{scale:g}, mean ± sample std over seeds. **SWA shipped** is what each SWA run shipped: the weights "
    "it chose on its selection data, else what its `swa_ship` names (the live weights by default); "
    "**SWA average** is the average of every snapshot (`swa`). *SWA live* is the same SWA runs' "
    "last-step weights. Δ = mean(SWA shipped) − mean(baseline); a negative Δ means SWA did worse.\n\n"
    "| Task | Metric | Baseline | SWA average | SWA shipped | Δ shipped − baseline | SWA live | Seeds (baseline / SWA) "
    "|\n|---|---|---:|---:|---:|---:|---:|---:|"
)


def render_markdown(tasks: list, notes: list, scale: float = 100.0, plot_name: Optional[str] = None) -> str:
    """The report: a row per task, evaluation set and metric, an average row, a verdict per task, the candidates."""
    several_sets = any(len({s for s, _ in t.rows}) > 1 for t in tasks)
    lines = ["# SWA vs baseline", "", _INTRO.format(scale=scale)]
    if any(t.lower for t in tasks):
        lines[-1] = lines[-1].replace(" a negative Δ", " a lower-is-better main metric (perplexity) is shown unscaled, "
                                      "where a negative Δ is a gain; otherwise a negative Δ", 1)  # fmt: skip
    for t in tasks:
        for (eval_set, metric), s in t.rows.items():
            label = f"**{metric}** (main)" if metric == t.main_metric else metric
            label += f" [{eval_set}]" if several_sets else ""
            cells = _cells(s, t.scale(scale) if metric == t.main_metric else scale)
            lines.append(f"| {t.task} | {label} | {cells} | {s['baseline'].n} / {s['swa'].n} |")
    avg = _average(tasks)
    name = "GLUE average" if all(find_task(t) for t in avg["tasks"]) else "Average"
    verdicts = [f"- **{t.task}**: {t.verdict(scale)}" for t in tasks]
    if len(avg["tasks"]) > 1:
        cells = _cells({side: Stat((avg[side],)) for side in SIDES}, scale)
        lines.append(f"| **{name}** | main metrics of {len(avg['tasks'])} task(s) | {cells} | |")
        delta = _points(avg["delta"], scale)
        word = "helped" if delta > 0 else "did not help" if delta < 0 else "made no difference"
        verdicts.append(f"- **{name}** ({', '.join(avg['tasks'])}): SWA shipped {word} ({delta:+.2f} points).")
    lines += ["", "## Verdict", "", *verdicts, *_render_candidates(tasks, scale)]
    if plot_name:
        lines += ["", "## Evaluation during training", "", f"![eval metric over steps]({plot_name})"]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _render_candidates(tasks: list, scale: float) -> list:
    """A row per task and kind of score, a column per candidate; which candidate each seed shipped."""
    shown = [t for t in tasks if t.candidates]
    if not shown:
        return []
    names = sorted({n for t in shown for n in t.candidates["names"]}, key=_order)
    lines = ["", "## Candidates", "", "Mean score of each candidate over the SWA runs (`live`: the last-step weights)."]
    lines += ["", "| Task | Scores | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|---|" + "---:|" * len(names)]
    for t in shown:
        c, chosen = t.candidates, list(t.candidates["chosen_by_seed"].values())
        lower = c["select_metric"] == "loss"
        rows = {f"eval {t.main_metric}": {n: f"{v * t.scale(scale):.2f}" for n, v in c["eval"].items()}}
        label = f"selection {c['select_metric']} ({'lower' if lower else 'higher'} is better)"
        rows[label] = {n: f"{v:.4f}" if lower else f"{v * scale:.2f}" for n, v in c["select"].items()}
        rows[f"shipped (of {len(chosen)} seeds)"] = {n: str(chosen.count(n)) for n in names if chosen}
        lines += [
            f"| {t.task} | {k} | " + " | ".join(v.get(n, "–") for n in names) + " |" for k, v in rows.items() if v
        ]
    per_seed = [(t.task, t.candidates["chosen_by_seed"]) for t in shown if t.candidates["chosen_by_seed"]]
    lines += ["", "Shipped per seed:", ""] if per_seed else []
    return lines + [f"- **{task}**: " + ", ".join(f"seed {s} → `{n}`" for s, n in by.items()) for task, by in per_seed]


def _to_json(tasks: list, notes: list) -> dict:
    """The report's numbers unscaled; an undefined mean, std or delta is null."""

    def num(x):
        return None if isinstance(x, float) and math.isnan(x) else x

    def sides(stats: dict) -> dict:
        out = {k: dict(values=list(s.values), mean=num(s.mean), std=num(s.std), n=s.n) for k, s in stats.items()}
        return {**out, "delta": num(_delta(stats))}

    out = {}
    for t in tasks:
        by_set = {e: {m: sides(stats) for (s, m), stats in t.rows.items() if s == e} for e, _ in t.rows}
        out[t.task] = dict(
            main_metric=t.main_metric, verdict=t.verdict(), main=sides(t.main), eval=by_set, lower=t.lower
        )
        out[t.task]["candidates"] = t.candidates
    return {"tasks": out, "average": {k: num(v) for k, v in _average(tasks).items()}, "notes": notes}


_SERIES = (  # variant, the logged key of the weights, label, colour, line style
    ("baseline", "eval_{}", "baseline", "tab:gray", "--"),
    ("swa", "eval_{}", "SWA run, live weights", "tab:blue", "-"),
    ("swa", "eval_swa_{}", "SWA run, average of every snapshot (swa)", "tab:orange", "-"),
)


def _series(task) -> tuple:
    """The curves of a task's plot: baseline, SWA live, `swa`, and the shipped candidate when every seed shipped
    the same one and it is another average."""
    shipped = set(task.candidates.get("chosen_by_seed", {}).values())
    name = shipped.pop() if len(shipped) == 1 else None
    if name in (None, LIVE, "swa"):
        return _SERIES
    return (*_SERIES, ("swa", f"eval_{name}_{{}}", f"SWA run, shipped weights ({name})", "tab:green", "-"))


def _plot_curves(runs, tasks, path, scale: float = 100.0) -> Path:
    """The report's plot (matplotlib, imported only to draw): each task's main metric over training steps, the mean
    over seeds in a min-max band, for the baseline, SWA live and SWA averaged."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(3, max(1, len(tasks)))
    rows = math.ceil(max(1, len(tasks)) / cols)
    fig = Figure(figsize=(5 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, task in zip(axes, tasks, strict=False):  # the grid may have more axes than tasks
        metric = task.main_metric
        for variant, key, label, color, style in _series(task):
            key, by_step = key.format(metric), {}
            task_runs = [r for r in runs if r.task == task.task and r.variant == variant]
            for entry in (entry for run in task_runs for entry in run.history if key in entry and "step" in entry):
                by_step.setdefault(entry["step"], []).append(float(entry[key]) * scale)
            steps = sorted(by_step)
            mean = [statistics.fmean(by_step[s]) for s in steps]
            if steps:
                ax.plot(steps, mean, style, color=color, marker=".", label=label)
            if steps and len(task_runs) > 1:
                low, high = [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps]
                ax.fill_between(steps, low, high, color=color, alpha=0.15)
        ax.set(title=f"{task.task}: {metric}", xlabel="optimizer step", ylabel=f"{metric} ×{scale:g}")
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no eval logs in trainer_state.json", ha="center", va="center", transform=ax.transAxes)
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    fig.savefig(path, dpi=110)
    return Path(path)


def write_report(runs_root, output_dir, *, main_metrics: Optional[Mapping[str, str]] = None, scale=100.0) -> Path:
    """Collect the runs under `runs_root` and write ``glue_report.md``, ``.png`` and ``.json``; return the ``.md``."""
    runs = collect_runs(runs_root)
    tasks, notes = summarize(runs, main_metrics)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = _plot_curves(runs, tasks, out / f"{REPORT_NAME}.png", scale)
    md = out / f"{REPORT_NAME}.md"
    md.write_text(render_markdown(tasks, notes, scale, plot_name=png.name), encoding="utf-8")
    text = json.dumps(_to_json(tasks, notes), indent=2, allow_nan=False)
    (out / f"{REPORT_NAME}.json").write_text(text, encoding="utf-8")
    return md
