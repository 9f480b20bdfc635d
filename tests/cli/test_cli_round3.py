"""The command line, round 3 (issues 19 and 20): no output is an input and a
prediction file is written atomically; missing labels and a label-kind
mismatch are errors; text from files is escaped; a bad BPNET_ISA, a huge
column, a BOM or a Latin-1 file give one clear line; columns are matched by
name; every output location is created up front and errors name the flag;
regression targets; the sampled gradient check; the progress bar."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

from bpnet.cli import main

HEADER = ["a", "b", "c", "label"]


def run(capsys, *args):
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def _rows(n=90, seed=0):
    """Three features; the label depends on a and c only (b is noise)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    y = np.where(X[:, 0] + 0.5 * X[:, 2] > 0, "yes", "no")
    return X, y


def _write(path, header, X, y=None, order=None):
    """A CSV with ``header`` (None: none), the feature columns in ``order``."""
    order = list(range(X.shape[1])) if order is None else order
    lines = []
    if header is not None:
        lines.append(",".join([header[j] for j in order] + ([header[-1]] if y is not None
                                                             else [])))
    for i in range(len(X)):
        cells = [f"{X[i, j]:.6f}" for j in order] + ([str(y[i])] if y is not None else [])
        lines.append(",".join(cells))
    Path(path).write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """A model trained on a CSV with a header (a, b, c, label)."""
    d = tmp_path_factory.mktemp("round3")
    X, y = _rows()
    data = _write(d / "train.csv", HEADER, X, y)
    model = d / "model.npz"
    rc = main(["train", str(data), "-o", str(model), "-q", "--hidden", "4",
               "--iterations", "60", "--test-split", "0", "--validation-split", "0"])
    assert rc == 0
    return d, data, model, X, y


# -- issue 19 item 7: no output is an input; predict -o is atomic ------------------------
def test_train_refuses_to_write_the_model_over_its_data(tmp_path, capsys):
    X, y = _rows()
    data = _write(tmp_path / "d.csv", HEADER, X, y)
    before = data.read_bytes()
    rc, out, err = run(capsys, "train", data, "-o", data, "-q", "--iterations", "2")
    assert rc == 1 and "-o/--output" in err and "training data file" in err, err
    assert data.read_bytes() == before and out == ""


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_train_refuses_an_output_that_links_to_the_data(tmp_path, capsys, link):
    X, y = _rows()
    data = _write(tmp_path / "d.csv", HEADER, X, y)
    before = data.read_bytes()
    out_path = tmp_path / "model.npz"
    (os.symlink if link == "symlink" else os.link)(data, out_path)
    rc, _, err = run(capsys, "train", data, "-o", out_path, "-q", "--iterations", "2")
    assert rc == 1 and "training data file" in err, err
    assert data.read_bytes() == before


def test_plot_files_may_not_be_an_input(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    X, y = _rows()
    data = _write(tmp_path / "d.csv", HEADER, X, y)
    plots = tmp_path / "plots"
    plots.mkdir()
    os.symlink(data, plots / "loss.png")
    rc, _, err = run(capsys, "train", data, "-o", tmp_path / "m.npz", "--plot", plots, "-q",
                     "--iterations", "2")
    assert rc == 1 and "--plot" in err and "training data file" in err, err
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("which", ["model", "data"])
def test_predict_refuses_to_overwrite_its_inputs(named, tmp_path, capsys, which):
    _d, data, model, _, _ = named
    target = {"model": model, "data": data}[which]
    link = tmp_path / "out.csv"
    os.symlink(target, link)
    before = target.read_bytes()
    rc, _, err = run(capsys, "predict", model, data, "--label-column", "label", "-o", link)
    assert rc == 1 and f"{which} file" in err, err
    assert target.read_bytes() == before


def test_predict_output_is_replaced_atomically_on_a_full_disk(named, tmp_path, capsys,
                                                               monkeypatch):
    _, data, model, _, _ = named
    out_path = tmp_path / "pred.csv"
    out_path.write_text("old predictions\n")
    import bpnet.cli.files as files

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    rc, _, err = run(capsys, "predict", model, data, "--label-column", "label", "-o", out_path)
    assert rc == 1
    assert f"-o/--output {out_path}" in err and "No space left" in err, err
    assert "the old file is unchanged" in err
    assert out_path.read_text() == "old predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.csv"]  # no temporary left
    monkeypatch.undo()
    rc, _, err = run(capsys, "predict", model, data, "--label-column", "label", "-o", out_path)
    assert rc == 0, err
    assert out_path.read_text().startswith("prediction\n")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root to give a link another owner")
