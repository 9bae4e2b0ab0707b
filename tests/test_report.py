"""The baseline-vs-SWA report: numbers in the table equal independently computed ones."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from hf_swa.glue import report
from hf_swa.glue.report import collect_runs, summarize

REPO_ROOT = Path(__file__).resolve().parent.parent

# Final scores per task, variant and seed. On sst2 SWA beats the baseline; on rte it is worse.
SST2 = {
    "baseline": {1: {"accuracy": 0.9071}, 2: {"accuracy": 0.9128}, 3: {"accuracy": 0.9014}},
    "swa": {
        1: {"accuracy": 0.9117, "swa_accuracy": 0.9186},
        2: {"accuracy": 0.9048, "swa_accuracy": 0.9209},
        3: {"accuracy": 0.9094, "swa_accuracy": 0.9163},
    },
}
RTE = {
    "baseline": {1: {"accuracy": 0.6643}, 2: {"accuracy": 0.6823}, 3: {"accuracy": 0.6715}},
    "swa": {
        1: {"accuracy": 0.6751, "swa_accuracy": 0.6498},
        2: {"accuracy": 0.6606, "swa_accuracy": 0.6570},
        3: {"accuracy": 0.6859, "swa_accuracy": 0.6643},
    },
}
MRPC = {  # two metrics (main: f1) and the loss, which is not compared
    "baseline": {
        1: {"f1": 0.88, "accuracy": 0.83, "loss": 0.3},
        2: {"f1": 0.89, "accuracy": 0.84, "loss": 0.3},
    },
    "swa": {
        1: {"f1": 0.90, "accuracy": 0.85, "swa_f1": 0.91, "swa_accuracy": 0.86, "swa_loss": 0.2},
        2: {"f1": 0.89, "accuracy": 0.84, "swa_f1": 0.905, "swa_accuracy": 0.855},
    },
}


MAIN = {"mrpc": ["f1", "accuracy"]}


def nested(scores: dict, task: str) -> dict:
    """The fixture's scores (``accuracy``, ``swa_accuracy``, ``accuracy_mm`` ...) as run_glue nests them."""
    sets = ("validation_matched", "validation_mismatched") if task == "mnli" else ("validation", None)
    out = {}
    for key, value in scores.items():
        weights, metric = ("swa", key[4:]) if key.startswith("swa_") else ("live", key)
        eval_set = sets[1] if metric.endswith("_mm") else sets[0]
        out.setdefault(weights, {}).setdefault(eval_set, {})[metric.removesuffix("_mm")] = value
    return out


def write_runs(root: Path, task: str, runs: dict) -> None:
    for variant, seeds in runs.items():
        for seed, scores in seeds.items():
            folder = root / task / variant / f"seed{seed}"
            folder.mkdir(parents=True)
            results = {
                "metrics": MAIN.get(task, ["accuracy"]),
                "lower_is_better": ["loss"],
                "eval": nested(scores, task),
            }
            results["train"] = {"train_runtime": 60.0, "epoch": 3.0}
            (folder / "results.json").write_text(json.dumps(results))
            history = [{"loss": 0.5, "step": 10}]  # a training log line: no eval key, must be skipped
            for step in (50, 100):
                history.append({"step": step, **{f"eval_{k}": v - (100 - step) / 1000 for k, v in scores.items()}})
            (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))


def values(runs: dict, variant: str, key: str) -> np.ndarray:
    return np.array([scores[key] for scores in runs[variant].values()])


def mean_std(x: np.ndarray) -> str:
    return f"{x.mean() * 100:.2f} ± {x.std(ddof=1) * 100:.2f}"


