"""The SWA LR tail: the LR each optimizer step used matches the documented formula."""

import math

import pytest
import torch
from tiny_models import (
    LearningRateRecorder,
    OverflowAt,
    StopAt,
    classification_data,
    give_cpu_fp16_a_loss_scaler,
    tiny_bert,
)
from transformers import Trainer, TrainingArguments

from hf_swa import SWACallback, SWAConfig, SWATrainer, SWATrainingArguments
from hf_swa.training.schedule import install_lr_tail

LR, N = 1e-2, 12
COMMON = dict(
    per_device_train_batch_size=4,
    learning_rate=LR,
    report_to="none",
    use_cpu=True,
    disable_tqdm=True,
    logging_strategy="steps",
    logging_steps=1,
    save_strategy="no",
    max_steps=N,
    lr_scheduler_type="linear",
)


def base_linear(step):
    """HF's linear schedule without warmup: optimizer step t (from 1) uses LR * (N - (t - 1)) / N."""
    return LR * (N - (step - 1)) / N


def expected_tail(step, start, swa_lr, anneal_steps, strategy):
    if step < start:
        return base_linear(step)
    if anneal_steps == 0:
        return swa_lr
    progress = min(1.0, (step - start) / anneal_steps)
    share = (1 + math.cos(math.pi * progress)) / 2 if strategy == "cos" else 1 - progress
    return swa_lr + (base_linear(start) - swa_lr) * share


@pytest.mark.parametrize("strategy,anneal_steps", [("cos", 4), ("linear", 4), ("cos", 0), ("linear", 20)])
def test_lr_used_by_each_step_matches_formula(tmp_path, strategy, anneal_steps):
    recorder = LearningRateRecorder()
    args = SWATrainingArguments(
        output_dir=str(tmp_path),
        swa_start=0.5,
        swa_lr=2e-3,
        swa_anneal_steps=anneal_steps,
        swa_anneal_strategy=strategy,
        **COMMON,
    )
    trainer = SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(48), callbacks=[recorder])
    trainer.train()
    assert sorted(recorder.lrs) == list(range(1, N + 1))
    for step, lrs in recorder.lrs.items():
        expected = expected_tail(step, 6, 2e-3, anneal_steps, strategy)
        assert lrs == pytest.approx([expected] * len(lrs), rel=1e-9, abs=1e-15), step
    # The logged learning_rate is the LR the step used.
    logged = {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}
    for step, lr in logged.items():
        assert lr == pytest.approx(recorder.lrs[step][0], rel=1e-9)
    assert len(logged) == N


def test_tail_from_step_one_applies_to_the_first_step(tmp_path):
    recorder = LearningRateRecorder()
    callback = SWACallback(SWAConfig(swa_start=1, swa_lr=3e-3))
    args = TrainingArguments(output_dir=str(tmp_path), **COMMON)
    Trainer(model=tiny_bert(), args=args, train_dataset=classification_data(48), callbacks=[recorder, callback]).train()
    assert all(lrs[0] == pytest.approx(3e-3, rel=1e-12) for lrs in recorder.lrs.values())


def test_without_swa_lr_the_schedule_is_untouched_and_a_warning_explains(tmp_path, caplog):
    recorder = LearningRateRecorder()
    args = SWATrainingArguments(output_dir=str(tmp_path), swa_start=0.5, swa_lr_ratio=0.0, **COMMON)
    SWATrainer(model=tiny_bert(), args=args, train_dataset=classification_data(48), callbacks=[recorder]).train()
    for step, lrs in recorder.lrs.items():
        assert lrs[0] == pytest.approx(base_linear(step), rel=1e-12)
    assert "nearly a no-op" in caplog.text


