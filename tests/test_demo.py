"""The main job on the embedded task, small: every tweet trains, the last window shipped and reported."""

import json

import pytest
from glue_fixtures import save_tiny_bert
from safetensors.torch import load_file

from hf_swa.checkpointing.names import CONFIG_FILE
from hf_swa.demo import run as demo
from hf_swa.glue.run import SELECT_ROWS_FILE
from hf_swa.training import defaults

pytestmark = pytest.mark.slow


def test_demo_trains_on_every_tweet_and_ships_and_reports_the_last_window(tmp_path, monkeypatch):
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

    # Both runs train on all 150 tweets: the defaults hold none out.
    assert demo.SELECT_SHARE == defaults.SWA_SELECT_SPLIT == 0
    for run in (swa, baseline):
        assert not (run / SELECT_ROWS_FILE).exists()
        assert json.loads((run / "results.json").read_text())["train"]["train_samples"] == 150

    # The SWA run shipped the last of the default windows, without a choice (10 steps: snapshots 5..10).
    results = json.loads((swa / "results.json").read_text())
    record = json.loads((swa / CONFIG_FILE).read_text())
    windows = [c for c in record["candidates"] if c["kind"] == "window_mean"]
    assert len(windows) == defaults.SWA_WINDOWS == 4 and [c["start_step"] for c in windows] == [5, 6, 8, 9]
    chosen = "swa_from9"
    assert results["chosen"] == record["shipped"] == chosen and "selection" not in record
    assert results["eval"]["chosen"] == results["eval"][chosen]

    # The published model is the one the run shipped; the report shows it.
    published = load_file(str(tmp_path / "model" / "model.safetensors"))
    shipped = load_file(str(swa / "model.safetensors"))
    assert published.keys() == shipped.keys() and all((published[k] == shipped[k]).all() for k in shipped)
    assert json.loads((tmp_path / "model" / CONFIG_FILE).read_text())["shipped"] == chosen
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"they are the candidate\n**`{chosen}`**" in card and "without a\nchoice" in card
    assert (
        "| SWA shipped | Δ shipped − baseline |" in report and f"- **tweet_sentiment**: seed 7 → `{chosen}`" in report
    )
    row = next(line for line in report.splitlines() if line.startswith("| tweet_sentiment | **accuracy** (main)"))
    assert row.split("|")[5].strip() == f"{results['eval']['chosen']['validation']['accuracy'] * 100:.2f}"
