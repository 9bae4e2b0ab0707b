"""One prepared check for a lent GPU machine: SWA under bf16/fp16 with SWATrainer (about 2-4 minutes).

    python benchmarks/gpu_check.py              # on a GPU: BERT-base size, built from config (no download)
    python benchmarks/gpu_check.py --small      # a smaller BERT, faster
    python benchmarks/gpu_check.py --cpu-smoke  # what runs without CUDA (also the default there)

It needs torch, transformers, accelerate and safetensors only (not datasets or evaluate),
so on a GPU machine with those and no network it runs from a checkout without installing:

    PYTHONPATH=. python benchmarks/gpu_check.py && PYTHONPATH=. python benchmarks/bench_update.py

For each run (bf16 autocast, fp16 autocast with its grad scaler, bf16 weights without
autocast, each with the averages beside the weights and with ``swa_device="cpu"``), it
trains a BERT for a few dozen steps with `SWATrainer` and checks, printing PASS/FAIL:

- the averages are fp32 (pinned host memory with ``swa_device="cpu"``) and equal the
  mean of the weights actually trained, recorded independently in float64 in host memory
  at the same optimizer steps (max |a - m| / max |m| <= 1e-6 over all tensors);
- after training the model holds the averages (in its own dtype);
- every step from ``swa_start`` used ``swa_lr``, also when fp16's loss scaler skipped
  steps: the fp16 runs plant three overflows (non-finite logits at steps 2, 3 and
  ``swa_start + 1``) and train with the non-fused AdamW, whose skips Accelerate reports
  (a fused one skips inside its own step, unseen), and check the scaler skipped them.

Then, in a process of its own launched with torchrun, the same checks through
Accelerate's FSDP2 (`fsdp=True`, `fsdp_config={"version": 2}`, one process): bf16 (or
fp16) is FSDP2's MixedPrecisionPolicy, the shards stay fp32, and the averages of the
shards, gathered, must equal the recorded mean of the gathered weights
(`--no-fsdp2` skips it; on CPU the smoke run lifts Accelerate's GPU-only gate for FSDP).

It prints a table: median training step time (without SWA, from a baseline run of
the same precision) and median update time, their ratio, peak GPU memory of the run
with and without SWA, and GPU memory held by the averages. Timings use
``torch.cuda.synchronize()`` around each update, so they include the host copy of
``swa_device="cpu"``. Nothing is asserted on a time. Exit status 1 if a check failed.

Without CUDA only the CPU-capable part runs (tiny model, bf16 autocast and bf16
weights, fp32 averages equal the recorded mean, and the FSDP2 part in bf16 over gloo);
fp16 (Accelerate silently trains in fp32 on CPU), pinned memory and GPU timings/memory
are skipped with a message.

On one GPU the FSDP2 part runs in one process: each shard is the whole tensor, so it
checks the DTensor, NCCL and MixedPrecisionPolicy paths, not gathers across ranks
(those are tested on CPU with 2 processes: tests/test_distributed.py). It uses bf16
where the GPU has it, fp16 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

import torch
from transformers import BertConfig, BertForSequenceClassification, TrainerCallback

import hf_swa
from hf_swa import SWATrainer, SWATrainingArguments, WeightAverager
from hf_swa.averaging.distributed import full_averages, is_dtensor
from hf_swa.training.schedule import skipped_steps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIXED = {"bf16-autocast": torch.bfloat16, "fp16-autocast": torch.float16}  # FSDP2's compute dtype
FSDP2 = dict(fsdp=True, fsdp_config={"version": 2, "transformer_layer_cls_to_wrap": ["BertLayer"]})

SIZES = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    "small": dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
# fp32 running means drift from the float64 mean by about 3e-7 after 20 snapshots (the
# default 40 steps) and 7e-7 after 40: keep --steps at most about 80.
TOLERANCE = 1e-6
FSDP2_TIMEOUT_S = 300
failures = []


def check(ok: bool, what: str) -> None:
    print(f"  [{'PASS' if ok else 'FAIL'}] {what}")
    if not ok:
        failures.append(what)


def build_model(size: str, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, num_labels=2, **SIZES[size])
    return BertForSequenceClassification(config)


def make_data(n: int, seq_len: int, vocab: int = 30522, seed: int = 1) -> list:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (n, seq_len), generator=generator)
    labels = (ids[:, 0] % 2).long()
    mask = torch.ones(seq_len, dtype=torch.long)
    return [{"input_ids": ids[i], "attention_mask": mask, "labels": labels[i]} for i in range(n)]


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: gathered from its shards for an FSDP2 DTensor, else the tensor itself."""
    return tensor.full_tensor() if is_dtensor(tensor) else tensor


