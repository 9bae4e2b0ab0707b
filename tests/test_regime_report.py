"""The regime study's tables: columns, selection and refit computed from stored runs, checked by hand."""

import json
import sys
from pathlib import Path

import pytest
from tiny_models import needs_transformers_5

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
regime_report = pytest.importorskip("regime_report")


def _run(test: dict, select: dict = None) -> dict:
    return {
        "candidates": {
            name: {
                "test": {"accuracy": acc, "loss": 1 - acc},
                "select": {"accuracy": 0, "loss": (select or {}).get(name, 1)},
            }
            for name, acc in test.items()
        }
    }


def _write(root: Path, dataset: str, folder: str, variant: str, seed: int, run: dict) -> None:
    path = root / dataset / folder / f"{variant}-seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))


def test_columns_selection_and_refit(tmp_path):
    regime = "tail0.5-start0.5-ep3"
    for seed, shift in ((1, 0.0), (2, 0.02)):
        _write(tmp_path, "s", "ep3", "baseline", seed, _run({"live": 0.70 + shift}))
        # Every row: windows named by step; the rows split's runs are smaller, so their steps differ.
        names = {"swa": 0.71, "swa_from60": 0.74, "swa_from80": 0.72, "ema_0.9": 0.69, "pema_0.1": 0.75, "live": 0.73}
        _write(tmp_path, "s", regime, "all", seed, _run({k: v + shift for k, v in names.items()}))
        split = {"swa": 0.60, "swa_from48": 0.61, "swa_from64": 0.68, "ema_0.9": 0.6, "pema_0.1": 0.6, "live": 0.65}
        losses = {
            "swa": 0.5,
            "swa_from48": 0.4 if seed == 1 else 0.6,
            "swa_from64": 0.5,
            "ema_0.9": 0.5,
            "pema_0.1": 0.5,
            "live": 0.45,
        }
        _write(tmp_path, "s", regime, "rows", seed, _run(split, losses))
    every_row = regime_report.summary(tmp_path)["s"][regime, "all"]
    assert every_row["live"][0] == pytest.approx(3.0)  # 73 vs 70 on both seeds
    assert every_row["swa"][0] == pytest.approx(1.0)
    assert every_row["best window (window2)"][0] == pytest.approx(4.0)
    assert every_row["best pema (pema_0.1)"][0] == pytest.approx(5.0)
    assert every_row["oracle"][0] == pytest.approx(5.0)
    assert every_row["shipped"][0] == pytest.approx(3.0)  # no rows held out: swa_ship's default, live, ships
    rows = regime_report.summary(tmp_path)["s"][regime, "rows"]
    # Seed 1 chooses the first window start (lowest loss), seed 2 chooses live: shipped 61 and 65 vs 70 and 72.
    assert rows["shipped"][0] == pytest.approx(((61 - 70) + (65 - 72)) / 2)
    assert rows["live"][0] == pytest.approx(((65 - 70) + (65 - 72)) / 2)
    # Refit ships the same kind and rank from the run on every row: window2 (74) and live (75).
    assert rows["refit"][0] == pytest.approx(((74 - 70) + (75 - 72)) / 2)
    lines = regime_report.report(tmp_path).splitlines()
    row = next(line for line in lines if "| rows |" in line).split(" | ")
    # Shipped an average on 1 of 2 seeds; it kept (-4 + 0) / 2 points of the oracle's gain over live, 3 points.
    assert row[-2:] == ["1/2", "-67% |"]
    every = next(line for line in lines if "| all |" in line).split(" | ")
    # A fixed rule: no count. It ships live (swa_ship's default), none of the oracle's gain over live.
    assert every[-2:] == ["– (rule)", "0% |"]
    assert every[1] == "steps//40 steps"  # the stored runs snapshot every steps // 40 steps, not every step
    candidates = next(line for line in lines if line.startswith("| s | 2 |")).split(" | ")
    # live first, then by name: ema_0.9 69 vs 70 (+ shift on both sides), pema_0.1 +5, swa +1, window2 +4, window3 +2.
    assert candidates[2:] == [
        "+3.00 ± 0.00",
        "-1.00 ± 0.00",
        "+5.00 ± 0.00",
        "+1.00 ± 0.00",
        "+4.00 ± 0.00",
        "+2.00 ± 0.00 |",
    ]
    assert regime_report.plot(tmp_path, tmp_path / "map.png").stat().st_size > 1000


