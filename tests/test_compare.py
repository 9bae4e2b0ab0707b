"""Baseline vs SWA over seeds through scripts/glue_report.py, and the embedded demo's pieces."""

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest
from glue_fixtures import flags, save_tiny_bert, sentiment_rows, write_rows

from hf_swa.checkpointing.names import CONFIG_FILE
from hf_swa.demo.embedded import LABELS, read_tweet_sentiment, write_tweet_sentiment_splits

REPO = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_glue_report_runs_baseline_and_swa_over_seeds(tmp_path, capsys):
    model = save_tiny_bert(tmp_path / "bert")
    train = write_rows(tmp_path / "train.tsv", sentiment_rows(64, seed=0))
    dev = write_rows(tmp_path / "dev.tsv", sentiment_rows(32, seed=1))
    runs = tmp_path / "runs"
    argv = flags(
        model_name_or_path=model,
        task_name="sst2",
        train_file=train,
        validation_file=dev,
        seeds=[1, 2],
        runs_root=runs,
        max_steps=8,
        per_device_train_batch_size=8,
        learning_rate="5e-3",
        report_to="none",
        save_strategy="no",
        eval_strategy="steps",
        eval_steps=4,
        logging_steps=1,
        disable_tqdm="True",
        use_cpu="True",
    )
    assert load_script("glue_report").main(argv) == 0
    for mode in ("baseline", "swa"):
        for seed in (1, 2):
            assert (runs / "sst2" / mode / f"seed{seed}" / "results.json").is_file()
    results = {
        (mode, seed): json.loads((runs / "sst2" / mode / f"seed{seed}" / "results.json").read_text())
        for mode in ("baseline", "swa")
        for seed in (1, 2)
    }
    assert set(results[("baseline", 1)]["eval"]) == {"live"}
    swa_config = json.loads((runs / "sst2" / "swa" / "seed1" / CONFIG_FILE).read_text())
    assert swa_config["start_step"] == 4 and swa_config["swa_lr"] is None and swa_config["swa_lr_ratio"] == 0.5
    # The tail: from the start step the LR is held at half the peak (5e-3), 2.5e-3.
    state = json.loads((runs / "sst2" / "swa" / "seed1" / "trainer_state.json").read_text())
    logged = {entry["step"]: entry["learning_rate"] for entry in state["log_history"] if "learning_rate" in entry}
    assert sorted(logged) == list(range(1, 9))
    assert all(logged[step] == pytest.approx(2.5e-3, rel=1e-9) for step in range(4, 9))
    # The defaults: both runs train on every row; the SWA run keeps 4 windows (snapshots 4..8 split from steps 4,
    # 5, 6 and 7) and ships the live weights (swa_ship's default), without a choice.
    for seed in (1, 2):
        trained = [results[(mode, seed)]["train"]["train_samples"] for mode in ("baseline", "swa")]
        assert trained == [64, 64] and "select_samples" not in results[("swa", seed)]["train"]
        assert results[("swa", seed)]["chosen"] == "live" and results[("swa", seed)]["selection"] is None
        assert "swa" in results[("swa", seed)]["eval"]  # the average from swa_start, evaluated, not shipped

    # The table holds the means of the runs' own numbers, and the delta between the shipped side and the baseline.
    def mean_of(mode, weights):
        return statistics.mean(results[(mode, s)]["eval"][weights]["validation"]["accuracy"] for s in (1, 2)) * 100

    baseline, swa, chosen, live = (mean_of("baseline", "live"), mean_of("swa", "swa"), mean_of("swa", "chosen"),
                                   mean_of("swa", "live"))  # fmt: skip
    report = (runs / "glue_report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| sst2"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    mean = lambda cell: float(cell.split("±")[0])  # noqa: E731
    assert mean(cells[2]) == pytest.approx(baseline, abs=0.006)
    assert mean(cells[3]) == pytest.approx(swa, abs=0.006)
    assert mean(cells[4]) == pytest.approx(chosen, abs=0.006)
    assert float(cells[5]) == pytest.approx(chosen - baseline, abs=0.011)
    assert mean(cells[6]) == pytest.approx(live, abs=0.006)
    assert cells[7] == "2 / 2"
    choices = ", ".join(f"seed {s} → `{results[('swa', s)]['chosen']}`" for s in (1, 2))
    assert choices in report
    assert (runs / "glue_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Finished runs are not run again.
    before = (runs / "sst2" / "swa" / "seed1" / "results.json").stat().st_mtime_ns
    assert load_script("glue_report").main(argv) == 0
    assert (runs / "sst2" / "swa" / "seed1" / "results.json").stat().st_mtime_ns == before
    capsys.readouterr()


def test_glue_report_refuses_a_bad_override_before_training(tmp_path):
    model = save_tiny_bert(tmp_path / "bert")
    with pytest.raises(ValueError, match="TASK=METRIC"):
        load_script("glue_report").main(
            [
                "--model_name_or_path",
                str(model),
                "--task_name",
                "sst2",
                "--main_metric",
                "accuracy",
                "--runs_root",
                str(tmp_path / "r"),
            ]
        )
    assert not (tmp_path / "r").exists()


def test_embedded_corpus_is_the_real_three_class_tweet_set():
    rows = read_tweet_sentiment()
    texts = [text for text, _ in rows]
    assert len(texts) == len(set(texts)) > 30000  # 38,158 rows, repeated tweets kept once
    counts = {label: sum(1 for _, name in rows if name == label) for label in LABELS}
    assert min(counts.values()) > 5000
    assert all("\t" not in text and "\n" not in text for text in texts)


def test_embedded_splits_are_disjoint_and_reproducible(tmp_path):
    train, dev = write_tweet_sentiment_splits(str(tmp_path / "a"), n_train=300, n_validation=100, seed=3)
    again, _ = write_tweet_sentiment_splits(str(tmp_path / "b"), n_train=300, n_validation=100, seed=3)
    assert Path(train).read_text() == Path(again).read_text()
    train_rows = Path(train).read_text().splitlines()[1:]
    dev_rows = Path(dev).read_text().splitlines()[1:]
    assert len(train_rows) == 300 and len(dev_rows) == 100
    assert not {r.rsplit("\t", 1)[0] for r in train_rows} & {r.rsplit("\t", 1)[0] for r in dev_rows}
    assert {row.rsplit("\t", 1)[1] for row in train_rows} == set(LABELS)
    with pytest.raises(ValueError, match="exceeds"):
        write_tweet_sentiment_splits(str(tmp_path / "c"), n_train=10**6)


def test_a_run_that_died_before_evaluation_is_not_finished(tmp_path):
    from hf_swa.glue.compare import is_finished

    run = tmp_path / "swa" / "seed1"
    run.mkdir(parents=True)
    assert not is_finished(str(run), "swa")
    (run / "results.json").write_text(json.dumps({"train": {"train_loss": 0.5}}))  # a crash during evaluation
    assert not is_finished(str(run), "swa")
    live = {"validation": {"loss": 0.4}}
    (run / "results.json").write_text(json.dumps({"eval": {"live": live}}))
    assert is_finished(str(run), "baseline") and not is_finished(str(run), "swa")
    (run / "results.json").write_text(json.dumps({"eval": {"live": live, "swa": {"validation": {"loss": 0.3}}}}))
    assert is_finished(str(run), "swa")


def test_a_baseline_that_held_rows_out_is_run_again(tmp_path):
    from hf_swa.glue.compare import is_finished

    run = tmp_path / "baseline" / "seed1"
    run.mkdir(parents=True)
    live = {"validation": {"loss": 0.4}}
    # Written before 0.2, when a baseline held out the SWA run's selection rows: not the every-row baseline.
    (run / "results.json").write_text(json.dumps({"train": {"select_samples": 13}, "eval": {"live": live}}))
    assert not is_finished(str(run), "baseline")
    (run / "results.json").write_text(json.dumps({"train": {"train_samples": 64}, "eval": {"live": live}}))
    assert is_finished(str(run), "baseline")
