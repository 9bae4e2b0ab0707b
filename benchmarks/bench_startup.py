#!/usr/bin/env python
"""Start-up of the command lines: ``--help`` of every console script against importing torch.

Each command is run ``--repeat`` times in a fresh process (the best time counts, so the page
cache is warm for every row) and its peak memory (max RSS) is read from the same runs. The
reference rows are what a script that trains must pay anyway: ``import torch`` and
``from transformers import TrainingArguments``. Everything is measured in one run, so the
ratios hold on a loaded machine too.

    python benchmarks/bench_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

COMMANDS = ("hf-swa-report", "hf-swa-average", "hf-swa-push", "hf-swa-glue", "hf-swa-demo")
REFERENCES = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "python -c 'from transformers import TrainingArguments'": [
        sys.executable,
        "-c",
        "from transformers import TrainingArguments",
    ],
}


def timed(argv: list, repeat: int) -> tuple:
    """(best seconds, peak MiB of that command) over ``repeat`` runs of ``argv``."""
    best, peak = float("inf"), 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            error = subprocess.run(argv, capture_output=True, text=True).stderr
            raise SystemExit(f"{' '.join(argv)} failed:\n{error[-2000:]}")
        best, peak = min(best, elapsed), max(peak, usage.ru_maxrss / 1024)
    return best, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bin_dir = os.path.dirname(sys.executable)
    rows = {name: timed(argv, args.repeat) for name, argv in REFERENCES.items()}
    rows.update({f"{c} --help": timed([os.path.join(bin_dir, c), "--help"], args.repeat) for c in COMMANDS})
    torch_seconds = rows["python -c 'import torch'"][0]
    print(f"best of {args.repeat}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n")
    print("| command | seconds | × `import torch` | peak MiB |")
    print("|---|---:|---:|---:|")
    for name, (seconds, mib) in rows.items():
        print(f"| `{name}` | {seconds:.2f} | {seconds / torch_seconds:.2f} | {mib:.0f} |")


if __name__ == "__main__":
    main()
