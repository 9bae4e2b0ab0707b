"""The tables and the plot of the regime study, from the runs stored by `regime_study.py`.

Test accuracy in points, mean ± std over seeds, each against the baseline of the same seeds (what a
user runs without hf_swa: every labelled row, the Trainer's linear decay). Candidates are matched
across runs by kind and rank (``window2`` is the second window start of any run), since window
names carry step numbers that differ between runs of different sizes.

Every table names the snapshot period of its regime (`parse_regime`). `default_pick` picks the ship rule
(what ships when nothing chooses) on held-out rows of some seeds and reports it on the test rows of others.
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
#: How the runs stored without a ``-freq<n>`` suffix snapshot: every ``steps // 40`` optimizer steps.
FREQ_STORED = "steps//40"


def parse_regime(regime: str) -> dict:
    """``{"tail", "start", "epochs", "freq"}`` of ``tail<r>-start<s>-ep<E>[-freq<n>]`` (freq None: `FREQ_STORED`).

    >>> parse_regime("tail0.5-start0.5-ep3-freq1")
    {'tail': 0.5, 'start': '0.5', 'epochs': 3, 'freq': 1}
    >>> parse_regime("tail0.5-start0.5-ep8")["freq"] is None
    True
    """
    match = re.fullmatch(r"tail([\d.]+)-start([\d.]+)-ep(\d+)(?:-freq(\d+))?", regime)
    if match is None:
        raise ValueError(
            f"regime {regime!r}: expected tail<r>-start<s>-ep<E>[-freq<n>], e.g. tail0.5-start0.5-ep3-freq1"
        )
    tail, start, epochs, freq = match.groups()
    return {"tail": float(tail), "start": start, "epochs": int(epochs), "freq": int(freq) if freq else None}


def snapshot_every(regime: str) -> str:
    """The snapshot period of a regime's runs, in words for the tables (``"1 step (the default)"``)."""
    freq = parse_regime(regime)["freq"]
    if freq is None:
        return f"{FREQ_STORED} steps"
    return f"{freq} step{'s' if freq > 1 else ''}" + (" (the default)" if freq == defaults.SWA_FREQ else "")


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


def fmt_points(points: list, signed: bool = True) -> str:
    text = f"{statistics.mean(points):{'+' if signed else ''}.2f}"
    return text + (f" ± {statistics.stdev(points):.2f}" if len(points) > 1 else "")


def fmt(values: list, base: list = None) -> str:
    """Mean ± std in points of the fractions `values`, or of their differences from `base` (signed)."""
    if base is None:
        return fmt_points([100 * v for v in values], signed=False)
    return fmt_points([100 * (v - b) for v, b in zip(values, base)])


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
#: The variants that hold rows out of training and score every candidate on them (``select``).
HELD_OUT = ("rows", "groups")
COLUMNS = ("live", "swa", "best window", "best ema", "best pema", "oracle", "shipped", "refit")


def baseline_runs(folders: dict, regime: str) -> dict:
    """``{seed: run}`` of the baseline with the regime's epochs (what a user runs without hf_swa)."""
    return folders.get(f"ep{parse_regime(regime)['epochs']}", {}).get("baseline", {})


def variant_stats(folders: dict, regime: str, variant: str):
    """``(seeds, baseline, columns, picks)`` of one regime and variant, over the seeds both it and the baseline have.

    ``shipped`` is what the run ships: on ``all`` (no rows held out) the default `swa_ship` (`unchosen_key`),
    as ``swa_select_metric="auto"`` does without selection data; on a split, the choice by loss on the held-out
    rows. ``refit`` is the same
    choice taken from the run on every row (``--swa_refit``), where that run exists.
    """
    base_runs = baseline_runs(folders, regime)
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
            # A fixed rule that never names live ships an average by construction: nothing to count.
            averaged = f"{sum(p != LIVE for p in picks)}/{len(picks)}" if variant in HELD_OUT else "– (rule)"
            rows.append(
                f"| {regime} | {snapshot_every(regime)} | {variant} | {len(seeds)} | {fmt(base)} | "
                + " | ".join(cells)
                + f" | {averaged} | {captured(cols)} |"
            )
    if not rows:
        return []
    header = (
        f"| regime | snapshot every | rows trained | seeds | baseline | {' | '.join(COLUMNS)} | average shipped "
        "| oracle gain kept |"
    )
    return [f"### {dataset}", "", header, "|---|---|---|---:|---:|" + "---:|" * (len(COLUMNS) + 2), *rows, ""]


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
    title = f"### Every candidate, {regime} (a snapshot every {snapshot_every(regime)}), {variant} rows"
    return [title, "", f"| set | seeds | {' | '.join(keys)} |", "|---|---:|" + "---:|" * len(keys), *rows, ""]


