"""benchmarks/gpu_check.py stays runnable: its CPU part (and its FSDP2 part under torchrun) passes here.

A GPU machine is lent rarely and briefly; the script must work the first time it runs there.
"""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.distributed
def test_gpu_check_cpu_smoke_run_passes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf_home"), PYTHONUNBUFFERED="1")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "gpu_check.py"), "--cpu-smoke"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "[FAIL]" not in output
    # Both parts ran their checks: plain SWATrainer runs and the FSDP2 runs.
    assert output.count("[PASS] averages equal the recorded float64 mean") == 5, output[-6000:]
    assert output.count("[PASS] FSDP2 shards averaged") == 2
    assert "[PASS] the FSDP2 checks passed" in output
