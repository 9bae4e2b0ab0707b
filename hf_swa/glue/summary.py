"""Baseline and SWA runs read from disk and compared over seeds: the numbers behind the report.

Layout under ``runs_root``::

    <task>/<baseline|swa>/seed<k>/all_results.json     # final metrics (Trainer.save_metrics)
    <task>/<baseline|swa>/seed<k>/trainer_state.json   # optional: log_history, for the plot

In an SWA run ``eval_swa_<m>`` is the averaged weights' score and ``eval_<m>`` the live
(last-step) weights' score of the same run; a baseline run only has ``eval_<m>``. A run
that chose among candidates names the one it shipped (``swa_chosen``) and repeats its
scores as ``eval_chosen_<m>``; the comparison is then about what was shipped.

Example:
    >>> import json, pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for variant, seed, metrics in [
    ...     ("baseline", 1, {"eval_accuracy": 0.90}), ("baseline", 2, {"eval_accuracy": 0.92}),
    ...     ("swa", 1, {"eval_accuracy": 0.91, "eval_swa_accuracy": 0.93}),
    ...     ("swa", 2, {"eval_accuracy": 0.91, "eval_swa_accuracy": 0.93})]:
    ...     run = root / "sst2" / variant / f"seed{seed}"
    ...     run.mkdir(parents=True)
    ...     _ = (run / "all_results.json").write_text(json.dumps(metrics))
    >>> summary = summarize(collect_runs(root))
    >>> round(summary.tasks[0].main.delta, 4)
    0.02
    >>> summary.tasks[0].verdict()
    'SWA helped by +2.00 points (accuracy, 2 seeds baseline / 2 SWA), more than the seed-to-seed spread (std 1.41).'
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from hf_swa.glue.candidate_summary import CandidateSummary, summarize_candidates
from hf_swa.glue.metric_keys import (
    ALL_RESULTS_FILE,
    CHOSEN,
    CHOSEN_NAME_KEY,
    LIVE,
    MISMATCHED_SUFFIX,
    is_score,
    metric_names,
    score_key,
)
from hf_swa.glue.tasks import find_task

__all__ = [
    "VARIANTS",
    "RunResult",
    "Stat",
    "MetricComparison",
    "TaskSummary",
    "ReportSummary",
    "collect_runs",
    "summarize",
]

VARIANTS = ("baseline", "swa")
STATE_FILE = "trainer_state.json"
_SEED_DIR = re.compile(r"^seed[_-]?(\d+)$")


@dataclass(frozen=True)
class RunResult:
    """One fine-tuning run: ``metrics`` from ``all_results.json`` ({} if the run did not finish)."""

    task: str
    variant: str
    seed: int
    metrics: Mapping[str, float]
    log_history: tuple = ()
    path: Optional[Path] = None

    @property
    def complete(self) -> bool:
        return bool(self.metrics)

    @property
    def chosen(self) -> Optional[str]:
        """The candidate (or ``live``) a selection shipped; None when the run did not select."""
        return self.metrics.get(CHOSEN_NAME_KEY)

    def score(self, metric: str, weights: str = LIVE, fold_mm: bool = False) -> Optional[float]:
        """The score of `weights`: ``live`` (``eval_<metric>``), ``swa``, another candidate, or
        ``chosen``, the weights the run shipped (its chosen candidate, else the SWA average).

        With ``fold_mm`` an MNLI-style ``<metric>_mm`` (mismatched) score is averaged in, as
        the GLUE average does.
        """
        if weights == CHOSEN and self.chosen is None:
            weights = "swa"
        value = self.metrics.get(score_key(metric, weights))
        if value is None:
            return None
        mismatched = self.metrics.get(score_key(metric + MISMATCHED_SUFFIX, weights)) if fold_mm else None
        return float(value) if mismatched is None else (float(value) + float(mismatched)) / 2


@dataclass(frozen=True)
class Stat:
    """Values over seeds; ``std`` is the sample standard deviation (n − 1), NaN for one value."""

    values: tuple

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if self.n >= 2 else math.nan


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one task: baseline runs, SWA runs (averaged weights), the same SWA runs' live
    weights, and the weights they shipped (``chosen``: the candidate each chose, else the average)."""

    task: str
    metric: str
    baseline: Stat
    swa: Stat
    swa_live: Stat
    chosen: Stat = Stat(())
    selected: bool = False  # some SWA run chose among candidates: the comparison is about `chosen`

    @property
    def shipped(self) -> Stat:
        return self.chosen if self.selected else self.swa

    @property
    def shipped_name(self) -> str:
        return "SWA (chosen)" if self.selected else "SWA"

    @property
    def delta(self) -> float:
        """mean(SWA, shipped weights) − mean(baseline); NaN when one side has no runs."""
        return self.shipped.mean - self.baseline.mean


