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


@pytest.mark.parametrize("command", sorted(ALIASES))
def test_console_script_help_runs_from_the_installed_environment(command):
    executable = Path(sys.executable).parent / command
    assert executable.is_file(), f"{executable} missing: reinstall with `pip install -e .`"
    done = subprocess.run([str(executable), "--help"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"usage: {command} ")


# What each command line's module may not import before it runs (--help included): the heavy stacks load
# inside the functions that need them. The flags of hf-swa-glue and hf-swa-demo are TrainingArguments (torch).
HEAVY = ("peft", "datasets", "pandas", "transformers.trainer")
LIGHT_CLIS = {"hf_swa.glue.cli": HEAVY, "hf_swa.demo.cli": HEAVY, "hf_swa.glue.report_cli": (*HEAVY, "torch")}


@pytest.mark.parametrize("module", sorted(LIGHT_CLIS))
def test_command_line_modules_import_only_what_their_flags_need(module):
    probe = f"import json, sys, {module}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert not {name for name in LIGHT_CLIS[module] if name in loaded}, f"{module} imports them"
