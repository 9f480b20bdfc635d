"""scikit-learn's names and parameters, feature names in model files, class
weights, and the labels and numbers users give (issues 19 and 20, round 3).

Each test fails without its fix: ``activation="logistic"`` / ``"identity"``,
assignable ``coefs_`` / ``intercepts_``, a ``numpy.random.Generator`` as
``random_state``, scalers' ``feature_names_in_`` after save/load,
``class_weight="balanced"`` with sample weights, a too-small validation
split, a huge ``alpha``, labels beyond int64 and pandas' nullable dtypes.
"""

from __future__ import annotations

import warnings

import numpy as np
import oracle
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.utils.class_weight import compute_class_weight

import bpnet
from bpnet import BPNetClassifier, BPNetRegressor, Network
from bpnet import _params as P
from bpnet._inputs import class_indices


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(np.int64)
    return X, y


def _quiet_fit(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


# -- activation="logistic" (scikit-learn's name) and "identity" hidden units --
def test_logistic_is_sigmoid_everywhere(data):
    X, y = data
    sizes = (3, 4, 2)
    theta = bpnet.random_theta(sizes, rng=0)
    J_l, g_l = bpnet.cost_grad(theta, sizes, X, y, 0.5, activation="logistic", output="softmax")
    J_s, g_s = bpnet.cost_grad(theta, sizes, X, y, 0.5, activation="sigmoid", output="softmax")
    assert J_l == J_s and np.array_equal(g_l, g_s)
    assert np.array_equal(bpnet.forward(theta, sizes, X, activation="logistic"),
                          bpnet.forward(theta, sizes, X, activation="sigmoid"))
    assert Network(sizes, activation="logistic").activation == "sigmoid"
    assert "logistic" in bpnet.functional.ACTIVATIONS  # the CLI's choices come from here
    a = _quiet_fit(BPNetClassifier(4, "logistic", max_iter=20, random_state=0), X, y)
    b = _quiet_fit(BPNetClassifier(4, "sigmoid", max_iter=20, random_state=0), X, y)
    assert a.get_params()["activation"] == "logistic"  # scikit-learn: params kept as given
    assert np.array_equal(a.network_.theta, b.network_.theta)
    assert a.network_.activation == "sigmoid"


def test_logistic_estimator_saves_and_loads(data, tmp_path):
    X, y = data
    a = _quiet_fit(BPNetClassifier(4, "logistic", max_iter=10, random_state=0), X, y)
    back = bpnet.load(bpnet.save(a, tmp_path / "m.npz"))
    assert back.activation == "logistic"
    assert np.array_equal(back.predict_proba(X), a.predict_proba(X))


@pytest.mark.parametrize("output", oracle.OUTPUTS)
def test_identity_hidden_units_match_the_oracle_and_their_gradient(data, output):
    X, _ = data
    rng = np.random.default_rng(1)
    sizes = (3, 5, 4, 2)
    theta = rng.normal(size=bpnet.n_params(sizes))
    y = rng.integers(0, 2, size=X.shape[0])
    J, grad = bpnet.cost_grad(theta, sizes, X, y, 0.7, activation="identity", output=output)
    J_ref, grad_ref = oracle.cost_grad(theta, sizes, X, y, 0.7, "identity", output)
    assert_allclose(J, J_ref, rtol=1e-12)
    assert_allclose(grad, grad_ref, rtol=1e-10, atol=1e-13)
    report = bpnet.check_gradients((3, 4, 2), 0.3, activation="identity", output=output)
    assert report.ok(1e-7)


def test_identity_network_is_the_product_of_its_layers(data):
    """g(z) = z: with identity output the network is one affine map."""
    X, _ = data
    net = Network((3, 5, 2), activation="identity", output="identity", rng=0)
    T1, T2 = net.thetas
    expected = (X @ T1[:, 1:].T + T1[:, 0]) @ T2[:, 1:].T + T2[:, 0]
    assert_allclose(net.predict_proba(X), expected, rtol=1e-12, atol=1e-12)


def test_identity_hidden_units_train_save_convert_and_export(data, tmp_path):
    X, y = data
    clf = _quiet_fit(BPNetClassifier(4, "identity", max_iter=50, random_state=0), X, y)
    assert clf.score(X, y) > 0.9  # a linear problem
    back = bpnet.load(bpnet.save(clf, tmp_path / "m.npz"))
    assert np.array_equal(back.predict_proba(X), clf.predict_proba(X))
    mlp = clf.to_sklearn()
    assert mlp.activation == "identity"
    assert_allclose(mlp.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-12)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = bpnet.to_onnx(clf, dtype=np.float64)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = {o.name: v for o, v in zip(sess.get_outputs(), sess.run(None, {"X": X}))}
    assert_allclose(outs["probabilities"], clf.predict_proba(X), rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation", ["identity", "logistic"])
def test_from_sklearn_takes_identity_and_logistic_mlps(data, activation):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        kw = dict(hidden_layer_sizes=(4,), activation=activation, max_iter=30, random_state=0)
        mlp = MLPClassifier(**kw).fit(X, y)
        reg = MLPRegressor(**kw).fit(X, X[:, 0])
    est = bpnet.from_sklearn(mlp)
    assert_allclose(est.predict_proba(X), mlp.predict_proba(X), rtol=0, atol=1e-12)
    assert bpnet.from_sklearn(mlp).to_sklearn().activation == activation
    assert_allclose(bpnet.from_sklearn(reg).predict(X), reg.predict(X), rtol=0, atol=1e-12)


# -- coefs_ and intercepts_ can be assigned, as in scikit-learn ---------------
def test_coefs_and_intercepts_can_be_assigned(data):
    X, y = data
    clf = _quiet_fit(BPNetClassifier((4, 3), max_iter=10, random_state=0), X, y)
    mlp = clf.to_sklearn()
    rng = np.random.default_rng(3)
    coefs = [rng.normal(size=c.shape) for c in clf.coefs_]
    intercepts = [rng.normal(size=b.shape) for b in clf.intercepts_]
    clf.coefs_, clf.intercepts_ = coefs, intercepts
    for mine, given in zip(clf.coefs_ + clf.intercepts_, coefs + intercepts):
        assert np.array_equal(mine, given)
    # the network's theta holds them: the same predictions as scikit-learn's MLP
    # (a binary MLP has one logistic unit: the difference of the two softmax rows)
    mlp.coefs_ = [*coefs[:-1], coefs[-1][:, 1:] - coefs[-1][:, :1]]
    mlp.intercepts_ = [*intercepts[:-1], intercepts[-1][1:] - intercepts[-1][:1]]
    assert_allclose(clf.predict_proba(X), mlp.predict_proba(X), rtol=0, atol=1e-12)


def test_assigning_coefs_checks_count_shape_and_values(data):
    X, y = data
    clf = _quiet_fit(BPNetClassifier(4, max_iter=5, random_state=0), X, y)
    before = clf.network_.theta.copy()
    with pytest.raises(ValueError, match=r"coefs_ must hold 2 arrays"):
        clf.coefs_ = [np.zeros((3, 4))]
    with pytest.raises(ValueError, match=r"coefs_\[0\] must be a real array of shape \(3, 4\)"):
        clf.coefs_ = [np.zeros((4, 3)), np.zeros((4, 2))]
    with pytest.raises(ValueError, match=r"intercepts_\[1\] must be a real array of shape"):
        clf.intercepts_ = [np.zeros(4), np.zeros(3)]
    with pytest.raises(ValueError, match=r"coefs_\[1\] holds non-finite values"):
        clf.coefs_ = [np.zeros((3, 4)), np.full((4, 2), np.inf)]
    with pytest.raises(ValueError, match=r"list of arrays"):
        clf.coefs_ = np.zeros((3, 4))
    assert np.array_equal(clf.network_.theta, before)  # nothing half-assigned
    with pytest.raises(AttributeError, match="not fitted"):
        BPNetClassifier().coefs_ = [np.zeros((3, 4))]


# -- random_state: a numpy Generator, reproducibly -----------------------------
@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_random_state_accepts_a_generator_reproducibly(data, solver):
    X, y = data

    def fit(rs):
        est = BPNetClassifier(4, solver=solver, max_iter=5, early_stopping=True,
                              n_iter_no_change=2, random_state=rs)
        return _quiet_fit(est, X, y).network_.theta

    a, b = fit(np.random.default_rng(0)), fit(np.random.default_rng(0))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, fit(np.random.default_rng(1)))
    gen = np.random.default_rng(0)  # one generator, two fits: its stream advances
    first, second = fit(gen), fit(gen)
    assert np.array_equal(first, a) and not np.array_equal(second, first)
    assert np.array_equal(fit(np.random.RandomState(5)), fit(np.random.RandomState(5)))


def test_a_bad_random_state_is_named(data):
    X, y = data
    for bad in ("seed", -1, 2**32, 1.5):
        with pytest.raises(ValueError, match=r"random_state must be None, an int"):
            BPNetClassifier(random_state=bad).fit(X, y)


def test_docstrings_say_where_defaults_differ_from_scikit_learn():
    for cls in (BPNetClassifier, BPNetRegressor):
        head = " ".join(cls.__doc__.split("\n\n")[1].split())
        assert head.startswith(f"Defaults differ from ``MLP{cls.__name__[5:]}``'s on purpose")
        assert '"relu"' in head and '"adam"' in head and '"lbfgs"' in head


# -- feature names: kept in model files, checked as scikit-learn checks them --
def test_feature_names_survive_save_and_load(tmp_path):
    pd = pytest.importorskip("pandas")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(80, 3)), columns=["a", "b", "c"])
    y = (X["a"] > 0).astype(int)
    reordered, renamed = X[["c", "b", "a"]], X.set_axis(["a", "b", "z"], axis=1)
    models = [
        make_pipeline(StandardScaler(), MinMaxScaler(), BPNetClassifier(5, random_state=0)),
        BPNetClassifier(5, random_state=0),
    ]
    for i, model in enumerate(models):
        _quiet_fit(model, X, y)
        back = bpnet.load(bpnet.save(model, tmp_path / f"m{i}.npz"))
        assert_array_equal(back.feature_names_in_, ["a", "b", "c"])
        assert back.feature_names_in_.dtype == object
        for m in (model, back):
            for bad in (reordered, renamed):
                with pytest.raises(ValueError, match="feature names should match"):
                    m.predict(bad)
        assert np.array_equal(back.predict_proba(X), model.predict_proba(X))


