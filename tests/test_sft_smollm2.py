"""SFT of the real SmolLM2-135M-Instruct (the packaged GGUF) with TRL's SFTTrainer, LoRA and the SWA mixins.

A few steps on short tweets: the adapter shipped is the mean of the recorded snapshots, the losses are finite,
the held-out scores of the live and averaged weights are recorded, and the pushed files are the saved ones.
"""

import json
import math

import pytest
import transformers
from safetensors.torch import load_file

if int(transformers.__version__.split(".")[0]) < 5:  # the oldest supported transformers (make test-compat)
    pytest.skip(f"TRL 1.x needs transformers 5 ({transformers.__version__} here)", allow_module_level=True)
pytest.importorskip("trl")
pytest.importorskip("peft")
pytest.importorskip("gguf")
from datasets import Dataset  # noqa: E402
from hub_server import FakeHub  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from test_hub import hub_env, run_cli  # noqa: E402
from test_trl_peft import SWASFTConfig, SWASFTTrainer  # noqa: E402
from tiny_models import SnapshotRecorder, max_relative_error  # noqa: E402

from hf_swa.demo.embedded import split_tweet_sentiment  # noqa: E402
from hf_swa.demo.smollm2 import load_smollm2, prompt_completion_rows, sft_results, smollm2_path  # noqa: E402

pytestmark = pytest.mark.slow

MAX_STEPS, SWA_START = 4, 2
STEPS = [2, 3, 4]  # swa_start=2, swa_freq=1
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def short_rows(n_train: int, n_validation: int):
    """Tweets cut to 40 characters: about 25 tokens a row with the prompt."""
    train, validation = split_tweet_sentiment(n_train, n_validation, seed=0)
    cut = lambda pairs: prompt_completion_rows([(text[:40], label) for text, label in pairs])  # noqa: E731
    return cut(train), cut(validation)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    smollm2_path()  # a clear error, not a skip, where the package is missing: `make test` installs it
    folder = tmp_path_factory.mktemp("smollm2")
    model, tokenizer = load_smollm2()
    assert type(model).__name__ == "LlamaForCausalLM" and model.num_parameters() == 134_515_008
    train, validation = short_rows(8, 4)
    recorder = SnapshotRecorder(STEPS)
    args = SWASFTConfig(
        output_dir=str(folder / "out"),
        max_steps=MAX_STEPS,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        swa_start=str(SWA_START),
        swa_freq=1,
        swa_ship="swa",
        gradient_checkpointing=False,
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        use_cpu=True,
    )
    trainer = SWASFTTrainer(
        model=get_peft_model(model, LoraConfig(**LORA)),
        args=args,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(validation),
        processing_class=tokenizer,
        callbacks=[recorder],
    )
    trainer.train()
    results = sft_results(trainer, validation, batch_size=4)
    trainer.save_model(str(folder / "adapter"))
    return trainer, recorder, results, folder


def test_shipped_adapter_is_the_mean_of_the_snapshots(lora_run):
    trainer, recorder, _, folder = lora_run
    assert sorted(recorder.snapshots) == STEPS
    mean = recorder.mean()
    averages = trainer.swa_callback.averager.averages()
    assert len(averages) == 2 * 2 * trainer.model.config.num_hidden_layers  # lora_A, lora_B of q_proj, v_proj
    assert max_relative_error(averages, mean) <= 1e-6
    assert max_relative_error(recorder.snapshots[MAX_STEPS], mean) > 1e-4  # the adapter moved: not the last step
    saved = load_file(folder / "adapter" / "adapter_model.safetensors")
    assert {name.replace(".default", "") for name in averages} == set(saved)
    assert all(value.equal(saved[name.replace(".default", "")]) for name, value in averages.items())


def test_losses_are_finite_and_both_weights_are_scored(lora_run):
    trainer, _, results, _ = lora_run
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == MAX_STEPS and all(math.isfinite(loss) for loss in losses)
    live, swa = results["eval"]["live"]["validation"], results["eval"]["swa"]["validation"]
    assert math.isfinite(live["loss"]) and math.isfinite(swa["loss"]) and live["loss"] != swa["loss"]
    for scores in (live, swa):
        assert scores["accuracy"] * 4 == round(scores["accuracy"] * 4)  # exact matches out of 4 rows


def test_push_of_the_averaged_adapter_with_its_card(lora_run, tmp_path):
    _, _, results, folder = lora_run
    adapter = folder / "adapter"
    (adapter / "results.json").write_text(json.dumps(results))  # what hf-swa-push reads beside the weights
    with FakeHub() as fake:
        pushed = run_cli(["--model_dir", str(adapter), "--repo_id", "me/smollm2-sft-swa"], hub_env(fake.url, tmp_path))
        assert pushed.returncode == 0, pushed.stderr
    files = fake.files("me/smollm2-sft-swa")
    assert {"adapter_model.safetensors", "adapter_config.json", "swa_config.json", "README.md"} <= set(files)
    assert all(content == (adapter / name).read_bytes() for name, content in files.items())
    card = files["README.md"].decode()  # hf_swa's card, not the placeholder PEFT's save_pretrained leaves
    live, swa = results["eval"]["live"]["validation"], results["eval"]["swa"]["validation"]
    assert "**PEFT adapter** (LORA)" in card
    assert f"| accuracy | {live['accuracy']:.4f} | {swa['accuracy']:.4f} |" in card
    assert f"| loss (lower is better) | {live['loss']:.4f} | {swa['loss']:.4f} |" in card
