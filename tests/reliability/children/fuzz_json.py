"""Structure-aware fuzzing of a model file's JSON metadata, raw JSON oddities, extra
members and semantic edits (run in a temporary directory).

Run by test_reliability_attacks.py::
test_structure_aware_json_fuzzing_only_gives_model_file_errors."""

import hashlib
import json
import random
import zipfile

import numpy as np
from childlib import report

import bpnet
from bpnet.persist import ModelFileError


def _canonical(b):  # the format's digest rule
    return json.dumps(b, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


rng = random.Random(20240607)
X = np.random.default_rng(0).standard_normal((60, 4))
y = np.array(["ant", "bee", "cat"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
clf = bpnet.BPNetClassifier(3, solver="adam", max_iter=4, random_state=0, early_stopping=True,
                            learning_rate_init=0.01).fit(X, y)
clf.partial_fit(X, y)
clf.save("m.npz")
with np.load("m.npz") as f:
    arrays = {k: f[k] for k in f.files}
body = json.loads(arrays["metadata"].tobytes())["body"]
ref = clf.predict_proba(X).tobytes()


def nodes(node, trail=()):
    yield trail
    if isinstance(node, dict):
        for k, v in node.items():
            yield from nodes(v, (*trail, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from nodes(v, (*trail, i))


def deep(n):
    d = 0
    for _ in range(n):
        d = [d]
    return d


REPLACEMENTS = [None, True, False, 0, -1, -(2**63), 2**64, 1.5, -0.0, 1e308, "", "x" * 5000,
                [], {}, [1, 2, 3], {"a": 1}, "float64", [[]], {"pairs": 5}, {"pairs": [[1]]}]
paths = [p for p in nodes(body) if p]
variants = []
for trail in paths:
    for _ in range(2):
        variants.append((trail, rng.choice(REPLACEMENTS)))
    variants.append((trail, deep(rng.choice([50, 5000]))))


def write(path, b, raw_meta=None, extra=None):
    meta = raw_meta if raw_meta is not None else json.dumps(
        {"body": b, "sha256": hashlib.sha256(_canonical(b)).hexdigest()}).encode()
    with open(path, "wb") as f:
        np.savez(f, metadata=np.frombuffer(meta, np.uint8),
                 **{k: v for k, v in arrays.items() if k != "metadata"})
    if extra:
        with zipfile.ZipFile(path, "a") as z:
            z.writestr(*extra)


counts = {"rejected": 0, "identical": 0}
bad = []


def judge(label):
    try:
        est = bpnet.load("v.npz")
    except ModelFileError as e:
        if not str(e).startswith("v.npz: "):
            bad.append((label, "message " + str(e)[:100]))
        counts["rejected"] += 1
        return
    except BaseException as e:
        bad.append((label, type(e).__name__ + ": " + str(e)[:200]))
        return
    try:
        same = est.predict_proba(X).tobytes() == ref
    except BaseException as e:
        bad.append((label, "loaded but predict failed: " + type(e).__name__))
        return
    counts["identical" if same else "different"] = counts.get(
        "identical" if same else "different", 0) + 1
    if not same:
        bad.append((label, "loaded a different model"))


for trail, value in variants:
    b = json.loads(json.dumps(body))
    node = b
    for k in trail[:-1]:
        node = node[k]
    node[trail[-1]] = value
    try:
        write("v.npz", b)
    except (ValueError, RecursionError):  # JSON cannot hold it (e.g. deep nesting): raw text
        text = json.dumps({"body": "BODY", "sha256": "0"}).replace(
            '"BODY"', "[" * 100000 + "]" * 100000)
        write("v.npz", b, raw_meta=text.encode())
    try:
        shown = repr(value)[:40]
    except RecursionError:
        shown = "<deeply nested list>"
    judge(str(trail) + "=" + shown)

raw_cases = {
    "huge int": b'{"body": {"format": "bpnet-model", "format_version": 1' + b"0" * 100000 + b'}}',
    "huge float": b'{"body": {"format": "bpnet-model", "format_version": 1, "x": 1e999}, '
                  b'"sha256": "0"}',
    "deep": b'{"body": ' + b"[" * 200000 + b"]" * 200000 + b', "sha256": "0"}',
    "deep dict": b'{"body": ' + b'{"a":' * 100000 + b"1" + b"}" * 100000 + b', "sha256": "0"}',
    "nan": b'{"body": {"format": "bpnet-model", "format_version": 1, "x": NaN}, "sha256": "0"}',
}
for label, meta in raw_cases.items():
    write("v.npz", body, raw_meta=meta)
    judge(label)
for label, extra in (("text member", ("notes.txt", "hello")),
                     ("pickle member", ("obj.npy", b"\x80\x04K\x01."))):
    write("v.npz", body, extra=extra)
    judge(label)


# semantic checks on a self-consistent file
def edited(edit, arr_edit=None):
    b = json.loads(json.dumps(body))
    a = dict(arrays)
    edit(b)
    if arr_edit:
        a = arr_edit(a)
        b["arrays"] = {k: {"dtype": v.dtype.str, "shape": list(v.shape),
                           "sha256": hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()}
                       for k, v in a.items() if k != "metadata"}
    meta = json.dumps({"body": b, "sha256": hashlib.sha256(_canonical(b)).hexdigest()}).encode()
    a["metadata"] = np.frombuffer(meta, np.uint8)
    with open("s.npz", "wb") as f:
        np.savez(f, **a)
    try:
        bpnet.load("s.npz")
    except ModelFileError as e:
        return str(e)
    except BaseException as e:
        return "WRONG " + type(e).__name__
    return "loaded"


semantic = {
    "unsorted": edited(lambda b: None, lambda a: dict(a, classes=a["classes"][::-1].copy())),
    "duplicate": edited(lambda b: None, lambda a: dict(a, classes=np.array(["ant", "ant", "cat"]))),
    "hidden": edited(lambda b: b["estimator"]["params"].update(hidden_layer_sizes=[5])),
    "neg_step": edited(lambda b: b["estimator"].update(optimizer_step=-3)),
    "neg_iter": edited(lambda b: b["estimator"].update(n_iter=-1)),
    "neg_evals": edited(lambda b: b["training"].update(n_evals=-2)),
}
report(counts=counts, bad=bad[:20], n_bad=len(bad), n_variants=len(variants), semantic=semantic)