# -- class_weight="balanced" counts the sample weights ------------------------
def test_balanced_class_weight_counts_sample_weight_as_scikit_learn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = np.array([0] * 40 + [1] * 15 + [2] * 5)
    sw = rng.uniform(0.1, 3.0, 60)
    cw = compute_class_weight("balanced", classes=np.unique(y), y=y, sample_weight=sw)
    assert not np.allclose(cw, compute_class_weight("balanced", classes=np.unique(y), y=y))
    kw = dict(hidden_layer_sizes=4, max_iter=5, random_state=0)
    balanced = _quiet_fit(BPNetClassifier(class_weight="balanced", **kw), X, y,
                          sample_weight=sw)
    by_hand = _quiet_fit(BPNetClassifier(**kw), X, y, sample_weight=sw * cw[y])
    assert np.array_equal(balanced.network_.theta, by_hand.network_.theta)
    # without sample weights: the counts, as before
    cw1 = compute_class_weight("balanced", classes=np.unique(y), y=y)
    a = _quiet_fit(BPNetClassifier(class_weight="balanced", **kw), X, y)
    b = _quiet_fit(BPNetClassifier(**kw), X, y, sample_weight=cw1[y])
    assert np.array_equal(a.network_.theta, b.network_.theta)


def test_partial_fit_refuses_balanced_class_weight(data):
    X, y = data
    clf = BPNetClassifier(4, solver="adam", class_weight="balanced")
    with pytest.raises(ValueError, match=r"class_weight='balanced' is not supported for "
                                         r"partial_fit.*compute_class_weight"):
        clf.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(clf, "network_")
    cw = dict(zip([0, 1], compute_class_weight("balanced", classes=np.array([0, 1]), y=y)))
    clf.set_params(class_weight=cw).partial_fit(X, y, classes=[0, 1])  # the advice works
    assert clf.n_iter_ == 1