#: The seeds whose held-out rows pick the ship rule, and the seeds its test delta is reported on.
PICK_SEEDS, REPORT_SEEDS = (1, 2, 3), (4, 5)
#: Set beside the pick: the default since 0.3, the uniform average from swa_start, and no average at all.
COMPARED = (LAST_WINDOW, "swa", LIVE)
#: The averages a run keeps under the defaults (no EMA, no power EMA): ``swa`` and the windows.
DEFAULT_AVERAGES = ("swa", "window2", "window3", LAST_WINDOW)


def rule_scores(run: dict, split: str, metric: str = "accuracy") -> dict:
    """``{rule: score}`` of one run, higher is better (accuracy in points, loss negated): each candidate kind as
    `kind_keys` names it, the latest window as ``last_window`` instead of its rank."""
    keys = keyed(run, split, metric)
    last = unchosen_key(run, LAST_WINDOW)
    scale = 100 if metric == "accuracy" else -1
    out = {key: scale * value for key, value in keys.items() if key != last or key == "swa"}
    return {**out, LAST_WINDOW: scale * keys[last]}


def validation_gains(runs: dict, regime: str, seeds, metric: str = "accuracy", variants=HELD_OUT) -> dict:
    """``{dataset: {rule: mean of (rule − live)}}`` on the held-out rows (``select``) of `variants` and `seeds`.

    Only the runs that hold rows out have them; their test rows are not read."""
    out = {}
    for dataset, folders in sorted(runs.items()):
        held = [folders[regime][v][s] for v in variants for s in seeds if s in folders.get(regime, {}).get(v, {})]
        if held:
            scores = [rule_scores(run, "select", metric) for run in held]
            out[dataset] = {rule: statistics.mean(x[rule] - x[LIVE] for x in scores) for rule in scores[0]}
    return out


def pick_rule(gains: dict, among=None) -> tuple:
    """``(rule, {rule: mean over sets})``: the rule (of `among`, if given) with the best mean gain over the sets
    (each set weighs the same; ties go to the first name)."""
    rules = set.intersection(*(set(per_rule) for per_rule in gains.values()))
    rules = sorted(rules & set(among) if among else rules)
    means = {rule: statistics.mean(per_rule[rule] for per_rule in gains.values()) for rule in rules}
    return max(rules, key=means.__getitem__), means


def rule_test(folders: dict, regime: str, rule: str, seeds) -> dict:
    """``{seed: Δ test accuracy in points}`` of what `rule` ships on the regime's runs on every row, against the
    baseline of the same seed (the seeds of `seeds` that both have)."""
    runs, base = folders.get(regime, {}).get("all", {}), baseline_runs(folders, regime)
    return {
        s: 100 * (keyed(runs[s], "test")[unchosen_key(runs[s], rule)] - base[s]["candidates"][LIVE]["test"]["accuracy"])
        for s in seeds
        if s in runs and s in base
    }


def validation_lines(runs: dict, regime: str, seeds) -> tuple:
    """``(rule, lines)``: the rule picked on the held-out rows of `seeds`, a table of every rule's gains, and what
    the pick would be by loss and on each kind of split alone."""
    gains = validation_gains(runs, regime, seeds)
    rule, means = pick_rule(gains)
    sets = list(gains)
    lines = [
        f"### The ship rule picked on validation rows: {regime}, seeds {', '.join(map(str, seeds))}",
        "",
        "Held-out rows' accuracy (`select`, never the test rows) of each rule less that of the live weights of the "
        "same run, in points: mean over seeds and the held-out variants (rows; groups on the shift sets).",
        "",
        f"| rule | {' | '.join(sets)} | mean of sets |",
        "|---|" + "---:|" * (len(sets) + 1),
    ]
    for name in sorted(means, key=lambda n: -means[n]):
        lines.append(f"| {name} | " + " | ".join(f"{gains[d][name]:+.2f}" for d in sets) + f" | {means[name]:+.2f} |")
    others = {
        f"by {metric} on {' and '.join(variants)}": validation_gains(runs, regime, seeds, metric, variants)
        for metric in ("accuracy", "loss")
        for variants in (HELD_OUT, ("rows",), ("groups",))
    }
    picks = "; ".join(f"{label}: {pick_rule(other)[0]}" for label, other in others.items() if other)
    average = pick_rule(gains, DEFAULT_AVERAGES)[0]
    return rule, [
        *lines,
        "",
        f"Picked: **{rule}** (the pick {picks}). Among the averages the defaults keep ({', '.join(DEFAULT_AVERAGES)}):"
        f" **{average}**.",
        "",
    ]