def test_predict_refuses_another_users_link_as_save_does(named, tmp_path, capsys):
    _, data, model, _, _ = named
    victim = tmp_path / "victim.csv"
    victim.write_text("mine\n")
    link = tmp_path / "pred.csv"
    os.symlink(victim, link)
    os.lchown(link, 54321, 54321)  # planted by another user
    rc, _, err = run(capsys, "predict", model, data, "--label-column", "label", "-o", link)
    assert rc == 1 and "owned by uid 54321" in err, err
    assert victim.read_text() == "mine\n"


def test_predict_keeps_a_read_only_output(named, tmp_path, capsys):
    _, data, model, _, _ = named
    out_path = tmp_path / "pred.csv"
    out_path.write_text("keep\n")
    out_path.chmod(0o444)
    rc, _, err = run(capsys, "predict", model, data, "--label-column", "label", "-o", out_path)
    assert rc == 1 and "is read-only" in err, err
    assert out_path.read_text() == "keep\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_predict_to_a_full_device_names_the_file(named, capsys):
    _, data, model, _, _ = named
    rc, _, err = run(capsys, "predict", model, data, "--label-column", "label", "-o", "/dev/full")
    assert rc == 1 and "-o/--output /dev/full" in err and "No space left" in err, err


def test_a_full_disk_while_saving_the_model_names_the_file(tmp_path, capsys, monkeypatch):
    import bpnet.persist

    def full(obj, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bpnet.persist, "save", full)
    X, y = _rows()
    data = _write(tmp_path / "d.csv", HEADER, X, y)
    rc, _, err = run(capsys, "train", data, "-o", tmp_path / "m.npz", "-q", "--iterations", "2")
    assert rc == 1
    assert f"-o/--output {tmp_path / 'm.npz'}: cannot write the model file: No space left" in err