def trainable(model) -> list:
    seen, params = set(), []
    for name, p in model.named_parameters():
        if p.requires_grad and p.is_floating_point() and id(p) not in seen:
            seen.add(id(p))
            params.append((name, p))
    return params


class MeanRecorder(TrainerCallback):
    """A float64 running sum, in host memory, of the trainable weights at the given optimizer steps.

    Independent of hf_swa; kept off the GPU so the GPU memory of the run is the training's and SWA's only.
    """

    def __init__(self, steps):
        self.steps, self.sums, self.n = set(steps), None, 0

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step not in self.steps:
            return
        with torch.no_grad():
            params = trainable(model)
            if self.sums is None:
                self.sums = {name: torch.zeros(p.shape, dtype=torch.float64) for name, p in params}
            for name, p in params:
                self.sums[name] += full(p.detach()).to("cpu", torch.float64)
        self.n += 1

    def mean(self) -> dict:
        return {name: s / self.n for name, s in self.sums.items()}


class LearningRates(TrainerCallback):
    """The LR each optimizer step used (read just before the step) and the steps the scheduler skipped."""

    def __init__(self):
        self.lrs, self.skipped = {}, 0

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs[state.global_step + 1] = max(group["lr"] for group in optimizer.param_groups)

    def on_train_end(self, args, state, control, lr_scheduler=None, **kwargs):
        self.skipped = skipped_steps(lr_scheduler, state.global_step)


class PlantedOverflows(TrainerCallback):
    """Non-finite logits in the given optimizer steps: their gradients overflow, and fp16's
    loss scaler must find it (when the Trainer unscales them) and skip the step."""

    def __init__(self, steps):
        self.steps, self.active = set(steps), False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.steps:
            model.classifier.register_forward_hook(self._overflow)

    def on_step_begin(self, args, state, control, **kwargs):
        self.active = state.global_step + 1 in self.steps

    def _overflow(self, module, inputs, output):
        return output * float("inf") if self.active and module.training else output


