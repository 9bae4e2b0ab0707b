"""The model card of a folder holding a chosen candidate: it names it and reports its scores, not the average's."""

import json

import pytest

from hf_swa.hub import render_model_card

CONFIG = {
    "swa_start": 0.5,
    "start_step": 60,
    "swa_freq": 3,
    "swa_lr": 4e-5,
    "n_averaged": 21,
    "shipped": "swa_from90",
    "candidates": [
        {"name": "swa", "kind": "window_mean", "start_step": 60, "n_averaged": 21},
        {"name": "swa_from90", "kind": "window_mean", "start_step": 90, "n_averaged": 11},
        {"name": "ema_0.9", "kind": "ema", "decay": 0.9, "start_step": 60, "n_averaged": 21},
    ],
    "selection": {
        "metric": "loss",
        "greater_is_better": False,
        "chosen": "swa_from90",
        "dataset": {"name": "swa_select_dataset", "size": 480},
        "scores": {"swa": 0.52, "swa_from90": 0.50, "ema_0.9": 0.51, "live": 0.55},
    },
}
RESULTS = {  # as run_glue writes them: per weights, per evaluation set, per metric
    "eval": {
        "live": {"validation": {"accuracy": 0.70, "loss": 0.6}},
        "swa": {"validation": {"accuracy": 0.71, "loss": 0.58}},
        "swa_from90": {"validation": {"accuracy": 0.725, "loss": 0.57}},
        "chosen": {"validation": {"accuracy": 0.725, "loss": 0.57}},
    },
    "chosen": "swa_from90",
}


def test_card_names_the_chosen_candidate_and_reports_its_scores():
    card = render_model_card(CONFIG, RESULTS, repo_id="me/tweets", task_name="sst2", dataset_id="nyu-mll/glue")
    text = card.text
    assert (
        "The weights in this repository are the candidate **`swa_from90`**: the equal-weight mean of the 11 "
        "snapshots taken from optimizer step 90 on."
    ) in text
    assert "scored by loss on 480 training rows held out for the choice, among 4 candidates" in text
    assert "| Metric | Live weights | Chosen weights (this model) | Chosen − live |" in text
    assert "| accuracy | 0.7000 | 0.7250 | +0.0250 |" in text
    assert "| loss (lower is better) | 0.6000 | 0.5700 | -0.0300 |" in text
    assert "On this run the chosen weights did better than the live weights on accuracy (+0.0250)" in text
    metric = card.data.to_dict()["model-index"][0]["results"][0]["metrics"][0]
    assert metric["value"] == 0.725 and metric["name"] == "accuracy (SWA candidate swa_from90, chosen on held-out data)"


def test_card_of_live_weights_chosen_says_so():
    config = {**CONFIG, "shipped": "live", "selection": {**CONFIG["selection"], "chosen": "live"}}
    chosen = {**RESULTS["eval"], "chosen": RESULTS["eval"]["live"]}
    text = render_model_card(config, {"eval": chosen, "chosen": "live"}).text
    assert "the candidate **`live`**: the weights of the last training step (no average scored better)" in text
    assert "| accuracy | 0.7000 | 0.7000 | +0.0000 |" in text
    assert "On this run the chosen weights scored the same as the live weights" in text


def test_push_of_a_chosen_candidate_says_which_in_the_commit_and_the_card(tmp_path):
    from hub_server import FakeHub
    from test_hub import hub_env, run_cli, save_averaged_model

    folder = save_averaged_model(tmp_path / "tweets", swa_config=CONFIG)
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    with FakeHub() as fake:
        done = run_cli(
            ["--model_dir", str(folder), "--repo_id", "me/tweets", "--results_file", str(tmp_path / "results.json")],
            hub_env(fake.url, tmp_path / "hf_home"),
        )
        assert done.returncode == 0, done.stderr
    repo = fake.repos["me/tweets"]
    assert [c["header"]["summary"] for c in repo.commits] == [
        "Upload SWA candidate swa_from90, chosen on held-out data, with hf_swa"
    ]
    card = fake.files("me/tweets")["README.md"].decode()
    assert "the candidate **`swa_from90`**" in card and "| accuracy | 0.7000 | 0.7250 | +0.0250 |" in card


def test_card_of_the_last_window_shipped_without_a_choice_names_it_and_its_scores():
    config = {k: v for k, v in CONFIG.items() if k != "selection"}  # swa_ship="last_window": no selection record
    card = render_model_card(config, RESULTS, repo_id="me/tweets", task_name="sst2", dataset_id="nyu-mll/glue")
    text = card.text
    assert (
        "they are the candidate\n**`swa_from90`**, the equal-weight mean of the 11 snapshots taken from optimizer step "
        "90 on, shipped as the run's settings say (`swa_ship`), without a\nchoice."
    ) in text
    assert "scored by" not in text and "Chosen weights" not in text
    assert "| Snapshots averaged (`n_averaged`) | 21 (in `swa_from90`, which this model holds: 11) |" in text
    assert "| Metric | Live weights | Averaged weights (this model) | Averaged − live |" in text
    assert "| accuracy | 0.7000 | 0.7250 | +0.0250 |" in text  # swa_from90's scores, not swa's (0.71)
    metric = card.data.to_dict()["model-index"][0]["results"][0]["metrics"][0]
    assert metric["value"] == 0.725 and metric["name"] == "accuracy (SWA-averaged weights)"


def test_the_card_names_the_share_of_the_training_rows_held_out_for_the_choice():
    from hf_swa.hub.shipped import shipped_weights

    record = {
        "candidates": [{"name": "swa", "kind": "window_mean", "start_step": 5, "n_averaged": 3}],
        "selection": {
            "chosen": "swa",
            "metric": "loss",
            "scores": {"swa": 0.1, "live": 0.2},
            "dataset": {"name": "swa_select_dataset", "size": 480},
            "split": {"kind": "groups", "share": 0.2, "held_out_share": 0.1875},
        },
    }
    phrase = shipped_weights(record).selection_phrase
    assert phrase.startswith("loss on 480 training rows held out for the choice (18.8% of the training rows in whole")


@pytest.mark.parametrize("rule", ["live", "last_window"])
def test_a_card_of_live_weights_says_which_setting_shipped_them(rule):
    from hf_swa.hub.card import render_model_card

    described = {"name": "live", "kind": "live", "description": "the live weights of the last optimizer step (8)"}
    record = {"swa_ship": rule, "shipped": "live", "shipped_weights": described, "n_averaged": 3}
    card = str(render_model_card(record, {"eval": {"live": {"validation": {"accuracy": 0.8}}}}))
    assert "are the weights of the last training step: the live weights of the last optimizer step (8)" in card
    if rule == "live":
        assert '(`swa_ship="live"`, the default' in card and "held no snapshot" not in card
    else:
        assert '`swa_ship="last_window"` named an average that held no snapshot' in card and "the default" not in card