def test_an_oserror_is_reported_with_its_file(capsys, monkeypatch):
    import bpnet.cli.commands as commands

    def boom(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/some/file.csv")

    monkeypatch.setattr(commands, "cmd_info", boom)
    from bpnet.cli import args as cli_args

    monkeypatch.setattr(cli_args, "cmd_info", boom)
    rc, _, err = run(capsys, "info", "x.npz")
    assert rc == 1 and "/some/file.csv: No space left on device (the disk is full)" in err, err
    assert "[Errno" not in err


# -- issue 19 item 8: missing labels; label kinds ---------------------------------------
@pytest.mark.parametrize("cell", ["", "?", "nan", "NaN"])
def test_a_missing_label_is_an_error_naming_its_lines(tmp_path, capsys, cell):
    X, y = _rows()
    y = y.astype(object)
    y[[4, 10]] = cell
    data = _write(tmp_path / "d.csv", HEADER, X, y)
    rc, out, err = run(capsys, "train", data, "-o", tmp_path / "m.npz", "-q", "--iterations", "2")
    assert rc == 1, out
    assert "2 row(s), line 6, 12" in err and "--drop-missing" in err, err
    rc, out, err = run(capsys, "train", data, "-o", tmp_path / "m.npz", "-q", "--iterations", "2",
                       "--drop-missing")
    assert rc == 0, err
    assert "dropped 2 row(s) with an empty, '?' or NaN label (--drop-missing), line 6, 12" in out
    assert "2 classes" in out  # no class for the missing cells


def test_a_nan_label_in_an_npz_file_is_missing(tmp_path, capsys):
    X, y = _rows()
    labels = (y == "yes").astype(float)
    labels[[3, 7]] = np.nan
    np.savez(tmp_path / "d.npz", X=X, y=labels)
    rc, _, err = run(capsys, "train", tmp_path / "d.npz", "-q", "-o", tmp_path / "m.npz")
    assert rc == 1 and "y is NaN (a missing label) in 2 row(s), row 3, 7" in err, err
    rc, out, err = run(capsys, "train", tmp_path / "d.npz", "-q", "-o", tmp_path / "m.npz",
                       "--drop-missing", "--iterations", "5")
    assert rc == 0, err
    assert "dropped 2 row(s) with a NaN label" in out and "2 classes" in out


def test_a_label_kind_mismatch_is_an_error_before_any_figure(named, tmp_path, capsys):
    _, _, model, X, y = named
    numeric = _write(tmp_path / "n.csv", HEADER, X, (y == "yes").astype(int))
    rc, out, err = run(capsys, "evaluate", model, numeric)
    assert rc == 1
    assert "the labels are numbers" in err and "classes are strings" in err, err
    assert "accuracy" not in out and not re.search(r"\d\.\d{4}", out)


# -- issue 19 item 10: text from files is escaped ---------------------------------------
def test_shown_escapes_control_characters():
    from bpnet.cli.data import shown

    assert shown("a\x1b[31mb") == "a\\x1b[31mb"
    assert shown("x\nFAKE") == "x\\nFAKE"
    assert shown("\u202eevil\x9b\x07") == "\\u202eevil\\x9b\\x07"
    assert shown("ok, names: été") == "ok, names: été"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from bpnet import BPNetClassifier, save

    d = tmp_path_factory.mktemp("hostile")
    X, y = _rows()
    labels = np.where(y == "yes", "\x1b[2J\x1b[31mred", "ok\nmodel saved to /etc/passwd")
    est = BPNetClassifier(hidden_layer_sizes=(3,), max_iter=20,
                          random_state=0).fit(X, labels)  # converges: no warning
    est.feature_names_in_ = np.array(["a\x1b]0;title\x07", "b", "c"], dtype=object)
    save(est, d / "m.npz")
    data = _write(d / "d.csv", None, X, labels.astype(object))
    return d / "m.npz", data, X


def _assert_clean(text):
    assert "\x1b" not in text and "\x07" not in text
    assert not any(line.startswith("model saved to") for line in text.splitlines())


def test_info_escapes_class_and_column_names(hostile, capsys):
    model, _, _ = hostile
    rc, out, err = run(capsys, "info", model)
    assert rc == 0, err
    _assert_clean(out)
    assert "\\x1b[2J\\x1b[31mred" in out and "ok\\nmodel saved to /etc/passwd" in out
    assert "a\\x1b]0;title\\x07" in out


def test_predict_and_evaluate_escape_class_names(hostile, tmp_path, capsys):
    model, _, X = hostile
    data = _write(tmp_path / "x.csv", None, X)
    rc, out, err = run(capsys, "predict", model, data, "--proba")
    assert rc == 0, err
    _assert_clean(out)
    assert "p_\\x1b[2J\\x1b[31mred" in out.splitlines()[0]
    assert len(out.splitlines()) == len(X) + 1  # one line per prediction
    rc, out, err = run(capsys, "evaluate", model, hostile[1])
    _assert_clean(out + err)


def test_error_messages_escape_file_text(tmp_path, capsys):
    X, y = _rows()
    data = _write(tmp_path / "d.csv", ["a", "\x1b[31mb", "c", "label"], X, y)
    rc, _, err = run(capsys, "train", data, "-q", "--label-column", "kind")
    assert rc == 1 and "\\x1b[31mb" in err and "\x1b" not in err, err


# -- issue 19 item 14: BPNET_ISA, huge columns, encodings --------------------------------
@pytest.mark.parametrize("argv", [["--version"], ["info", "m.npz"]])
def test_a_bad_bpnet_isa_is_one_line_and_exit_2(argv):
    env = dict(os.environ, BPNET_ISA="sse9")
    out = subprocess.run([sys.executable, "-m", "bpnet", *argv], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "BPNET_ISA='sse9'" in out.stderr, out.stderr


def test_isa_error_is_a_value_error_naming_the_variable():
    from bpnet import _native

    with pytest.raises(_native.ISAError, match="BPNET_ISA='sse9': isa must be one of"):
        _native._forced("sse9")
    assert issubclass(_native.ISAError, ValueError)


@pytest.mark.parametrize("big", ["1e308", "-1e308", "1e200"])
def test_a_huge_column_is_one_error_naming_it(tmp_path, capsys, big):
    X, y = _rows()
    rows = ["a,b,c,label"] + [f"{r[0]},{big if i % 2 else r[1]},{r[2]},{t}"
                              for i, (r, t) in enumerate(zip(X, y))]
    data = tmp_path / "d.csv"
    data.write_text("\n".join(rows) + "\n")
    rc, _out, err = run(capsys, "train", data, "-q", "-o", tmp_path / "m.npz")
    assert rc == 1
    assert err.count("\n") == 1 and "feature column 'b'" in err and "too large" in err, err
    assert "NaN" not in err


def test_a_utf8_bom_is_read(named, tmp_path, capsys):
    _, data, model, _, _ = named
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + data.read_bytes())
    rc, out, err = run(capsys, "evaluate", model, bom, "--label-column", "label")
    assert rc == 0, err
    assert "header (a, b, c, label)" in out and "\ufeff" not in out


def test_latin1_bytes_name_the_encoding_and_the_option(tmp_path, capsys):
    X, y = _rows()
    labels = np.where(y == "yes", "été", "hiver")
    data = _write(tmp_path / "d.csv", HEADER, X, labels)
    data.write_bytes(data.read_text().encode("latin-1"))
    rc, _, err = run(capsys, "train", data, "-q", "-o", tmp_path / "m.npz", "--iterations", "2")
    assert rc == 1
    assert "not a text CSV file in UTF-8: byte 0xe9" in err and "--encoding latin-1" in err, err
    rc, out, err = run(capsys, "train", data, "-q", "-o", tmp_path / "m.npz", "--iterations",
                       "20", "--encoding", "latin-1")
    assert rc == 0, err
    assert "été" in out  # the confusion matrix names the class
    rc, _, err = run(capsys, "train", data, "--encoding", "klingon")
    assert rc == 2 and "--encoding" in err


# -- issue 20 item 8: columns matched by name --------------------------------------------
def test_reordered_columns_are_matched_by_name(named, tmp_path, capsys):
    _, data, model, X, y = named
    rc, out, _ = run(capsys, "evaluate", model, data, "--label-column", "label")
    expected = re.search(r"accuracy: (\S+)", out).group(1)
    shuffled = _write(tmp_path / "s.csv", HEADER, X, y, order=[2, 0, 1])
    rc, out, err = run(capsys, "evaluate", model, shuffled, "--label-column", "label")
    assert rc == 0, err
    assert re.search(r"accuracy: (\S+)", out).group(1) == expected
    rc, p1, _ = run(capsys, "predict", model, data, "--label-column", "label")
    rc, p2, _ = run(capsys, "predict", model, shuffled, "--label-column", "label")
    assert p1 == p2


def test_the_model_file_stores_the_column_names(named, capsys):
    from bpnet import load

    _, _, model, _, _ = named
    assert list(load(model).steps[-1][1].feature_names_in_) == ["a", "b", "c"]
    _rc, out, _ = run(capsys, "info", model)
    assert "columns:    a, b, c" in out


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (["a", "b", "x", "label"], "missing 'c'; extra 'x'"),
        (["a", "b", "b", "label"], "missing 'c'; more than once 'b'"),
        (["a", "c", "b", "b", "label"], "more than once 'b'"),
        (["a", "b", "c", "d", "label"], "has 4 feature columns; the model expects 3"),
    ],
)
def test_mismatched_columns_are_refused_by_name(named, tmp_path, capsys, header, message):
    _, _, model, _, _ = named
    X, y = _rows(20, seed=3)
    X = np.column_stack([X, X[:, :len(header) - 4]]) if len(header) > 4 else X
    data = _write(tmp_path / "bad.csv", header, X, y)
    rc, out, err = run(capsys, "evaluate", model, data, "--label-column", "label")
    assert rc == 1 and message in err, err
    assert "accuracy" not in out


