"""Tiny models and data built from config, callbacks that record what training did, and fp16's loss scaler on CPU."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from accelerate import Accelerator
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    TrainerCallback,
)

# The oldest supported transformers is a 4.x (pyproject.toml): tests of what only 5.x has skip there, saying so.
TRANSFORMERS_4 = int(transformers.__version__.split(".")[0]) < 5


def needs_transformers_5(feature: str):
    """Skip a test on transformers 4.x, which lacks `feature`."""
    return pytest.mark.skipif(TRANSFORMERS_4, reason=f"{feature} is new in transformers 5 ({transformers.__version__})")


VOCAB = 64
SEQ_LEN = 8
# TrainingArguments for quick, quiet, deterministic CPU runs without checkpoints.
QUICK_RUN = dict(
    per_device_train_batch_size=4,
    per_device_eval_batch_size=8,
    learning_rate=1e-2,
    report_to="none",
    use_cpu=True,
    disable_tqdm=True,
    logging_strategy="no",
    save_strategy="no",
    seed=0,
    data_seed=0,
)


def tiny_bert(num_labels: int = 2, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def _gpt2_config(**kwargs) -> GPT2Config:
    return GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=2, n_head=2, pad_token_id=0, **kwargs)


def tiny_gpt2_classifier(num_labels: int = 2, seed: int = 0) -> GPT2ForSequenceClassification:
    torch.manual_seed(seed)
    return GPT2ForSequenceClassification(_gpt2_config(num_labels=num_labels))


def tiny_gpt2_lm(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(_gpt2_config())


def tiny_tokenizer():
    """A word-level tokenizer over the tiny models' vocabulary: ``<pad>``, ``t1`` ... ``t62``, ``<eos>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, **{f"t{i}": i for i in range(1, VOCAB - 1)}, "<eos>": VOCAB - 1}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>")


def classification_data(n: int = 32, num_labels: int = 2, seed: int = 1) -> list:
    """Token sequences whose label is a simple function of the tokens (learnable), no padding."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, SEQ_LEN), generator=generator)
    labels = ids[:, 0] % num_labels
    return [
        {"input_ids": ids[i], "attention_mask": torch.ones(SEQ_LEN, dtype=torch.long), "labels": labels[i]}
        for i in range(n)
    ]


def lm_data(n: int = 32, seed: int = 1) -> list:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, SEQ_LEN), generator=generator)
    return [
        {"input_ids": ids[i], "attention_mask": torch.ones(SEQ_LEN, dtype=torch.long), "labels": ids[i]}
        for i in range(n)
    ]


def expected_snapshot_steps(swa_start, swa_freq: int, max_steps: int) -> list:
    """The snapshot steps as the documented rule defines them, computed here independently of hf_swa."""
    start = max(1, math.ceil(swa_start * max_steps)) if isinstance(swa_start, float) else swa_start
    return [g for g in range(1, max_steps + 1) if g >= start and (g - start) % swa_freq == 0]


def trainable_float_weights(model) -> dict:
    """name -> float64 copy of each trainable floating-point parameter, tied weights once."""
    seen, weights = set(), {}
    for name, p in model.named_parameters():
        if p.requires_grad and p.is_floating_point() and id(p) not in seen:
            seen.add(id(p))
            weights[name] = p.detach().to(torch.float64).clone()
    return weights


class SnapshotRecorder(TrainerCallback):
    """Records the live weights after the given optimizer steps. Add it before the SWA callback."""

    def __init__(self, steps):
        self.steps = set(steps)
        self.snapshots = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps:
            self.snapshots[state.global_step] = trainable_float_weights(model)

    def mean(self) -> dict:
        assert self.snapshots, "no snapshot recorded"
        names = next(iter(self.snapshots.values())).keys()
        return {n: torch.stack([s[n] for s in self.snapshots.values()]).mean(0) for n in names}


def max_relative_error(actual: dict, expected: dict) -> float:
    """max |a - e| / max |e| over all tensors; `actual` keys may lack wrapper prefixes."""
    assert set(actual) == set(expected), (sorted(actual), sorted(expected))
    worst = 0.0
    for name, value in expected.items():
        scale = value.abs().max().item() or 1.0
        worst = max(worst, (actual[name].to(torch.float64) - value).abs().max().item() / scale)
    return worst


class LearningRateRecorder(TrainerCallback):
    """The LR each optimizer step actually used (read just before optimizer.step())."""

    def __init__(self):
        self.lrs = {}

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs[state.global_step + 1] = [group["lr"] for group in optimizer.param_groups]


class StopAt(TrainerCallback):
    """Simulates an interruption: training stops right after optimizer step `step` (and its checkpoint)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def give_cpu_fp16_a_loss_scaler(monkeypatch) -> None:
    """fp16 as on GPUs: Accelerate gives CPU runs no loss scaler (and drops fp16); give them one.

    Past that, the real thing runs: fp16 autocast, the loss scaled in backward, the
    gradients unscaled and checked, the step skipped and reported on overflow, and the
    Trainer then leaving its scheduler alone.
    """
    init = Accelerator.__init__

    def init_with_scaler(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.state.mixed_precision == "fp16" and self.scaler is None:
            self.native_amp, self.scaler = True, torch.amp.GradScaler("cpu")

    monkeypatch.setattr(Accelerator, "__init__", init_with_scaler)


class OverflowAt(TrainerCallback):
    """Non-finite logits in the forward of the given optimizer steps, so that their gradients overflow."""

    def __init__(self, steps):
        self.steps, self.now = set(steps), False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        model.classifier.register_forward_hook(lambda module, inputs, out: out * float("inf") if self.now else out)

    def on_step_begin(self, args, state, control, **kwargs):
        self.now = state.global_step + 1 in self.steps


def checkpoint_swa_average(folder) -> dict:
    """The SWA average (one window) stored in a checkpoint's SWA state, by parameter name."""
    from safetensors.torch import load_file

    state = load_file(str(folder) + "/swa_averages.safetensors")
    return {key.removeprefix("window0/"): value for key, value in state.items() if key.startswith("window0/")}
