"""The causal-LM study's report: the choices made on validation, the numbers reported on test, checked by hand."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
clm_study_report = pytest.importorskip("clm_study_report")


def record(recipe, seed, scores, budget=1, lr=2e-3, chosen=None):
    """A run's record; `scores` maps weights to (validation, test) perplexity."""
    weights = {w: {"validation": {"perplexity": v}, "test": {"perplexity": t}} for w, (v, t) in scores.items()}
    if chosen:
        weights["chosen"] = weights[chosen]
    return dict(corpus="bbc", recipe=recipe, budget=budget, lr=lr, seed=seed, seconds=1.0, eval=weights, chosen=chosen)


def test_choices_on_validation_and_gaps_on_test(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    records = [
        record("linear", 0, {"live": (90, 0)}, lr=1e-3),
        record("linear", 0, {"live": (80, 0)}, lr=2e-3),
        # cosine is best on validation (mean 100), though linear is best on test: the reference is cosine's test.
        *(record(r, s, {"live": v}) for r, s, v in [("linear", 1, (110, 90)), ("linear", 2, (110, 90)),
                                                     ("cosine", 1, (100, 100)), ("cosine", 2, (100, 100)),
                                                     ("wsd", 1, (105, 95)), ("wsd", 2, (120, 95))]),
        # seed 1 picks swa (lowest validation among averages), seed 2 picks ema_0.9; live is best on validation.
        record("constant", 1, {"live": (50, 150), "swa": (90, 99), "ema_0.9": (95, 80)}, chosen="swa"),
        record("constant", 2, {"live": (50, 150), "swa": (96, 99), "ema_0.9": (95, 103)}, chosen="swa"),
        record("defaults", 1, {"live": (100, 104), "swa_from90": (100, 102)}, chosen="swa_from90"),
    ]  # fmt: skip
    for i, r in enumerate(records):
        (runs / f"{i}.json").write_text(json.dumps(r))
    md = clm_study_report.write_report(runs, tmp_path).read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tuning"]["bbc"]["linear"] == {"0.001": 90, "0.002": 80}
    cell = summary["cells"]["bbc"]["1"]
    assert cell["best"] == "cosine" and cell["picks"] == ["swa", "ema_0.9"] and cell["picks_live"] == ["live", "live"]
    assert cell["chosen"]["values"] == [99, 103] and cell["chosen"]["mean"] == pytest.approx(101)
    assert "| **constant: chosen on validation** (`swa`, `ema_0.9`) | **101.0 ± 2.8 (+1.0%)** | 2 |" in md
    assert "| baseline linear, lr 0.002 | 90.0 ± 0.0 (-10.0%) | 2 |" in md
    assert "| hf_swa defaults: shipped (`swa_from90`) | 102.0 (+2.0%) | 1 |" in md
    # paired by seed against cosine (100 each): 99/100 - 1 and 103/100 - 1
    assert "Paired by seed, chosen on validation against cosine: +1.0% (seeds: -1.0%, +3.0%)." in md
