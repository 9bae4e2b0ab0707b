"""Names that explain themselves, each defined once: the weights' names, the selection split's name and share."""

import ast
import json
import subprocess
import sys
from pathlib import Path

from hf_swa.averaging import names
from hf_swa.averaging.candidates import MAIN_CANDIDATE
from hf_swa.demo.arguments import SELECT_SHARE
from hf_swa.glue.data import SELECT_SPLIT_NAME
from hf_swa.hub.results import LIVE as HUB_LIVE
from hf_swa.training import defaults
from hf_swa.training.selection import LIVE

REPO = Path(__file__).resolve().parents[1]


def assignments(name: str) -> list:
    """Every module of hf_swa that assigns `name` at its top level."""
    found = []
    for path in sorted((REPO / "hf_swa").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found.append(str(path.relative_to(REPO)))
    return found


def test_the_weights_names_have_one_home():
    assert assignments("LIVE") == assignments("MAIN_CANDIDATE") == ["hf_swa/averaging/names.py"]
    assert LIVE is HUB_LIVE is names.LIVE == "live" and MAIN_CANDIDATE is names.MAIN_CANDIDATE == "swa"


def test_a_split_name_and_a_share_are_named_apart():
    assert assignments("SELECT_SPLIT") == []
    assert SELECT_SPLIT_NAME == "swa_select" and SELECT_SHARE == defaults.SWA_SELECT_SPLIT == 0.0


def test_the_records_readers_name_the_weights_without_torch():
    code = "import json, sys, hf_swa.hub.card, hf_swa.hub.shipped\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert "hf_swa.averaging.names" in loaded and "torch" not in loaded
