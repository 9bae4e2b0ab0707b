#!/usr/bin/env python
"""Post-hoc averaging: peak memory and speed of ``hf_swa.average_checkpoints``.

Writes 8 checkpoints of a GPT-2-style model of about 100 MB (fp32, built from config),
then measures, each approach in its own subprocess so that peaks do not mix:

- ``stream``: ``hf_swa.average_checkpoints`` (tensor by tensor);
- ``load_all``: the usual loop that loads every checkpoint with ``safetensors.torch.load_file``
  and averages the state dicts;
- ``read``: reading the same files and nothing else (plain ``readinto`` of 16 MiB blocks);
- ``read_safetensors``: reading every tensor of the same files as safetensors does (memory-mapped),
  touching each once (a ``sum``);
- ``power_ema``: reconstructing one power EMA (σ_rel 0.07) from power-EMA snapshots of widths
  0.05 and 0.10 taken at the checkpoints' steps (``2 x checkpoints`` fp32 files), written as a model
  (``hf_swa.posthoc.power_ema_reconstruction.write_power_ema_models``).

Memory is the growth of peak RSS (``VmHWM``, its count restarted with ``/proc/self/clear_refs``
once the imports are done) over the RSS at that point, as a ratio to one checkpoint's weight bytes
(target for ``stream`` and ``power_ema``: <= 1.5x).
Speed is each approach's time relative to ``read``. The files are read from the page
cache (they were just written), so the times measure the work, not the disk.

    python benchmarks/bench_average.py [--checkpoints 8] [--hidden 512] [--layers 6] [--vocab 16000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = "--child"
APPROACHES = ("read", "read_safetensors", "stream", "power_ema", "load_all")
SNAPSHOTS = "swa_power_ema"


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Restart the peak-RSS count at the current RSS (Linux: clear_refs 5) and return the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    return _status_bytes("VmHWM")


def make_checkpoints(root: str, count: int, hidden: int, layers: int, vocab: int) -> list:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_swa import WeightAverager
    from hf_swa.checkpointing.power_ema_snapshots import save_power_ema_snapshots

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_positions=512, n_embd=hidden, n_layer=layers, n_head=8)
    model = GPT2LMHeadModel(config)
    averager = WeightAverager(model, power_ema_stds=[0.05, 0.10])
    folders = []
    for i in range(count):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p), alpha=1e-3)
        folder = os.path.join(root, f"checkpoint-{(i + 1) * 100}")
        model.save_pretrained(folder)
        folders.append(folder)
        averager.update_power_emas(model, (i + 1) * 100)
        save_power_ema_snapshots(averager, os.path.join(root, SNAPSHOTS))
    return folders


def child(approach: str, folders: list, output_dir: str) -> dict:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    import hf_swa  # noqa: F401  (imports done before the baseline is taken)
    from hf_swa.posthoc.average import average_checkpoints
    from hf_swa.posthoc.power_ema_reconstruction import write_power_ema_models

    files = [os.path.join(f, "model.safetensors") for f in folders]
    baseline = reset_peak_rss()
    start = time.perf_counter()
    if approach == "stream":
        average_checkpoints(folders, output_dir, progress=False)
    elif approach == "power_ema":
        snapshots = os.path.join(os.path.dirname(folders[0]), SNAPSHOTS)
        write_power_ema_models(snapshots, [0.07], output_dir, folders[-1], progress=False)
    elif approach == "load_all":
        states = [load_file(path) for path in files]
        mean = {name: torch.stack([s[name].float() for s in states]).mean(0) for name in states[0]}
        torch.save(mean, os.path.join(output_dir + ".pt"))
    elif approach == "read_safetensors":
        for path in files:
            with safe_open(path, framework="pt") as handle:
                for name in handle.keys():
                    handle.get_tensor(name).sum()
    elif approach == "read":
        buffer = bytearray(16 * 2**20)
        for path in files:
            with open(path, "rb", buffering=0) as f:
                while f.readinto(buffer):
                    pass
    seconds = time.perf_counter() - start
    return {"approach": approach, "seconds": seconds, "growth_bytes": peak_rss_bytes() - baseline}


def run_child(approach: str, folders: list, output_dir: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, CHILD, approach, output_dir, *folders], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        approach, output_dir, folders = sys.argv[2], sys.argv[3], sys.argv[4:]
        print(json.dumps(child(approach, folders, output_dir)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=16000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        folders = make_checkpoints(root, args.checkpoints, args.hidden, args.layers, args.vocab)
        weight_bytes = os.path.getsize(os.path.join(folders[0], "model.safetensors"))
        print(f"{args.checkpoints} checkpoints of {weight_bytes / 2**20:.1f} MiB each (fp32)")
        results = {a: run_child(a, folders, os.path.join(root, f"out-{a}")) for a in APPROACHES}
    read, mapped = results["read"]["seconds"], results["read_safetensors"]["seconds"]
    print(
        f"{'approach':<17} {'peak RSS growth':>16} {'/ one checkpoint':>17} {'seconds':>8} {'/ read':>7} "
        f"{'/ read_safetensors':>19}"
    )
    for name, r in results.items():
        print(
            f"{name:<17} {r['growth_bytes'] / 2**20:>12.1f} MiB {r['growth_bytes'] / weight_bytes:>16.2f}x "
            f"{r['seconds']:>8.2f} {r['seconds'] / read:>6.2f}x {r['seconds'] / mapped:>18.2f}x"
        )


if __name__ == "__main__":
    main()
