"""The shape of the Python package (issue 12): imports run one way down, floor
by floor, as the README's "How the code is organized" describes; no function
is longer than 80 lines; the model-file modules know no bpnet class.

The modules are read as source (ast), imports inside functions included, so a
lazy import cannot hide a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "bpnet"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))

# The floors, bottom up: a module imports only modules on floors below its own.
FLOORS: list[tuple[str, ...]] = [
    ("_about", "_native", "_guard", "_blas"),  # build facts, the ISA loader, locks
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
    ("cli", "__init__"),
    ("__main__",),
]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}


def _imports(module: str) -> set[str]:
    """The bpnet modules ``module`` imports, anywhere in its source (not under
    ``if TYPE_CHECKING:``, which runs only for type checkers)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            type_only |= {id(n) for child in node.body for n in ast.walk(child)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import name: a module, the compiled core, or a package name
                for alias in node.names:
                    if not alias.name.startswith("_core"):  # _core*: the extension module
                        found.add(alias.name if alias.name in MODULES else "__init__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bpnet"):
            parts = (node.module or "").split(".")
            found.add(parts[1] if len(parts) > 1 else "__init__")
    found.discard(module)
    return {m for m in found if m in MODULES}


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
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def test_readme_describes_every_module():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How the code is organized", 1)[-1].split("\n## ", 1)[0]
    assert section != readme, "the README has no 'How the code is organized' section"
    missing = [m for m in MODULES if m not in ("__main__",) and f"{m}.py" not in section]
    assert not missing, missing
