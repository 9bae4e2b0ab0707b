#!/usr/bin/env python
"""The main job: baseline vs SWA on the embedded task, report, averaged model and card.

Same as ``hf-swa-demo``; see :mod:`hf_swa.demo.cli`."""

import sys
from pathlib import Path

try:
    import hf_swa  # noqa: F401
except ImportError:  # a source checkout that was not pip-installed: use the repository's copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_swa.demo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
