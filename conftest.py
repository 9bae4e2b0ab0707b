"""pytest setup shared by tests/ and the doctests in hf_swa/."""

import contextlib
import importlib.util
import io
import os
import tempfile

import pytest

# DeepSpeed (the optional `deepspeed` extra) logs a line to stdout when it is first imported, which
# Accelerate does inside `Trainer`; import it here, quietly, so that line never lands in a doctest.
if importlib.util.find_spec("deepspeed") is not None:
    with contextlib.redirect_stdout(io.StringIO()):
        import deepspeed  # noqa: F401


@pytest.fixture(autouse=True)
def temporary_files_under_tmp_path(tmp_path, monkeypatch):
    """Every temporary file of a test or doctest, and of the processes it starts, lands in its own tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))


@pytest.fixture(autouse=True)
def environment_restored():
    """Each test ends with the environment it began with: transformers 4.x's TrainingArguments writes
    ACCELERATE_* variables (mixed precision, FSDP) into os.environ, which later Trainers would pick up."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def pytest_collection_modifyitems(items):
    """A doctest that trains a model is an end-to-end run: `slow`, like the tests that do."""
    for item in items:
        if isinstance(item, pytest.DoctestItem) and ".train()" in "".join(e.source for e in item.dtest.examples):
            item.add_marker(pytest.mark.slow)
