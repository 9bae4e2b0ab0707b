"""The main job on the embedded task, small: selection on held-out tweets, the chosen model shipped and reported."""

import json
from collections import Counter

import pytest
from glue_fixtures import save_tiny_bert
from safetensors.torch import load_file

from hf_swa import selection_split
from hf_swa.checkpointing.names import CONFIG_FILE
from hf_swa.demo import run as demo
from hf_swa.glue.run import SELECT_ROWS_FILE
from hf_swa.training import defaults

pytestmark = pytest.mark.slow


def test_demo_selects_on_held_out_tweets_and_ships_and_reports_the_chosen(tmp_path, monkeypatch):
    # The demo's own path on the real tweets, with a tiny BERT in place of all-MiniLM-L6-v2 (quick on CPU).
    tiny = save_tiny_bert(tmp_path / "tiny-bert")
    monkeypatch.setattr(demo, "minilm_path", lambda: str(tiny))
    args = demo.DemoArguments(
        output_root=str(tmp_path),
        n_train=150,
        n_validation=60,
        num_train_epochs=1.0,
        batch_size=16,
        max_seq_length=32,
        evaluations=2,
        seeds=[7],
    )
    report = demo.run_demo(args).read_text()
    runs = tmp_path / "runs" / "tweet_sentiment"
    swa, baseline = runs / "swa" / "seed7", runs / "baseline" / "seed7"

    # The SWA run holds out a stratified 20% of the training tweets; the baseline trains on all 150.
    held = json.loads((swa / SELECT_ROWS_FILE).read_text())
    assert not (baseline / SELECT_ROWS_FILE).exists()
    assert json.loads((baseline / "results.json").read_text())["train"]["train_samples"] == 150
    assert held["swa_select_split"] == demo.SELECT_SPLIT == 0.2 and held["seed"] == 7
    labels = [line.rsplit("\t", 1)[1] for line in (tmp_path / "data" / "train.tsv").read_text().splitlines()[1:]]
    per_class, held_per_class = Counter(labels), Counter(labels[i] for i in held["held_out_rows"])
    assert held["held_out_rows"] == selection_split(demo.SELECT_SPLIT, labels, seed=7)[1]  # stratified, seeded
    assert all(abs(held_per_class[label] - count * demo.SELECT_SPLIT) <= 1 for label, count in per_class.items())

    # The SWA run chose on them, by the demo's metric, among the demo's candidates.
    results = json.loads((swa / "results.json").read_text())
    record = json.loads((swa / CONFIG_FILE).read_text())
    chosen = record["selection"]["chosen"]
    assert results["chosen"] == chosen == record["shipped"]
    assert defaults.SWA_SELECT_METRIC == "auto" and record["selection"]["metric"] == "loss"
    assert record["selection"]["dataset"]["size"] == len(held["held_out_rows"]) == results["train"]["select_samples"]
    windows = [c for c in record["candidates"] if c["kind"] == "window_mean"]
    assert len(windows) == defaults.SWA_WINDOWS == 4
    assert results["train"]["train_samples"] == 150 - len(held["held_out_rows"])

    # The published model is the one the run shipped; the report shows it.
    published = load_file(str(tmp_path / "model" / "model.safetensors"))
    shipped = load_file(str(swa / "model.safetensors"))
    assert published.keys() == shipped.keys() and all((published[k] == shipped[k]).all() for k in shipped)
    assert json.loads((tmp_path / "model" / CONFIG_FILE).read_text())["shipped"] == chosen
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"The weights in this repository are the candidate **`{chosen}`**" in card
    assert (
        "| SWA shipped | Δ shipped − baseline |" in report and f"- **tweet_sentiment**: seed 7 → `{chosen}`" in report
    )
    row = next(line for line in report.splitlines() if line.startswith("| tweet_sentiment | **accuracy** (main)"))
    assert row.split("|")[5].strip() == f"{results['eval']['chosen']['validation']['accuracy'] * 100:.2f}"