def shipped_lines(runs: dict, rules, regimes, seeds, picked_on=()) -> list:
    """A row per regime and rule: Δ test accuracy against the baseline on every row, per set and on the mean of
    the sets, over the seeds of `seeds` stored (every seed stored where none of them is; starred when they
    include `picked_on`)."""
    sets = sorted(runs)
    lines = [
        f"| regime | snapshot every | seeds | rule | {' | '.join(sets)} | mean of sets |",
        "|---|---|---|---|" + "---:|" * (len(sets) + 1),
    ]
    for regime in regimes:
        stored = sorted({s for d in sets for s in runs[d].get(regime, {}).get("all", {})})
        used = [s for s in stored if s in seeds] or stored
        label = ", ".join(map(str, used)) + (" *" if set(used) & set(picked_on) else "")
        for rule in dict.fromkeys(rules):
            deltas = {d: rule_test(runs[d], regime, rule, used) for d in sets}
            cells = [fmt_points(list(deltas[d].values())) if deltas[d] else "" for d in sets]
            means = [statistics.mean(deltas[d].values()) for d in sets if deltas[d]]
            lines.append(
                f"| {regime} | {snapshot_every(regime)} | {label} | {rule} | "
                + " | ".join(cells)
                + f" | {statistics.mean(means):+.2f} |"
            )
    return lines


def rotation_lines(runs: dict, regime: str, among=None) -> list:
    """Each seed of `regime` reported by the rule (of `among`) picked on the other seeds' held-out rows, and the
    mean of those out-of-fold deltas."""
    seeds = sorted({s for folders in runs.values() for v in HELD_OUT for s in folders.get(regime, {}).get(v, {})})
    folds = [(s, pick_rule(validation_gains(runs, regime, [o for o in seeds if o != s]), among)[0]) for s in seeds]
    lines = shipped_lines(runs, [], [], [])
    for seed, rule in folds:
        lines += shipped_lines(runs, [rule], [regime], [seed])[2:]
    oof = {d: [rule_test(runs[d], regime, rule, [s]).get(s) for s, rule in folds] for d in sorted(runs)}
    means = [statistics.mean(v for v in values if v is not None) for values in oof.values()]
    cells = " | ".join(f"{m:+.2f}" for m in means)
    return [*lines, f"| out of fold | | {len(folds)} | | {cells} | {statistics.mean(means):+.2f} |", ""]


def default_pick(runs: dict, pick_seeds=PICK_SEEDS, report_seeds=REPORT_SEEDS) -> list:
    """The ship rule picked honestly: on the validation rows of `pick_seeds` (`validation_lines`), reported on the
    test rows of `report_seeds` for every regime (`shipped_lines`), then rotated over the seeds (`rotation_lines`),
    among every rule and among the averages the defaults keep."""
    held = sorted({r for folders in runs.values() for r in folders if any(folders[r].get(v) for v in HELD_OUT)})
    regimes = sorted({r for folders in runs.values() for r in folders if not r.startswith("ep")})
    lines = []
    for regime in held:
        rule, picked = validation_lines(runs, regime, pick_seeds)
        lines += [*picked, f"### What {rule} ships on the test rows against the baseline, beside {', '.join(COMPARED)}"]
        lines += ["", *shipped_lines(runs, (rule, *COMPARED), regimes, report_seeds, pick_seeds), ""]
        lines += [f"\\* seed numbers also picked on ({regime}'s held-out runs); no test row was read to pick.", ""]
        for among, what in ((None, "every rule"), (DEFAULT_AVERAGES, "the averages the defaults keep")):
            lines += [f"### Each seed of {regime} by the rule picked on the other seeds' held-out rows, among {what}"]
            lines += ["", *rotation_lines(runs, regime, among)]
    return lines


def report(root: Path) -> str:
    """A table per set (every regime and variant), every candidate of each regime's runs on every row, and the
    ship rule picked on validation rows (`default_pick`)."""
    runs = load(root)
    lines = [line for dataset in runs for line in table(dataset, runs[dataset])]
    regimes = sorted({regime for folders in runs.values() for regime in folders if not regime.startswith("ep")})
    lines += [line for regime in regimes for line in candidate_table(runs, regime)]
    return "\n".join(lines + default_pick(runs))


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
    fig = Figure(figsize=(5.5 * max(1, len(data)), 5.5), layout="constrained")
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
        seeds = [next(iter(groups[name].values()))[1] for name in names]
        labels = [f"{r}, {v} (n={n})\nsnapshot every {snapshot_every(r)}" for (r, v), n in zip(names, seeds)]
        ticks = [x + 0.4 - width / 2 for x in range(len(names))]
        ax.set_xticks(ticks, labels, rotation=35, ha="right", rotation_mode="anchor", fontsize="x-small")
        ax.set(title=dataset, ylabel="Δ test accuracy vs baseline (points)")
    axes[0].legend(fontsize="x-small")
    fig.savefig(path, dpi=110)
    return Path(path)
