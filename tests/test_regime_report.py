"""The regime study's tables: columns, selection and refit computed from stored runs, checked by hand."""

import json
import sys
from pathlib import Path

import pytest

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
    assert every_row["shipped"][0] == pytest.approx(2.0)  # no rows held out: the last window (window3) ships
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
    assert every[-2:] == ["2/2", "-50% |"]  # window3 - live = -1, oracle - live = +2
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
