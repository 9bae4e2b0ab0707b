"""Settings and helpers shared by the multi-process workers and the tests that launch them.

A worker is launched with 2 processes; the test runs the same settings in one process
with the same global batch (per-process batch x processes), so both see the same
samples in the same order, and compares the numbers the workers dump.
"""

from __future__ import annotations

import json
import os
import sys

import torch
from safetensors.torch import save_file

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from tiny_models import classification_data, tiny_bert  # noqa: E402

WORLD_SIZE = 2
GLOBAL_BATCH = 8
MAX_STEPS = 8
INTERRUPT_AT = 5  # checkpoint-5 holds 2 snapshots (steps 3 and 5); the run ends with 3 (3, 5, 7)
# Candidates too: windows from steps 3 and 5 (swa, swa_from5), an EMA (ema_0.5) and two power EMAs
# (from step 1, written as snapshots at steps 4 and 8).
SWA = dict(
    swa_start=3,
    swa_freq=2,
    swa_lr=0.2,
    swa_anneal_steps=2,
    swa_anneal_strategy="linear",
    swa_windows=2,
    swa_ema_decays=[0.5],
    swa_power_ema_stds=[0.05, 0.1],
    swa_power_ema_every=4,
    swa_ship="swa",  # the model ships the mean of every snapshot, the reference the workers compute
)
CANDIDATES = ["swa", "swa_from5", "ema_0.5", "pema_0.05", "pema_0.1"]
TRAIN = dict(
    optim="sgd",
    learning_rate=0.5,
    report_to="none",
    use_cpu=True,
    disable_tqdm=True,
    logging_strategy="no",
    seed=0,
    data_seed=0,
    max_steps=MAX_STEPS,
    per_device_eval_batch_size=4,
    save_strategy="steps",
    save_steps=INTERRUPT_AT,
)
# The FSDP2 Trainer worker trains with SGD with momentum: torch cannot load an FSDP2 optimizer
# checkpoint that holds no tensors (plain SGD's empty state).
FSDP_OPTIM_ARGS = "momentum=0.5"
TRAIN_DATA = classification_data(48)  # 6 global batches an epoch: the runs cross an epoch boundary
EVAL_DATA = classification_data(16, seed=2)


def tiny_bert_without_dropout(seed: int = 0):
    """The tests' tiny BERT with dropout off, so that processes draw no random numbers in the forward.

    Its loss is declared a plain mean (`declare_mean_loss`), so that 2 processes with half the batch
    each train as one process with the whole batch.
    """
    from hf_swa.training.loss_kwargs import declare_mean_loss

    model = tiny_bert(seed=seed)
    assert declare_mean_loss(model)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    return model


def swa_trainer(output_dir: str, callbacks=(), **train):
    """An SWATrainer for the tiny BERT with the workers' settings (`train` overrides `TRAIN`), 2 processes."""
    from hf_swa import SWATrainer, SWATrainingArguments

    args = SWATrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=GLOBAL_BATCH // WORLD_SIZE,
        **SWA,
        **dict(TRAIN, **train),
    )
    assert args.world_size == WORLD_SIZE, f"launched with world_size={args.world_size}, expected {WORLD_SIZE}"
    return SWATrainer(
        model=tiny_bert_without_dropout(),
        args=args,
        train_dataset=TRAIN_DATA,
        eval_dataset=EVAL_DATA,
        callbacks=list(callbacks),
    )


def allow_fsdp_on_cpu() -> None:
    """Let Accelerate use its FSDP plugin on CPU processes (it does so only on accelerators).

    Past this one gate the Trainer's FSDP2 code runs as on GPUs (its setup, Accelerate's full
    state dict for saving, its sharded checkpoints and their resume), over gloo. Not fp16:
    on CPU Accelerate drops fp16's autocast and loss scaler, so an fp16 FSDP2 policy here
    would train in fp16 without loss scaling, which never happens on GPUs.
    """
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    init = AcceleratorState.__init__

    def init_with_fsdp(self, *args, fsdp_plugin=None, **kwargs):
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            if self._mixed_precision == "fp16":
                raise ValueError("allow_fsdp_on_cpu: fp16 FSDP2 on CPU would train without loss scaling")
            # What AcceleratorState does on GPUs:
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            # Later AcceleratorState() calls copy the distributed type back from PartialState.
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    AcceleratorState.__init__ = init_with_fsdp


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def dump_tensors(path: str, tensors: dict) -> None:
    save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}, path)


def candidate_averages(averager, model) -> dict:
    """Every candidate's full fp32 averages, keyed ``<candidate>/<parameter>``. Collective under sharding."""
    from hf_swa.averaging.distributed import full_averages

    assert averager.candidate_names() == CANDIDATES, averager.candidate_names()
    return {
        f"{name}/{key}": tensor
        for name in CANDIDATES
        for key, tensor in full_averages(averager, model, name=name).items()
    }


def dump_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