def table_row(markdown: str, task: str, metric_cell: str) -> list[str]:
    prefix = f"| {task} | {metric_cell} |"
    rows = [line for line in markdown.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, f"no single row {prefix!r} in\n{markdown}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


@pytest.fixture
def report_md(tmp_path) -> tuple[Path, str]:
    root = tmp_path / "runs"
    write_runs(root, "sst2", SST2)
    write_runs(root, "rte", RTE)
    path = report.write_report(root, tmp_path / "report")
    return path, path.read_text()


def test_table_holds_independently_computed_means_stds_and_deltas(report_md):
    _, md = report_md
    for task, runs in (("sst2", SST2), ("rte", RTE)):
        base, swa, live = (
            values(runs, "baseline", "accuracy"),
            values(runs, "swa", "swa_accuracy"),
            values(runs, "swa", "accuracy"),
        )
        row = table_row(md, task, "**accuracy** (main)")
        assert row[2:] == [
            mean_std(base),
            mean_std(swa),
            mean_std(swa),  # shipped: the average, as no run selected
            f"{(swa.mean() - base.mean()) * 100:+.2f}",
            mean_std(live),
            "3 / 3",
        ]
    # GLUE average: mean over tasks of the main metric's mean, per side.
    tasks = (SST2, RTE)
    avg_base = np.mean([values(r, "baseline", "accuracy").mean() for r in tasks])
    avg_swa = np.mean([values(r, "swa", "swa_accuracy").mean() for r in tasks])
    avg_live = np.mean([values(r, "swa", "accuracy").mean() for r in tasks])
    row = table_row(md, "**GLUE average**", "main metrics of 2 task(s)")
    assert row[2:7] == [
        f"{avg_base * 100:.2f}",
        f"{avg_swa * 100:.2f}",
        f"{avg_swa * 100:.2f}",
        f"{(avg_swa - avg_base) * 100:+.2f}",
        f"{avg_live * 100:.2f}",
    ]


def test_task_where_swa_was_worse_is_shown_with_negative_delta_and_verdict(report_md):
    _, md = report_md
    delta = (values(RTE, "swa", "swa_accuracy").mean() - values(RTE, "baseline", "accuracy").mean()) * 100
    assert delta < 0  # the fixture really is a loss for SWA
    assert table_row(md, "rte", "**accuracy** (main)")[5] == f"{delta:+.2f}"
    assert f"- **rte**: SWA did not help ({delta:+.2f} points, accuracy, 3 seeds baseline / 3 SWA)" in md
    gain = (values(SST2, "swa", "swa_accuracy").mean() - values(SST2, "baseline", "accuracy").mean()) * 100
    assert f"- **sst2**: SWA helped by {gain:+.2f} points" in md


def test_png_plot_is_written_and_valid(report_md):
    path, md = report_md
    png = path.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 200
    assert pixels.std() > 0  # something was drawn
    assert f"]({png.name})" in md


def test_json_has_the_same_numbers_unscaled(report_md):
    path, _ = report_md
    data = json.loads(path.with_suffix(".json").read_text())
    rte = data["tasks"]["rte"]["eval"]["validation"]["accuracy"]
    assert rte["baseline"]["values"] == list(values(RTE, "baseline", "accuracy"))
    assert rte["swa"]["std"] == pytest.approx(values(RTE, "swa", "swa_accuracy").std(ddof=1))
    assert rte["delta"] < 0 and data["tasks"]["rte"]["main"]["delta"] == rte["delta"]


def test_every_metric_is_compared_main_first_and_loss_is_not(tmp_path):
    write_runs(tmp_path, "mrpc", MRPC)
    (mrpc,), _ = summarize(collect_runs(tmp_path))
    assert list(mrpc.rows) == [("validation", "f1"), ("validation", "accuracy")]  # GLUE's main metric for MRPC: F1
    acc = mrpc.rows["validation", "accuracy"]
    assert acc["swa"].values == (0.86, 0.855) and acc["baseline"].values == (0.83, 0.84)
    assert acc["shipped"].mean - acc["baseline"].mean == pytest.approx(np.mean([0.86, 0.855]) - np.mean([0.83, 0.84]))


def test_mnli_mismatched_is_its_own_row_and_folded_into_the_average(tmp_path):
    runs = {
        "baseline": {1: {"accuracy": 0.84, "accuracy_mm": 0.85, "loss_mm": 0.5}},
        "swa": {1: {"accuracy": 0.845, "accuracy_mm": 0.85, "swa_accuracy": 0.85, "swa_accuracy_mm": 0.86}},
    }
    write_runs(tmp_path, "mnli", runs)
    tasks, _ = summarize(collect_runs(tmp_path))
    (mnli,) = tasks
    assert list(mnli.rows) == [("validation_matched", "accuracy"), ("validation_mismatched", "accuracy")]
    assert mnli.main["baseline"].values == (pytest.approx(0.845),)
    assert mnli.main["swa"].values == (pytest.approx(0.855),)
    assert "one seed on a side" in mnli.verdict()


def test_missing_runs_are_reported_not_hidden(tmp_path):
    write_runs(tmp_path, "rte", RTE)
    (tmp_path / "rte" / "swa" / "seed4").mkdir()  # launched, never finished
    (tmp_path / "rte" / "baseline" / "seed3" / "results.json").unlink()
    tasks, notes = summarize(collect_runs(tmp_path))
    notes = "\n".join(notes)
    assert "rte/swa/seed4: no results.json" in notes
    assert "rte/baseline/seed3: no results.json" in notes
    assert "rte: seeds differ between baseline and SWA" in notes
    assert tasks[0].main["baseline"].n == 2 and tasks[0].main["shipped"].n == 3


def test_empty_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no runs under .*<task>/<baseline\|swa>/seed<k>"):
        collect_runs(tmp_path)


def test_cli_collect_only(tmp_path, capsys):
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import glue_report

    write_runs(tmp_path / "runs", "rte", RTE)
    assert (
        glue_report.main(
            ["--runs_root", str(tmp_path / "runs"), "--output_dir", str(tmp_path / "out"), "--collect_only"]
        )
        == 0
    )
    assert (tmp_path / "out" / "glue_report.md").is_file() and (tmp_path / "out" / "glue_report.png").is_file()
    assert "SWA did not help" in capsys.readouterr().out
    assert glue_report.main(["--runs_root", str(tmp_path / "empty"), "--collect_only"]) == 2


def test_average_row_only_for_several_tasks_and_named_glue_only_for_glue(tmp_path):
    one = {"baseline": {1: {"accuracy": 0.5}}, "swa": {1: {"accuracy": 0.6, "swa_accuracy": 0.7}}}
    write_runs(tmp_path / "a", "tweets", one)
    md = report.write_report(tmp_path / "a", tmp_path / "a").read_text()
    table = md.split("## Verdict")[0]
    assert "| tweets |" in table and "average** |" not in table.lower()
    write_runs(tmp_path / "b", "tweets", one)
    write_runs(tmp_path / "b", "rte", one)
    md = report.write_report(tmp_path / "b", tmp_path / "b").read_text()
    assert "| **Average** |" in md and "GLUE average** |" not in md


def test_mnli_verdict_uses_the_matched_mismatched_mean_like_the_average(tmp_path):
    runs = {
        "baseline": {1: {"accuracy": 0.80, "accuracy_mm": 0.70}},
        "swa": {1: {"accuracy": 0.79, "accuracy_mm": 0.75, "swa_accuracy": 0.79, "swa_accuracy_mm": 0.75}},
    }
    write_runs(tmp_path, "mnli", runs)
    md = report.write_report(tmp_path, tmp_path).read_text()
    verdict = next(line for line in md.splitlines() if line.startswith("- **mnli**"))
    # matched -1.00, mismatched +5.00: the mean, (79 + 75) / 2 - (80 + 70) / 2 = +2.00, decides
    assert "SWA scored +2.00 points against the baseline (accuracy (mean over the evaluation sets)" in verdict
    assert "one seed on a side, so not conclusive" in verdict and "helped" not in verdict
