"""hf-swa-clm under `accelerate launch` with 2 processes over gloo: the same numbers as one process.

`--multi_gpu` with `--use_cpu` runs two CPU processes (`--cpu --num_processes 2` would silently run one). Both runs
see the same global batch (2 per process x 2, or 4 in one process) in the same order, train with SGD (Adam turns
the rounding noise of gradients that are mathematically zero into LR-sized steps) and no dropout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_clm import clm_flags, corpus  # noqa: F401  (the fixture)
from test_distributed import METRIC_TOLERANCE, REPO, accelerate_launch

from hf_swa.clm.cli import main

NO_DROPOUT = "n_layer=2,n_embd=32,n_head=2,n_positions=64,resid_pdrop=0.0,embd_pdrop=0.0,attn_pdrop=0.0"
SETTINGS = ["--config_overrides", NO_DROPOUT, "--optim", "sgd", "--learning_rate", "0.5", "--max_eval_samples", "16",
            "--swa_eval_candidates", "--swa_ema_decays", "0.9", "--swa_ship", "swa"]  # fmt: skip


@pytest.mark.distributed
def test_two_processes_score_as_one(corpus, tmp_path):  # noqa: F811
    two = tmp_path / "two"
    flags = clm_flags(corpus, two, *SETTINGS, "--per_device_train_batch_size", "2")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf_home"), PYTHONUNBUFFERED="1")
    env.pop("ACCELERATE_USE_CPU", None)
    command = [sys.executable, "-m", *accelerate_launch(tmp_path), os.path.join(REPO, "scripts", "run_clm.py"), *flags]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    main(clm_flags(corpus, tmp_path / "one", *SETTINGS, "--per_device_train_batch_size", "4"))
    one, two = (json.loads((tmp_path / run / "results.json").read_text()) for run in ("one", "two"))
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["chosen"] == one["chosen"] and {"live", "swa", "ema_0.9", "chosen"} <= set(two["eval"])
    assert set(two["eval"]) == set(one["eval"])
    for weights, sets in one["eval"].items():
        for eval_set, scores in sets.items():
            expected = scores["perplexity"]
            assert two["eval"][weights][eval_set]["perplexity"] == pytest.approx(expected, rel=METRIC_TOLERANCE)
    assert two["eval"]["chosen"]["test"]["perplexity"] != pytest.approx(two["eval"]["live"]["test"]["perplexity"])
