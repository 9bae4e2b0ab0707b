"""Mixed precision: the averages are fp32 and equal the fp32 mean of the weights actually trained.

Kept tiny: bf16 autocast on CPU is about 13x slower than fp32. On CPU Accelerate accepts
`fp16=True` and then trains in fp32 (no autocast, no loss scaler): the fp16 test gives
CPU runs the loss scaler GPUs get (`give_cpu_fp16_a_loss_scaler`), and
benchmarks/gpu_check.py covers fp16 on a GPU.
"""

import pytest
import torch
from safetensors import safe_open
from tiny_models import (
    QUICK_RUN,
    OverflowAt,
    SnapshotRecorder,
    classification_data,
    expected_snapshot_steps,
    give_cpu_fp16_a_loss_scaler,
    max_relative_error,
    tiny_bert,
)
from transformers import AutoModelForSequenceClassification

from hf_swa import SWATrainer, SWATrainingArguments

MAX_STEPS, SWA_START, SWA_FREQ = 6, 3, 1
COMMON = dict(
    QUICK_RUN,
    max_steps=MAX_STEPS,
    swa_start=SWA_START,
    swa_freq=SWA_FREQ,
    swa_lr=5e-3,
)
STEPS = expected_snapshot_steps(SWA_START, SWA_FREQ, MAX_STEPS)


class DtypeRecorder:
    """The dtype of a module's output in each forward (bf16 under autocast)."""

    def __init__(self, module):
        self.dtypes = set()
        module.register_forward_hook(lambda _module, _inputs, output: self.dtypes.add(output.dtype))


def train(tmp_path, model, callbacks=(), **kwargs):
    recorder = SnapshotRecorder(STEPS)
    args = SWATrainingArguments(output_dir=str(tmp_path / "out"), **COMMON, swa_ship="swa", **kwargs)
    trainer = SWATrainer(
        model=model, args=args, train_dataset=classification_data(32), callbacks=[*callbacks, recorder]
    )
    outputs = DtypeRecorder(trainer.model.classifier)
    trainer.train()
    assert sorted(recorder.snapshots) == STEPS
    return trainer, recorder, outputs


def assert_fp32_mean_of_snapshots(averager, recorder):
    averages = averager.averages()
    assert {t.dtype for t in averages.values()} == {torch.float32}
    assert averager.n_averaged == len(STEPS)
    assert max_relative_error(averages, recorder.mean()) <= 1e-6


def test_bf16_autocast_averages_the_fp32_weights_in_fp32(tmp_path):
    trainer, recorder, outputs = train(tmp_path, tiny_bert(), bf16=True)
    assert trainer.accelerator.mixed_precision == "bf16"
    assert outputs.dtypes == {torch.bfloat16}  # the forward really ran under bf16 autocast
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}  # master weights stay fp32
    assert_fp32_mean_of_snapshots(trainer.swa_callback.averager, recorder)
    # The model ends with the average (fp32 weights: exactly the fp32 averages).
    for name, value in trainer.swa_callback.averager.averages().items():
        assert torch.equal(dict(trainer.model.named_parameters())[name], value)


def test_fp16_autocast_with_skipped_steps_averages_the_fp32_weights_in_fp32(tmp_path, monkeypatch):
    give_cpu_fp16_a_loss_scaler(monkeypatch)
    # The loss scaler skips a step before the averaging and one that is a snapshot: the snapshot
    # of a skipped step holds the unchanged weights, in the average as in the recorded mean.
    overflows = OverflowAt({2, SWA_START + 1})  # with a non-fused AdamW, whose skips Accelerate sees
    trainer, recorder, outputs = train(tmp_path, tiny_bert(), fp16=True, optim="adamw_torch", callbacks=[overflows])
    assert trainer.accelerator.scaler is not None
    assert outputs.dtypes == {torch.float16}  # the forward really ran under fp16 autocast
    assert trainer.state.global_step - trainer.lr_scheduler.last_epoch == 2  # both steps were skipped
    assert torch.equal(
        recorder.snapshots[SWA_START + 1]["classifier.weight"], recorder.snapshots[SWA_START]["classifier.weight"]
    )
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    assert_fp32_mean_of_snapshots(trainer.swa_callback.averager, recorder)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_model")
    tiny_bert().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_model_averages_in_fp32_and_saves_in_its_dtype(tmp_path, checkpoint, dtype):
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {dtype}
    trainer, recorder, outputs = train(tmp_path, model)
    assert outputs.dtypes == {dtype}
    averager = trainer.swa_callback.averager
    assert_fp32_mean_of_snapshots(averager, recorder)
    mean = recorder.mean()
    averages = averager.averages()
    # fp32 keeps what 16 bits cannot hold: the mean of 16-bit snapshots is mostly not a 16-bit number ...
    assert any(not torch.equal(a, a.to(dtype).float()) for a in averages.values())
    # ... and a running mean kept in the model's dtype drifts far more than the fp32 one.
    half_mean = None
    for step in STEPS:
        snapshot = {k: v.to(dtype) for k, v in recorder.snapshots[step].items()}
        if half_mean is None:
            half_mean, n = snapshot, 1
        else:
            n += 1
            half_mean = {k: half_mean[k] + (snapshot[k] - half_mean[k]) / n for k in half_mean}
    assert max_relative_error(half_mean, mean) > 100 * max_relative_error(averages, mean)

    # Saved in the model's dtype: the averages rounded to it, loadable with plain transformers.
    out = tmp_path / "final"
    trainer.save_model(str(out))
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        saved = {name: f.get_tensor(name) for name in f.keys()}
    assert {saved[name].dtype for name in averages} == {dtype}
    for name, value in averages.items():
        assert torch.equal(saved[name], value.to(dtype)), name
    reloaded = AutoModelForSequenceClassification.from_pretrained(out, dtype=dtype)
    for name, value in reloaded.named_parameters():
        assert torch.equal(value, averages[name].to(dtype)), name