# -- numbers and labels --------------------------------------------------------
def test_a_too_small_validation_split_says_so(data):
    X, y = data
    with pytest.raises(ValueError, match=r"validation set is too small: 1 of 10 samples.*"
                                         r"Increase 'validation_fraction'"):
        BPNetClassifier(4, early_stopping=True, random_state=0).fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="validation set is too small"):
        BPNetRegressor(4, solver="adam", early_stopping=True, validation_fraction=0.05,
                       random_state=0).fit(X[:20], X[:20, 0])


@pytest.mark.parametrize("solver", ["lbfgs", "cg", "adam", "sgd"])
def test_a_huge_alpha_is_named(data, solver):
    X, y = data
    with pytest.raises(ValueError, match=r"alpha=1e\+308 is too large for 60 samples in "
                                         r"float64.*alpha must be below 8\.0\de\+155"):
        BPNetClassifier(4, solver=solver, alpha=1e308).fit(X, y)
    with pytest.raises(ValueError, match=r"alpha=1e\+30 is too large .* float32"):
        BPNetRegressor(4, solver=solver, alpha=1e30).fit(X.astype(np.float32), X[:, 0])
    _quiet_fit(BPNetClassifier(4, solver=solver, alpha=1e6, max_iter=3), X, y)  # large: fine


