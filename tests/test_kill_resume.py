"""kill -9 at any moment loses nothing: a run SIGKILLed again and again ends as an uninterrupted one."""

import json
import os
import subprocess
import sys

import kill_worker
import pytest
from safetensors import safe_open
from safetensors.torch import load_file

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kill_worker.py")


@pytest.mark.slow  # a fresh interpreter, a subprocess or many trainings
@pytest.mark.parametrize("seed", [0])
def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path, seed):
    done = subprocess.run(
        [sys.executable, WORKER, str(tmp_path), str(seed)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    # The kills happened, and some left a partial checkpoint-N/ that the next resume had to skip.
    assert len(report["kills"]) == kill_worker.KILLS and report["finished_early"] == 0
    assert any(kill["incomplete"] for kill in report["kills"])
    assert "Skipping the incomplete checkpoint" in done.stderr

    reference = load_file(tmp_path / "reference" / "result.safetensors")
    resumed = load_file(tmp_path / "killed" / "result.safetensors")
    assert set(resumed) == set(reference)
    for name, value in reference.items():  # averages, power EMAs, live weights and the model, bit for bit
        assert value.equal(resumed[name]), name
    snapshots = {run: tmp_path / run / "swa_power_ema" for run in ("reference", "killed")}
    names = sorted(p.name for p in snapshots["reference"].iterdir())
    assert len(names) == 2 * 6  # two widths at steps 3, 6, 9, 12, 15 and the last, 16
    assert sorted(p.name for p in snapshots["killed"].iterdir()) == names  # none missing, none left over
    for name in names:
        killed, uninterrupted = (load_file(snapshots[run] / name) for run in ("killed", "reference"))
        assert killed.keys() == uninterrupted.keys() and all(killed[k].equal(uninterrupted[k]) for k in killed), name
    with safe_open(tmp_path / "killed" / "result.safetensors", "pt") as f:
        assert f.metadata()["n_averaged"] == str(kill_worker.MAX_STEPS - kill_worker.SWA["swa_start"] + 1)
