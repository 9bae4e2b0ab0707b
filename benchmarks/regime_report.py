"""The tables and the plot of the regime study, from the runs stored by `regime_study.py`.

Test accuracy in points, mean ± std over seeds, each against the baseline of the same seeds (what a
user runs without hf_swa: every labelled row, the Trainer's linear decay). Candidates are matched
across runs by kind and rank (``window2`` is the second window start of any run), since window
names carry step numbers that differ between runs of different sizes.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from hf_swa.training.selection import LIVE, choose

KINDS = ("window", "ema", "pema")


def kind_keys(names: list) -> dict:
    """``{name: key}``: ``swa``, ``window2..4`` by start step, ``ema_0.8``, ``pema_0.1``, ``live``."""
    windows = sorted((n for n in names if n.startswith("swa_from")), key=lambda n: int(n[len("swa_from") :]))
    keys = {name: f"window{rank + 2}" for rank, name in enumerate(windows)}
    return {name: keys.get(name, name) for name in names}


def keyed(run: dict, split: str, metric: str = "accuracy") -> dict:
    keys = kind_keys(list(run["candidates"]))
    return {keys[name]: scores[split][metric] for name, scores in run["candidates"].items()}


def chosen_key(run: dict) -> str:
    """What selection by loss on the run's selection rows ships (ties to the earlier name, live last)."""
    names = [n for n in run["candidates"] if n != LIVE] + [LIVE]
    name = choose({n: run["candidates"][n]["select"]["loss"] for n in names}, greater_is_better=False)
    return kind_keys(names)[name]


def load(root: Path) -> dict:
    """``{dataset: {folder: {variant: {seed: run}}}}``."""
    runs = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for path in sorted(root.glob("*/*/*-seed*.json")):
        variant, seed = re.fullmatch(r"(\w+)-seed(\d+)\.json", path.name).groups()
        runs[path.parent.parent.name][path.parent.name][variant][int(seed)] = json.loads(path.read_text())
    return runs


def fmt(values: list, base: list = None) -> str:
    points = [100 * v for v in values]
    if base is not None:
        points = [p - 100 * b for p, b in zip(points, base)]
    text = f"{statistics.mean(points):+.2f}" if base is not None else f"{statistics.mean(points):.2f}"
    return text + (f" ± {statistics.stdev(points):.2f}" if len(points) > 1 else "")


def columns(all_runs: dict) -> dict:
    """Per column, the test accuracy of each seed (in seed order) of the SWA run on every row."""
    seeds = sorted(all_runs)
    tests = [keyed(all_runs[s], "test") for s in seeds]
    out = {"live": [t[LIVE] for t in tests], "swa": [t["swa"] for t in tests]}
    for kind in KINDS:
        keys = [k for k in tests[0] if k.startswith(kind)]  # "window2", "ema_0.9", "pema_0.1"
        if keys:
            best = max(keys, key=lambda k: statistics.mean(t[k] for t in tests))
            out[f"best {kind} ({best})"] = [t[best] for t in tests]
    out["oracle"] = [max(t.values()) for t in tests]
    return out


def selection_rows(runs: dict, variant: str, seeds: list) -> dict:
    """The shipped model of the `variant` split, and the same candidate refit on every row."""
    picks = [chosen_key(runs[variant][s]) for s in seeds]
    shipped = [keyed(runs[variant][s], "test")[k] for s, k in zip(seeds, picks)]
    refit = [keyed(runs["all"][s], "test").get(k, keyed(runs["all"][s], "test")["swa"]) for s, k in zip(seeds, picks)]
    return {"picks": picks, f"chosen ({variant} split)": shipped, f"refit ({variant} choice)": refit}


COLUMNS = ("live", "swa", "best window", "best ema", "best pema", "oracle")
SELECTION = ("chosen (rows split)", "refit (rows choice)", "chosen (groups split)", "refit (groups choice)")


