"""Model files for Pipelines of scalers + a bpnet estimator (what `bpnet train
--scale` writes): the loaded Pipeline predicts bitwise like the saved one."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

import bpnet


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 5)) * [1, 10, 100, 0.1, 5] + [0, 5, -3, 1, 2]
    y = (X[:, 0] + X[:, 1] / 10 > 0.5).astype(int)
    return X, y


@pytest.mark.parametrize(
    "scalers",
    [
        [StandardScaler()],
        [StandardScaler(with_mean=False)],
        [MinMaxScaler(feature_range=(-1, 1), clip=True)],
        [StandardScaler(), MinMaxScaler()],
    ],
    ids=["standard", "std-no-mean", "minmax-clip", "both"],
)
@pytest.mark.parametrize("final", ["classifier", "regressor"])
def test_pipeline_round_trip_is_bitwise(tmp_path, scalers, final):
    X, y = _data()
    est = (bpnet.BPNetClassifier(4, max_iter=500, random_state=0) if final == "classifier"
           else bpnet.BPNetRegressor(4, max_iter=500, random_state=0))
    pipe = make_pipeline(*scalers, est).fit(X, y.astype(float) if final == "regressor" else y)
    back = bpnet.load(bpnet.save(pipe, tmp_path / "p.npz"))
    assert [type(s).__name__ for _, s in back.steps] == [type(s).__name__ for _, s in pipe.steps]
    assert [n for n, _ in back.steps] == [n for n, _ in pipe.steps]
    X_new = X * 1.5 + 0.25  # also outside the training range (clip)
    assert back.predict(X_new).tobytes() == pipe.predict(X_new).tobytes()
    if final == "classifier":
        assert back.predict_proba(X_new).tobytes() == pipe.predict_proba(X_new).tobytes()
    for (_, a), (_, b) in zip(pipe.steps[:-1], back.steps[:-1]):
        assert a.get_params() == b.get_params()
        assert a.transform(X).tobytes() == b.transform(X).tobytes()


# tol is the gradient tolerance (scikit-learn's meaning): this fit may reach max_iter,
# which is not what the test checks
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_unsupported_steps_are_refused(tmp_path):
    X, y = _data()
    pipe = make_pipeline(PCA(3), bpnet.BPNetClassifier(3, max_iter=500, random_state=0)).fit(X, y)
    with pytest.raises(TypeError, match="is a PCA; model files store StandardScaler"):
        bpnet.save(pipe, tmp_path / "p.npz")
    assert not (tmp_path / "p.npz").exists()
    scaled = make_pipeline(StandardScaler(), PCA(3)).fit(X)
    with pytest.raises(TypeError, match="must end with a BPNetClassifier or BPNetRegressor"):
        bpnet.save(scaled, tmp_path / "q.npz")


def test_tampered_preprocessing_is_a_model_file_error(tmp_path):
    import hashlib

    from model_format import canonical_json as _canonical

    X, y = _data()
    pipe = make_pipeline(StandardScaler(), bpnet.BPNetClassifier(3, max_iter=500,
                                                                random_state=0)).fit(X, y)
    path = bpnet.save(pipe, tmp_path / "p.npz")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    outer = json.loads(arrays["metadata"].tobytes())
    outer["body"]["preprocessing"][0]["n_features_in"] = 4
    outer["sha256"] = hashlib.sha256(_canonical(outer["body"])).hexdigest()
    arrays["metadata"] = np.frombuffer(json.dumps(outer).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(bpnet.ModelFileError, match="preprocessing"):
        bpnet.load(path)
