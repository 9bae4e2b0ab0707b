"""Post-hoc averaging of saved checkpoints: exact means, every input layout, refusals that touch nothing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from posthoc_fixtures import float64_mean, folder_snapshot, save_gpt2_seeds, save_seeds, stored_tensors
from safetensors.torch import load_file, save_file
from tiny_models import lm_data, max_relative_error, tiny_bert, tiny_gpt2_lm
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    Trainer,
    TrainingArguments,
)
from transformers.utils import logging as transformers_logging

from hf_swa import average_checkpoints
from hf_swa.checkpointing.names import CONFIG_FILE

# -- the numbers ----------------------------------------------------------------------------------


def test_fp32_mean_equals_float64_mean(tmp_path):
    inputs = save_gpt2_seeds(tmp_path, [0, 1, 2])
    record = average_checkpoints(inputs, tmp_path / "out", progress=False)
    averaged = stored_tensors(tmp_path / "out")
    assert all(t.dtype == torch.float32 for t in averaged.values())
    assert max_relative_error(averaged, float64_mean(inputs)) < 1e-6
    assert record["n_averaged"] == 3 and record["weights"] == [1 / 3] * 3 and record["dtype"] == "float32"
    assert json.loads((tmp_path / "out" / CONFIG_FILE).read_text()) == record


@pytest.mark.parametrize("count", [3, 4])
def test_bf16_mean_is_the_float64_mean_rounded_to_bf16(tmp_path, count):
    inputs = save_seeds(tmp_path, range(count), dtype=torch.bfloat16)
    average_checkpoints(inputs, tmp_path / "out", progress=False)
    averaged = stored_tensors(tmp_path / "out")
    expected = float64_mean(inputs)
    assert set(averaged) == set(expected)
    for name, value in expected.items():
        assert averaged[name].dtype == torch.bfloat16
        assert torch.equal(averaged[name], value.to(torch.bfloat16)), name


def test_weighted_mean_is_normalised(tmp_path):
    inputs = save_seeds(tmp_path, [0, 1, 2])
    record = average_checkpoints(inputs, tmp_path / "out", weights=[1, 2, 5], progress=False)
    assert record["weights"] == [1 / 8, 2 / 8, 5 / 8] and record["strategy"] == "weighted"
    assert max_relative_error(stored_tensors(tmp_path / "out"), float64_mean(inputs, [1, 2, 5])) < 1e-6


# -- a plain Trainer run ---------------------------------------------------------------------------


def test_plain_trainer_checkpoints_average_into_a_plain_transformers_model(tmp_path, caplog):
    run = tmp_path / "run"
    args = TrainingArguments(
        output_dir=str(run),
        max_steps=8,
        save_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to="none",
        use_cpu=True,
        seed=0,
        logging_steps=100,
    )
    Trainer(model=tiny_gpt2_lm(), args=args, train_dataset=lm_data()).train()
    (run / "checkpoint-8" / "tokenizer_config.json").write_text('{"model_max_length": 8}')
    record = average_checkpoints(run_dir=str(run), last=3, output_dir=str(tmp_path / "avg"), progress=False)
    inputs = [run / f"checkpoint-{step}" for step in (4, 6, 8)]
    assert [s["step"] for s in record["sources"]] == [4, 6, 8]

    transformers_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            model, info = AutoModelForCausalLM.from_pretrained(tmp_path / "avg", output_loading_info=True)
    finally:
        transformers_logging.disable_propagation()
    assert not any(info.values()), info
    # Warnings about the weights loaded (not the tiny config's token ids, which transformers warns of once).
    load_warnings = [r.getMessage().lower() for r in caplog.records if r.levelno >= logging.WARNING]
    load_warnings = [m for m in load_warnings if "weight" in m or "key" in m]
    assert not [
        m
        for m in load_warnings
        if any(word in m for word in ("missing", "tied", "unexpected", "initialized", "mismatch"))
    ]
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # still tied

    expected = tiny_gpt2_lm()
    mean = float64_mean(inputs)
    expected.load_state_dict({name: value.to(torch.float32) for name, value in mean.items()}, strict=False)
    expected.tie_weights()
    batch = torch.stack([example["input_ids"] for example in lm_data(4, seed=5)])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(batch).logits, expected.eval()(batch).logits, rtol=1e-5, atol=1e-6)
    # Config, generation config and tokenizer files come from the newest input; training state does not.
    avg_files = set(os.listdir(tmp_path / "avg"))
    assert {"config.json", "generation_config.json", "tokenizer_config.json", "model.safetensors"} <= avg_files
    assert not avg_files & {"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin"}
    assert (tmp_path / "avg" / "config.json").read_bytes() == (run / "checkpoint-8" / "config.json").read_bytes()


# -- sharded checkpoints and PEFT adapters -------------------------------------------------------


def test_sharded_checkpoints(tmp_path):
    inputs = save_seeds(tmp_path, [0, 1, 2], max_shard_size="20KB")
    assert (inputs[0] / "model.safetensors.index.json").is_file() and not (inputs[0] / "model.safetensors").exists()
    record = average_checkpoints(inputs, tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert record["format"] == "sharded"
    assert sorted(p.name for p in out.glob("model-*.safetensors")) == sorted(
        p.name for p in inputs[2].glob("model-*.safetensors")
    )
    assert max_relative_error(stored_tensors(out), float64_mean(inputs)) < 1e-6
    model, info = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    assert (
        max_relative_error(
            {n: p.detach() for n, p in model.state_dict().items() if n in stored_tensors(out)}, float64_mean(inputs)
        )
        < 1e-6
    )


def test_peft_lora_adapters(tmp_path):
    peft = pytest.importorskip("peft")
    folders = []
    for seed in range(3):
        model = peft.get_peft_model(tiny_bert(), peft.LoraConfig(r=2, target_modules=["query", "value"]))
        torch.manual_seed(100 + seed)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_" in name:
                    param.normal_()
        model.save_pretrained(tmp_path / f"lora{seed}")
        folders.append(tmp_path / f"lora{seed}")
    record = average_checkpoints(folders, tmp_path / "out", progress=False)
    assert record["format"] == "adapter"
    assert {"adapter_model.safetensors", "adapter_config.json", CONFIG_FILE} <= set(os.listdir(tmp_path / "out"))
    mean = float64_mean(folders)
    assert max_relative_error(load_file(tmp_path / "out" / "adapter_model.safetensors"), mean) < 1e-6
    loaded = peft.PeftModel.from_pretrained(tiny_bert(), tmp_path / "out")
    lora = {n.replace(".default", ""): p.detach() for n, p in loaded.named_parameters() if "lora_" in n}
    assert max_relative_error(lora, mean) < 1e-6


# -- selecting checkpoints of a run ---------------------------------------------------------------


def fake_run(root, steps, value=lambda step: float(step)):
    for step in steps:
        folder = root / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        save_file({"w": torch.full((3,), value(step))}, folder / "model.safetensors", metadata={"format": "pt"})
    return root


def test_steps_range_and_last(tmp_path):
    run = fake_run(tmp_path / "run", [100, 200, 300, 400, 500, 600, 700])
    record = average_checkpoints(run_dir=str(run), steps="300:600", output_dir=tmp_path / "a", progress=False)
    assert [s["step"] for s in record["sources"]] == [300, 400, 500, 600]
    assert load_file(tmp_path / "a" / "model.safetensors")["w"].tolist() == [450.0] * 3
    record = average_checkpoints(run_dir=str(run), steps="300:600", last=2, output_dir=tmp_path / "b", progress=False)
    assert [s["step"] for s in record["sources"]] == [500, 600]


def test_existing_output_is_replaced_only_when_asked(tmp_path):
    run = fake_run(tmp_path / "run", [1, 2])
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("earlier")
    with pytest.raises(ValueError, match="already holds files.*--overwrite_output_dir"):
        average_checkpoints(run_dir=str(run), last=2, output_dir=out, progress=False)
    average_checkpoints(run_dir=str(run), last=2, output_dir=out, overwrite_output_dir=True, progress=False)
    assert sorted(os.listdir(out)) == sorted([CONFIG_FILE, "model.safetensors"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left behind


# -- bad input: refused, naming the problem, with the output folder untouched ----------------------


def _nan_in_one(tmp_path):
    inputs = save_seeds(tmp_path, [0, 1, 2])
    model = AutoModelForSequenceClassification.from_pretrained(inputs[1])
    with torch.no_grad():
        model.bert.encoder.layer[1].attention.self.key.weight[3, 2] = float("nan")
    model.save_pretrained(inputs[1])
    return {
        "checkpoints": inputs
    }, rf"{inputs[1]}: tensor 'bert.encoder.layer.1.attention.self.key.weight' holds 1 NaN/inf"


def _inf_in_one(tmp_path):
    inputs = save_gpt2_seeds(tmp_path, [0, 1])
    tensors = load_file(inputs[0] / "model.safetensors")
    tensors["transformer.h.0.mlp.c_fc.bias"][5] = float("inf")
    save_file(tensors, inputs[0] / "model.safetensors", metadata={"format": "pt"})
    return {"checkpoints": inputs}, rf"{inputs[0]}: tensor 'transformer.h.0.mlp.c_fc.bias' holds 1 NaN/inf"


def _different_architectures(tmp_path):
    bert = save_seeds(tmp_path / "a", [0])[0]
    gpt2 = save_gpt2_seeds(tmp_path / "b", [0])[0]
    return {"checkpoints": [bert, gpt2]}, r"Different architectures: config.json model_type is 'bert' in .* but 'gpt2'"


def _different_keys(tmp_path):
    two_layers = save_seeds(tmp_path, [0])[0]
    model = tiny_bert()
    model.bert.encoder.layer = model.bert.encoder.layer[:1]
    model.config.num_hidden_layers = 1
    model.save_pretrained(tmp_path / "one_layer")
    return {
        "checkpoints": [two_layers, tmp_path / "one_layer"]
    }, r"Different tensors: .*one_layer lacks \d+ tensor\(s\): 'bert.encoder.layer.1"


def _different_shapes(tmp_path):
    two = save_seeds(tmp_path, [0])[0]
    tiny_bert(num_labels=3).save_pretrained(tmp_path / "three_labels")
    return {
        "checkpoints": [two, tmp_path / "three_labels"]
    }, r"Tensor 'classifier.(weight|bias)' has shape \(3.*three_labels"


def _different_dtypes(tmp_path):
    fp32 = save_seeds(tmp_path / "a", [0])[0]
    bf16 = save_seeds(tmp_path / "b", [1], dtype=torch.bfloat16)[0]
    return {"checkpoints": [fp32, bf16]}, r"has dtype torch.bfloat16 in .* but torch.float32 in .*one dtype"


def _different_integers(tmp_path):
    for i, folder in enumerate((tmp_path / "a", tmp_path / "b")):
        folder.mkdir(parents=True)
        save_file({"w": torch.ones(2), "ids": torch.tensor([0, i])}, folder / "model.safetensors")
    return {"checkpoints": [tmp_path / "a", tmp_path / "b"]}, r"Tensor 'ids' is not floating point and differs"


def _too_few_for_last(tmp_path):
    run = fake_run(tmp_path / "run", [10, 20])
    return {
        "run_dir": str(run),
        "last": 4,
    }, r"--last 4 asks for 4 checkpoints but .*run has 2 \(checkpoint-10, checkpoint-20\)"


def _no_steps_match(tmp_path):
    run = fake_run(tmp_path / "run", [10, 20])
    return {
        "run_dir": str(run),
        "steps": "30:40",
    }, r"No checkpoint of .* matches --steps 30:40: it has checkpoint-10, checkpoint-20"


def _folder_without_weights(tmp_path):
    run = fake_run(tmp_path / "run", [10])
    (run / "checkpoint-20").mkdir()
    (run / "checkpoint-20" / "config.json").write_text("{}")
    return {"run_dir": str(run), "last": 2}, r"checkpoint-20 holds no weights to average"


def _truncated_weights(tmp_path):
    run = fake_run(tmp_path / "run", [10, 20, 30, 40])
    weights = run / "checkpoint-30" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-5])  # a copy or save that was cut short
    return {"run_dir": str(run), "last": 4}, r"checkpoint-30/model.safetensors is not a readable safetensors file"


def _weights_count(tmp_path):
    return {"checkpoints": save_seeds(tmp_path, [0, 1]), "weights": [1]}, "--weights has 1 values for 2 checkpoints"


@pytest.mark.parametrize(
    "case",
    [
        _nan_in_one,
        _inf_in_one,
        _different_architectures,
        _different_keys,
        _different_shapes,
        _different_dtypes,
        _different_integers,
        _too_few_for_last,
        _no_steps_match,
        _folder_without_weights,
        _truncated_weights,
        _weights_count,
    ],
)
def test_bad_input_is_refused_and_the_output_is_untouched(tmp_path, case):
    kwargs, message = case(tmp_path / "inputs")
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("an earlier model card")
    (out / "model.safetensors").write_bytes(b"earlier weights")
    before, inputs_before = folder_snapshot(out), folder_snapshot(tmp_path / "inputs")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        average_checkpoints(output_dir=out, overwrite_output_dir=True, progress=False, **kwargs)
    assert folder_snapshot(out) == before
    assert folder_snapshot(tmp_path / "inputs") == inputs_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs", "out"]  # no staging folder left behind


@pytest.mark.parametrize("where", ["is", "contains", "inside"])
def test_output_folder_that_is_an_input_is_refused(tmp_path, where):
    run = fake_run(tmp_path / "run", [10, 20])
    out = {"is": run / "checkpoint-20", "contains": run, "inside": run / "checkpoint-20" / "avg"}[where]
    before = folder_snapshot(run)
    word = {"is": "is", "contains": "contains", "inside": "lies inside"}[where]
    with pytest.raises(
        ValueError, match=rf"--output_dir .* {word} the input .*checkpoint-\d+: writing there would replace an input"
    ):
        average_checkpoints(run_dir=str(run), last=2, output_dir=out, overwrite_output_dir=True, progress=False)
    assert folder_snapshot(run) == before


# -- the command line ---------------------------------------------------------------------------------


@pytest.mark.slow  # a fresh interpreter, a subprocess or many trainings
def test_console_script_help_runs():
    script = os.path.join(os.path.dirname(sys.executable), "hf-swa-average")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for option in (
        "--run_dir",
        "--last",
        "--steps",
        "--weights",
        "--soup",
        "--push_to_hub",
        "--hub_model_id",
        "--task_name",
        "--validation_file",
        "--metric",
        "--per_device_eval_batch_size",
        "--use_cpu",
    ):
        assert option in result.stdout, option


def test_cli_averages_the_last_checkpoints_of_a_run(tmp_path, capsys):
    from hf_swa.posthoc.cli import main

    run = fake_run(tmp_path / "run", [100, 200, 300, 400])
    assert (
        main(["--run_dir", str(run), "--last", "3", "--weights", "1", "1", "2", "--output_dir", str(tmp_path / "o")])
        == 0
    )
    assert load_file(tmp_path / "o" / "model.safetensors")["w"].tolist() == [(200 + 300 + 2 * 400) / 4] * 3
    record = json.loads((tmp_path / "o" / CONFIG_FILE).read_text())
    assert [s["step"] for s in record["sources"]] == [200, 300, 400] and record["weights"] == [0.25, 0.25, 0.5]
    # Bad input: a clear message on stderr, exit status 2, nothing written.
    assert main(["--run_dir", str(run), "--last", "5", "--output_dir", str(tmp_path / "p")]) == 2
    assert "--last 5 asks for 5 checkpoints" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    # A truncated checkpoint among the last 4: the message names its file and what to do, before anything is written.
    weights = run / "checkpoint-300" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-5])
    assert main(["--run_dir", str(run), "--last", "4", "--output_dir", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert f"{weights} is not a readable safetensors file" in err and "Leave this checkpoint out" in err, err
    assert "Traceback" not in err and not (tmp_path / "q").exists()


@pytest.mark.slow  # a fresh interpreter, a subprocess or many trainings
def test_cli_writes_the_card_and_pushes_to_the_hub(tmp_path):
    from hub_server import FakeHub
    from test_hub import hub_env

    inputs = save_seeds(tmp_path / "seeds", [0, 1])
    out = tmp_path / "avg"
    script = os.path.join(os.path.dirname(sys.executable), "hf-swa-average")
    with FakeHub() as fake:
        done = subprocess.run(
            [
                script,
                *map(str, inputs),
                "--weights",
                "3",
                "1",
                "--output_dir",
                str(out),
                "--push_to_hub",
                "--hub_model_id",
                "me/tiny-average",
                "--base_model",
                "bert-base-uncased",
            ],
            env=hub_env(fake.url, tmp_path / "hf_home"),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert fake.unhandled == [], [f"{r.method} {r.path}" for r in fake.unhandled]
    pushed = fake.files("me/tiny-average")
    assert set(pushed) == {"config.json", "model.safetensors", CONFIG_FILE, "README.md"}
    for name, content in pushed.items():
        assert content == (out / name).read_bytes(), name
    assert (
        fake.repos["me/tiny-average"].commits[0]["header"]["summary"]
        == "Upload a post-hoc average of 2 checkpoints (hf_swa)"
    )
    card = pushed["README.md"].decode()
    assert "## Post-hoc average of 2 checkpoints" in card and "## SWA settings" not in card
    assert "| seeds/seed0 | – | 0.75 | – |" in card and "| seeds/seed1 | – | 0.25 | – |" in card
    assert max_relative_error(stored_tensors(out), float64_mean(inputs, [3, 1])) < 1e-6


def test_cli_push_failure_is_one_line_and_says_how_to_push_later(tmp_path, monkeypatch, capsys):
    from test_hub import OfflineHub

    import hf_swa.hub.push
    from hf_swa.posthoc.cli import main

    inputs = save_seeds(tmp_path / "seeds", [0, 1])
    out = tmp_path / "avg"
    monkeypatch.setattr(hf_swa.hub.push, "HfApi", OfflineHub)
    argv = [*map(str, inputs), "--output_dir", str(out), "--push_to_hub", "--hub_model_id", "me/avg"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert err.startswith("hf-swa-average: error: HF_HUB_OFFLINE is set"), err
    assert f"hf-swa-push --model_dir {out} --repo_id me/avg --no_card" in err
    assert max_relative_error(stored_tensors(out), float64_mean(inputs)) < 1e-6  # the average itself is kept