def table(dataset: str, folders: dict) -> list:
    """One row per regime: the baseline, then each column's Δ against it (the best candidate's name beside it)."""
    rows, notes = [], []
    for regime, by_variant in sorted(folders.items()):
        base_runs = folders.get(f"ep{regime.rsplit('-ep', 1)[-1]}", {}).get("baseline", {})
        seeds = sorted(set(by_variant.get("all", {})) & set(base_runs))
        if regime.startswith("ep") or not seeds:
            continue
        base = [base_runs[s]["candidates"][LIVE]["test"]["accuracy"] for s in seeds]
        cols = columns({s: by_variant["all"][s] for s in seeds})
        for variant in ("rows", "groups"):
            if set(seeds) <= set(by_variant.get(variant, {})):
                picked = selection_rows(by_variant, variant, seeds)
                picks = picked.pop("picks")
                cols.update(picked)
                averaged = sum(p != LIVE for p in picks)
                notes.append(
                    f"{regime}: the {variant} split chose an average on {averaged}/{len(seeds)} seeds "
                    f"({', '.join(picks)})"
                )
        cells = []
        for column in COLUMNS + SELECTION:
            name = next((k for k in cols if k.startswith(column)), None)
            label = f" ({name[len(column) + 2 : -1]})" if name and name.startswith("best") else ""
            cells.append(fmt(cols[name], base) + label if name else "")
        rows.append(f"| {regime} | {len(seeds)} | {fmt(base)} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    header = "| regime | seeds | baseline | " + " | ".join(COLUMNS + SELECTION) + " |"
    lines = [f"### {dataset}", "", header, "|---|---:|---:|" + "---:|" * len(COLUMNS + SELECTION), *rows, ""]
    return lines + [f"- {note}" for note in notes] + ([""] if notes else [])


def report(root: Path) -> str:
    runs = load(root)
    return "\n".join(line for dataset in runs for line in table(dataset, runs[dataset]))


def summary(root: Path) -> dict:
    """``{dataset: {regime: {column: (mean Δ, std)}}}`` in points, for the plot and the docs."""
    out = defaultdict(dict)
    runs = load(root)
    for dataset, folders in runs.items():
        for regime, by_variant in folders.items():
            base_runs = folders.get(f"ep{regime.rsplit('-ep', 1)[-1]}", {}).get("baseline", {})
            seeds = sorted(set(by_variant.get("all", {})) & set(base_runs))
            if regime.startswith("ep") or not seeds:
                continue
            base = [100 * base_runs[s]["candidates"][LIVE]["test"]["accuracy"] for s in seeds]
            cols = columns({s: by_variant["all"][s] for s in seeds})
            for variant in ("rows", "groups"):
                if set(seeds) <= set(by_variant.get(variant, {})):
                    cols.update({k: v for k, v in selection_rows(by_variant, variant, seeds).items() if k != "picks"})
            out[dataset][regime] = {
                name: (statistics.mean(100 * v - b for v, b in zip(values, base)), len(seeds))
                for name, values in cols.items()
            }
    return out


def plot(root: Path, path: Path) -> Path:
    """One panel per set: Δ test accuracy vs the baseline of live, swa, the best power EMA and the shipped model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = summary(root)
    fig = Figure(figsize=(5.5 * max(1, len(data)), 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(data)), squeeze=False).ravel()
    for ax, (dataset, regimes) in zip(axes, sorted(data.items()), strict=False):
        names = sorted(regimes)
        series = [
            "live",
            "swa",
            "best window",
            "best pema",
            "chosen (rows split)",
            "chosen (groups split)",
            "refit (rows choice)",
        ]
        width = 0.8 / len(series)
        for i, column in enumerate(series):
            values = [next((v[0] for k, v in regimes[r].items() if k.startswith(column)), float("nan")) for r in names]
            ax.bar([x + i * width for x in range(len(names))], values, width, label=column)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names, rotation=20, fontsize="small")
        ax.set(title=dataset, ylabel="Δ test accuracy vs baseline (points)")
    axes[0].legend(fontsize="x-small")
    fig.savefig(path, dpi=110)
    return Path(path)