def test_swa_lr_with_a_non_lambda_schedule_is_a_clear_error(tmp_path):
    plateau = {**COMMON, "lr_scheduler_type": "reduce_lr_on_plateau", "eval_strategy": "steps", "eval_steps": 4}
    with pytest.raises(ValueError, match="reduce_lr_on_plateau"):
        SWATrainingArguments(output_dir=str(tmp_path), swa_start=0.5, swa_lr=1e-3, **plateau)
    # The same through the callback on a plain Trainer: refused before the first step.
    data = classification_data(48)
    trainer = Trainer(
        model=tiny_bert(),
        args=TrainingArguments(output_dir=str(tmp_path), **plateau),
        train_dataset=data,
        eval_dataset=data[:8],
        callbacks=[SWACallback(SWAConfig(swa_start=0.5, swa_lr=1e-3))],
    )
    with pytest.raises(TypeError, match="LambdaLR"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_param_groups_keep_their_lr_ratios(tmp_path):
    model = tiny_bert()
    head = [p for n, p in model.named_parameters() if n.startswith("classifier")]
    body = [p for n, p in model.named_parameters() if not n.startswith("classifier")]
    optimizer = torch.optim.AdamW([{"params": body, "lr": 1e-3}, {"params": head, "lr": 1e-2}])
    recorder = LearningRateRecorder()
    args = SWATrainingArguments(
        output_dir=str(tmp_path),
        swa_start=4,
        swa_lr=5e-4,
        **{**COMMON, "max_steps": 8, "lr_scheduler_type": "constant"},
    )
    SWATrainer(
        model=model,
        args=args,
        train_dataset=classification_data(48),
        optimizers=(optimizer, None),
        callbacks=[recorder],
    ).train()
    for step, lrs in recorder.lrs.items():
        expected = [1e-3, 1e-2] if step < 4 else [5e-5, 5e-4]  # the peak group goes to swa_lr, ratio 10 kept
        assert lrs == pytest.approx(expected, rel=1e-12), step


@pytest.fixture
def fp16_with_loss_scaler_on_cpu(monkeypatch):
    give_cpu_fp16_a_loss_scaler(monkeypatch)


OVERFLOWS = (2, 4, 8)  # two before the tail starts at step 6, one in its anneal


def run_with_overflows(output_dir, optim, resume_at=None):
    """LRs used by each step, the logged LRs, and the steps the scheduler did not take."""

    def trainer(callbacks=()):
        recorder = LearningRateRecorder()
        args = SWATrainingArguments(
            output_dir=str(output_dir),
            swa_start=6,
            swa_lr=2e-3,
            swa_anneal_steps=4,
            swa_anneal_strategy="linear",
            fp16=True,
            **{**COMMON, "optim": optim, "save_strategy": "steps", "save_steps": 1},
        )
        return SWATrainer(
            model=tiny_bert(),
            args=args,
            train_dataset=classification_data(48),
            callbacks=[OverflowAt(OVERFLOWS), recorder, *callbacks],
        ), recorder

    run, recorder = trainer([StopAt(resume_at)] if resume_at else [])
    run.train()
    if resume_at:
        run, recorder = trainer()
        run.train(resume_from_checkpoint=str(output_dir / f"checkpoint-{resume_at}"))
    logged = {e["step"]: e["learning_rate"] for e in run.state.log_history if "learning_rate" in e}
    return recorder.lrs, logged, run.state.global_step - run.lr_scheduler.last_epoch


@pytest.mark.usefixtures("fp16_with_loss_scaler_on_cpu")
def test_steps_the_loss_scaler_skips_count_for_the_tail_like_for_the_snapshots(tmp_path):
    lrs, logged, skipped = run_with_overflows(tmp_path / "full", "adamw_torch")
    assert skipped == len(OVERFLOWS) and sorted(lrs) == list(range(1, N + 1))
    for step, used in lrs.items():
        if step < 6:  # the base schedule counts the updates applied, as in transformers
            expected = base_linear(step - sum(1 for s in OVERFLOWS if s < step))
        else:  # the tail counts optimizer steps, skipped ones included: it starts at step 6 like the snapshots
            expected = expected_tail(step, 6, 2e-3, 4, "linear")
        assert used[0] == pytest.approx(expected, rel=1e-9), step
        assert logged[step] == pytest.approx(used[0], rel=1e-9), step
    # Resumed from checkpoint-7, after two skips: the same LRs as the uninterrupted run.
    resumed, _, skipped_resumed = run_with_overflows(tmp_path / "resumed", "adamw_torch", resume_at=7)
    assert sorted(resumed) == list(range(8, N + 1)) and skipped_resumed == len(OVERFLOWS)
    assert all(resumed[step] == pytest.approx(lrs[step], rel=1e-12) for step in resumed)


@pytest.mark.usefixtures("fp16_with_loss_scaler_on_cpu")
def test_fused_optimizers_hide_skipped_steps_and_the_tail_still_starts_at_swa_start(tmp_path):
    # A fused optimizer skips the update inside its own step, so Accelerate does not see the
    # skip and the Trainer steps its scheduler anyway: the base schedule counts every step too.
    lrs, _, skipped = run_with_overflows(tmp_path, "adamw_torch_fused")
    assert skipped == 0
    for step, used in lrs.items():
        assert used[0] == pytest.approx(expected_tail(step, 6, 2e-3, 4, "linear"), rel=1e-9), step


def test_a_tensor_lr_stays_the_optimizer_s_tensor():
    # Optimizers given a tensor LR (e.g. for CUDA graphs) expect it updated in place, as torch's schedulers do.
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=torch.tensor(1e-2))
    lr = optimizer.param_groups[0]["lr"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    install_lr_tail(scheduler, SWAConfig(swa_start=1, swa_lr=2e-3), start_step=1)
    assert optimizer.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(2e-3)
