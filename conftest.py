"""pytest setup shared by tests/ and the doctests in hf_swa/."""

import contextlib
import importlib.util
import io

# DeepSpeed (the optional `deepspeed` extra) logs a line to stdout when it is first imported, which
# Accelerate does inside `Trainer`; import it here, quietly, so that line never lands in a doctest.
if importlib.util.find_spec("deepspeed") is not None:
    with contextlib.redirect_stdout(io.StringIO()):
        import deepspeed  # noqa: F401
