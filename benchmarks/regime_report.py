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

from hf_swa.training import defaults
from hf_swa.training.config import LAST_WINDOW
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


def unchosen_key(run: dict, ship: str = defaults.SWA_SHIP) -> str:
    """What a run with no rows held out ships, as `swa_ship` says (``last_window``: the latest window)."""
    if ship != LAST_WINDOW:
        return ship
    windows = [k for k in kind_keys(list(run["candidates"])).values() if k.startswith("window")]
    return max(windows, key=lambda k: int(k[len("window") :]), default="swa")


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


def columns(runs: dict) -> dict:
    """Per column, the test accuracy of each seed (in seed order) of `runs` (``{seed: run}`` of one variant)."""
    seeds = sorted(runs)
    tests = [keyed(runs[s], "test") for s in seeds]
    out = {"live": [t[LIVE] for t in tests], "swa": [t["swa"] for t in tests]}
    for kind in KINDS:
        keys = [k for k in tests[0] if k.startswith(kind)]  # "window2", "ema_0.9", "pema_0.1"
        if keys:
            best = max(keys, key=lambda k: statistics.mean(t[k] for t in tests))
            out[f"best {kind} ({best})"] = [t[best] for t in tests]
    out["oracle"] = [max(t.values()) for t in tests]
    return out


VARIANTS = ("all", "rows", "groups")
COLUMNS = ("live", "swa", "best window", "best ema", "best pema", "oracle", "shipped", "refit")


def variant_stats(folders: dict, regime: str, variant: str):
    """``(seeds, baseline, columns, picks)`` of one regime and variant, over the seeds both it and the baseline have.

    ``shipped`` is what the run ships: on ``all`` (no rows held out) the default `swa_ship` (`unchosen_key`),
    as ``swa_select_metric="auto"`` does without selection data; on a split, the choice by loss on the held-out
    rows. ``refit`` is the same
    choice taken from the run on every row (``--swa_refit``), where that run exists.
    """
    base_runs = folders.get(f"ep{regime.rsplit('-ep', 1)[-1]}", {}).get("baseline", {})
    runs = folders[regime].get(variant, {})
    seeds = sorted(set(runs) & set(base_runs))
    if not seeds:
        return None
    base = [base_runs[s]["candidates"][LIVE]["test"]["accuracy"] for s in seeds]
    cols = columns({s: runs[s] for s in seeds})
    picks = [unchosen_key(runs[s]) if variant == "all" else chosen_key(runs[s]) for s in seeds]
    cols["shipped"] = [keyed(runs[s], "test")[k] for s, k in zip(seeds, picks)]
    every_row = folders[regime].get("all", {})
    if variant != "all" and set(seeds) <= set(every_row):
        tests = [keyed(every_row[s], "test") for s in seeds]
        cols["refit"] = [t.get(k, t["swa"]) for t, k in zip(tests, picks)]
    return seeds, base, cols, picks


def captured(cols: dict) -> str:
    """The share of the oracle's gain over the live weights that the shipped model kept (mean over seeds);
    "–" where that gain is under half a point, too small for a share to mean anything."""
    gain = statistics.mean(o - v for o, v in zip(cols["oracle"], cols["live"]))
    kept = statistics.mean(s - v for s, v in zip(cols["shipped"], cols["live"]))
    return f"{100 * kept / gain:.0f}%" if gain >= 0.005 else "–"


