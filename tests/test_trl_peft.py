"""TRL's SFTTrainer (with SWACallback, and with SWATrainerMixin) and PEFT/LoRA adapters under SWA."""

import json
from dataclasses import dataclass

import pytest
import torch
import transformers
from safetensors.torch import load_file

if int(transformers.__version__.split(".")[0]) < 5:  # the oldest supported transformers (make test-compat)
    pytest.skip(f"TRL 1.x needs transformers 5 ({transformers.__version__} here)", allow_module_level=True)
trl = pytest.importorskip("trl")
peft = pytest.importorskip("peft")
from datasets import Dataset  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from tiny_models import (  # noqa: E402
    QUICK_RUN,
    SnapshotRecorder,
    StopAt,
    expected_snapshot_steps,
    lm_data,
    max_relative_error,
    tiny_gpt2_lm,
    tiny_tokenizer,
    trainable_float_weights,
)
from trl import SFTConfig, SFTTrainer  # noqa: E402

from hf_swa import SWAArgumentsMixin, SWACallback, SWAConfig, SWATrainer, SWATrainerMixin, SWATrainingArguments  # noqa: E402

MAX_STEPS, SWA_START, SWA_FREQ = 8, 4, 2
STEPS = expected_snapshot_steps(SWA_START, SWA_FREQ, MAX_STEPS)
TRAIN = dict(QUICK_RUN, max_steps=MAX_STEPS, bf16=False)


@dataclass
class SWASFTConfig(SWAArgumentsMixin, SFTConfig):
    pass


class SWASFTTrainer(SWATrainerMixin, SFTTrainer):
    pass


def sft_data(n=32):
    return Dataset.from_dict({"input_ids": [row["input_ids"].tolist() for row in lm_data(n)]})


def assert_average_of_snapshots(averages, model, recorder):
    assert sorted(recorder.snapshots) == STEPS == [4, 6, 8]
    mean = recorder.mean()
    assert max_relative_error(averages, mean) <= 1e-6
    assert max_relative_error(trainable_float_weights(model), mean) <= 1e-6  # the model holds the average
    assert max_relative_error(recorder.snapshots[MAX_STEPS], mean) > 1e-4  # ... not the last live weights


def assert_saved_model_is_the_average(folder, averages):
    saved = load_file(folder / "model.safetensors")
    assert all(torch.equal(saved[name], value) for name, value in averages.items() if name in saved)
    assert "transformer.wte.weight" in saved and "transformer.wte.weight" in averages  # tied, averaged once
    assert json.loads((folder / "swa_config.json").read_text())["n_averaged"] == len(STEPS)


def test_sft_trainer_with_the_mixin(tmp_path):
    recorder = SnapshotRecorder(STEPS)
    args = SWASFTConfig(
        output_dir=str(tmp_path / "out"),
        swa_start=str(SWA_START),
        swa_freq=SWA_FREQ,
        swa_lr=5e-3,
        swa_ship="swa",
        eval_strategy="steps",
        eval_steps=4,
        **TRAIN,
    )
    trainer = SWASFTTrainer(
        model=tiny_gpt2_lm(),
        args=args,
        train_dataset=sft_data(),
        eval_dataset=sft_data(8),
        processing_class=tiny_tokenizer(),
        callbacks=[recorder],
    )
    assert args.gradient_checkpointing  # TRL's default: checkpointed activations under SWA
    trainer.train()
    averages = trainer.swa_callback.averager.averages()
    assert_average_of_snapshots(averages, trainer.model, recorder)
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    assert [e["step"] for e in evals] == [4, 8] and all("eval_swa_loss" in e for e in evals)
    trainer.save_model(str(tmp_path / "final"))
    assert_saved_model_is_the_average(tmp_path / "final", averages)


def test_sft_trainer_with_the_callback(tmp_path):
    recorder = SnapshotRecorder(STEPS)
    callback = SWACallback(SWAConfig(swa_start=SWA_START, swa_freq=SWA_FREQ, swa_lr=5e-3, swa_ship="swa"))
    args = SFTConfig(output_dir=str(tmp_path / "out"), **TRAIN)
    trainer = SFTTrainer(
        model=tiny_gpt2_lm(),
        args=args,
        train_dataset=sft_data(),
        processing_class=tiny_tokenizer(),
        callbacks=[recorder, callback],
    )
    trainer.train()
    assert_average_of_snapshots(callback.averager.averages(), trainer.model, recorder)
    trainer.save_model(str(tmp_path / "final"))
    saved = load_file(tmp_path / "final" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in callback.averager.averages().items())


# ---------------------------------------------------------------- PEFT / LoRA

