"""The shape of the Python package (issues 12 and 17): imports run one way
down, floor by floor, as the README's "How the code is organized" describes;
no function is longer than 80 lines and no class longer than ~300; the
model-file modules know no bpnet class; only the runtime module reaches the
compiled core, and no module uses another's private names.

The modules are read as source (ast), imports inside functions included, so a
lazy import cannot hide a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "python" / "bpnet"
# the modules of bpnet and its subpackages: "cli" is the package bpnet/cli/ as a
# whole (one floor; its own modules import each other freely)
SUBPACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
MODULES = sorted([p.stem for p in PACKAGE.glob("*.py")] + SUBPACKAGES)
SOURCES = sorted(PACKAGE.rglob("*.py"))  # every file, subpackages included


def _files(module: str) -> list[Path]:
    if module in SUBPACKAGES:
        return sorted((PACKAGE / module).rglob("*.py"))
    return [PACKAGE / f"{module}.py"]

# The floors, bottom up: a module imports only modules on floors below its own.
FLOORS: list[tuple[str, ...]] = [
    # build facts, ISA loader, locks, BLAS threads, warnings, L-BFGS-B's loop
    ("_about", "_native", "_guard", "_blas", "_warn", "_lbfgsb"),
    ("_runtime",),  # the one door into the compiled core: threads, fork, workspaces
    ("_params",),  # the parameter rules
    ("functional",),  # the public functional API and its argument checks
    ("initialization", "_inputs", "_records", "_modelfile", "_pipeline"),
    ("optimize", "gradcheck"),
    ("distributed",),
    ("network",),
    ("_sklearn_convert", "onnx_export", "_fitloop"),
    ("estimators",),
    ("persist",),  # save / load: the dispatcher over the classes
    ("cli", "__init__"),  # cli: the package bpnet/cli/
    ("__main__",),
]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}


def _imports(module: str) -> set[str]:
    """The bpnet modules ``module`` imports, anywhere in its sources (not under
    ``if TYPE_CHECKING:``, which runs only for type checkers)."""
    found: set[str] = set()
    for path in _files(module):
        found |= _file_imports(path, depth=len(path.relative_to(PACKAGE).parts))
    found.discard(module)
    return {m for m in found if m in MODULES}


def _file_imports(path: Path, depth: int) -> set[str]:
    """The top-level bpnet modules one file imports (``depth`` 1: a module of
    bpnet itself, 2: of a subpackage, whose ``from ..x`` reaches bpnet.x)."""
    tree = ast.parse(path.read_text())
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            type_only |= {id(n) for child in node.body for n in ast.walk(child)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and 0 < node.level < depth:
            continue  # within the subpackage
        if isinstance(node, ast.ImportFrom) and node.level == depth:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import name: a module, the compiled core, or a package name
                for alias in node.names:
                    if not alias.name.startswith("_core"):  # _core*: the extension module
                        found.add(alias.name if alias.name in MODULES else "__init__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bpnet"):
            parts = (node.module or "").split(".")
            found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_module_has_a_floor():
    assert sorted(FLOOR) == MODULES, "a module was added or removed: give it a floor here " \
        "and in the README's 'How the code is organized'"


@pytest.mark.parametrize("module", MODULES)
def test_imports_run_down(module):
    up = {m: FLOOR[m] for m in GRAPH[module] if FLOOR[m] >= FLOOR[module]}
    assert not up, f"{module} (floor {FLOOR[module]}) imports modules on its floor or above: {up}"


def test_no_import_cycle():
    # implied by the floors, checked on its own so a wrong floor table cannot hide one
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*path, m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for n in sorted(GRAPH[m]):
            visit(n, [*path, m])
        state[m] = 2

    for m in MODULES:
        visit(m, [])


@pytest.mark.parametrize("module", ["_modelfile", "_records", "_inputs"])
def test_low_modules_know_no_bpnet_class(module):
    assert GRAPH[module] <= {"functional", "_about", "_native"}, GRAPH[module]


def test_no_function_longer_than_80_lines():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def test_no_class_longer_than_300_lines():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                n = node.end_lineno - node.lineno + 1
                if n > 300:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({n})")
    assert not long, long


def _core_imports(path: Path) -> list[str]:
    """Where a file imports the ISA loader (_native) or a compiled core (_core*)."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value] if node.value.startswith("bpnet._core") else []
        for name in names:
            last = name.split(".")[-1]
            if last == "_native" or last.startswith("_core"):
                hits.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
    return hits


def test_only_the_runtime_reaches_the_compiled_core():
    """One door: _runtime is the only module that imports the core (_native
    loads it; nothing else names either)."""
    doors = {PACKAGE / "_runtime.py", PACKAGE / "_native.py"}
    others = [h for path in SOURCES if path not in doors for h in _core_imports(path)]
    assert not others, others
    assert _core_imports(PACKAGE / "_runtime.py"), "the runtime no longer imports the core"


def test_no_module_uses_another_modules_private_names():
    """``from .x import _name`` and ``alias._name`` of an imported bpnet module
    (a private module itself, ``from . import _params``, is fine)."""
    bad = []
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                for a in node.names:
                    is_module = node.module is None or a.name in MODULES
                    if is_module:
                        aliases.add(a.asname or a.name)
                    elif a.name.startswith("_") and not a.name.startswith("__"):
                        bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {a.name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} "
                           f"{node.value.id}.{node.attr}")
    assert not bad, bad


def test_readme_describes_every_module():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How the code is organized", 1)[-1].split("\n## ", 1)[0]
    assert section != readme, "the README has no 'How the code is organized' section"
    names = [str(p.relative_to(PACKAGE)) for p in SOURCES]
    missing = [n for n in names if n != "__main__.py" and f"`{n}`" not in section]
    assert not missing, missing
