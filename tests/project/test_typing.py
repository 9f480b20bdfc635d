"""Type information: bpnet ships py.typed, the package passes `mypy --strict`
(the configuration in pyproject.toml), and a user's program using the public
API type-checks under `mypy --strict` with no error or implicit Any."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys
import textwrap
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


USER_PROGRAM = '''
from __future__ import annotations

import numpy as np

import bpnet
from bpnet import BPNetClassifier, BPNetRegressor, Network

X = np.random.default_rng(0).standard_normal((40, 4))
y = (X[:, 0] > 0).astype(np.int64)

net: Network = Network([4, 3, 2], output="softmax", lam=0.1, rng=0)
net.fit(X, y, solver="adam", max_iter=2, batch_size=8)
proba: np.ndarray = net.predict_proba(X)
labels: np.ndarray = net.predict(X)
J, grad = net.cost_grad(X, y)
total: float = J + float(grad.sum())
theta: np.ndarray = bpnet.random_theta([4, 3, 2], rng=0)
J2, g2 = bpnet.cost_grad(theta, [4, 3, 2], X, y, lam=1.0)
a: np.ndarray = bpnet.forward(theta, [4, 3, 2], X)
report: bpnet.GradientReport = bpnet.check_gradients((3, 5, 3))
ok: bool = report.ok(1e-7)
info: dict[str, object] = bpnet.build_info()

clf: BPNetClassifier = BPNetClassifier(3, max_iter=50, random_state=0).fit(X, y)
p: np.ndarray = clf.predict_proba(X)
coefs: list[np.ndarray] = clf.coefs_
n: int = clf.n_layers_ + clf.t_
reg: BPNetRegressor = BPNetRegressor(3, max_iter=50).fit(X, X[:, 0])
path: str = bpnet.save(clf, "model.npz")  # in the test's temporary directory
back = bpnet.load(path)
'''


@pytest.mark.slow
def test_user_program_is_clean_under_mypy_strict(tmp_path):
    prog = tmp_path / "user_program.py"
    prog.write_text(textwrap.dedent(USER_PROGRAM))
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
