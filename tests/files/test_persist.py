"""Model files: exact round trips, atomic writes, rejection of damaged files."""

import hashlib
import json
import os
import warnings

import numpy as np
import pytest

import bpnet
from bpnet.persist import FORMAT_VERSION, ModelFileError, read_metadata


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 6))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    return X, y


def _rewrite(path, arrays, body=None, fix_digest=True):
    """Write an archive with the given arrays and (optionally edited) metadata body."""
    if body is not None:
        digest = hashlib.sha256(
            json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        if not fix_digest:
            digest = json.loads(arrays["metadata"].tobytes())["sha256"]
        meta = json.dumps({"body": body, "sha256": digest}).encode()
        arrays = dict(arrays, metadata=np.frombuffer(meta, dtype=np.uint8))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _arrays(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _body(arrays):
    return json.loads(arrays["metadata"].tobytes())["body"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
def test_network_round_trip_bitwise(tmp_path, data, dtype, output):
    X, y = data
    net = bpnet.Network([6, 5, 3], activation="tanh", output=output, lam=0.5, dtype=dtype,
                        rng=1)
    target = np.eye(3)[y] if output == "identity" else y
    net.fit(X, target, max_iter=20)
    path = net.save(tmp_path / "net.npz")
    back = bpnet.load(path)
    assert isinstance(back, bpnet.Network)
    assert back.layer_sizes == net.layer_sizes and back.lam == net.lam
    assert back.activation == "tanh" and back.output == output and back.dtype == net.dtype
    assert back.theta.tobytes() == net.theta.tobytes()
    assert back.predict_proba(X).tobytes() == net.predict_proba(X).tobytes()
    assert back.loss_history == net.loss_history
    assert back.result.n_iter == net.result.n_iter
    assert back.result.stop_reason == net.result.stop_reason


@pytest.mark.parametrize("n_threads", [None, 1, 2])
def test_network_file_keeps_threads_and_the_results_own_theta(tmp_path, data, n_threads):
    X, y = data
    net = bpnet.Network([6, 5, 3], output="softmax", rng=2, n_threads=n_threads)
    net.fit(X, y, max_iter=5)
    net.result.theta = net.theta * 0.5  # as after early stopping kept other parameters
    back = bpnet.load(net.save(tmp_path / "t.npz"))
    assert back.n_threads == net.n_threads
    assert back.result.theta.tobytes() == net.result.theta.tobytes()
    assert "result_theta" in read_metadata(tmp_path / "t.npz")["arrays"]
    net.result.theta = net.theta.copy()  # the usual case: not stored twice
    assert "result_theta" not in read_metadata(net.save(tmp_path / "u.npz"))["arrays"]


def test_unfitted_network_round_trip(tmp_path, data):
    net = bpnet.Network([6, 2], rng=0)
    back = bpnet.load(bpnet.save(net, tmp_path / "n.npz"))
    assert back.result is None and back.predict(data[0]).tolist() == net.predict(data[0]).tolist()


def test_classifier_round_trip_bitwise(tmp_path, data):
    X, y = data
    labels = np.array(["low", "mid", "high"])[y]
    clf = bpnet.BPNetClassifier(
        (7, 4), activation="relu", solver="adam", early_stopping=True, random_state=0,
        class_weight={"low": 2.0, "mid": 1.0, "high": 1.0}, learning_rate_init=0.01,
        max_iter=30,
    ).fit(X, labels)
    path = clf.save(tmp_path / "clf.npz")
    back = bpnet.load(path)
    assert type(back) is bpnet.BPNetClassifier
    assert back.get_params() == clf.get_params()
    assert back.classes_.tolist() == clf.classes_.tolist()
    assert back.predict_proba(X).tobytes() == clf.predict_proba(X).tobytes()
    assert (back.predict(X) == clf.predict(X)).all()
    for name in ("loss_curve_", "validation_scores_", "validation_loss_curve_", "n_iter_",
                 "best_validation_score_", "n_features_in_", "stop_reason_"):
        assert getattr(back, name) == getattr(clf, name), name
    meta = read_metadata(path)
    assert meta["format_version"] == FORMAT_VERSION and meta["kind"] == "BPNetClassifier"
    assert meta["network"]["layer_sizes"] == [6, 7, 4, 3]


def test_regressor_round_trip_bitwise_float32(tmp_path, data):
    X, _ = data
    reg = bpnet.BPNetRegressor(5, activation="tanh", dtype="float32", random_state=0,
                               max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, X[:, 0] * 2.0)
    back = bpnet.load(reg.save(tmp_path / "reg.npz"))
    assert back.predict(X).dtype == np.float32 and back.predict(X).shape == (80,)
    assert back.predict(X).tobytes() == reg.predict(X).tobytes()


def test_partial_fit_resumes_exactly_after_load(tmp_path, data):
    """The optimizer state is saved: training continues as if never interrupted."""
    X, y = data
    kw = dict(hidden_layer_sizes=5, activation="sigmoid", solver="adam", shuffle=False,
              random_state=0, learning_rate_init=0.01)
    a = bpnet.BPNetClassifier(**kw)
    for _ in range(3):
        a.partial_fit(X, y, classes=[0, 1, 2])
    b = bpnet.load(a.save(tmp_path / "a.npz"))
    a.partial_fit(X, y)
    b.partial_fit(X, y)
    assert a.network_.theta.tobytes() == b.network_.theta.tobytes()


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "m.npz"
    bpnet.Network([6, 3], rng=0).save(path)
    first = path.read_bytes()
    with pytest.raises(ValueError, match="unfitted BPNetClassifier"):
        bpnet.save(bpnet.BPNetClassifier(), path)
    assert path.read_bytes() == first  # the failed save left the old file alone
    bpnet.Network([6, 3], rng=1).save(path)
    assert path.read_bytes() != first
    assert os.listdir(tmp_path) == ["m.npz"]
    with pytest.raises(TypeError, match=r"obj must be a bpnet\.Network"):
        bpnet.save(object(), tmp_path / "x.npz")
    assert os.listdir(tmp_path) == ["m.npz"]


@pytest.fixture
def saved(tmp_path, data):
    X, y = data
    clf = bpnet.BPNetClassifier(4, random_state=0, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    return clf.save(tmp_path / "model.npz")


def saved_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _rejects(path, match):
    with pytest.raises(ModelFileError, match=match) as info:
        bpnet.load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_rejects_missing_and_non_model_files(tmp_path):
    _rejects(tmp_path / "nope.npz", "no such file")
    text = tmp_path / "t.npz"
    text.write_text("hello")
    _rejects(text, "not a readable bpnet model file")
    npy = tmp_path / "a.npy"
    np.save(npy, np.arange(3.0))
    _rejects(npy, "not a bpnet model file")
    other = tmp_path / "o.npz"
    np.savez(other, theta=np.arange(3.0))
    _rejects(other, "no 'metadata' entry")
    pickled = tmp_path / "p.npz"
    np.savez(pickled, metadata=np.array([{"a": 1}], dtype=object))
    _rejects(pickled, "holds Python objects")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_rejects_truncated(saved, keep):
    raw = saved_bytes(saved)
    with open(saved, "wb") as f:
        f.write(raw[: int(len(raw) * keep)])
    _rejects(saved, "truncated or corrupted")


def test_rejects_corrupted_byte(saved):
    arrays = _arrays(saved)
    raw = bytearray(saved_bytes(saved))
    pos = bytes(raw).find(arrays["theta"].tobytes()[:16])
    assert pos > 0
    raw[pos + 3] ^= 0x55  # flip bits inside theta's data (zip CRC now wrong)
    with open(saved, "wb") as f:
        f.write(bytes(raw))
    _rejects(saved, "truncated or corrupted|checksum")


def test_rejects_tampered_theta(saved):
    arrays = _arrays(saved)
    arrays["theta"] = arrays["theta"].copy()
    arrays["theta"][0] += 1.0  # a valid archive, but the data no longer match
    _rejects_after(saved, arrays, "array 'theta' checksum mismatch")


def _rejects_after(path, arrays, match, body=None, fix_digest=True):
    _rewrite(path, arrays, body, fix_digest)
    _rejects(path, match)


def test_rejects_tampered_metadata(saved):
    arrays = _arrays(saved)
    body = _body(arrays)
    body["network"]["lam"] = 123.0
    _rejects_after(saved, arrays, "metadata checksum mismatch", body, fix_digest=False)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda b: b.update(format_version=FORMAT_VERSION + 1), "newer bpnet"),
        (lambda b: b.update(format="other"), "expected 'bpnet-model'"),
        (lambda b: b.update(kind="Pickle"), "kind must be one of"),
        (lambda b: b["network"].update(layer_sizes=[6, 5, 3]), "invalid network description"),
        (lambda b: b["network"].update(dtype="float16"), "invalid network description"),
        (lambda b: b["network"].update(activation="swish"), "invalid network description"),
        (lambda b: b["estimator"].update(n_features_in=7), "invalid estimator description"),
        (lambda b: b["estimator"]["params"].update(alpha=-1), "invalid estimator description"),
        (lambda b: b["arrays"]["theta"].update(shape=[1]), "the metadata says"),
        (lambda b: b["arrays"].pop("classes"), "do not match the metadata"),
    ],
)
def test_rejects_inconsistent_metadata(saved, edit, match):
    """Even with a valid digest, the content is validated."""
    arrays = _arrays(saved)
    body = _body(arrays)
    edit(body)
    _rejects_after(saved, arrays, match, body)


def test_rejects_extra_array(saved):
    arrays = _arrays(saved)
    arrays["extra"] = np.zeros(2)
    _rejects_after(saved, arrays, "do not match the metadata")