def test_a_headerless_file_must_have_the_models_column_count(named, tmp_path, capsys):
    _, _, model, X, y = named
    ok = _write(tmp_path / "ok.csv", None, X, y)
    rc, out, err = run(capsys, "evaluate", model, ok)
    assert rc == 0 and "accuracy" in out, err
    short = _write(tmp_path / "short.csv", None, X[:, :2], y)
    rc, _, err = run(capsys, "evaluate", model, short)
    assert rc == 1 and "the model expects 3: 'a', 'b', 'c'" in err, err


def test_a_duplicate_training_header_is_refused(tmp_path, capsys):
    X, y = _rows()
    data = _write(tmp_path / "d.csv", ["a", "a", "c", "label"], X, y)
    rc, _, err = run(capsys, "train", data, "-q", "-o", tmp_path / "m.npz")
    assert rc == 1 and "'a' more than once" in err, err


# -- issue 20 item 9: outputs created up front; errors name the flag ---------------------
def test_an_unwritable_plot_directory_fails_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    X, y = _rows()
    data = _write(tmp_path / "d.csv", HEADER, X, y)
    rc, out, err = run(capsys, "train", data, "-o", tmp_path / "m.npz", "--plot", "/proc/plots")
    assert rc == 1 and err.startswith("bpnet train: error: --plot /proc/plots:"), err
    assert out == "" and not (tmp_path / "m.npz").exists()


