"""Cost of one SWA update on a BERT-base-sized model, and of SWA in a short training run.

Measured in one run, best of interleaved repeats; prints ratios, never asserts a time.

    python benchmarks/bench_update.py            # BERT-base size (~110M fp32 parameters)
    python benchmarks/bench_update.py --small    # a quick smoke run

Compares, on the same model and device:
- `WeightAverager.update` (default: with the NaN/inf check; and without it),
- `torch.optim.swa_utils.AveragedModel.update_parameters`,
- a plain multi-tensor copy of the same bytes (the floor: read 4 + write 4 bytes a
  parameter; an average must also read the mean, 12 bytes, so 1.5x is the ideal),
- candidates: `swa_windows=4` (one update per snapshot whatever the windows) and two
  EMAs (one more update each), as ratios to the single average's update;
- two power-function EMAs (`power_ema_stds=[0.05, 0.10]`, `update_power_emas`, every step);
- one training step's `update_step` (a snapshot, two power EMAs and BEMA: one read and one NaN/inf
  check of the weights) against the same three updates called apart.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

import torch
from torch.optim.swa_utils import AveragedModel
from transformers import BertConfig, BertModel

from hf_swa import WeightAverager
from hf_swa.averaging.bema import BEMASettings

#: The clock the timings read: wall time, or (``--clock process``, for CPU runs on a shared machine) this
#: process's CPU time, which leaves out the time other processes hold the cores.
CLOCK = {"wall": time.perf_counter, "process": time.process_time}


def best_seconds(fns: dict, repeats: int, warmup: int = 2, clock=time.perf_counter) -> dict:
    """Best-of-`repeats` seconds of each function, the functions interleaved in every round.

    Interleaving spreads a busy neighbour (a shared machine) over every method alike; the best
    of the rounds is the run least disturbed.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(clock() - start)
    return {name: min(values) for name, values in times.items()}


def mib(n_bytes: int) -> float:
    return n_bytes / 2**20


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def bench_update(config: BertConfig, repeats: int, device: str, clock=time.perf_counter) -> None:
    torch.manual_seed(0)
    model = BertModel(config).to(device)
    params = [p.detach() for p in model.parameters()]
    n_params = sum(p.numel() for p in params)
    print(
        f"model: BertModel, {n_params / 1e6:.1f}M fp32 parameters ({mib(tensor_bytes(params)):.0f} MiB), {device}, "
        f"{torch.get_num_threads()} threads, best of {repeats} interleaved rounds"
    )

    averager = WeightAverager(model)
    averager.update(model)  # the first snapshot is a copy; time the running-mean updates after it
    unchecked = WeightAverager(model, skip_non_finite=False)
    unchecked.update(model)
    averaged_model = AveragedModel(model)
    averaged_model.update_parameters(model)
    copies = [torch.empty_like(p) for p in params]
    windows = WeightAverager(model, window_starts=[1, 2, 3, 4])
    for step in (1, 2, 3, 4):  # a snapshot in every window; time updates in the last one
        windows.update(model, step=step)
    emas = WeightAverager(model, ema_decays=[0.9, 0.99])
    emas.update(model)
    power_emas = WeightAverager(model, power_ema_stds=[0.05, 0.10])
    steps = itertools.count(1)
    power_emas.update_power_emas(model, next(steps))  # the first update is a copy

    step_all = WeightAverager(model, power_ema_stds=[0.05, 0.10], bema=BEMASettings(update_freq=1))
    step_apart = WeightAverager(model, power_ema_stds=[0.05, 0.10], bema=BEMASettings(update_freq=1))
    step_all.update_step(model, 0, snapshot=False)  # BEMA's anchor
    step_apart.update_bema(model, 0)
    step_all.update_step(model, next(steps), snapshot=True)  # the first updates are copies
    apart_steps = itertools.count(1)

    def apart() -> None:
        step = next(apart_steps)
        step_apart.update(model)
        step_apart.update_power_emas(model, step)
        step_apart.update_bema(model, step)

    apart()
    results = best_seconds(
        {
            "plain copy of the weights": lambda: torch._foreach_copy_(copies, params),
            "WeightAverager.update": lambda: averager.update(model),
            "WeightAverager.update (no NaN check)": lambda: unchecked.update(model),
            "AveragedModel.update_parameters": lambda: averaged_model.update_parameters(model),
            "update, swa_windows=4": lambda: windows.update(model, step=4),
            "update, 2 EMAs besides swa": lambda: emas.update(model),
            "update_power_emas, 2 widths besides swa": lambda: power_emas.update_power_emas(model, next(steps)),
            "update_step: swa, 2 power EMAs, BEMA": lambda: step_all.update_step(model, next(steps), snapshot=True),
            "the same as 3 separate updates": apart,
        },
        repeats,
        clock=clock,
    )
    extra = {
        "plain copy of the weights": tensor_bytes(copies),
        "WeightAverager.update": averager.nbytes(),
        "WeightAverager.update (no NaN check)": unchecked.nbytes(),
        "update, swa_windows=4": windows.nbytes(),
        "update, 2 EMAs besides swa": emas.nbytes(),
        "update_power_emas, 2 widths besides swa": power_emas.nbytes(),
        "update_step: swa, 2 power EMAs, BEMA": step_all.nbytes(),
        "the same as 3 separate updates": step_apart.nbytes(),
        "AveragedModel.update_parameters": tensor_bytes(averaged_model.parameters())
        + tensor_bytes(averaged_model.buffers()),
    }
    copy_time = results["plain copy of the weights"]
    swa_time = results["AveragedModel.update_parameters"]
    one_update = results["WeightAverager.update"]
    print(f"{'method':40s} {'best ms':>10s} {'x copy':>8s} {'x AveragedModel':>16s} {'x update':>9s} {'adds MiB':>9s}")
    for name, seconds in results.items():
        print(
            f"{name:40s} {seconds * 1e3:10.1f} {seconds / copy_time:8.2f} {seconds / swa_time:16.2f} "
            f"{seconds / one_update:9.2f} {mib(extra[name]):9.0f}"
        )