def table(dataset: str, folders: dict) -> list:
    """One row per regime and variant: the baseline, each column's Δ against it, how often an average shipped."""
    rows = []
    for regime in sorted(folders):
        for variant in VARIANTS if not regime.startswith("ep") else ():
            stats = variant_stats(folders, regime, variant)
            if stats is None:
                continue
            seeds, base, cols, picks = stats
            cells = []
            for column in COLUMNS:
                name = next((k for k in cols if k.startswith(column)), None)
                label = f" ({name[len(column) + 2 : -1]})" if name and name.startswith("best") else ""
                cells.append(fmt(cols[name], base) + label if name else "")
            averaged = f"{sum(p != LIVE for p in picks)}/{len(picks)}"
            rows.append(
                f"| {regime} | {variant} | {len(seeds)} | {fmt(base)} | "
                + " | ".join(cells)
                + f" | {averaged} | {captured(cols)} |"
            )
    if not rows:
        return []
    header = (
        f"| regime | rows trained | seeds | baseline | {' | '.join(COLUMNS)} | average shipped | oracle gain kept |"
    )
    return [f"### {dataset}", "", header, "|---|---|---:|---:|" + "---:|" * (len(COLUMNS) + 2), *rows, ""]


def candidate_table(runs: dict, regime: str, variant: str = "all") -> list:
    """Every candidate's Δ against the baseline (mean over the seeds), a row per set: which one to ship unchosen."""
    rows, keys = [], None
    for dataset, folders in sorted(runs.items()):
        stats = variant_stats(folders, regime, variant) if regime in folders else None
        if stats is None:
            continue
        seeds, base, _, _ = stats
        tests = [keyed(folders[regime][variant][s], "test") for s in seeds]
        keys = keys or sorted(tests[0], key=lambda k: (k != LIVE, k))
        cells = [fmt([t[k] for t in tests], base) if k in tests[0] else "" for k in keys]
        rows.append(f"| {dataset} | {len(seeds)} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    title = f"### Every candidate, {regime}, {variant} rows"
    return [title, "", f"| set | seeds | {' | '.join(keys)} |", "|---|---:|" + "---:|" * len(keys), *rows, ""]


def report(root: Path) -> str:
    """A table per set (every regime and variant), then every candidate of each regime's runs on every row."""
    runs = load(root)
    lines = [line for dataset in runs for line in table(dataset, runs[dataset])]
    regimes = sorted({regime for folders in runs.values() for regime in folders if not regime.startswith("ep")})
    return "\n".join(lines + [line for regime in regimes for line in candidate_table(runs, regime)])


def summary(root: Path) -> dict:
    """``{dataset: {(regime, variant): {column: (mean Δ in points, seeds)}}}``, for the plot and the docs."""
    out = defaultdict(dict)
    runs = load(root)
    for dataset, folders in runs.items():
        for regime in folders:
            for variant in VARIANTS if not regime.startswith("ep") else ():
                stats = variant_stats(folders, regime, variant)
                if stats is not None:
                    seeds, base, cols, _ = stats
                    out[dataset][regime, variant] = {
                        name: (statistics.mean(100 * (v - b) for v, b in zip(values, base)), len(seeds))
                        for name, values in cols.items()
                    }
    return out


def plot(root: Path, path: Path) -> Path:
    """One panel per set, a group of bars per regime and rows trained: Δ test accuracy vs the baseline."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = summary(root)
    fig = Figure(figsize=(5.5 * max(1, len(data)), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(data)), squeeze=False).ravel()
    series = ("live", "swa", "best window", "best pema", "shipped", "refit")
    width = 0.8 / len(series)
    for ax, (dataset, groups) in zip(axes, sorted(data.items()), strict=False):
        names = sorted(groups, key=lambda g: (g[0], VARIANTS.index(g[1])))
        for i, column in enumerate(series):
            values = [next((v[0] for k, v in groups[g].items() if k.startswith(column)), float("nan")) for g in names]
            ax.bar([x + i * width for x in range(len(names))], values, width, label=column)
        ax.axhline(0, color="gray", lw=0.8)
        labels = [
            f"{regime}\n{variant} (n={next(iter(groups[regime, variant].values()))[1]})" for regime, variant in names
        ]
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], labels, rotation=20, fontsize="x-small")
        ax.set(title=dataset, ylabel="Δ test accuracy vs baseline (points)")
    axes[0].legend(fontsize="x-small")
    fig.savefig(path, dpi=110)
    return Path(path)