def test_the_plot_directory_is_created_up_front(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    import bpnet.cli.train as train

    seen = {}

    def stop(args):  # the data is read after the outputs are checked
        seen["exists"] = (tmp_path / "new" / "plots").is_dir()
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "_train_test_data", stop)
    rc, _, _ = run(capsys, "train", "-o", tmp_path / "m.npz", "--plot", tmp_path / "new/plots")
    assert rc == 130 and seen == {"exists": True}


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--lambda", "-1"), ("--lambda", "nan"), ("--tol", "-1"), ("--learning-rate", "0")],
)
def test_bad_values_are_reported_with_the_flag_typed(capsys, flag, value):
    extra = ["--solver", "adam"] if flag == "--learning-rate" else []
    rc, _, err = run(capsys, "train", flag, value, *extra)
    assert rc == 2 and f"argument {flag}" in err, err
    assert "alpha" not in err and "learning_rate_init" not in err


def test_estimator_messages_are_translated_to_flags():
    from bpnet.cli.train import as_flags

    assert as_flags("alpha must be a finite number >= 0; got -1.0") == (
        "--lambda must be a finite number >= 0; got -1.0")
    assert as_flags("n_iter_no_change must be an int >= 1") == "--patience must be an int >= 1"


# -- issue 20 item 10: regression ---------------------------------------------------------
@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    d = tmp_path_factory.mktemp("reg")
    rng = np.random.default_rng(5)
    X = rng.standard_normal((150, 3))
    t = 2.0 * X[:, 0] - X[:, 1] + 0.5
    data = _write(d / "r.csv", ["u", "v", "w", "target"], X, [f"{v:.5f}" for v in t])
    return d, data, X, t


def test_a_float_target_trains_a_regressor(regression, capsys):
    d, data, _, _ = regression
    rc, out, err = run(capsys, "train", data, "-o", d / "reg.npz", "-q", "--hidden", "5",
                       "--iterations", "100")
    assert rc == 0, err
    assert "a numeric target (regression)" in out and "identity output" in out
    r2 = float(re.search(r"test R\^2: +(\S+)", out).group(1))
    assert r2 > 0.9, out
    assert "test MAE:" in out and "confusion" not in out
    rc, out, err = run(capsys, "info", d / "reg.npz")
    assert "BPNetRegressor" in out
    rc, out, err = run(capsys, "evaluate", d / "reg.npz", data, "--label-column", "target")
    assert rc == 0, err
    assert "R^2:" in out and "mean absolute error:" in out
    rc, out, err = run(capsys, "predict", d / "reg.npz", data, "--label-column", "target")
    assert rc == 0, err
    values = [float(v) for v in out.splitlines()[1:]]
    assert len(values) == 150 and len(set(values)) > 100


def test_task_flag_chooses_the_estimator(regression, tmp_path, capsys):
    _, data, X, t = regression
    rc, _, err = run(capsys, "train", data, "-o", tmp_path / "m.npz", "-q", "--task",
                     "classification")
    assert rc == 1 and "--task classification" in err and "non-integer" in err, err
    whole = _write(tmp_path / "w.csv", ["u", "v", "w", "target"], X, np.round(t).astype(int))
    rc, out, err = run(capsys, "train", whole, "-o", tmp_path / "m.npz", "-q", "--task",
                       "regression", "--iterations", "5")
    assert rc == 0 and "regression" in out and "R^2" in out, err
    rc, out, err = run(capsys, "train", whole, "-o", tmp_path / "m.npz", "-q",
                       "--iterations", "5")
    assert rc == 0 and "classes" in out and "softmax output" in out, err
    X, y = _rows()
    strings = _write(tmp_path / "s.csv", HEADER, X, y)
    rc, _, err = run(capsys, "train", strings, "--task", "regression", "-q", "-o",
                     tmp_path / "m.npz")
    assert rc == 1 and "--task regression needs a numeric target" in err


