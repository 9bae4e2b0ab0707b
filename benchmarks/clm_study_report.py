"""The causal-LM study's report (``python benchmarks/clm_study.py report``): test perplexity mean ± std over seeds
per corpus and budget, each hf_swa candidate's gap to the best decayed baseline, and the choice on validation.

Every choice is made on validation: each baseline's LR (seed 0), which decayed schedule is "best" (lowest mean
validation perplexity over the reported seeds), and which candidate of a constant-LR run ships (per seed, the
lowest validation perplexity). Test perplexity is only reported.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

BASELINES = ("linear", "cosine", "wsd")
LIVE, CHOSEN = "live", "chosen"


def load(runs: Path) -> list:
    return [json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))]


def _stat(values: list) -> dict:
    mean = statistics.fmean(values) if values else math.nan
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return {"mean": mean, "std": std, "n": len(values), "values": values}


def _cell(stat: dict, gap_to=None) -> str:
    if not stat["n"]:
        return "–"
    text = f"{stat['mean']:.1f}" + (f" ± {stat['std']:.1f}" if stat["n"] > 1 else "")
    if gap_to:
        text += f" ({100 * (stat['mean'] / gap_to - 1):+.1f}%)"
    return text


def _ppl(record: dict, weights: str, eval_set: str) -> float:
    return record["eval"][weights][eval_set]["perplexity"]


def chosen_on_validation(record: dict, with_live: bool = False) -> str:
    """The candidate (an average; with `with_live` also the live weights) of lowest validation perplexity."""
    names = [n for n in record["eval"] if n != CHOSEN and (with_live or n != LIVE)]
    return min(names, key=lambda n: _ppl(record, n, "validation"))


def summarize(records: list) -> dict:
    """``{corpus: {budget: {...}}}`` over the reported seeds (not the tuning seed 0)."""
    tuning = [r for r in records if r["seed"] == 0]
    final = [r for r in records if r["seed"] != 0]
    out: dict = {"tuning": {}, "cells": {}}
    for r in tuning:
        out["tuning"].setdefault(r["corpus"], {}).setdefault(r["recipe"], {})[r["lr"]] = _ppl(r, LIVE, "validation")
    for corpus in sorted({r["corpus"] for r in final}):
        for budget in sorted({r["budget"] for r in final if r["corpus"] == corpus}):
            runs = [r for r in final if r["corpus"] == corpus and r["budget"] == budget]
            out["cells"].setdefault(corpus, {})[budget] = _cell_summary(runs)
    return out


def _cell_summary(runs: list) -> dict:
    by = {recipe: [r for r in runs if r["recipe"] == recipe] for recipe in (*BASELINES, "constant", "defaults")}
    rows = {}
    for recipe in BASELINES:
        rows[recipe] = {s: _stat([_ppl(r, LIVE, s) for r in by[recipe]]) for s in ("validation", "test")}
        rows[recipe]["lr"] = sorted({r["lr"] for r in by[recipe]})
    decayed = [b for b in BASELINES if rows[b]["validation"]["n"]]
    best = min(decayed, key=lambda b: rows[b]["validation"]["mean"]) if decayed else None
    constant = by["constant"]
    names = [n for n in (constant[0]["eval"] if constant else {}) if n != CHOSEN]
    candidates = {n: _stat([_ppl(r, n, "test") for r in constant]) for n in names}
    picks = [chosen_on_validation(r) for r in constant]
    picks_live = [chosen_on_validation(r, with_live=True) for r in constant]
    chosen = _stat([_ppl(r, n, "test") for r, n in zip(constant, picks)])
    chosen_live = _stat([_ppl(r, n, "test") for r, n in zip(constant, picks_live)])
    defaults = {w: _stat([_ppl(r, w, "test") for r in by["defaults"]]) for w in (LIVE, CHOSEN)}
    shipped = [r["chosen"] for r in by["defaults"]]
    reference = {r["seed"]: _ppl(r, LIVE, "test") for r in by.get(best, [])}
    pairs = [(r, n) for r, n in zip(constant, picks) if r["seed"] in reference]
    paired = {  # per seed, the gap to the best baseline's run of the same seed (the same data order)
        "chosen on validation": [_ppl(r, n, "test") / reference[r["seed"]] - 1 for r, n in pairs],
        "constant-LR live": [_ppl(r, LIVE, "test") / reference[r["seed"]] - 1 for r, _ in pairs],
    }
    return dict(baselines=rows, best=best, candidates=candidates, picks=picks, picks_live=picks_live, chosen=chosen,
                chosen_with_live=chosen_live, defaults=defaults, shipped_by_defaults=shipped,
                seeds=sorted({r["seed"] for r in runs}), lr_constant=sorted({r["lr"] for r in constant}),
                paired={k: _stat(v) for k, v in paired.items()})  # fmt: skip


def render(summary: dict, records: list) -> str:
    lines = ["# Causal-LM study: averages at a constant LR against tuned decays", ""]
    lines += [
        "Test perplexity (lower is better), mean ± sample std over the reported seeds; in brackets the gap to the best "
        "decayed baseline (the schedule of lowest mean *validation* perplexity). **chosen on validation**: per seed, "
        "the average of lowest validation perplexity among the constant-LR run's candidates (live weights excluded; "
        "with them: the next row). Settings: `benchmarks/clm_study.py`.",
        "",
    ]
    for corpus, budgets in summary["cells"].items():
        for budget, cell in budgets.items():
            lines += _render_cell(corpus, budget, cell)
    lines += ["## LR tuning (validation perplexity of the live weights, seed 0, 1x budget)", ""]
    lines += ["| Corpus | Schedule | " + " | ".join(f"lr {lr:g}" for lr in _grid(summary)) + " |"]
    lines += ["|---|---|" + "---:|" * len(_grid(summary))]
    for corpus, recipes in summary["tuning"].items():
        for recipe, scores in recipes.items():
            cells = [f"{scores[lr]:.1f}" if lr in scores else "–" for lr in _grid(summary)]
            lines.append(f"| {corpus} | {recipe} | " + " | ".join(cells) + " |")
    seconds = sum(r["seconds"] for r in records)
    lines += ["", f"{len(records)} runs, {seconds / 60:.0f} min of training and evaluation on this machine."]
    return "\n".join(lines) + "\n"


def _grid(summary: dict) -> list:
    return sorted({lr for recipes in summary["tuning"].values() for scores in recipes.values() for lr in scores})


def _render_cell(corpus: str, budget: int, cell: dict) -> list:
    best = cell["best"]
    ref = cell["baselines"][best]["test"]["mean"] if best else None
    seeds = ", ".join(map(str, cell["seeds"]))
    lines = [
        f"## {corpus}, {budget}x budget (seeds {seeds})",
        "",
        "| Weights | Test perplexity | Seeds |",
        "|---|---:|---:|",
    ]
    for recipe in BASELINES:
        stat, lrs = cell["baselines"][recipe]["test"], ", ".join(f"{lr:g}" for lr in cell["baselines"][recipe]["lr"])
        mark = " (best on validation)" if recipe == best else ""
        lrs = f", lr {lrs}" if lrs else ""
        lines.append(f"| baseline {recipe}{lrs}{mark} | {_cell(stat, ref)} | {stat['n']} |")
    lr = ", ".join(f"{x:g}" for x in cell["lr_constant"])
    for name, stat in cell["candidates"].items():
        lines.append(f"| constant lr {lr}: `{name}` | {_cell(stat, ref)} | {stat['n']} |")
    picks = ", ".join(f"`{p}`" for p in cell["picks"])
    lines.append(f"| **constant: chosen on validation** ({picks}) | **{_cell(cell['chosen'], ref)}** | "
                 f"{cell['chosen']['n']} |")  # fmt: skip
    picks = ", ".join(f"`{p}`" for p in cell["picks_live"])
    lines.append(f"| constant: chosen on validation, live included ({picks}) | {_cell(cell['chosen_with_live'], ref)} |"
                 f" {cell['chosen_with_live']['n']} |")  # fmt: skip
    shipped = ", ".join(f"`{s}`" for s in cell["shipped_by_defaults"])
    lines.append(f"| hf_swa defaults: live | {_cell(cell['defaults'][LIVE], ref)} | {cell['defaults'][LIVE]['n']} |")
    lines.append(f"| hf_swa defaults: shipped ({shipped}) | {_cell(cell['defaults'][CHOSEN], ref)} | "
                 f"{cell['defaults'][CHOSEN]['n']} |")  # fmt: skip
    for name, stat in cell.get("paired", {}).items():
        if stat["n"]:
            each = ", ".join(f"{100 * v:+.1f}%" for v in stat["values"])
            lines.append(f"\nPaired by seed, {name} against {best}: {100 * stat['mean']:+.1f}% (seeds: {each}).")
    return lines + [""]


def _jsonable(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def write_report(runs: Path, results: Path) -> Path:
    records = load(runs)
    summary = summarize(records)
    (results / "summary.json").write_text(json.dumps(_jsonable(summary), indent=1, allow_nan=False))
    path = results / "report.md"
    path.write_text(render(summary, records))
    print(path.read_text())
    return path
