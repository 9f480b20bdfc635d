"""Honest reports: gradcheck applies its stated tolerance to what it prints,
info never gives NumPy's pickle advice, --plot draws weight images only for
images, and the loss plot marks the kept iteration."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

from bpnet import cli
from bpnet.cli import plots


def run(capsys, *args):
    try:
        rc = cli.main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


# -- gradcheck ---------------------------------------------------------------------
def _printed(out):
    """The figures of the report's table, as printed."""
    vals = []
    for line in out.splitlines():
        parts = line.split()
        if parts and (parts[0].startswith("Theta") or parts[0] == "all"):
            vals += [float(v) for v in parts[-3:]]
    return vals


@pytest.mark.parametrize("tol", [None, "1e-9", "5e-9", "1e-6"])
def test_gradcheck_judges_every_printed_figure(capsys, tol):
    rc, out, _ = run(capsys, "gradcheck", *([] if tol is None else ["--tol", tol]))
    figures = _printed(out)
    assert len(figures) == 9  # Theta1, Theta2, all x (overall, bias, weights)
    limit = 1e-7 if tol is None else float(tol)
    passed = all(v < limit for v in figures)
    assert rc == (0 if passed else 1)
    assert out.splitlines()[-1].startswith("OK: all 9" if passed else "FAILED:")
    if tol == "1e-9":  # the classic net's first layer shows ~5e-9 on an exact gradient
        assert not passed and "Theta1 weights" in out.splitlines()[-1]


def test_gradcheck_tolerance_is_applied_as_printed(capsys, monkeypatch):
    """A figure printed as 1.00e-09 does not pass "< 1e-09" even if it is 9.996e-10."""
    from bpnet.gradcheck import GradientReport

    real = GradientReport.figures
    monkeypatch.setattr(GradientReport, "figures",
                        lambda self: [(n, 9.996e-10 if n == "all weights" else v * 0)
                                      for n, v in real(self)])
    rc, out, _ = run(capsys, "gradcheck", "--tol", "1e-9")
    assert rc == 1 and "all weights 1.00e-09" in out


def test_gradcheck_help_states_the_rule(capsys):
    rc, out, _ = run(capsys, "gradcheck", "--help")
    assert rc == 0
    text = " ".join(out.split())
    assert "every relative difference printed (per layer and for the whole network" in text
    assert "(default 1e-7" in text


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "x"])
def test_gradcheck_rejects_bad_tol(capsys, bad):
    rc, _, err = run(capsys, "gradcheck", "--tol", bad)
    assert rc == 2 and "--tol" in err


# -- info on files that are not models -----------------------------------------------
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("data.csv", b"1,2,3\n4,5,6\n", "not a zip (.npz) archive (it starts with b'1,2,3"),
        ("notes.txt", b"hello", "not a zip (.npz) archive"),
        ("obj.pkl", pickle.dumps({"a": 1}), "it is a pickle"),
        ("empty.npz", b"", "the file is empty"),
    ],
)
def test_info_on_a_non_model_file_gives_no_pickle_advice(tmp_path, capsys, name, content,
                                                         message):
    path = tmp_path / name
    path.write_bytes(content)
    rc, _, err = run(capsys, "info", path)
    assert rc == 1 and message in err
    assert "allow_pickle" not in err and "contains pickled" not in err
    assert len(err.strip().splitlines()) == 1


def test_info_on_an_npz_with_objects(tmp_path, capsys):
    path = tmp_path / "o.npz"
    np.savez(path, a=np.array([{"a": 1}], dtype=object))
    rc, _, err = run(capsys, "info", path)
    assert rc == 1 and "not a bpnet model file" in err
    assert "allow_pickle" not in err and "pickled" not in err


# -- plots -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n_in", "ask", "shape"),
    [(4, None, None), (16, None, None), (13, None, None), (64, None, (8, 8)),
     (400, None, (20, 20)), (784, None, (28, 28)), (4, True, (2, 2)), (13, True, (1, 13)),
     (64, False, None)],
)
def test_weight_images_only_for_images_or_on_request(n_in, ask, shape):
    assert plots.weight_image_shape(n_in, ask) == shape


def _csv(path, n_features, m=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n_features))
    y = (X[:, 0] > 0).astype(int)
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", fmt="%.6g")
    return path


@pytest.mark.parametrize(("extra", "drawn"), [([], False), (["--plot-weights"], True)])
def test_plot_tabular_features(tmp_path, capsys, extra, drawn):
    pytest.importorskip("matplotlib")
    data = _csv(tmp_path / "d.csv", 4)
    rc, out, err = run(capsys, "train", data, "-q", "--iterations", "30", "-o",
                       tmp_path / "m.npz", "--plot", tmp_path / "plots", *extra)
    assert rc == 0, err
    assert (tmp_path / "plots" / "loss.png").exists()
    assert (tmp_path / "plots" / "hidden_weights.png").exists() is drawn
    if not drawn:
        assert "--plot-weights draws them" in out


def test_loss_plot_marks_the_kept_iteration():
    from sklearn.datasets import load_digits

    from bpnet import BPNetClassifier

    X, y = load_digits(return_X_y=True)
    clf = BPNetClassifier(10, alpha=1.0, solver="sgd", learning_rate_init=0.5,
                          early_stopping=True, n_iter_no_change=2, max_iter=100,
                          random_state=1).fit(X[:600] / 16, y[:600])
    marks = plots.loss_plot_marks(clf)
    assert marks[0] == (clf.best_iteration_,
                        f"best validation, iteration {clf.best_iteration_} (parameters kept)")
    assert clf.stop_reason_ == "early_stopping"
    if clf.best_iteration_ != clf.n_iter_:
        assert marks[1] == (clf.n_iter_, f"early stop, iteration {clf.n_iter_}")
    plain = BPNetClassifier(5, max_iter=300, random_state=0).fit(X[:200] / 16, y[:200])
    assert plots.loss_plot_marks(plain) == []


def test_loss_plot_draws_the_marks(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    seen = []
    real = matplotlib.axes.Axes.axvline
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline",
                        lambda self, x=0, *a, **k: seen.append((x, k.get("label")))
                        or real(self, x, *a, **k))
    data = _csv(tmp_path / "d.csv", 4, m=200)
    rc, _, err = run(capsys, "train", data, "-q", "-o", tmp_path / "m.npz",
                     "--plot", tmp_path / "plots", "--solver", "sgd", "--learning-rate", "0.5",
                     "--patience", "2")
    assert rc == 0, err
    assert seen and "parameters kept" in seen[0][1]
