"""The shuffling RNG's state is part of a model file: a loaded estimator or
network resumes mini-batch training bitwise, with shuffle=True (issue 11, item 5)."""

import numpy as np
import pytest
from model_format import canonical_json as _canonical

import bpnet


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 6))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    return X, y

@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_saved_estimator_resumes_partial_fit_bitwise_with_shuffle(tmp_path, solver):
    """shuffle=True (the default): the resumed epochs draw the same permutations."""
    X, y = _data()
    clf = bpnet.BPNetClassifier(5, solver=solver, batch_size=16, shuffle=True, random_state=0)
    for _ in range(2):
        clf.partial_fit(X, y, classes=np.unique(y))
    back = bpnet.load(clf.save(tmp_path / "m.npz"))
    for _ in range(3):
        clf.partial_fit(X, y)
        back.partial_fit(X, y)
    assert back.network_.theta.tobytes() == clf.network_.theta.tobytes()
    assert back.predict_proba(X).tobytes() == clf.predict_proba(X).tobytes()
    assert back.loss_curve_ == clf.loss_curve_


@pytest.mark.parametrize("bit_generator", ["PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"])
def test_network_rng_state_round_trips(tmp_path, bit_generator):
    X, y = _data()
    gen = np.random.Generator(getattr(np.random, bit_generator)(7))
    net = bpnet.Network([6, 4, 3], output="softmax", rng=gen)
    net.fit(X, y, solver="adam", max_iter=2, batch_size=10)
    back = bpnet.load(net.save(tmp_path / "n.npz"))
    assert back.rng.bit_generator.state["bit_generator"] == bit_generator
    assert back.rng.random(5).tobytes() == net.rng.random(5).tobytes()
    net.fit(X, y, solver="adam", max_iter=2, batch_size=10)
    back.fit(X, y, solver="adam", max_iter=2, batch_size=10)
    assert back.theta.tobytes() == net.theta.tobytes()


def test_damaged_rng_state_is_a_model_file_error(tmp_path):
    import hashlib
    import json

    path = bpnet.Network([6, 3], rng=0).save(tmp_path / "n.npz")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    outer = json.loads(arrays["metadata"].tobytes())
    outer["body"]["network"]["rng"]["state"]["state"] = "nonsense"
    outer["sha256"] = hashlib.sha256(_canonical(outer["body"])).hexdigest()
    arrays["metadata"] = np.frombuffer(json.dumps(outer).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(bpnet.ModelFileError, match="rng"):
        bpnet.load(path)
