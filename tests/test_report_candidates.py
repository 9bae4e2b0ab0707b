"""The report of SWA runs that chose among candidates: the chosen column, the per-candidate means, and the
report of runs without selection, unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hf_swa.glue import report
from hf_swa.glue.report import collect_runs, summarize

# Per seed: the live, average, window and EMA scores on the evaluation set, the candidate shipped, and every
# candidate's loss on the selection data. The chosen scores are written as run_glue writes them.
CANDIDATES = ("swa", "swa_from50", "ema_0.9", "live")
# seed: (evaluation accuracy of each candidate, the one shipped, selection loss of each candidate)
SWA_RUNS = {
    1: ((0.9186, 0.9230, 0.9150, 0.9117), "swa_from50", (0.31, 0.29, 0.33, 0.35)),
    2: ((0.9209, 0.9101, 0.9188, 0.9048), "live", (0.30, 0.32, 0.31, 0.28)),
    3: ((0.9163, 0.9170, 0.9120, 0.9094), "swa", (0.27, 0.28, 0.30, 0.34)),
}
BASELINE = {1: 0.9071, 2: 0.9128, 3: 0.9014}


def scores(name: str, part: int = 0) -> np.ndarray:
    """A candidate's evaluation accuracy (part 0) or selection loss (part 2) over the seeds."""
    return np.array([run[part][CANDIDATES.index(name)] for run in SWA_RUNS.values()])


def results(scores: dict, chosen=None, selection=None) -> str:
    """A run's results.json: ``scores`` per weights on the validation set, as run_glue nests them."""
    nested = {name: {"validation": {"accuracy": value, "loss": 0.3}} for name, value in scores.items()}
    out = {"metrics": ["accuracy"], "lower_is_better": ["loss"], "eval": nested, "chosen": chosen}
    if chosen:
        nested["chosen"] = nested[chosen]
        out["selection"] = {"metric": "loss", "scores": selection, "dataset": {"name": "swa_select_dataset"}}
    return json.dumps(out, sort_keys=True)


def write_selection_runs(root: Path) -> None:
    for seed, accuracy in BASELINE.items():
        folder = root / "sst2" / "baseline" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(results({"live": accuracy}))
    for seed, (accuracies, chosen, losses) in SWA_RUNS.items():
        folder = root / "sst2" / "swa" / f"seed{seed}"
        folder.mkdir(parents=True)
        scores = dict(zip(CANDIDATES, accuracies, strict=True))
        (folder / "results.json").write_text(results(scores, chosen, dict(zip(CANDIDATES, losses, strict=True))))


