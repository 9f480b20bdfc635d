"""The layout of tests/ (tests/README.md): every folder of tests is in the
README's table, child programs live in real modules that pytest never collects,
and test basenames are unique (pytest imports them by basename)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _folders_in_readme() -> set[str]:
    text = (TESTS / "README.md").read_text()
    return set(re.findall(r"^\| `([a-z_]+)/`", text, flags=re.MULTILINE))


def test_every_folder_of_tests_is_in_the_readme():
    folders = {p.parent.name for p in TESTS.glob("*/test_*.py")}
    assert folders, "no test folders found"
    missing = folders - _folders_in_readme()
    assert not missing, f"tests/README.md's table does not name {sorted(missing)}"
    gone = _folders_in_readme() - {p.name for p in TESTS.iterdir() if p.is_dir()}
    assert not gone, f"tests/README.md names folders that do not exist: {sorted(gone)}"


def test_children_are_programs_not_tests():
    children = list(TESTS.glob("*/children/*.py"))
    assert children, "no child programs found"
    assert not [p for p in children if p.name.startswith("test_")]


def test_test_basenames_are_unique():
    names = Counter(p.name for p in TESTS.rglob("test_*.py") if "children" not in p.parts)
    assert not [n for n, k in names.items() if k > 1], names
