"""The real ``bpnet`` command in subprocesses, on small data."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from loadaware import generous

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

BPNET = shutil.which("bpnet")
CMD = [BPNET] if BPNET else [sys.executable, "-m", "bpnet"]


def run(*args, cwd=None):
    out = subprocess.run([*CMD, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                         timeout=generous(120))
    assert "Traceback" not in out.stderr, out.stderr
    return out


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory):
    """120 rows, 4 features (a 2x2 'image'), string labels in a named column."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 4))
    y = np.array(["cat", "dog", "eel"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    path = d / "data.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "species", "c", "d"])
        for row, label in zip(X, y):
            w.writerow([*row[:2], label, *row[2:]])
    return d, path, X, y


@pytest.fixture(scope="module")
def trained(csv_data):
    d, path, _, _ = csv_data
    model = d / "model.npz"
    out = run("train", path, "--label-column", "species", "--hidden", "6", "--iterations", "40",
              "--seed", "1", "-o", model, "--plot", d / "plots", "--quiet")
    return out, model


def test_train_csv_report_model_and_plots(trained, csv_data):
    out, model = trained
    d = csv_data[0]
    assert out.returncode == 0, out.stderr
    for text in ("96 training / 24 test samples, 4 features, 3 classes", "network: 4-6-3",
                 "train accuracy:", "validation accuracy:", "test accuracy:",
                 "confusion matrix (rows: true label, columns: predicted):",
                 f"model saved to {model}", "plot written:"):
        assert text in out.stdout, (text, out.stdout)
    assert model.exists()
    assert (d / "plots" / "loss.png").stat().st_size > 1000
    # 4 tabular features (a "2x2 image") get no weight images (issue 11, item 10)
    assert not (d / "plots" / "hidden_weights.png").exists()


def test_evaluate_predict_info(trained, csv_data):
    _, model = trained
    d, path, _, _ = csv_data
    ev = run("evaluate", model, path, "--label-column", "species")
    assert ev.returncode == 0, ev.stderr
    acc = float(ev.stdout.split("accuracy: ")[1].split()[0])
    assert 0.6 < acc <= 1.0 and "cat" in ev.stdout

    pred_csv = d / "pred.csv"
    pr = run("predict", model, path, "--label-column", "species", "--proba", "-o", pred_csv)
    assert pr.returncode == 0, pr.stderr
    with open(pred_csv, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["prediction", "p_cat", "p_dog", "p_eel"] and len(rows) == 121
    assert {r[0] for r in rows[1:]} <= {"cat", "dog", "eel"}
    assert abs(sum(map(float, rows[1][1:])) - 1) < 1e-9

    info = run("info", model)
    assert info.returncode == 0, info.stderr
    assert "BPNetClassifier" in info.stdout and "4-6-3" in info.stdout
    assert "classes:    cat, dog, eel" in info.stdout
    meta = json.loads(run("info", model, "--json").stdout)
    assert meta["network"]["layer_sizes"] == [4, 6, 3]


def test_train_default_digits(tmp_path):
    out = run("train", "--iterations", "15", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "scikit-learn 8x8 digits" in out.stdout and "64-25-10" in out.stdout
    assert "model saved to bpnet-model.npz" in out.stdout
    assert (tmp_path / "bpnet-model.npz").exists()
    ev = run("evaluate", "bpnet-model.npz", cwd=tmp_path)
    assert ev.returncode == 0 and "360 samples" in ev.stdout


def test_train_npz_and_mat_ten_is_zero(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(1)
    X = rng.standard_normal((100, 9))
    y = 1 + (X[:, 0] > 0) * 9  # labels 1 and 10 (= digit 0)
    scipy_io.savemat(tmp_path / "d.mat", {"X": X, "y": y.reshape(-1, 1).astype(float)})
    out = run("train", tmp_path / "d.mat", "--ten-is-zero", "--iterations", "10", "--quiet",
              "--solver", "cg", "-o", tmp_path / "m.npz", "--validation-split", "0")
    assert out.returncode == 0, out.stderr
    info = run("info", tmp_path / "m.npz")
    assert "classes:    0, 1" in info.stdout
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 1] > 0).astype(int))
    out = run("train", tmp_path / "d.npz", "--iterations", "5", "--solver", "adam", "--quiet",
              "--dtype", "float32", "-o", tmp_path / "m2.npz")
    assert out.returncode == 0, out.stderr
    assert "dtype=float32" in out.stdout


def test_gradcheck(trained):
    _, model = trained
    out = run("gradcheck")  # the classic 3-5-3 net, lam = 0
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK:" in out.stdout
    out = run("gradcheck", "--layers", "3,5,3", "--lambda", "3")
    assert out.returncode == 0, out.stderr
    assert "Theta1" in out.stdout and "Theta2" in out.stdout and "OK:" in out.stdout
    out = run("gradcheck", "--model", model)
    assert out.returncode == 0, out.stderr
    assert "[4, 6, 3]" in out.stdout


ERRORS = [
    (["train", "missing.csv"], 1, "missing.csv: no such file"),
    (["train", "{csv}", "--label-column", "kind"], 1, "no column named 'kind'; columns: a, b"),
    (["train", "{csv}"], 1, "feature column 'species' holds a non-number"),
    (["train", "{csv}", "--label-column", "9"], 1, "out of range for 5 columns"),
    (["train", "--hidden", "5,x"], 2, "expected comma-separated ints"),
    (["train", "{dir}/data.txtx"], 1, "unknown data format"),
    (["evaluate", "{model}", "{short}"], 1, "has 2 feature columns; the model expects 4"),
    (["info", "{bad}"], 1, "not a readable bpnet model file"),
    (["predict", "{csv}", "{csv}"], 1, "not a readable bpnet model file"),
]
# the real command for a few (process start-up is slow on a busy machine) ...
SUBPROCESS_ERRORS = [ERRORS[0], ERRORS[1], ERRORS[4], ERRORS[6], ERRORS[7]]


def _error_files(trained, csv_data):
    d, path, _, _ = csv_data
    _, model = trained
    short = d / "short.csv"
    short.write_text("x,y,label\n1,2,cat\n3,4,dog\n")
    bad = d / "bad.npz"
    bad.write_bytes(model.read_bytes()[:500])
    (d / "data.txtx").write_text("1,2\n")
    return d, dict(csv=path, model=model, short=short, bad=bad, dir=d)


@pytest.mark.parametrize(("args", "code", "message"), SUBPROCESS_ERRORS)
def test_user_errors_exit_nonzero_without_traceback(trained, csv_data, args, code, message):
    d, fmt = _error_files(trained, csv_data)
    out = run(*[a.format(**fmt) for a in args], cwd=d)
    assert out.returncode == code, (out.stdout, out.stderr)
    assert message in out.stderr, out.stderr


# ... and all of them in-process through the same entry point
@pytest.mark.parametrize(("args", "code", "message"), ERRORS)
def test_user_errors_in_process(trained, csv_data, args, code, message, capsys, monkeypatch):
    from bpnet.cli import main

    d, fmt = _error_files(trained, csv_data)
    monkeypatch.chdir(d)
    try:
        rc = main([a.format(**fmt) for a in args])
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    assert rc == code
    assert message in capsys.readouterr().err


def test_help_reads_well():
    out = subprocess.run([sys.executable, "-m", "bpnet", "train", "--help"], capture_output=True,
                         text=True, timeout=generous(60))
    assert out.returncode == 0
    for opt in ("--label-column", "--ten-is-zero", "--hidden", "--activation", "--lambda",
                "--solver", "--iterations", "--batch-size", "--threads", "--dtype", "--seed",
                "--validation-split", "--plot"):
        assert opt in out.stdout