def cells(markdown: str, prefix: str) -> list:
    rows = [line for line in markdown.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, f"no single row {prefix!r} in\n{markdown}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def mean_std(x) -> str:
    x = np.asarray(x)
    return f"{x.mean() * 100:.2f} ± {x.std(ddof=1) * 100:.2f}"


@pytest.fixture
def selection_report(tmp_path):
    write_selection_runs(tmp_path / "runs")
    path = report.write_report(tmp_path / "runs", tmp_path / "report")
    return path, path.read_text()


def test_chosen_column_holds_the_shipped_models_means_and_the_delta_judges_them(selection_report):
    _, md = selection_report
    base = np.array(list(BASELINE.values()))
    swa, live = scores("swa"), scores("live")
    chosen = np.array([run[0][CANDIDATES.index(run[1])] for run in SWA_RUNS.values()])
    assert list(chosen) == [0.9230, 0.9048, 0.9163]
    assert "| Task | Metric | Baseline | SWA average | SWA shipped | Δ shipped − baseline | SWA live |" in md
    assert cells(md, "| sst2 | **accuracy** (main)")[2:] == [
        mean_std(base),
        mean_std(swa),
        mean_std(chosen),
        f"{(chosen.mean() - base.mean()) * 100:+.2f}",
        mean_std(live),
        "3 / 3",
    ]
    gain = (chosen.mean() - base.mean()) * 100
    spread = max(base.std(ddof=1), chosen.std(ddof=1)) * 100
    assert (
        f"- **sst2**: SWA (chosen) helped by {gain:+.2f} points (accuracy, 3 seeds baseline / 3 SWA), "
        f"within the seed-to-seed spread (std {spread:.2f}): not conclusive. It shipped an average on 2 of 3 "
        "seeds; on the others no average beat the live weights on the selection data, so there the difference "
        "comes from the SWA run's LR schedule, not from averaging." in md
    )


def test_candidate_table_and_the_candidate_each_seed_chose(selection_report):
    _, md = selection_report
    assert "| Task | Scores | `swa` | `swa_from50` | `ema_0.9` | `live` |" in md
    evals = [scores(name).mean() for name in CANDIDATES]
    assert cells(md, "| sst2 | eval accuracy |")[2:] == [f"{v * 100:.2f}" for v in evals]
    selects = [scores(name, part=2).mean() for name in CANDIDATES]
    assert cells(md, "| sst2 | selection loss (lower is better) |")[2:] == [f"{v:.4f}" for v in selects]
    assert cells(md, "| sst2 | shipped (of 3 seeds) |")[2:] == ["1", "1", "0", "1"]
    assert "- **sst2**: seed 1 → `swa_from50`, seed 2 → `live`, seed 3 → `swa`" in md


def test_json_holds_the_chosen_side_and_the_candidates(selection_report):
    path, _ = selection_report
    data = json.loads(path.with_suffix(".json").read_text())["tasks"]["sst2"]
    assert data["eval"]["validation"]["accuracy"]["shipped"]["values"] == [0.9230, 0.9048, 0.9163]
    assert data["candidates"]["chosen_by_seed"] == {"1": "swa_from50", "2": "live", "3": "swa"}
    assert data["candidates"]["select"]["ema_0.9"] == pytest.approx(np.mean([0.33, 0.31, 0.30]))
    assert data["candidates"]["eval"]["swa_from50"] == pytest.approx(scores("swa_from50").mean())


def test_plain_verdict_when_the_chosen_model_did_worse(tmp_path):
    write_selection_runs(tmp_path)
    for seed in BASELINE:  # a baseline far above every SWA model
        path = tmp_path / "sst2" / "baseline" / f"seed{seed}" / "results.json"
        path.write_text(results({"live": 0.95 + seed / 1000}))
    (task,), _ = summarize(collect_runs(tmp_path))
    chosen = np.mean([0.9230, 0.9048, 0.9163])
    delta = (chosen - np.mean([0.951, 0.952, 0.953])) * 100
    assert task.verdict().startswith(f"SWA (chosen) did not help ({delta:+.2f} points, accuracy, 3 seeds")
    assert "more than the seed-to-seed spread" in task.verdict()


GOLDEN = """\
# SWA vs baseline

Scores ×100, mean ± sample std over seeds. **SWA shipped** is what each SWA run shipped: the weights it chose \
on its selection data, else what its `swa_ship` names (the live weights by default); **SWA average** \
is the average of every snapshot (`swa`). *SWA live* is the same SWA runs' last-step weights. Δ = mean(SWA \
shipped) − mean(baseline); a negative Δ means SWA did worse.

| Task | Metric | Baseline | SWA average | SWA shipped | Δ shipped − baseline | SWA live | Seeds (baseline / \
SWA) |
|---|---|---:|---:|---:|---:|---:|---:|
| mrpc | **f1** (main) | 62.00 ± 2.83 | 65.50 ± 0.71 | 65.50 ± 0.71 | +3.50 | 62.00 ± 1.41 | 2 / 2 |
| mrpc | accuracy | 71.00 ± 1.41 | 72.50 ± 2.12 | 72.50 ± 2.12 | +1.50 | 71.00 ± 2.83 | 2 / 2 |
| rte | **accuracy** (main) | 71.00 ± 1.41 | 72.50 ± 2.12 | 72.50 ± 2.12 | +1.50 | 71.00 ± 2.83 | 2 / 2 |
| rte | f1 | 62.00 ± 2.83 | 65.50 ± 0.71 | 65.50 ± 0.71 | +3.50 | 62.00 ± 1.41 | 2 / 2 |
| **GLUE average** | main metrics of 2 task(s) | 66.50 | 69.00 | 69.00 | +2.50 | 66.50 | |

## Verdict

- **mrpc**: SWA helped by +3.50 points (f1, 2 seeds baseline / 2 SWA), more than the seed-to-seed spread (std \
2.83).
- **rte**: SWA helped by +1.50 points (accuracy, 2 seeds baseline / 2 SWA), within the seed-to-seed spread \
(std 2.12): not conclusive.
- **GLUE average** (mrpc, rte): SWA shipped helped (+2.50 points).

## Evaluation during training

![eval metric over steps](glue_report.png)
"""


def test_report_of_runs_without_selection_reads_as_written(tmp_path):
    runs = {
        "baseline": {1: {"accuracy": 0.70, "f1": 0.6}, 2: {"accuracy": 0.72, "f1": 0.64}},
        "swa": {
            1: {"accuracy": 0.69, "swa_accuracy": 0.71, "f1": 0.61, "swa_f1": 0.66},
            2: {"accuracy": 0.73, "swa_accuracy": 0.74, "f1": 0.63, "swa_f1": 0.65},
        },
    }
    for task in ("rte", "mrpc"):
        for variant, seeds in runs.items():
            for seed, scores in seeds.items():
                folder = tmp_path / task / variant / f"seed{seed}"
                folder.mkdir(parents=True)
                nested = {"live": {"validation": {}}, "swa": {"validation": {}}}
                for key, value in scores.items():
                    nested["swa" if key.startswith("swa_") else "live"]["validation"][key.removeprefix("swa_")] = value
                main = ["f1", "accuracy"] if task == "mrpc" else ["accuracy", "f1"]
                (folder / "results.json").write_text(json.dumps({"metrics": main, "eval": nested}))
    tasks, notes = summarize(collect_runs(tmp_path))
    assert report.render_markdown(tasks, notes, plot_name="glue_report.png") == GOLDEN
    assert all(not t.candidates for t in tasks)
