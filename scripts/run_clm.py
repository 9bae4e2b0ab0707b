#!/usr/bin/env python
"""Train a causal LM (from a checkpoint, a GGUF file or from scratch) with SWA.

Same as ``hf-swa-clm``; see :mod:`hf_swa.clm.cli`."""

import sys
from pathlib import Path

try:
    import hf_swa  # noqa: F401
except ImportError:  # a source checkout that was not pip-installed: use the repository's copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_swa.clm.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