def bench_training(repeats: int) -> None:
    """Wall time of a short tiny-BERT training with SWA (snapshot every step) vs without."""
    from transformers import BertForSequenceClassification

    from hf_swa import SWATrainer, SWATrainingArguments

    config = BertConfig(
        vocab_size=1000,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=64,
    )
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 1000, (256, 32), generator=generator)
    data = [{"input_ids": ids[i], "labels": ids[i, 0] % 2} for i in range(len(ids))]

    def train(swa: bool) -> float:
        with tempfile.TemporaryDirectory() as out:
            args = SWATrainingArguments(
                output_dir=out,
                max_steps=60,
                per_device_train_batch_size=8,
                report_to="none",
                use_cpu=True,
                disable_tqdm=True,
                logging_strategy="no",
                save_strategy="no",
                swa=swa,
                swa_start=1,
                swa_freq=1,
                swa_lr=1e-4,
                swa_windows=1,  # the classic single average: the cost this benchmark reports
            )
            torch.manual_seed(0)
            trainer = SWATrainer(model=BertForSequenceClassification(config), args=args, train_dataset=data)
            start = time.perf_counter()
            trainer.train()
            return time.perf_counter() - start

    runs = [(train(False), train(True)) for _ in range(repeats)]  # interleaved
    without, with_swa = min(r[0] for r in runs), min(r[1] for r in runs)
    print(
        f"tiny-BERT training, 60 steps: without SWA {without:.2f} s, with SWA (freq 1) {with_swa:.2f} s, "
        f"ratio {with_swa / without:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="a 4-layer, 256-wide model: a quick smoke run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no_training", action="store_true", help="skip the tiny training run")
    parser.add_argument("--clock", choices=sorted(CLOCK), default="wall", help="process: CPU time of this process")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    config = (
        BertConfig()
        if not args.small
        else BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
    )
    bench_update(config, args.repeats, args.device, CLOCK[args.clock])
    if not args.no_training:
        bench_training(max(1, args.repeats // 2))


if __name__ == "__main__":
    main()