# -- issue 20 item 12: the sampled gradient check ----------------------------------------
def test_sampled_gradcheck_passes_where_the_full_check_passes(capsys):
    args = ["gradcheck", "--layers", "5,4,4,3", "--output", "softmax", "--lambda", "1"]
    rc, out, _ = run(capsys, *args)
    assert rc == 0 and "OK:" in out
    for k in ("10", "20", "50"):
        rc, out, _ = run(capsys, *args, "--sample", k)
        assert rc == 0 and "OK:" in out, out


def test_sampled_figures_estimate_the_full_ones_and_still_catch_errors():
    from bpnet.gradcheck import _report, check_gradients

    full = check_gradients((5, 4, 4, 3), 1.0, output="softmax")
    sampled = check_gradients((5, 4, 4, 3), 1.0, output="softmax", sample=10)
    for (name, f), (_, s) in zip(full.figures(), sampled.figures()):
        assert s < 1e-7 and f < 1e-7, (name, f, s)
    bp = sampled.backprop.copy()
    p = int(sampled.checked[0])
    bp[p] += 1e-4 * np.linalg.norm(bp)  # a wrong gradient at a checked parameter
    bad = _report(sampled.layer_sizes, 1.0, sampled.eps, sampled.numerical, bp, sampled.checked)
    assert not bad.ok(1e-7)
    assert max(v for _, v in bad.figures()) > 1e-5
    unsampled = _report(full.layer_sizes, 1.0, full.eps, full.numerical, full.backprop, None)
    assert unsampled.figures() == full.figures()  # a full check is unchanged


# -- issue 20 item 14: the progress bar; no hidden layer ----------------------------------
def test_progress_bar_figures_are_current_and_the_last_line_is_drawn_once(tmp_path):
    import tqdm

    from bpnet import load

    if tuple(int(v) for v in tqdm.__version__.split(".")[:2]) < (4, 66):
        pytest.skip("tqdm reads TQDM_MININTERVAL / TQDM_MINITERS from 4.66 on")

    X, y = _rows()
    data = _write(tmp_path / "d.csv", HEADER, X, y)
    # tqdm reads these when it is imported: draw at every update, whatever the speed
    env = dict(os.environ, TQDM_MININTERVAL="0", TQDM_MINITERS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "bpnet", "train", str(data), "-o", str(tmp_path / "m.npz"),
         "--iterations", "25", "--validation-split", "0", "--test-split", "0", "--solver",
         "adam", "--learning-rate", "0.01"], env=env, capture_output=True, text=True,
        timeout=300)
    err = proc.stderr
    assert proc.returncode == 0, err
    curve = load(tmp_path / "m.npz").steps[-1][1].loss_curve_
    lines = [s.strip() for s in re.split(r"[\r\n]", err) if "training:" in s]
    drawn = [(int(m.group(1)), float(m.group(2))) for line in lines
             if (m := re.search(r" (\d+)/25 .*loss=([\d.]+)", line))]
    assert len(drawn) == 25, lines  # every iteration drawn (TQDM_MINITERS=1), with its loss
    for n, loss in drawn:
        assert loss == pytest.approx(curve[n - 1], abs=6e-5), (n, loss, lines)
    final = [line for line in lines if re.search(r" 25/25 ", line)]
    assert len(final) == 1, lines


def test_no_hidden_layer_is_reported_as_such(tmp_path, capsys):
    X, y = _rows()
    data = _write(tmp_path / "d.csv", HEADER, X, y)
    rc, out, err = run(capsys, "train", data, "--hidden", "0", "-q", "-o", tmp_path / "m.npz",
                       "--iterations", "5")
    assert rc == 0, err
    assert "network: 3-2, no hidden layer, softmax output" in out
    assert "hidden units" not in out
    rc, out, _ = run(capsys, "info", tmp_path / "m.npz")
    assert "units:      no hidden layer, softmax output" in out