@dataclass
class TaskSummary:
    """A task's comparisons, main metric first; ``glue_score`` is the main metric as the GLUE
    average counts it (MNLI: matched and mismatched averaged; otherwise the main metric)."""

    task: str
    main_metric: str
    metrics: list
    glue_score: MetricComparison
    candidates: Optional[CandidateSummary] = None  # with selection or per-candidate scores

    @property
    def main(self) -> MetricComparison:
        return self.metrics[0]

    def verdict(self, scale: float = 100.0) -> str:
        """One plain sentence: did what SWA shipped beat the baseline on the main metric, and is it beyond noise?

        What SWA shipped is the average, or with selection the candidate each run chose. The
        main metric as the GLUE average counts it (MNLI: matched and mismatched averaged), so
        the verdict and the task's share of the average never disagree.
        """
        m = self.glue_score
        shipped, name = m.shipped, m.shipped_name
        folded = (m.baseline.values, shipped.values) != (self.main.baseline.values, self.main.shipped.values)
        metric = f"{m.metric} (matched/mismatched mean)" if folded else m.metric
        if not (m.baseline.n and shipped.n):
            return f"No comparison: {m.baseline.n} baseline and {shipped.n} SWA runs report {m.metric}."
        delta = round(m.delta * scale, 2) + 0.0
        runs = f"{metric}, {m.baseline.n} seed{'s' if m.baseline.n != 1 else ''} baseline / {shipped.n} SWA"
        if delta > 0:
            text = f"{name} helped by {delta:+.2f} points ({runs})"
        elif delta < 0:
            text = f"{name} did not help ({delta:+.2f} points, {runs})"
        else:
            return f"{name} made no difference ({delta:+.2f} points, {runs})."
        spread = max(m.baseline.std, shipped.std) * scale
        if math.isnan(spread):
            return text + "; one seed on a side, so no estimate of seed-to-seed noise."
        if abs(delta) <= spread:
            return text + f", within the seed-to-seed spread (std {spread:.2f}): not conclusive."
        return text + f", more than the seed-to-seed spread (std {spread:.2f})."


@dataclass
class ReportSummary:
    tasks: list  # TaskSummary, sorted by task name
    notes: list = field(default_factory=list)

    def glue_average(self) -> dict:
        """Mean over tasks of each task's main-metric mean, for the tasks every side has."""
        included = [t for t in self.tasks if t.glue_score.baseline.n and t.glue_score.shipped.n]
        out = {"tasks": [t.task for t in included]}
        for side in ("baseline", "swa", "swa_live", "chosen", "shipped"):
            means = [getattr(t.glue_score, side).mean for t in included]
            out[side] = statistics.fmean(means) if means and not any(map(math.isnan, means)) else math.nan
        out["delta"] = out["shipped"] - out["baseline"]
        return out

    @property
    def selected(self) -> bool:
        """Whether any SWA run chose among candidates: the report then shows the chosen weights."""
        return any(m.selected for t in self.tasks for m in t.metrics)