def test_labels_beyond_int64_stay_floats():
    big = np.array([0.0, 1e20, 1e20])
    assert class_indices(big).dtype == np.float64 and class_indices(big)[1] == 1e20
    exact = np.array([0.0, 2.0**62, -(2.0**63)])
    assert class_indices(exact).dtype == np.int64
    assert class_indices(exact).tolist() == [0, 2**62, -(2**63)]
    X = np.random.default_rng(0).normal(size=(3, 2))
    with pytest.raises(ValueError, match=r"y\[1\] = 1e\+20 is not a class index") as err:
        Network((2, 2), output="softmax").fit(X, big, max_iter=1)
    assert "-9223372036854775808" not in str(err.value)
    with pytest.raises(ValueError, match=r"y\[1\] = 1e\+20 is a whole-number label beyond "
                                         r"int64's range.*strings") as err:
        BPNetClassifier(2).fit(X, big)
    assert "-9223372036854775808" not in str(err.value)


def test_pandas_nullable_frames_and_series_are_converted_once():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = np.round(rng.normal(size=(30, 3)) * 4)
    y = (X[:, 0] > 0).astype(np.int64)
    w = rng.uniform(0.5, 2.0, 30)
    ref = Network((3, 4, 2), output="softmax", rng=0).fit(X, y, sample_weight=w, max_iter=5)
    frames = [pd.DataFrame(X).astype("Float64"), pd.DataFrame(X).astype("Int64"),
              pd.DataFrame(X).astype({0: "Int64", 1: "Float64", 2: "float64"})]
    for frame in frames:
        for labels in (pd.Series(y, dtype="Int64"), pd.Series(y.astype(bool), dtype="boolean")):
            net = Network((3, 4, 2), output="softmax", rng=0)
            net.fit(frame, labels, sample_weight=pd.Series(w, dtype="Float64"), max_iter=5)
            assert np.array_equal(net.theta, ref.theta)
    flags = pd.DataFrame(X > 0).astype("boolean")
    Network((3, 2), output="softmax").fit(flags, y, max_iter=2)
    est = _quiet_fit(BPNetClassifier(4, max_iter=5, random_state=0),
                     pd.DataFrame(X).astype("Int64"), pd.Series(y, dtype="Int64"))
    assert est.classes_.tolist() == [0, 1]
    holey = pd.DataFrame(X).astype("Int64")
    holey.iloc[4, 1] = pd.NA
    with pytest.raises(ValueError, match=r"X contains a missing value \(pd.NA\) at row 4"):
        Network((3, 2), output="softmax").fit(holey, y)
    with pytest.raises(ValueError, match=r"y contains a missing value \(pd.NA\) at row 2"):
        Network((3, 2), output="softmax").fit(X, pd.Series([0, 1, pd.NA] * 10, dtype="Int64"))


