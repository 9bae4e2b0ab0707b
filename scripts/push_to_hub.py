#!/usr/bin/env python
"""Write the model card of an averaged model and push it to the Hub.

Same as ``hf-swa-push``; see :mod:`hf_swa.hub.cli`."""

import sys
from pathlib import Path

try:
    import hf_swa  # noqa: F401
except ImportError:  # a source checkout that was not pip-installed: use the repository's copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_swa.hub.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