# -- collecting --------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def collect_runs(runs_root: Union[str, Path]) -> list:
    """Read every ``<task>/<baseline|swa>/seed<k>/`` run under ``runs_root`` into :class:`RunResult`.

    A seed folder without ``all_results.json`` gives an incomplete run (empty metrics), so the
    report can say it is missing instead of silently averaging fewer seeds.
    """
    root = Path(runs_root)
    if not root.is_dir():
        raise FileNotFoundError(f"runs root {root} does not exist.")
    runs = []
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for variant in VARIANTS:
            for seed_dir in sorted((task_dir / variant).glob("seed*")):
                match = _SEED_DIR.match(seed_dir.name)
                if not (match and seed_dir.is_dir()):
                    continue
                results, state = seed_dir / ALL_RESULTS_FILE, seed_dir / STATE_FILE
                metrics = _read_json(results) if results.is_file() else {}
                history = tuple(_read_json(state).get("log_history", ())) if state.is_file() else ()
                runs.append(RunResult(task_dir.name, variant, int(match[1]), metrics, history, seed_dir))
    if not runs:
        raise FileNotFoundError(
            f"no runs under {root}: expected <task>/<baseline|swa>/seed<k>/{ALL_RESULTS_FILE}, "
            f"e.g. {root / 'sst2' / 'swa' / 'seed1' / ALL_RESULTS_FILE}"
        )
    return sorted(runs, key=lambda r: (r.task, r.variant, r.seed))


# -- summarising --------------------------------------------------------------------------------


def _main_metric(task: str, available: Sequence[str]) -> str:
    glue_task = find_task(task)
    if glue_task is not None:
        return glue_task.main_metric
    return "accuracy" if "accuracy" in available else sorted(available)[0]


def _metric_names(runs: Sequence[RunResult]) -> list:
    """The scores any run reports (losses and run_glue's combined score are not compared)."""
    return sorted({name for run in runs for name in metric_names(run.metrics) if is_score(name)})


def summarize(runs: Sequence[RunResult], main_metrics: Optional[Mapping[str, str]] = None) -> ReportSummary:
    """Group runs by task and compare baseline with SWA on every metric they report."""
    notes = []
    by_task: dict = {}
    for run in runs:
        if not run.complete:
            notes.append(
                f"{run.task}/{run.variant}/seed{run.seed}: no {ALL_RESULTS_FILE} (did the run finish?); left out."
            )
            continue
        by_task.setdefault(run.task, []).append(run)
    tasks = []
    for task, task_runs in sorted(by_task.items()):
        names = _metric_names(task_runs)
        if not names:
            notes.append(f"{task}: no eval_* scores in any run; left out.")
            continue
        main = (main_metrics or {}).get(task) or _main_metric(task, names)
        if main not in names:
            notes.append(f"{task}: main metric {main!r} not reported (found {', '.join(names)}); using {names[0]!r}.")
            main = names[0]
        baseline = [r for r in task_runs if r.variant == "baseline"]
        swa = [r for r in task_runs if r.variant == "swa"]
        if {r.seed for r in baseline} != {r.seed for r in swa}:
            notes.append(
                f"{task}: seeds differ between baseline {sorted(r.seed for r in baseline)} "
                f"and SWA {sorted(r.seed for r in swa)}; means use the runs each side has."
            )
        for r in swa:
            if r.score(main, "swa") is None:
                notes.append(f"{task}/swa/seed{r.seed}: no eval_swa_{main} (no snapshot taken?); left out of SWA.")
        comparisons = [_compare(task, name, baseline, swa) for name in [main] + [n for n in names if n != main]]
        tasks.append(
            TaskSummary(
                task,
                main,
                comparisons,
                _compare(task, main, baseline, swa, fold_mm=True),
                summarize_candidates(task, main, swa),
            )
        )
    return ReportSummary(tasks, notes)


def _compare(task: str, metric: str, baseline: Sequence[RunResult], swa: Sequence[RunResult], fold_mm: bool = False):
    def stat(runs, weights):
        scores = (r.score(metric, weights, fold_mm) for r in runs)
        return Stat(tuple(v for v in scores if v is not None))

    selected = any(r.chosen is not None for r in swa)
    return MetricComparison(
        task, metric, stat(baseline, LIVE), stat(swa, "swa"), stat(swa, LIVE), stat(swa, CHOSEN), selected
    )