def _scored(test: dict, select: dict = None) -> dict:
    return {
        "candidates": {
            name: {
                "test": {"accuracy": acc, "loss": 1 - acc},
                "select": {"accuracy": (select or {}).get(name, 0), "loss": 1 - (select or {}).get(name, 0)},
            }
            for name, acc in test.items()
        }
    }


def test_ship_rule_is_picked_on_held_out_rows_and_reported_on_other_seeds(tmp_path):
    regime = "tail0.5-start0.5-ep3"
    for seed in (1, 2, 3, 4):
        _write(tmp_path, "s", "ep3", "baseline", seed, _run({"live": 0.70}))
        # On the test rows the last window is best (+10): a pick that read them would take it.
        test = {"swa": 0.70, "swa_from60": 0.71 + seed / 100, "swa_from80": 0.73, "swa_from100": 0.80, "live": 0.72}
        _write(tmp_path, "s", regime, "all", seed, _scored(test))
        # On the held-out rows the second window start is best on seeds 1-3 and worst on seed 4.
        window2 = 0.60 if seed < 4 else 0.40
        held = {"swa": 0.50, "swa_from48": window2, "swa_from64": 0.55, "swa_from80": 0.45, "live": 0.58}
        _write(tmp_path, "s", regime, "rows", seed, _scored({k: 0.0 for k in held}, held))
    runs = regime_report.load(tmp_path)
    gains = regime_report.validation_gains(runs, regime, (1, 2, 3))["s"]
    assert gains == pytest.approx({"swa": -8, "window2": 2, "window3": -3, "last_window": -13, "live": 0})
    lines = regime_report.default_pick(runs, pick_seeds=(1, 2, 3), report_seeds=(4, 5))
    assert "Picked: **window2**" in next(line for line in lines if line.startswith("Picked"))
    # Reported on seed 4 only (5 is not stored): window2 scored 75 against the baseline's 70.
    assert "| tail0.5-start0.5-ep3 | steps//40 steps | 4 | window2 | +5.00 | +5.00 |" in lines
    assert "| tail0.5-start0.5-ep3 | steps//40 steps | 4 | last_window | +10.00 | +10.00 |" in lines
    # Rotated: seeds 1-3 are each reported by the pick on the three others, where window2 averages 53.3: live (58)
    # among every rule, window3 (55) among the averages; seed 4 by the pick on 1-3 (window2) in both.
    rotated = [line.split(" | ")[3] for line in lines if line.startswith(f"| {regime} |") and "| 4 |" not in line]
    assert rotated == ["live"] * 3 + ["window3"] * 3
    out_of_fold = [line for line in lines if line.startswith("| out of fold |")]
    assert out_of_fold == ["| out of fold | | 4 | | +2.75 | +2.75 |", "| out of fold | | 4 | | +3.50 | +3.50 |"]


def test_regimes_name_their_snapshot_period(tmp_path):
    assert regime_report.parse_regime("tail1.0-start0.25-ep8-freq1") == {
        "tail": 1.0,
        "start": "0.25",
        "epochs": 8,
        "freq": 1,
    }
    assert regime_report.snapshot_every("tail0.5-start0.5-ep3-freq1") == "1 step (the default)"
    assert regime_report.snapshot_every("tail0.5-start0.5-ep3-freq5") == "5 steps"
    with pytest.raises(ValueError, match="tail<r>-start<s>-ep<E>"):
        regime_report.parse_regime("tail0.5-ep3")
    # A run with the suffix finds the baseline of its epochs.
    _write(tmp_path, "s", "ep3", "baseline", 1, _run({"live": 0.70}))
    _write(tmp_path, "s", "tail0.5-start0.5-ep3-freq1", "all", 1, _run({"swa": 0.72, "live": 0.71}))
    assert regime_report.summary(tmp_path)["s"]["tail0.5-start0.5-ep3-freq1", "all"]["swa"][0] == pytest.approx(2.0)


@needs_transformers_5("the study's warmup_steps=0.06, a share of the steps")
def test_the_study_grid_snapshots_as_the_defaults_do_and_stored_regimes_as_they_ran():
    regime_study = pytest.importorskip("regime_study")
    from hf_swa.training import defaults

    def freq(regime: str) -> int:
        args = regime_study.training_arguments(regime_report.parse_regime(regime), "all", 1, "unused", n_train=1600)
        return args.swa_freq

    assert {freq(regime) for regime in regime_study.REGIMES} == {defaults.SWA_FREQ}
    assert freq("tail0.5-start0.5-ep3") == 3 * 1600 // 32 // 40  # the stored runs' period: steps // 40