def test_missing_and_mixed_labels_are_value_errors(data):
    pd = pytest.importorskip("pandas")
    X, y = data
    labels = y.astype(object)
    cases = {
        "None": (np.where(np.arange(60) == 3, None, labels), r"missing label None at index 3"),
        "pd.NA": (np.where(np.arange(60) == 5, pd.NA, labels), r"missing label <NA> at index 5"),
        "mixed": (np.where(np.arange(60) == 0, "a", labels),
                  r"mixes label types \(a string at index 0, a number at index 1\)"),
    }
    for bad, match in cases.values():
        with pytest.raises(ValueError, match=match):
            BPNetClassifier(3).fit(X, bad)
        with pytest.raises(ValueError):
            Network((3, 2), output="softmax").fit(X, bad)
    with pytest.raises(ValueError, match=r"classes mixes label types"):
        BPNetClassifier(3, solver="adam").partial_fit(
            X, y, classes=np.array([0, "1"], dtype=object))
    with pytest.raises(ValueError):
        BPNetClassifier(3).fit(X, pd.Series(y, dtype="Int64").where(y > 0, pd.NA))
    targets = X[:, 0].astype(object)
    targets[7] = pd.NA
    with pytest.raises(ValueError, match=r"missing label <NA> at index 7"):
        BPNetRegressor(3).fit(X, targets)


def test_the_rule_table_knows_the_new_names():
    assert P.check_activation("logistic") == "sigmoid"
    assert P.check_activation("identity") == "identity"
    with pytest.raises(ValueError, match=r"activation must be one of .*'logistic'"):
        P.check_activation("softplus")


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                   np.uint32, np.uint64, np.bool_])
@pytest.mark.parametrize("values", ["two", "many", "one", "extremes"])
def test_integer_labels_take_the_short_path_scikit_learn_would_accept(dtype, values):
    """1-D integer and bool labels skip scikit-learn's type_of_target and
    check_classification_targets in the classifier's encoding (their time is 2%
    of bench/'s case E fit): scikit-learn must take every such vector for
    "binary" or "multiclass" targets, and the fit must see the same classes and
    give the same errors as with the labels as strings."""
    from sklearn.utils.multiclass import check_classification_targets, type_of_target

    info = np.iinfo(dtype) if dtype is not np.bool_ else None
    lo, hi = (0, 1) if info is None else (info.min, info.max)
    pattern = {"two": [lo, hi] * 6, "many": [lo, hi, 0, 1, hi - 1, lo + 1] * 2,
               "one": [hi] * 12, "extremes": [hi, lo, hi, lo, 1, 0] * 2}[values]
    y = np.array(pattern, dtype=dtype)
    assert type_of_target(y) in ("binary", "multiclass")
    check_classification_targets(y)
    X = np.random.default_rng(0).normal(size=(12, 3))
    labels = np.unique(y)
    if labels.size < 2:
        for given in (y, y.astype(str)):
            with pytest.raises(ValueError, match=r"needs at least 2 classes in y to train"):
                BPNetClassifier(3, max_iter=2).fit(X, given)
        return
    est = _quiet_fit(BPNetClassifier(3, max_iter=2, random_state=0), X, y)
    assert est.classes_.dtype == y.dtype and est.classes_.tolist() == labels.tolist()
    by_name = _quiet_fit(BPNetClassifier(3, max_iter=2, random_state=0), X, y.astype(str))
    assert sorted(by_name.classes_.tolist()) == sorted(labels.astype(str).tolist())
    if by_name.classes_.tolist() == labels.astype(str).tolist():  # the same class order
        assert np.array_equal(est.network_.theta, by_name.network_.theta)
        assert_array_equal(est.predict(X).astype(str), by_name.predict(X))
