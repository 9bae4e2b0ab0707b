"""Rooms meet through public seams: no module of hf_swa reads or sets another object's private names.

Only an object's own methods touch its private names (``self._x``). Private names of third-party
libraries that hf_swa relies on on purpose are listed here, each with its reason.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_swa"
THIRD_PARTY = {
    "torch._foreach_copy_": "torch's multi-tensor kernels: the one-pass update (as torch.optim does)",
    "torch._foreach_lerp_": "torch's multi-tensor kernels",
    "torch._foreach_norm": "torch's multi-tensor kernels: the NaN/inf check",
    "nn.modules.batchnorm._BatchNorm": "torch's base class of every BatchNorm, as torch.optim.swa_utils uses it",
    "scheduler._last_lr": "the LR a torch scheduler reports, set as torch's own step() does",
}


def private_uses(path: Path, root: Path = PACKAGE) -> list:
    """``obj._name`` of an object not ``self``/``cls``, and ``from module import _name``, in one file."""
    uses = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            uses += [f"{path.relative_to(root)}:{node.lineno}: from {node.module} import {n}" for n in names]
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in ("self", "cls"):
            continue
        if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
            continue
        if ast.unparse(node) not in THIRD_PARTY:
            uses.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return uses


def test_no_module_uses_another_objects_private_names():
    found = [use for path in sorted(PACKAGE.rglob("*.py")) for use in private_uses(path)]
    assert not found, "use or add a public method of the owner instead:\n" + "\n".join(found)


def test_the_check_finds_a_private_name(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from a.b import _c, d\ndef f(averager):\n    averager._held = None\n    return self._held\n")
    assert private_uses(sample, tmp_path) == ["sample.py:1: from a.b import _c", "sample.py:3: averager._held"]
