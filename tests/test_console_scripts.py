"""Every command line is a console script of the installed package, and scripts/ holds thin aliases of them."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
ALIASES = {
    "hf-swa-glue": "run_glue",
    "hf-swa-clm": "run_clm",
    "hf-swa-report": "glue_report",
    "hf-swa-push": "push_to_hub",
    "hf-swa-demo": "demo",
    "hf-swa-average": "average_checkpoints",
}


def test_every_command_line_has_a_console_script():
    assert set(SCRIPTS) == set(ALIASES)
    assert {p.stem for p in (REPO / "scripts").glob("*.py")} == set(ALIASES.values())


@pytest.mark.parametrize("command", sorted(ALIASES))
def test_script_is_an_alias_of_the_console_script(command):
    module, _, function = SCRIPTS[command].partition(":")
    spec = importlib.util.spec_from_file_location(
        f"alias_{ALIASES[command]}", REPO / "scripts" / f"{ALIASES[command]}.py"
    )
    alias = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(alias)
    assert alias.main is getattr(importlib.import_module(module), function)


@pytest.mark.slow  # a fresh interpreter, a subprocess or many trainings
@pytest.mark.parametrize("command", sorted(ALIASES))
def test_console_script_help_runs_from_the_installed_environment(command):
    executable = Path(sys.executable).parent / command
    assert executable.is_file(), f"{executable} missing: reinstall with `pip install -e .`"
    done = subprocess.run([str(executable), "--help"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"usage: {command} ")


# What a command line's `--help` must leave unloaded: argparse describes its flags without them. The flags of
# hf-swa-glue and hf-swa-demo are TrainingArguments, so they may load what `from transformers import
# TrainingArguments` loads itself (torch, and peft through transformers.trainer_utils where peft is installed);
# the GLUE stack and the Trainer load only to run.
_GLUE_STACK = ("peft", "datasets", "pandas", "transformers.trainer")
NOT_FOR_HELP = {
    "hf_swa.posthoc.cli": ("torch", "transformers", "peft", "datasets", "pandas"),
    "hf_swa.hub.cli": ("torch", "transformers", "peft", "datasets", "pandas"),
    "hf_swa.glue.cli": _GLUE_STACK,
    "hf_swa.clm.cli": _GLUE_STACK,
    "hf_swa.demo.cli": _GLUE_STACK,
    "hf_swa.glue.report_cli": ("torch", "transformers", *_GLUE_STACK),
}
FLAGS_NEED = dict.fromkeys(
    ("hf_swa.glue.cli", "hf_swa.clm.cli", "hf_swa.demo.cli"), "from transformers import TrainingArguments"
)


def loaded_after(code: str) -> set:
    done = subprocess.run(
        [sys.executable, "-c", code + "\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.slow  # a fresh interpreter, a subprocess or many trainings
@pytest.mark.parametrize("module", sorted(NOT_FOR_HELP))
def test_help_loads_nothing_heavy(module):
    loaded = loaded_after(
        f"import contextlib, io, json, sys, {module}\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        f"    {module}.main(['--help'])"
    )
    if module in FLAGS_NEED:  # what the flags' own classes load is no start-up cost of ours
        loaded -= loaded_after("import json, sys\n" + FLAGS_NEED[module])
    heavy = sorted({m for m in loaded for h in NOT_FOR_HELP[module] if m == h or m.startswith(h + ".")})
    assert not heavy, f"{module} --help loads {heavy[:5]}"
