"""hf-swa-clm's results through the multi-seed report (lower perplexity is better), the card and hf-swa-push."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest
from test_clm import clm_flags, corpus  # noqa: F401  (the fixture)
from test_hub import REPO_ROOT, hub_env

from hf_swa.clm.cli import main
from hf_swa.glue.report import write_report
from hf_swa.hub.card import render_model_card

SEEDS = (1, 2)


@pytest.fixture(scope="module")
def runs_root(corpus, tmp_path_factory):  # noqa: F811
    """Baseline (no SWA, a linear decay) and SWA runs (a constant LR, every snapshot averaged) over two seeds."""
    root = tmp_path_factory.mktemp("clm_runs")
    for seed in SEEDS:
        base = ["--swa", "false", "--seed", str(seed)]
        main(clm_flags(corpus, root / "causal-lm" / "baseline" / f"seed{seed}", *base))
        swa = ["--seed", str(seed), "--lr_scheduler_type", "constant", "--swa_lr_ratio", "0", "--swa_ship", "swa"]
        main(clm_flags(corpus, root / "causal-lm" / "swa" / f"seed{seed}", *swa))
    return root


def mean_perplexity(root, variant: str, weights: str) -> float:
    """The report's main score of a side, computed here: per seed the mean over the evaluation sets, then over seeds."""
    values = []
    for seed in SEEDS:
        sets = json.loads((root / "causal-lm" / variant / f"seed{seed}" / "results.json").read_text())["eval"][weights]
        values.append(statistics.fmean(scores["perplexity"] for scores in sets.values()))
    return statistics.fmean(values)


def test_report_compares_perplexity_lower_is_better(runs_root, tmp_path):
    md = write_report(runs_root, tmp_path).read_text()
    summary = json.loads((tmp_path / "glue_report.json").read_text())["tasks"]["causal-lm"]
    base, shipped = mean_perplexity(runs_root, "baseline", "live"), mean_perplexity(runs_root, "swa", "chosen")
    assert summary["main_metric"] == "perplexity" and summary["lower"] is True
    assert summary["main"]["baseline"]["mean"] == pytest.approx(base, rel=1e-12)
    assert summary["main"]["shipped"]["mean"] == pytest.approx(shipped, rel=1e-12)
    assert summary["main"]["delta"] == pytest.approx(shipped - base, rel=1e-12)
    gain = base - shipped  # lower perplexity is the gain, shown unscaled
    verdict = summary["verdict"]
    assert verdict.startswith(f"SWA helped by {gain:+.2f}" if gain > 0 else f"SWA did not help ({gain:+.2f}")
    assert "(perplexity (mean over the evaluation sets), lower is better," in verdict and " points" not in verdict
    test = statistics.fmean(
        json.loads((runs_root / "causal-lm" / "baseline" / f"seed{seed}" / "results.json").read_text())["eval"]["live"][
            "test"
        ]["perplexity"]
        for seed in SEEDS
    )
    assert f"| causal-lm | **perplexity** (main) [test] | {test:.2f} ± " in md  # unscaled (accuracy is shown ×100)


def test_card_and_push_of_a_clm_run(runs_root, tmp_path):
    from hub_server import FakeHub

    folder = runs_root / "causal-lm" / "swa" / "seed1"
    card = (folder / "README.md").read_text()
    results = json.loads((folder / "results.json").read_text())
    assert "pipeline_tag: text-generation" in card and "AutoModelForCausalLM.from_pretrained" in card
    live, shipped = results["eval"]["live"]["test"]["perplexity"], results["eval"]["chosen"]["test"]["perplexity"]
    assert f"| perplexity (test) (lower is better) | {live:.4f} | {shipped:.4f} |" in card
    with FakeHub() as hub:
        done = subprocess.run(
            [sys.executable, str(REPO_ROOT / "scripts" / "push_to_hub.py"), "--model_dir", str(folder),
             "--repo_id", "me/tiny-clm-swa", "--task_name", "causal-lm"],
            env=hub_env(hub.url, tmp_path / "hf_home"), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        pushed = hub.files("me/tiny-clm-swa")
    assert pushed["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    assert b"AutoModelForCausalLM" in pushed["README.md"] and "checkpoint" not in " ".join(pushed)


def test_a_glue_card_still_loads_a_sequence_classifier():
    card = str(render_model_card({"n_averaged": 2}, {"eval": {"live": {"validation": {"accuracy": 0.5}}}}))
    assert "pipeline_tag: text-classification" in card and "AutoModelForSequenceClassification.from_pretrained" in card