LORA = dict(r=4, lora_alpha=8, target_modules=["c_attn"], lora_dropout=0.0)
PEFT_TRAIN = dict(TRAIN, save_strategy="steps", save_steps=3, lr_scheduler_type="constant")


def lora_model():
    return get_peft_model(tiny_gpt2_lm(), LoraConfig(**LORA))


def lora_trainer(output_dir, callbacks=()):
    args = SWATrainingArguments(
        output_dir=str(output_dir), swa_start=SWA_START, swa_freq=SWA_FREQ, swa_ship="swa", **PEFT_TRAIN
    )
    return SWATrainer(model=lora_model(), args=args, train_dataset=lm_data(32), callbacks=list(callbacks))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora")
    recorder = SnapshotRecorder(STEPS)
    trainer = lora_trainer(folder / "out", callbacks=[recorder])
    frozen = {k: v.clone() for k, v in trainer.model.state_dict().items() if "lora_" not in k}
    trainer.train()
    trainer.save_model(str(folder / "adapter"))
    return trainer, recorder, frozen, folder


def test_lora_averages_the_adapter_only(lora_run):
    trainer, recorder, frozen, _ = lora_run
    averager = trainer.swa_callback.averager
    assert averager.names and all(".lora_A." in n or ".lora_B." in n for n in averager.names)
    assert len(averager.names) == 2 * 2  # lora_A and lora_B in each of the 2 layers' c_attn
    assert_average_of_snapshots(averager.averages(), trainer.model, recorder)
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())  # the base model is untouched


def test_saved_adapter_reloads_as_the_average(lora_run):
    trainer, recorder, _, folder = lora_run
    adapter = folder / "adapter"
    files = {p.name for p in adapter.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "swa_config.json"} <= files
    assert not (adapter / "model.safetensors").exists()
    reloaded = PeftModel.from_pretrained(tiny_gpt2_lm(), str(adapter))
    mean = recorder.mean()
    lora = {k: v for k, v in trainable_float_weights(trainer.model).items()}
    reloaded_lora = {name: p.detach().double() for name, p in reloaded.named_parameters() if "lora_" in name}
    assert set(reloaded_lora) == set(mean)
    assert all(torch.equal(reloaded_lora[k], lora[k]) for k in mean)  # bit for bit what the trainer held
    assert max_relative_error(reloaded_lora, mean) <= 1e-6


def test_lora_resume_is_exact(tmp_path, lora_run):
    trainer, _, _, _ = lora_run
    lora_trainer(tmp_path, callbacks=[StopAt(6)]).train()
    assert (tmp_path / "checkpoint-6" / "adapter_model.safetensors").is_file()
    resumed = lora_trainer(tmp_path)
    resumed.train(resume_from_checkpoint=True)
    expected = trainer.swa_callback.averager.averages()
    got = resumed.swa_callback.averager.averages()
    assert resumed.swa_callback.averager.n_averaged == len(STEPS)
    assert all(torch.equal(got[k], v) for k, v in expected.items())


def test_model_card_of_an_adapter_says_so_and_its_snippet_loads_the_average(tmp_path):
    from transformers import AutoModelForCausalLM

    from hf_swa.hub import write_model_card
    from hf_swa.hub.push import check_pushable

    tiny_gpt2_lm().save_pretrained(tmp_path / "base")
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(tmp_path / "base")), LoraConfig(task_type="CAUSAL_LM", **LORA)
    )
    args = SWATrainingArguments(
        output_dir=str(tmp_path / "out"), swa_start=SWA_START, swa_freq=SWA_FREQ, swa_ship="swa", **TRAIN
    )
    trainer = SWATrainer(model=model, args=args, train_dataset=lm_data(32))
    trainer.train()
    adapter = tmp_path / "adapter"
    trainer.save_model(str(adapter))
    assert check_pushable(adapter)["n_averaged"] == len(STEPS)  # an adapter folder is a pushable model

    card = write_model_card(adapter, {"eval_loss": 2.0, "eval_swa_loss": 1.9}, repo_id=str(adapter)).read_text()
    assert "**PEFT adapter** (LORA)" in card and f"[`{tmp_path / 'base'}`]" in card
    assert "library_name: peft" in card and f"base_model: {tmp_path / 'base'}" in card
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert "PeftModel.from_pretrained(base" in snippet and "AutoModelForCausalLM" in snippet
    namespace = {}
    exec(snippet, namespace)  # the card's own "How to use", run as written
    loaded = {n: p.detach() for n, p in namespace["model"].named_parameters() if "lora_" in n}
    averages = trainer.swa_callback.averager.averages()
    assert set(loaded) == set(averages) and all(torch.equal(loaded[k], averages[k]) for k in averages)
