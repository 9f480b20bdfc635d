"""ONNX export, run with onnxruntime: probabilities equal predict_proba to 1e-5
on float32 input (1e-12 for a float64 export), labels equal predict."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")

from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler, StandardScaler  # noqa: E402

import bpnet  # noqa: E402
from bpnet.onnx_export import ONNX_OPSET  # noqa: E402


def _run(model, X):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"X": X})))


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_opset_and_metadata(iris):
    X, y = iris
    clf = bpnet.BPNetClassifier(4, max_iter=400, random_state=0).fit(X, y)
    model = bpnet.to_onnx(clf)
    assert isinstance(model, onnx.ModelProto)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", ONNX_OPSET)] == [("", 17)]
    assert model.producer_name == "bpnet" and model.producer_version == bpnet.__version__
    props = {p.key: p.value for p in model.metadata_props}
    assert props["layer_sizes"] == "4,4,3" and props["kind"] == "BPNetClassifier"
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("labels", ["int", "str", "binary"])
def test_classifier_probabilities_and_labels(iris, activation, labels):
    X, y = iris
    if labels == "binary":
        y = (y == 2).astype(int) * 7 + 1  # labels 1 and 8
    elif labels == "str":
        y = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = bpnet.BPNetClassifier((6, 4), activation=activation, max_iter=500,
                                random_state=0).fit(X, y)
    X32 = X.astype(np.float32)
    out = _run(bpnet.to_onnx(clf), X32)
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(X32), rtol=0, atol=1e-5)
    assert out["probabilities"].dtype == np.float32
    np.testing.assert_array_equal(out["label"], clf.predict(X32))


def test_multilabel_classifier(iris):
    X, y = iris
    Y = np.column_stack([y == 0, y == 2, X[:, 0] > 0]).astype(int)
    clf = bpnet.BPNetClassifier(6, max_iter=500, random_state=0).fit(X, Y)
    X32 = X.astype(np.float32)
    out = _run(bpnet.to_onnx(clf), X32)
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(X32), atol=1e-5)
    np.testing.assert_array_equal(out["label"], clf.predict(X32))


@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity", "poisson"])
@pytest.mark.parametrize("net_dtype", [np.float64, np.float32])
def test_network(output, net_dtype):
    rng = np.random.default_rng(0)
    net = bpnet.Network([5, 7, 3, 4], activation="tanh", output=output, dtype=net_dtype, rng=1)
    X32 = rng.standard_normal((50, 5)).astype(np.float32)
    out = _run(bpnet.to_onnx(net), X32)
    np.testing.assert_allclose(out["output"], net.predict_proba(X32), rtol=0, atol=1e-5)


def test_regressor():
    X, y = load_diabetes(return_X_y=True)
    for target in (y / 100, np.column_stack([y / 100, X[:, 1]])):
        reg = bpnet.BPNetRegressor(5, max_iter=300, random_state=0, tol=1e-3).fit(X, target)
        X32 = X.astype(np.float32)
        out = _run(bpnet.to_onnx(reg), X32)["predictions"]
        np.testing.assert_allclose(out, reg.predict(X32).reshape(len(X), -1), atol=1e-5)


def test_float64_export_matches_to_1e_12(iris):
    X, y = iris
    clf = bpnet.BPNetClassifier(5, max_iter=400, random_state=0).fit(X, y)
    out = _run(bpnet.to_onnx(clf, dtype=np.float64), X)
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(X), rtol=0, atol=1e-12)


@pytest.mark.parametrize("scaler", [StandardScaler(), MinMaxScaler(clip=True)])
def test_pipeline_with_scaler_takes_raw_features(scaler):
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(scaler, bpnet.BPNetClassifier(5, max_iter=400, random_state=0))
    pipe.fit(X, y)
    X32 = (X * 1.1).astype(np.float32)
    out = _run(bpnet.to_onnx(pipe), X32)
    np.testing.assert_allclose(out["probabilities"], pipe.predict_proba(X32), atol=1e-5)
    np.testing.assert_array_equal(out["label"], pipe.predict(X32))


def test_errors(iris):
    with pytest.raises(ValueError, match="unfitted BPNetClassifier"):
        bpnet.to_onnx(bpnet.BPNetClassifier())
    with pytest.raises(TypeError, match=r"model must be a bpnet\.Network"):
        bpnet.to_onnx(object())
    with pytest.raises(ValueError, match="dtype must be float32 or float64; got 'float16'"):
        bpnet.to_onnx(bpnet.Network([2, 2]), dtype="float16")


def test_import_bpnet_does_not_import_onnx():
    code = "import sys, bpnet; print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the corpus of issue 19: labels of every dtype, every scaler setting, large offsets ----
_LABELS = {
    "int8": np.array([-128, 0, 127], np.int8),
    "int16": np.array([-32768, 5, 32767], np.int16),
    "int32": np.array([-(2**31), 7, 2**31 - 1], np.int32),
    "int64": np.array([-(2**63), 2**53 + 1, 2**63 - 1], np.int64),
    "uint8": np.array([0, 128, 255], np.uint8),
    "uint16": np.array([0, 2**15, 2**16 - 1], np.uint16),
    "uint32": np.array([0, 2**31, 2**32 - 1], np.uint32),
    "uint64": np.array([1, 2**63, 2**64 - 1], np.uint64),
    "float32": np.array([-2.0, 2.0**24, 2.0**24 + 2], np.float32),
    "float64": np.array([4.0, 2.0**24, 2.0**24 + 1], np.float64),
    "str": np.array(["a", "ß", "long label"]),
    "bool": np.array([False, True, True]),
}


@pytest.fixture(scope="module")
def three_blobs():
    rng = np.random.default_rng(3)
    group = np.arange(150) % 3
    X = rng.standard_normal((150, 2)) * 0.3 + np.c_[group * 3.0, -group * 2.0]
    return X, group


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", sorted(_LABELS))
def test_labels_of_every_dtype_come_out_exactly(three_blobs, kind, dtype):
    X, group = three_blobs
    y = _LABELS[kind][group]
    clf = bpnet.BPNetClassifier(6, max_iter=300, random_state=0).fit(X, y)
    Xd = X.astype(dtype)
    out = _run(bpnet.to_onnx(clf, dtype=dtype), Xd)
    want = clf.predict(Xd)
    assert len(np.unique(want)) == len(np.unique(y))  # every class is predicted
    assert out["label"].tolist() == want.tolist()  # Python ints and floats: exact
    # the labels' own type (small unsigned integers as int64)
    assert out["label"].dtype == want.dtype or (
        want.dtype.kind in "iu" and want.dtype != np.uint64 and out["label"].dtype == np.int64
    ) or (kind == "str" and out["label"].dtype == object)


_SCALERS = [
    StandardScaler(), StandardScaler(with_mean=False), StandardScaler(with_std=False),
    StandardScaler(with_mean=False, with_std=False), MinMaxScaler(),
    MinMaxScaler(feature_range=(-2, 3), clip=True),
]


# what is tested is the export's fidelity, not the fit's convergence (tol is
# scikit-learn's gtol since round 3: an unscaled input may stop at max_iter)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scaler", _SCALERS, ids=repr)
def test_every_scaler_setting(scaler, dtype):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((200, 3)) * [1.0, 4.0, 0.5] + [3.0, -20.0, 7.0]
    y = ((X[:, 0] - 3) + (X[:, 1] + 20) / 4 > 0).astype(int)
    # alpha keeps the weights moderate: a float32 network with weights near 70
    # rounds its logits by ~1e-5 whatever the scaler does
    pipe = make_pipeline(scaler, bpnet.BPNetClassifier(6, alpha=0.1, max_iter=300,
                                                       random_state=0))
    pipe.fit(X, y)
    Xd = (X * 1.05).astype(dtype)
    out = _run(bpnet.to_onnx(pipe, dtype=dtype), Xd)
    atol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out["probabilities"], pipe.predict_proba(Xd), rtol=0, atol=atol)
    np.testing.assert_array_equal(out["label"], pipe.predict(Xd))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("offset, spread", [(1.7e9, 1e3), (1.7e9, 1e6), (1e6, 0.05)])
def test_large_offset_features_float64_exact_float32_refused(offset, spread):
    rng = np.random.default_rng(5)
    X = offset + spread * rng.standard_normal((300, 3))
    y = ((X[:, 0] - offset) + 0.5 * (X[:, 1] - offset) > 0).astype(int)
    pipe = make_pipeline(StandardScaler(), bpnet.BPNetClassifier(6, max_iter=300,
                                                                 random_state=0)).fit(X, y)
    out = _run(bpnet.to_onnx(pipe, dtype=np.float64), X)
    np.testing.assert_allclose(out["probabilities"], pipe.predict_proba(X), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out["label"], pipe.predict(X))
    with pytest.raises(ValueError, match=r"scaler 0 \(StandardScaler\): feature \d .*"
                                         r"export with dtype=np.float64"):
        bpnet.to_onnx(pipe)


def test_moderate_offset_float32_keeps_the_promise_on_the_users_features():
    # year-like features: mean 2000, std 10; float32 holds them to 1e-5 of a std
    rng = np.random.default_rng(6)
    X = 2000 + 10 * rng.standard_normal((300, 2))
    y = (X[:, 0] > X[:, 1]).astype(int)
    pipe = make_pipeline(StandardScaler(), bpnet.BPNetClassifier(6, max_iter=300,
                                                                 random_state=0)).fit(X, y)
    out = _run(bpnet.to_onnx(pipe), X.astype(np.float32))
    np.testing.assert_allclose(out["probabilities"], pipe.predict_proba(X), rtol=0, atol=1e-5)


def test_a_model_over_protobufs_limit_is_a_value_error(monkeypatch):
    """A model whose weights would not fit in one protobuf message (2 GiB) is
    refused up front with a ValueError saying so, not protobuf's EncodeError.
    The limit is lowered here: a real 2 GiB network would take the test's memory."""
    net = bpnet.Network([20, 30, 3], rng=0)  # 723 parameters
    assert net.n_params == 723
    monkeypatch.setattr(bpnet.onnx_export, "PROTOBUF_LIMIT", 723 * 8)
    with pytest.raises(ValueError, match=r"723 parameters take .* GiB as float64; one ONNX "
                                         r"model .* less than 2 GiB: export with dtype=np.float32"):
        bpnet.to_onnx(net, dtype=np.float64)
    bpnet.to_onnx(net, dtype=np.float32)  # 723 * 4 bytes: under the (lowered) limit
