"""Type information: bpnet ships py.typed, the package passes `mypy --strict`
(the configuration in pyproject.toml), and a user's program using the public
API type-checks under `mypy --strict` with no error or implicit Any."""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_py_typed_is_shipped():
    assert importlib.resources.files("bpnet").joinpath("py.typed").is_file()
    assert (ROOT / "python" / "bpnet" / "py.typed").is_file()


def _mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy")
    return subprocess.run([sys.executable, "-m", "mypy", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.mark.slow
def test_package_is_clean_under_mypy_strict():
    out = _mypy("--config-file", str(ROOT / "pyproject.toml"), cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found" in out.stdout


@pytest.mark.slow
def test_user_program_is_clean_under_mypy_strict(tmp_path):
    prog = tmp_path / "user_program.py"
    shutil.copy(Path(__file__).resolve().parent / "children" / "user_program.py", prog)
    # the installed package as a user has it (py.typed); no bpnet-specific flags
    cfg = tmp_path / "mypy.ini"
    cfg.write_text("[mypy]\nstrict = True\n\n[mypy-sklearn.*]\nignore_missing_imports = True\n")
    out = _mypy("--config-file", str(cfg), str(prog), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    # and the program runs
    run = subprocess.run([sys.executable, str(prog)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr


def test_mypy_is_in_the_test_extra():
    """CI runs the two slow checks above (pytest -m slow): mypy comes with [test]."""
    text = (ROOT / "pyproject.toml").read_text()
    test_extra = text.split("test = [", 1)[1].split("]", 1)[0]
    assert '"mypy' in test_extra
