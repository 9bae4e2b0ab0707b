"""The layers stay visible: a light core that never imports the applications, declared extras, no import circles."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "hf_swa"
HEAVY = ("datasets", "evaluate", "matplotlib", "sklearn", "pandas")
# The core, in rooms by role, and what each room may import of the others (DESIGN.md's layers).
ROOM_IMPORTS = {
    "averaging": set(),  # the engine: tensors and modules only
    "checkpointing": set(),
    "training": {"averaging", "checkpointing"},
}
POSTHOC_CORE = ("average", "soup", "power_ema_reconstruction")  # the post-hoc engine, in the room of its command line
APPLICATIONS = ("demo", "glue", "clm", "hub", "posthoc")
# Which extra a user of each application installs (None: the base install; the core's own dependencies come with
# every extra).
EXTRA_OF = {"glue": "glue", "clm": "clm", "hub": None, "demo": "demo", "posthoc": "glue"}


def imported_after(code: str) -> set:
    """The modules loaded by ``code`` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set:
    """Every module ``path`` imports, anywhere in the file, relative imports resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def hf_swa_files() -> list:
    return sorted(p for p in PACKAGE.rglob("*.py") if "metric" not in p.parent.name)


def core_files() -> list:
    rooms = [p for room in ROOM_IMPORTS for p in sorted((PACKAGE / room).glob("*.py"))]
    return [PACKAGE / "__init__.py", *rooms, *(PACKAGE / "posthoc" / f"{name}.py" for name in POSTHOC_CORE)]


def test_every_module_has_a_room():
    rooms = set(ROOM_IMPORTS) | set(APPLICATIONS) | {"model_cards"}
    assert [p.name for p in PACKAGE.glob("*.py")] == ["__init__.py"], "new core modules go into a room"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} <= rooms


@pytest.mark.slow  # a fresh interpreter, a subprocess or many trainings
def test_import_hf_swa_is_light():
    loaded = imported_after("import hf_swa")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
    assert "transformers.trainer" not in loaded
    # The public names still come on demand (transformers' Trainer itself imports datasets when it is there).
    loaded = imported_after("from hf_swa import SWATrainer, SWACallback, WeightAverager, SWAConfig, __version__")
    assert {"transformers.trainer", "hf_swa.training.trainer", "hf_swa.training.callback"} <= loaded


@pytest.mark.slow  # a fresh interpreter, a subprocess or many trainings
def test_engine_does_not_import_the_trainer():
    engine = [module_name(p) for p in sorted((PACKAGE / "averaging").glob("*.py"))]
    loaded = imported_after("\n".join(f"import {name}" for name in engine))
    assert "transformers.trainer" not in loaded and not {m for m in loaded if m.startswith("hf_swa.training")}


def test_rooms_import_only_the_rooms_below_them():
    for room, allowed in ROOM_IMPORTS.items():
        others = {f"hf_swa.{r}" for r in ROOM_IMPORTS if r != room and r not in allowed}
        for path in sorted((PACKAGE / room).glob("*.py")):
            bad = {m for m in imports_of(path) if m.startswith(tuple(others))}
            assert not bad, f"{path.relative_to(REPO)} ({room}) imports {sorted(bad)}"


def test_core_never_imports_an_application():
    applications = tuple(f"hf_swa.{name}" for name in APPLICATIONS if name != "posthoc")
    applications += tuple(f"hf_swa.posthoc.{p.stem}" for p in (PACKAGE / "posthoc").glob("*.py"))
    applications = tuple(a for a in applications if a.rpartition(".")[2] not in (*POSTHOC_CORE, "__init__"))
    for path in core_files():
        bad = {m for m in imports_of(path) if m == "hf_swa.model_cards" or m.startswith(applications)}
        assert not bad, f"{path.relative_to(REPO)} (core) imports {sorted(bad)}"


def test_no_import_circle_between_modules():
    modules = {module_name(p): p for p in hf_swa_files()}
    graph = {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}
    # A package's __init__ re-exporting its own modules is not a circle of the modules themselves.
    graph = {name: {m for m in deps if not m.startswith(name + ".")} for name, deps in graph.items()}
    visiting, done = [], set()

    def visit(name):
        if name in visiting:
            raise AssertionError("import circle: " + " -> ".join(visiting[visiting.index(name) :] + [name]))
        if name in done:
            return
        visiting.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def package_of(module: str) -> str:
    """The room a module of hf_swa lives in: its subpackage (``glue``, ``hub`` ...), or ``core`` at the top."""
    parts = module.split(".")
    if parts[1:2] == ["posthoc"] and len(parts) > 2 and parts[2] in POSTHOC_CORE:
        return "posthoc core"  # the post-hoc engine is core; its command line beside it is an application
    return parts[1] if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else "core"


def test_no_import_circle_between_packages_and_hub_never_imports_glue():
    modules = {module_name(p): p for p in hf_swa_files()}
    graph: dict = {}
    for name, path in modules.items():
        rooms = {package_of(m) for m in imports_of(path) if m in modules} - {package_of(name)}
        graph.setdefault(package_of(name), set()).update(rooms)
    assert "glue" not in graph["hub"] and "demo" not in graph["hub"], graph["hub"]
    assert not graph["core"] & set(APPLICATIONS), graph["core"]
    done: set = set()

    def visit(room, path):
        if room in path:
            raise AssertionError("package circle: " + " -> ".join(path[path.index(room) :] + [room]))
        if room not in done:
            for dep in sorted(graph.get(room, ())):
                visit(dep, path + [room])
            done.add(room)

    for room in sorted(graph):
        visit(room, [])


def declared(extra: str, project: dict) -> set:
    """Distribution names an extra installs, following ``hf_swa[...]`` self-references, core included."""
    names = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    pending = [extra]
    while pending:
        for spec in project["optional-dependencies"][pending.pop()]:
            req = Requirement(spec)
            if canonicalize_name(req.name) == canonicalize_name(project["name"]):
                pending.extend(req.extras)
            else:
                names.add(canonicalize_name(req.name))
    return names


def third_party_imports(paths) -> dict:
    """``{top-level module: a file importing it}`` for the modules outside the standard library and hf_swa."""
    found = {}
    for path in paths:
        for module in imports_of(path):
            top = module.split(".")[0]
            if top and top not in sys.stdlib_module_names and top not in ("hf_swa", "__future__"):
                found.setdefault(top, path.relative_to(REPO))
    return found


def assert_declared(paths, wanted: set, where: str) -> None:
    distributions = packages_distributions()
    for top, path in third_party_imports(paths).items():
        owners = {canonicalize_name(d) for d in distributions.get(top, [top])}
        assert owners & wanted, f"{path} imports {top}: declare {sorted(owners)} in {where}"


def test_dependencies_declare_what_the_core_imports():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert_declared(core_files(), core, "[project] dependencies")


def test_make_test_compat_pins_the_declared_lower_bounds():
    """pyproject.toml's lower bounds are the versions `make test-compat` tests (README: Supported versions)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    floors = {}
    for requirement in map(Requirement, project["dependencies"]):
        (lower,) = [s.version for s in requirement.specifier if s.operator == ">="]
        floors[canonicalize_name(requirement.name)] = lower
    (line,) = [line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("OLDEST :=")]
    pins = dict(pin.split("==") for pin in line.split(":=")[1].split())
    assert {canonicalize_name(name): version for name, version in pins.items()} == {
        name: floors[name] for name in ("transformers", "accelerate", "huggingface-hub")
    }


def test_extras_declare_what_the_applications_import():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for application in APPLICATIONS:
        assert application in EXTRA_OF, f"hf_swa/{application}/ is new: say in EXTRA_OF which extra its users install"
        extra = EXTRA_OF[application]
        wanted = (
            declared(extra, project)
            if extra
            else {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
        )
        where = f"the [{extra}] extra" if extra else "[project] dependencies (the base install)"
        assert_declared(sorted((PACKAGE / application).rglob("*.py")), wanted, where)


def test_modules_and_functions_stay_small():
    """A module past ~400 lines or a function past ~60 is asking to be split: the core and the applications."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if "metric" in path.parts:  # the evaluate metric module keeps the upstream layout
            continue
        source = path.read_text(encoding="utf-8")
        assert len(source.splitlines()) <= 400, f"{path.relative_to(REPO)}: split this module"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path.relative_to(REPO)}: {node.name} is {length} lines, split it"