class StepTimer(TrainerCallback):
    """Wall time between consecutive step ends (synchronised), and peak GPU memory."""

    def __init__(self):
        self.times, self._last = [], None

    def _now(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._last = self._now()

    def on_step_end(self, args, state, control, **kwargs):
        now = self._now()
        self.times.append(now - self._last)
        self._last = now


update_times: list = []
_update_step = WeightAverager.update_step


def timed_update_step(self, model, step, snapshot):
    """The callback's per-step update, timed on the snapshot steps."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = _update_step(self, model, step, snapshot)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    if snapshot:
        update_times.append(time.perf_counter() - start)
    return result


WeightAverager.update_step = timed_update_step


def relative_error(actual: dict, expected: dict) -> float:
    diff = max((actual[k].double().to(expected[k].device) - expected[k]).abs().max().item() for k in expected)
    return diff / max(expected[k].abs().max().item() for k in expected)


def run(name, size, precision, swa_device, steps, batch, seq_len, cuda, swa=True, fsdp=False):
    """One SWATrainer run (on the GPU when `cuda`; through Accelerate's FSDP2 when `fsdp`); returns a table row.

    GPU memory is counted from what is allocated when the run starts: earlier runs' trainers
    live in reference cycles, so they are collected first and what is left is subtracted.
    """
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated() if cuda else 0
    model = build_model(size)
    # bf16 weights need a larger LR to move at all (smaller updates round away), which the check needs.
    lr = 2e-3 if precision == "bf16-weights" else 5e-5
    kwargs = {}
    if precision == "bf16-autocast":
        kwargs["bf16"] = True
    elif precision == "fp16-autocast":
        kwargs["fp16"] = True
    elif precision == "bf16-weights":
        model = model.to(torch.bfloat16)
    if fsdp:
        kwargs.update(FSDP2)
    swa_start = steps // 2 + 1
    # fp16 (not through FSDP2): make the loss scaler skip two steps before swa_start and one after. A
    # non-fused optimizer, so that Accelerate sees the skips (a fused one skips inside its own step).
    planted = (2, 3, swa_start + 1) if precision == "fp16-autocast" and not fsdp else ()
    if planted:
        kwargs["optim"] = "adamw_torch"
    snapshot_steps = list(range(swa_start, steps + 1))
    recorder, timer = MeanRecorder(snapshot_steps), StepTimer()
    update_times.clear()
    with tempfile.TemporaryDirectory() as out:
        args = SWATrainingArguments(
            output_dir=out,
            max_steps=steps,
            per_device_train_batch_size=batch,
            learning_rate=lr,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            seed=0,
            data_seed=0,
            use_cpu=not cuda,
            swa=swa,
            swa_start=swa_start,
            swa_freq=1,
            swa_lr=lr / 2,
            swa_ship="swa",  # the mean of every snapshot, which the recorder computes
            swa_device=swa_device,
            dataloader_num_workers=0,
            **kwargs,
        )
        rates = LearningRates()
        callbacks = ([recorder, timer, rates] if swa else [timer]) + [PlantedOverflows(planted)]
        trainer = SWATrainer(
            model=model, args=args, train_dataset=make_data(steps * batch, seq_len), callbacks=callbacks
        )
        trainer.train()
    peak = (torch.cuda.max_memory_allocated() - before) / 2**20 if cuda else float("nan")
    step_time = statistics.median(timer.times[1:] or timer.times)
    row = {
        "run": name,
        "precision": precision,
        "swa_device": swa_device or "beside",
        "step_ms": step_time * 1e3,
        "peak_mib": peak,
        "update_ms": float("nan"),
        "avg_gpu_mib": float("nan"),
    }
    if not swa:
        return row
    averager = trainer.swa_callback.averager
    print(f"{name}:")
    averages = averager.averages()  # this process's part: the whole tensors unless sharded
    check({t.dtype for t in averages.values()} == {torch.float32}, "averages are fp32")
    check(
        averager.n_averaged == len(snapshot_steps) == recorder.n,
        f"{averager.n_averaged} snapshots averaged, {recorder.n} recorded",
    )
    if fsdp:
        policy = trainer.accelerator.state.fsdp_plugin.mixed_precision_policy
        check(
            averager.sharded and getattr(policy, "param_dtype", None) == MIXED[precision],
            f"FSDP2 shards averaged, computed in {getattr(policy, 'param_dtype', None)}",
        )
    gathered = full_averages(averager, trainer.model)  # the averages themselves where nothing is sharded
    error = relative_error(gathered, recorder.mean())
    check(error <= TOLERANCE, f"averages equal the recorded float64 mean (relative error {error:.1e})")
    live = averager.kept_live_weights()  # the last live weights, kept aside by the final swap
    moved = relative_error({k: v.float() for k, v in live.items()}, {k: v.double() for k, v in averages.items()})
    check(moved > 1e-5, f"the average differs from the last live weights (relative {moved:.1e}): the check has teeth")
    weights = {k: full(p.detach()) for k, p in trainable(trainer.model)}
    model_dtype = next(iter(weights.values())).dtype
    held = all(torch.equal(weights[k], v.to(device=weights[k].device, dtype=model_dtype)) for k, v in gathered.items())
    check(held, f"the model holds the averages in its dtype ({model_dtype})")
    if planted:
        check(rates.skipped >= len(planted), f"the loss scaler skipped the {len(planted)} planted overflows")
    tail = [rates.lrs[step] for step in snapshot_steps]
    check(
        all(abs(used - lr / 2) <= 1e-12 * lr for used in tail),
        f"every step from swa_start used swa_lr ({rates.skipped} step(s) skipped by the loss scaler)",
    )
    if fsdp:
        check(model_dtype == torch.float32, "FSDP2's shards stay fp32 under mixed precision")
    if swa_device == "cpu":
        on_cpu = all(t.device.type == "cpu" for t in averages.values())
        check(on_cpu, "averages live in host memory")
    gpu_bytes = sum(t.numel() * t.element_size() for t in averager.allocated_tensors() if t.is_cuda)
    if swa_device == "cpu" and cuda:
        check(all(t.is_pinned() for t in averages.values()), "host averages are pinned")
        check(gpu_bytes == 0, "the averages take no GPU memory")
    row.update(update_ms=statistics.median(update_times) * 1e3, avg_gpu_mib=gpu_bytes / 2**20 if cuda else float("nan"))
    return row


def print_table(rows, baselines):
    header = (
        f"{'run':<28} {'step ms':>8} {'update ms':>10} {'update/step':>11} {'peak MiB':>9} "
        f"{'no-SWA MiB':>10} {'avg GPU MiB':>11}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        base = baselines.get(row["precision"])
        train_ms = base["step_ms"] if base else row["step_ms"]
        ratio = row["update_ms"] / train_ms if train_ms else float("nan")
        base_peak = base["peak_mib"] if base else float("nan")
        print(
            f"{row['run']:<28} {train_ms:>8.2f} {row['update_ms']:>10.3f} {ratio:>11.3f} {row['peak_mib']:>9.0f} "
            f"{base_peak:>10.0f} {row['avg_gpu_mib']:>11.0f}"
        )
    print(
        "step ms: median training step without SWA (same precision); peak MiB: peak GPU memory of the SWA run "
        "above what was allocated when it started; no-SWA MiB: the same for the run without SWA."
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_fsdp2_check(options) -> None:
    """Run the FSDP2 part in a process of its own, launched as Accelerate's FSDP needs (torchrun, 1 process)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "1",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        os.path.abspath(__file__),
        "--fsdp2-worker",
    ]
    command += [flag for flag, on in (("--small", options.small), ("--cpu-smoke", options.cpu_smoke)) if on]
    command += ["--steps", str(options.steps)] if options.steps else []
    print("\nFSDP2 through SWATrainer, in its own process:", " ".join(command[3:]), flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    try:
        returncode = subprocess.run(command, env=env, timeout=FSDP2_TIMEOUT_S).returncode
    except subprocess.TimeoutExpired:
        print(f"The FSDP2 part did not end within {FSDP2_TIMEOUT_S} s.")
        returncode = None
    check(returncode == 0, "the FSDP2 checks passed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="a smaller BERT (4 layers, hidden 512)")
    parser.add_argument("--cpu-smoke", action="store_true", help="only the part that runs without CUDA")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps, averaged over the second half (default 40 on a GPU; keep 10-80)",
    )
    parser.add_argument("--no-fsdp2", action="store_true", help="skip the FSDP2 part")
    parser.add_argument("--fsdp2-worker", action="store_true", help=argparse.SUPPRESS)  # the FSDP2 part, under torchrun
    options = parser.parse_args()
    cuda = torch.cuda.is_available() and not options.cpu_smoke
    if not options.fsdp2_worker:
        print(
            f"hf_swa {hf_swa.__version__}, torch {torch.__version__}, "
            f"device: {torch.cuda.get_device_name() if cuda else 'cpu'}"
        )
    bf16 = cuda and torch.cuda.is_bf16_supported()
    if not cuda:
        size, steps, batch, seq_len = "tiny", options.steps or 6, 4, 16
    else:
        size, steps, batch, seq_len = ("small" if options.small else "base"), options.steps or 40, 32, 128
    fsdp = options.fsdp2_worker
    if fsdp:
        if not cuda:  # Accelerate uses FSDP on accelerators only: lift that gate for the CPU smoke run
            # The same gate-lifting helper the FSDP2 tests use (the benchmark runs from a checkout).
            sys.path.insert(0, os.path.join(REPO, "tests", "distributed"))
            import common

            common.allow_fsdp_on_cpu()
        plans = [("bf16-autocast" if bf16 or not cuda else "fp16-autocast", device) for device in (None, "cpu")]
    elif not cuda:
        print(
            "No CUDA (or --cpu-smoke): tiny BERT on CPU, bf16 only. Skipped: fp16 (on CPU Accelerate accepts "
            "fp16=True and trains in fp32), pinned host memory, GPU step/update timings and GPU memory."
        )
        plans = [("bf16-autocast", None), ("bf16-weights", None), ("bf16-autocast", "cpu")]
    else:
        precisions = (["bf16-autocast"] if bf16 else []) + ["fp16-autocast"] + (["bf16-weights"] if bf16 else [])
        if not bf16:
            print("This GPU has no bf16: bf16 runs skipped.")
        plans = [(p, device) for p in precisions for device in (None, "cpu")]
    print(
        f"model: BERT-{size} from config, {steps} steps, batch {batch} x {seq_len} tokens, "
        f"averaging from step {steps // 2 + 1}{', FSDP2' if fsdp else ''}\n"
    )

    rows, baselines = [], {}
    prefix = "fsdp2 " if fsdp else ""
    for precision, device in plans:
        try:
            if precision not in baselines:
                baselines[precision] = run(
                    f"{prefix}{precision} no SWA",
                    size,
                    precision,
                    None,
                    steps,
                    batch,
                    seq_len,
                    cuda,
                    swa=False,
                    fsdp=fsdp,
                )
            rows.append(
                run(
                    f"{prefix}{precision} {device or 'beside'}",
                    size,
                    precision,
                    device,
                    steps,
                    batch,
                    seq_len,
                    cuda,
                    fsdp=fsdp,
                )
            )
        except Exception:  # report and go on with the other runs
            traceback.print_exc()
            check(False, f"{prefix}{precision} swa_device={device} ran")
    print_table(rows, baselines)
    if not fsdp and not options.no_fsdp2:
        launch_fsdp2_check(options)
    print(f"\n{'ALL CHECKS PASSED' if not failures else f'{len(failures)} CHECK(S) FAILED: ' + '; '.join(failures)}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
