"""Fuzzed model files: truncated at many offsets, bytes flipped at many
positions, arrays and metadata tampered with and the archive rewritten validly.

Every variant either raises ModelFileError (a ValueError) naming the file and
the problem, or — when the damage did not touch the content (a zip timestamp,
say) — loads to a model whose parameters and predictions are bitwise equal to
the original's. Never a crash, never a silently different model.
tests/files/test_persist.py has the hand-picked cases; this file the systematic ones.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import bpnet
from bpnet.persist import FORMAT_VERSION, ModelFileError

RNG_SEED = 20240607
XQ = np.random.default_rng(1).standard_normal((25, 4))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small fitted classifier (with optimizer state and early stopping
    curves) saved once; its bytes, arrays, body and reference predictions."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = np.array(["ant", "bee", "cat"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    clf = bpnet.BPNetClassifier(
        3, activation="tanh", solver="adam", max_iter=5, random_state=0, n_threads=1,
        early_stopping=True, learning_rate_init=0.01,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    path = clf.save(tmp_path_factory.mktemp("fuzz") / "model.npz")
    with open(path, "rb") as f:
        raw = f.read()
    back = bpnet.load(path)
    ref = {
        "theta": back.network_.theta.tobytes(),
        "proba": back.predict_proba(XQ).tobytes(),
        "labels": back.predict(XQ).tolist(),
        "classes": back.classes_.tolist(),
    }
    assert ref["proba"] == clf.predict_proba(XQ).tobytes()
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    body = json.loads(arrays["metadata"].tobytes())["body"]
    return raw, arrays, body, ref


def outcome(path, ref) -> str:
    """'rejected' (a clear ModelFileError) or 'identical' (bitwise-equal model);
    anything else fails the test."""
    try:
        est = bpnet.load(path)
    except ModelFileError as err:
        msg = str(err)
        assert msg.startswith(f"{path}: ") and len(msg) > len(str(path)) + 10, msg
        assert isinstance(err, ValueError)
        return "rejected"
    assert type(est) is bpnet.BPNetClassifier
    assert est.network_.theta.tobytes() == ref["theta"], "a silently different theta"
    assert est.classes_.tolist() == ref["classes"], "silently different classes"
    assert est.predict_proba(XQ).tobytes() == ref["proba"], "silently different predictions"
    assert est.predict(XQ).tolist() == ref["labels"]
    return "identical"


def _write(path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


# --- (a) truncation -----------------------------------------------------------------
def _truncation_offsets(n: int, k: int | None) -> list[int]:
    if k is None:
        return list(range(n))
    rng = np.random.default_rng(RNG_SEED)
    edges = {0, 1, 2, 3, 4, 21, 22, 29, 30, n - 22, n - 21, n - 2, n - 1}
    return sorted(edges | set(rng.integers(0, n, k).tolist()))


def _check_truncations(tmp_path, saved, k):
    raw, _, _, ref = saved
    path = tmp_path / "cut.npz"
    results = {}
    for off in _truncation_offsets(len(raw), k):
        _write(path, raw[:off])
        results[off] = outcome(path, ref)
    # the last bytes are the zip's end-of-central-directory record: every cut is fatal
    assert set(results.values()) == {"rejected"}, [o for o, r in results.items() if r != "rejected"]
    return len(results)


def test_truncated_at_many_offsets_is_rejected(tmp_path, saved):
    assert _check_truncations(tmp_path, saved, 150) >= 140


@pytest.mark.slow
def test_truncated_at_every_offset_is_rejected(tmp_path, saved):
    assert _check_truncations(tmp_path, saved, None) == len(saved[0])


# --- (b) flipped bytes ------------------------------------------------------------------
def _check_flips(tmp_path, saved, n_variants, n_bytes):
    raw, _, _, ref = saved
    rng = np.random.default_rng(RNG_SEED + n_bytes)
    path = tmp_path / "flip.npz"
    counts = {"rejected": 0, "identical": 0}
    for _ in range(n_variants):
        data = bytearray(raw)
        for pos in rng.integers(0, len(raw), n_bytes):
            data[pos] ^= int(rng.integers(1, 256))
        _write(path, bytes(data))
        counts[outcome(path, ref)] += 1
    # most positions are checked content (zip CRC, SHA-256); a few are not (timestamps)
    assert counts["rejected"] > 0.8 * n_variants, counts
    return counts


@pytest.mark.parametrize(("n_variants", "n_bytes"), [(250, 1), (60, 3)])
def test_flipped_bytes_are_rejected_or_harmless(tmp_path, saved, n_variants, n_bytes):
    _check_flips(tmp_path, saved, n_variants, n_bytes)


@pytest.mark.slow
@pytest.mark.parametrize(("n_variants", "n_bytes"), [(4000, 1), (1500, 2), (1000, 8)])
def test_flipped_bytes_many(tmp_path, saved, n_variants, n_bytes):
    _check_flips(tmp_path, saved, n_variants, n_bytes)


@pytest.mark.parametrize(
    "step", [7, pytest.param(1, marks=pytest.mark.slow)], ids=["every-7th", "every"]
)
def test_single_byte_positions_flipped_one_at_a_time(tmp_path, saved, step):
    """Byte positions of the file (~5 kB), XOR 0xFF, one at a time. About a tenth
    (zip header fields the reader does not use: versions, timestamps, the local
    copies of sizes) load, and then to the identical model."""
    raw, _, _, ref = saved
    path = tmp_path / "each.npz"
    identical = []
    for pos in range(0, len(raw), step):
        data = bytearray(raw)
        data[pos] ^= 0xFF
        _write(path, bytes(data))
        if outcome(path, ref) == "identical":
            identical.append(pos)
    assert len(identical) < 0.2 * len(raw), len(identical)


def test_random_garbage_files(tmp_path, saved):
    _, _, _, ref = saved
    rng = np.random.default_rng(RNG_SEED)
    path = tmp_path / "junk.npz"
    for n in (1, 4, 22, 100, 1000, 5000):
        _write(path, rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        assert outcome(path, ref) == "rejected"
    for prefix in (b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY"):
        _write(path, prefix + rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
        assert outcome(path, ref) == "rejected"


# --- (c) tampering: valid archives with edited content ----------------------------------
def _canonical(body) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _rewrite(path, arrays, body, *, array_specs=True, meta_digest=True, meta=None):
    """Write ``arrays`` with ``body`` as a valid npz. ``array_specs`` recomputes each
    array's dtype/shape/SHA-256 in the body, ``meta_digest`` the body's digest:
    both True makes a self-consistent file whose content is then validated."""
    arrays = {k: v for k, v in arrays.items() if k != "metadata"}
    body = json.loads(json.dumps(body))
    if array_specs:
        body["arrays"] = {
            k: {"dtype": a.dtype.str, "shape": list(a.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()}
            for k, a in arrays.items()
        }
    if meta is None:
        digest = hashlib.sha256(_canonical(body)).hexdigest() if meta_digest else "0" * 64
        meta = json.dumps({"body": body, "sha256": digest}, allow_nan=True).encode()
    with open(path, "wb") as f:
        np.savez(f, metadata=np.frombuffer(meta, np.uint8) if isinstance(meta, bytes) else meta,
                 **arrays)


def _changed(a: np.ndarray) -> np.ndarray:
    b = a.copy()
    if b.size == 0:
        return np.zeros(1, dtype=a.dtype)
    if b.dtype.kind in "fc":
        b.flat[0] = b.flat[0] + 1
    elif b.dtype.kind == "U":
        b.flat[0] = "zzz"
    else:
        b.flat[0] = b.flat[0] + 1
    return b


ARRAY_NAMES = ["theta", "classes", "loss_curve", "validation_scores", "validation_loss_curve",
               "optimizer_moment1", "optimizer_moment2"]


@pytest.mark.parametrize("name", ARRAY_NAMES)
def test_edited_array_is_a_checksum_mismatch(tmp_path, saved, name):
    _, arrays, body, _ = saved
    assert name in arrays
    edited = dict(arrays, **{name: _changed(arrays[name])})
    path = tmp_path / "t.npz"
    _rewrite(path, edited, body, array_specs=False)
    with pytest.raises(ModelFileError, match=rf"array '{name}' (checksum mismatch|is .* says)"):
        bpnet.load(path)
    # the array's digest updated but not the metadata's own: the metadata check fires
    _rewrite(path, edited, body, array_specs=True, meta_digest=False)
    with pytest.raises(ModelFileError, match=r"metadata checksum mismatch"):
        bpnet.load(path)


def test_unchanged_rewrite_loads_identically(tmp_path, saved):
    """The control: the tamper helper itself makes a valid file."""
    _, arrays, body, ref = saved
    path = tmp_path / "same.npz"
    _rewrite(path, arrays, body)
    assert outcome(path, ref) == "identical"


def _net(b):
    return b["network"]


def _est(b):
    return b["estimator"]


# (id, edit of the body (in place), edit of the arrays (returns a dict) or None, message)
TAMPER = [
    ("format_version 0", lambda b: b.update(format_version=0), None, r"format_version must be"),
    ("format_version str", lambda b: b.update(format_version="1"), None, r"format_version must"),
    ("format_version float", lambda b: b.update(format_version=1.0), None, r"format_version"),
    ("format_version bool", lambda b: b.update(format_version=True), None, r"format_version"),
    ("format_version null", lambda b: b.update(format_version=None), None, r"format_version"),
    (
        "format_version newer",
        lambda b: b.update(format_version=FORMAT_VERSION + 1),
        None,
        rf"format_version {FORMAT_VERSION + 1} was written by a newer bpnet",
    ),
    ("format name", lambda b: b.update(format="bpnet-model-x"), None, r"format is 'bpnet-model-x'"),
    ("no format", lambda b: b.pop("format"), None, r"format is None"),
    ("kind", lambda b: b.update(kind="Pipeline"), None, r"kind must be one of .*'Pipeline'"),
    ("no network", lambda b: b.pop("network"), None, r"no 'network' section"),
    ("network list", lambda b: b.update(network=[1, 2]), None, r"no 'network' section"),
    (
        "layer_sizes vs theta",
        lambda b: _net(b).update(layer_sizes=[4, 3, 2]),
        None,
        r"invalid network description: n_params is",
    ),
    (
        "layer_sizes and n_params vs theta",
        lambda b: _net(b).update(layer_sizes=[4, 4, 3], n_params=35),
        None,
        r"theta is float64 \(27,\); expected float64 \(35,\)",
    ),
    ("layer_sizes zero", lambda b: _net(b).update(layer_sizes=[4, 0, 3]), None, r"layer_sizes"),
    ("layer_sizes neg", lambda b: _net(b).update(layer_sizes=[4, -3, 3]), None, r"layer_sizes"),
    ("layer_sizes short", lambda b: _net(b).update(layer_sizes=[4]), None, r"layer_sizes"),
    ("layer_sizes str", lambda b: _net(b).update(layer_sizes="4-3-3"), None, r"layer_sizes"),
    ("layer_sizes floats", lambda b: _net(b).update(layer_sizes=[4, 3.5, 3]), None, r"layer_siz"),
    ("layer_sizes huge", lambda b: _net(b).update(layer_sizes=[4, 2**62, 3]), None, r"layer_siz"),
    ("no layer_sizes", lambda b: _net(b).pop("layer_sizes"), None, r"'layer_sizes'"),
    ("n_params", lambda b: _net(b).update(n_params=28), None, r"n_params is 28"),
    ("dtype float32", lambda b: _net(b).update(dtype="float32"), None, r"theta is float64"),
    ("dtype int64", lambda b: _net(b).update(dtype="int64"), None, r"dtype must be one of"),
    ("dtype null", lambda b: _net(b).update(dtype=None), None, r"dtype must be one of"),
    ("lam negative", lambda b: _net(b).update(lam=-1.0), None, r"lam"),
    ("lam string", lambda b: _net(b).update(lam="big"), None, r"lam"),
    ("lam nan", lambda b: _net(b).update(lam=float("nan")), None, r"JSON cannot represent|lam"),
    ("activation", lambda b: _net(b).update(activation="swish"), None, r"activation.*'swish'"),
    (
        "activation vs estimator",
        lambda b: _net(b).update(activation="relu"),
        None,
        r"network activation 'relu' differs from the estimator's 'tanh'",
    ),
    ("output", lambda b: _net(b).update(output="sigmoid"), None, r"output 'sigmoid'; expected"),
    ("no estimator", lambda b: b.update(estimator=None), None, r"invalid estimator description"),
    (
        "n_features_in",
        lambda b: _est(b).update(n_features_in=5),
        None,
        r"do not match n_features_in=5",
    ),
    ("n_outputs", lambda b: _est(b).update(n_outputs=4), None, r"n_outputs=4"),
    ("bad param", lambda b: _est(b)["params"].update(alpha=-1), None, r"alpha .*got -1"),
    ("unknown param", lambda b: _est(b)["params"].update(gamma=1), None, r"gamma"),
    ("n_iter str", lambda b: _est(b).update(n_iter="many"), None, r"invalid estimator"),
    ("no multilabel", lambda b: _est(b).pop("multilabel"), None, r"'multilabel'"),
    (
        "theta float32",
        None,
        lambda a: dict(a, theta=a["theta"].astype(np.float32)),
        r"theta is float32 \(27,\); expected float64",
    ),
    (
        "theta big-endian",
        None,
        lambda a: dict(a, theta=a["theta"].astype(">f8")),
        r"theta is >f8 \(27,\); expected float64",
    ),
    ("theta 2-D", None, lambda a: dict(a, theta=a["theta"][None]), r"theta is float64 \(1, 27\)"),
    ("theta short", None, lambda a: dict(a, theta=a["theta"][:-1]), r"theta is float64 \(26,\)"),
    ("theta int", None, lambda a: dict(a, theta=a["theta"].astype(np.int64)), r"theta is int64"),
    ("theta nan", None, lambda a: dict(a, theta=_at(a["theta"], np.nan)), r"theta .*non-finite"),
    ("theta inf", None, lambda a: dict(a, theta=_at(a["theta"], -np.inf)), r"theta .*non-finite"),
    ("no theta", None, lambda a: {k: v for k, v in a.items() if k != "theta"}, r"no 'theta'"),
    ("classes 4", None, lambda a: dict(a, classes=np.array(["a", "b", "c", "d"])), r"4 classes"),
    ("no classes", None, lambda a: {k: v for k, v in a.items() if k != "classes"}, r"'classes'"),
    (
        "optimizer m1 shape",
        None,
        lambda a: dict(a, optimizer_moment1=a["optimizer_moment1"][:5]),
        r"invalid estimator description",
    ),
    (
        "optimizer v nan",
        None,
        lambda a: dict(a, optimizer_moment2=_at(a["optimizer_moment2"], np.nan)),
        r"optimizer_moment2 .*non-finite",
    ),
]


def _at(a, value, index=0):
    b = np.array(a, copy=True)
    b[index] = value
    return b


@pytest.mark.parametrize(
    ("edit_body", "edit_arrays", "pattern"), [t[1:] for t in TAMPER], ids=[t[0] for t in TAMPER]
)
def test_consistently_rewritten_but_invalid_content_is_rejected(
    tmp_path, saved, edit_body, edit_arrays, pattern
):
    """Digests recomputed so the file is self-consistent: the content checks fire."""
    _, arrays, body, _ = saved
    body = json.loads(json.dumps(body))
    if edit_body:
        edit_body(body)
    if edit_arrays:
        arrays = edit_arrays(dict(arrays))
    path = tmp_path / "tampered.npz"
    _rewrite(path, arrays, body)
    with pytest.raises(ModelFileError, match=pattern) as info:
        bpnet.load(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("meta", "pattern"),
    [
        (b"\xff\xfe not utf-8", r"metadata is not valid bpnet JSON"),
        (b"{not json", r"metadata is not valid bpnet JSON"),
        (b"[1, 2, 3]", r"metadata is not valid bpnet JSON"),
        (b'{"body": 3, "sha256": "x"}', r"format is None"),
        (b'{"sha256": "x"}', r"metadata is not valid bpnet JSON"),
        (np.zeros(4, np.int8), r"metadata must be a 1-D uint8 array; got int8"),
        (np.zeros((2, 2), np.uint8), r"metadata must be a 1-D uint8 array; got uint8 \(2, 2\)"),
        (np.zeros(0, np.uint8), r"metadata is not valid bpnet JSON"),
    ],
)
def test_broken_metadata_entry(tmp_path, saved, meta, pattern):
    _, arrays, body, _ = saved
    path = tmp_path / "meta.npz"
    _rewrite(path, arrays, body, meta=meta)
    with pytest.raises(ModelFileError, match=pattern):
        bpnet.load(path)


def test_metadata_checksum_catches_every_field_edit(tmp_path, saved):
    """Any edit of any scalar in the body, without a new digest, is caught."""
    _, arrays, body, _ = saved
    path = tmp_path / "field.npz"
    paths = []

    def walk(node, trail):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*trail, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*trail, i))
        else:
            paths.append(trail)

    walk(body, ())
    assert len(paths) > 50
    for trail in paths:
        b = json.loads(json.dumps(body))
        node = b
        for k in trail[:-1]:
            node = node[k]
        v = node[trail[-1]]
        node[trail[-1]] = (
            not v if isinstance(v, bool) else v + 1 if isinstance(v, (int, float))
            else (v or "") + "x" if isinstance(v, str) or v is None else v
        )
        _rewrite(path, arrays, b, array_specs=False, meta_digest=False)
        with pytest.raises(ModelFileError, match=r"checksum mismatch|format|the metadata says"):
            bpnet.load(path)


def test_the_pre_release_optimizer_names_are_refused(tmp_path, saved):
    """optimizer_m1 / optimizer_v were the optimizer arrays' names before 0.1.0
    was released; no file of that format exists, so a file holding them is
    refused, naming the arrays, not read as Adam's moments."""
    _, arrays, body, _ = saved
    old = {k: v for k, v in arrays.items() if not k.startswith("optimizer_")}
    old["optimizer_m1"] = arrays["optimizer_moment1"]
    old["optimizer_v"] = arrays["optimizer_moment2"]
    path = tmp_path / "old.npz"
    _rewrite(path, old, body)
    with pytest.raises(ModelFileError, match=r"optimizer_m1.*not one solver's state"):
        bpnet.load(path)

