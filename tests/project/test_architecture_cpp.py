"""The shape of the C++ core (issue 17): a folder of headers whose includes run
one way down, in the order shape.hpp lists them; only parallel.hpp says
OpenMP; kernels never include parallel.hpp; no C++ function is longer than 80
lines; the README's "How the code is organized" names every header.

The sources are read as text, comments and string literals removed first."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INCLUDE = ROOT / "cpp" / "include" / "bpnet"
SOURCES = sorted([*INCLUDE.glob("*.hpp"), *(ROOT / "cpp").glob("*.[ch]pp"),
                  *(ROOT / "cpp" / "test").glob("*.cpp")])

# The floors, bottom up, as shape.hpp's header comment lists them; bpnet.hpp
# is the umbrella the binding file includes.
ORDER = ["shape", "data", "memory", "units", "narrow", "workspace", "block", "tree", "finalize",
         "parallel", "api", "optim", "bpnet"]
# Kernels: the math. They take pointers and shapes and know nothing of threads.
KERNELS = ["shape", "data", "memory", "units", "narrow", "workspace", "block", "tree", "finalize"]


def _strip(text: str) -> str:
    """The source without comments and string/char literals (newlines kept)."""
    pattern = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'',
                         re.S)
    return pattern.sub(lambda m: "\n" * m.group(0).count("\n") + ("" if m.group(0)[0] == "/"
                                                                   else '""'), text)


def _includes(header: str) -> list[str]:
    text = (INCLUDE / f"{header}.hpp").read_text()
    return re.findall(r'#include\s+"([\w/]+)\.hpp"', text)


def test_headers_are_the_listed_floors():
    assert sorted(p.stem for p in INCLUDE.glob("*.hpp")) == sorted(ORDER)
    listing = (INCLUDE / "shape.hpp").read_text()
    for name in ORDER[:-1]:
        assert f"{name}.hpp" in listing, f"shape.hpp's list of headers misses {name}.hpp"


@pytest.mark.parametrize("header", ORDER)
def test_includes_run_down(header):
    up = [h for h in _includes(header) if ORDER.index(h) >= ORDER.index(header)]
    assert not up, f"{header}.hpp includes headers on its floor or above: {up}"


@pytest.mark.parametrize("header", KERNELS)
def test_kernels_never_reach_the_threads(header):
    seen, todo = set(), [header]
    while todo:  # everything the header includes, directly or not
        h = todo.pop()
        if h not in seen:
            seen.add(h)
            todo.extend(_includes(h))
    assert "parallel" not in seen, f"{header}.hpp reaches parallel.hpp"


def test_only_parallel_hpp_says_openmp():
    said = [p.name for p in SOURCES
            if re.search(r"#\s*pragma\s+omp|\bomp_\w+|<omp\.h>|\b_OPENMP\b", _strip(p.read_text()))
            and p.name != "parallel.hpp"]
    assert not said, f"OpenMP outside parallel.hpp: {said}"


def _name(head: str) -> str:
    """The name before the parameter list that ends a function's head (for a
    constructor with initializers, the first parameter list)."""
    head = re.sub(r"\s*:\s*\w+\s*\(.*$", "", head, flags=re.S) if ") :" in head else head
    depth, i = 0, len(head) - 1
    while i >= 0:
        depth += {")": 1, "(": -1}.get(head[i], 0)
        if head[i] == "(" and depth == 0:
            break
        i -= 1
    found = re.search(r"(~?\w+)\s*$", head[:max(i, 0)])
    return found.group(1) if found else "?"


def _functions(text: str) -> list[tuple[str, int, int]]:
    """(name, first line, length) of each function body at namespace or class
    scope: a brace block whose head ends in a parameter list (plus
    qualifiers or a constructor's initializers), not a control statement."""
    code = _strip(text)
    found, depth, inside, head_start = [], 0, None, 0
    line_at = [0]
    for ch in code:
        line_at.append(line_at[-1] + (ch == "\n"))
    for i, ch in enumerate(code):
        if ch == "{":
            head = code[head_start:i].strip()
            is_fn = (inside is None and re.search(r"\)\s*(const|noexcept|override|\s)*"
                                                  r"(->\s*[\w:<>,\s&*]+)?$|\)\s*:\s*\w.*\)$",
                                                  head, re.S)
                     and not re.match(r"(if|for|while|switch|catch|else|do)\b", head))
            if is_fn:
                start = head_start + (len(code[head_start:i]) - len(code[head_start:i].lstrip()))
                inside = (depth, _name(head), line_at[start])
            depth += 1
            head_start = i + 1
        elif ch == "}":
            depth -= 1
            if inside is not None and depth == inside[0]:
                found.append((inside[1], inside[2] + 1, line_at[i] - inside[2] + 1))
                inside = None
            head_start = i + 1
        elif ch == ";":
            head_start = i + 1
    return found


def test_the_function_finder_sees_functions():
    names = {name for name, _, _ in _functions((INCLUDE / "api.hpp").read_text())}
    assert {"cost_grad", "partial_sums", "forward", "predict", "forward_cost"} <= names


def test_no_cpp_function_longer_than_80_lines():
    long = [f"{p.relative_to(ROOT)}:{line} {name} ({n} lines)"
            for p in SOURCES for name, line, n in _functions(p.read_text()) if n > 80]
    assert not long, long


def test_readme_names_every_header():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How the code is organized", 1)[-1].split("\n## ", 1)[0]
    missing = [h for h in ORDER if f"{h}.hpp" not in section]
    assert not missing, missing


# -- the build: the core's entry points compile outside the binding file -------------
def _function_templates() -> set[str]:
    """Names of the function templates the core's headers define."""
    found = set()
    for p in INCLUDE.glob("*.hpp"):
        found |= set(re.findall(r"template\s*<[^<>]*>\s*[\w:<>,\s*&]*?\b(\w+)\s*\(",
                                _strip(p.read_text())))
    return found


def test_every_core_template_the_bindings_call_is_compiled_apart():
    """cpp/bindings.cpp declares the core's entry points extern; core_f64.cpp and
    core_f32.cpp compile them (CMakeLists.txt: three files per ISA build, side by
    side). A template the binding file calls but core_instances.hpp does not list
    would be compiled into the binding file again, at its lower -O1."""
    bindings = _strip((ROOT / "cpp" / "bindings.cpp").read_text())
    called = set(re.findall(r"\bbpnet::(\w+)\s*(?:<[^<>()]*>)?\s*\(", bindings))
    templates = called & _function_templates()
    assert {"cost_grad", "forward", "adam_update"} <= templates, templates  # the finder works
    listed = set(re.findall(r"BPNET_CORE_INSTANCE\(EXTERN, bpnet::(\w+), T\)",
                            (ROOT / "cpp" / "core_instances.hpp").read_text()))
    assert templates <= listed, f"not in cpp/core_instances.hpp: {sorted(templates - listed)}"
    assert "BPNET_CORE_INSTANCES(extern, double)" in bindings
    assert "BPNET_CORE_INSTANCES(extern, float)" in bindings
    for name, scalar in (("core_f64.cpp", "double"), ("core_f32.cpp", "float")):
        text = (ROOT / "cpp" / name).read_text()
        assert f"BPNET_CORE_INSTANCES(, {scalar})" in text, name
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "set(BPNET_CORE_SOURCES cpp/core_f64.cpp cpp/core_f32.cpp)" in cmake
    assert "${BPNET_CORE_SOURCES} cpp/bindings.cpp" in cmake  # core objects link first
