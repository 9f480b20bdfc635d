"""Issue 19's file classes: duplicate JSON keys and re-spelled metadata (11), a
small file describing a huge valid network (12), symlinks planted by another
user (9)."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest
from model_format import canonical_json

import bpnet
from bpnet import ModelFileError
from bpnet.persist import DEFAULT_MAX_BYTES, read_metadata


def _parts(path):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    outer = json.loads(arrays.pop("metadata").tobytes())
    return outer["body"], arrays


def _write_raw(path, meta: bytes, arrays):
    np.savez(path, metadata=np.frombuffer(meta, np.uint8), **arrays)


def _signed(body) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


# -- 11. duplicate keys, and the digest over the bytes parsed -------------------------------
def test_duplicate_key_in_the_body_is_refused(tmp_path):
    bpnet.Network([3, 4, 2], activation="tanh", rng=0).save(tmp_path / "m.npz")
    body, arrays = _parts(tmp_path / "m.npz")
    text = json.dumps({"body": body, "sha256": _signed(body)})
    # a second "activation": a last-wins reader sees relu, a first-wins reader tanh;
    # the digest is taken over the last-wins body (what json.loads returned before)
    relu = json.loads(json.dumps(body))
    relu["network"]["activation"] = "relu"
    forged = text.replace('"activation": "tanh"', '"activation": "tanh", "activation": "relu"')
    forged = forged.replace(_signed(body), _signed(relu))
    assert json.loads(forged)["body"]["network"]["activation"] == "relu"
    _write_raw(tmp_path / "d.npz", forged.encode(), arrays)
    with pytest.raises(ModelFileError, match="key 'activation' appears twice in one object"):
        bpnet.load(tmp_path / "d.npz")


def test_duplicate_body_at_the_top_level_is_refused(tmp_path):
    bpnet.Network([3, 2], rng=0).save(tmp_path / "m.npz")
    body, arrays = _parts(tmp_path / "m.npz")
    good = json.dumps({"body": body, "sha256": _signed(body)})
    other = json.loads(json.dumps(body))
    other["network"]["lam"] = 5.0
    forged = '{"body": ' + json.dumps(other) + ", " + good[1:]
    _write_raw(tmp_path / "d.npz", forged.encode(), arrays)
    with pytest.raises(ModelFileError, match="key 'body' appears twice"):
        bpnet.load(tmp_path / "d.npz")


@pytest.mark.parametrize("respell", ["indent", "escape", "number"])
def test_metadata_spelled_other_than_bpnet_writes_it_is_refused(tmp_path, respell):
    bpnet.Network([3, 2], lam=0.5, rng=0).save(tmp_path / "m.npz")
    body, arrays = _parts(tmp_path / "m.npz")
    doc = {"body": body, "sha256": _signed(body)}
    text = {
        "indent": json.dumps(doc, indent=1),
        "escape": json.dumps(doc).replace('"sigmoid"', '"\\u0073igmoid"', 1),
        "number": json.dumps(doc).replace('"lam": 0.5', '"lam": 5e-1'),
    }[respell]
    assert text != json.dumps(doc) and json.loads(text) == doc  # same document, other bytes
    _write_raw(tmp_path / "r.npz", text.encode(), arrays)
    with pytest.raises(ModelFileError, match="not in the encoding bpnet writes"):
        bpnet.load(tmp_path / "r.npz")
    _write_raw(tmp_path / "ok.npz", json.dumps(doc).encode(), arrays)  # the control
    assert bpnet.load(tmp_path / "ok.npz").lam == 0.5


# -- 12. the valid-looking bomb ---------------------------------------------------------
def _bomb(path, sizes, template):
    """A valid model file of an all-zero network ``sizes``: a few hundred kB of
    deflated zeros (the theta entry is streamed, never held in memory)."""
    bpnet.Network([3, 2], rng=0).save(template)
    body, arrays = _parts(template)
    P = bpnet.n_params(sizes)
    digest = hashlib.sha256()
    chunk = bytes(1 << 20)
    for start in range(0, 8 * P, len(chunk)):
        digest.update(chunk[: min(len(chunk), 8 * P - start)])
    body["network"].update(layer_sizes=list(sizes), n_params=P)
    body["arrays"]["theta"] = {"dtype": "<f8", "shape": [P], "sha256": digest.hexdigest()}
    meta = json.dumps({"body": body, "sha256": _signed(body)}).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("theta.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (P,)})
            for start in range(0, 8 * P, len(chunk)):
                f.write(chunk[: min(len(chunk), 8 * P - start)])
        for name, a in (("metadata", np.frombuffer(meta, np.uint8)),
                        ("loss_history", arrays["loss_history"])):
            with z.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, a)
    return P


def test_a_small_file_describing_a_huge_network_is_refused_before_decompressing(tmp_path):
    sizes = [1000, 34000, 1]  # 34 million parameters: 272 MB > 256 MiB
    P = _bomb(tmp_path / "bomb.npz", sizes, tmp_path / "t.npz")
    assert os.path.getsize(tmp_path / "bomb.npz") < 1 << 20 and 8 * P > DEFAULT_MAX_BYTES
    tracemalloc.start()
    try:
        for load in (bpnet.load, read_metadata):
            with pytest.raises(ModelFileError, match=r"declare \d+ bytes .*max_bytes=268435456 "
                                                     r".*bpnet\.load\(path, max_bytes=\d+\)"):
                load(tmp_path / "bomb.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # nothing was decompressed


def test_max_bytes_bounds_a_load_and_can_be_raised(tmp_path):
    net = bpnet.Network([30, 40, 5], rng=0)
    net.save(tmp_path / "m.npz")
    need = net.theta.nbytes
    with pytest.raises(ModelFileError, match=f"max_bytes={need}"):
        bpnet.load(tmp_path / "m.npz", max_bytes=need)
    loaded = bpnet.load(tmp_path / "m.npz", max_bytes=need + (1 << 16))
    assert loaded.theta.tobytes() == net.theta.tobytes()
    assert bpnet.load(tmp_path / "m.npz", max_bytes=None).theta.tobytes() == net.theta.tobytes()
    for bad in (-1, 1.5, "10", True):
        with pytest.raises(ValueError, match="max_bytes must be an int >= 0 or None"):
            bpnet.load(tmp_path / "m.npz", max_bytes=bad)


def test_save_of_a_model_above_the_default_limit_still_verifies(tmp_path, monkeypatch):
    # the write path reads its own file back without the bound
    from bpnet import _modelfile

    monkeypatch.setattr(_modelfile.read, "__kwdefaults__", {"max_bytes": 1024})
    net = bpnet.Network([30, 40, 5], rng=0)
    net.save(tmp_path / "m.npz")
    with pytest.raises(ModelFileError, match="max_bytes=1024"):
        bpnet.load(tmp_path / "m.npz", max_bytes=1024)
    assert bpnet.load(tmp_path / "m.npz", max_bytes=None).theta.tobytes() == net.theta.tobytes()


# -- 9. symlinks planted by another user ----------------------------------------------------
OTHER_UID = 54321  # a uid no one on the test machine uses

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="making a second user's link needs root (os.lchown)")


@pytest.fixture
def shared_tmp(tmp_path):
    """A sticky world-writable directory, as /tmp."""
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o1777)
    return d


@needs_root
@pytest.mark.parametrize("where", ["file", "directory"])
def test_save_refuses_a_link_planted_by_another_user(tmp_path, shared_tmp, where):
    victim = tmp_path / "victim.npz"
    bpnet.Network([3, 2], rng=0).save(victim)
    before = victim.read_bytes()
    if where == "file":  # /tmp/model.npz -> the victim's file
        link = shared_tmp / "model.npz"
        os.symlink(victim, link)
        dest = link
    else:  # /tmp/out -> the victim's directory
        link = shared_tmp / "out"
        os.symlink(tmp_path, link)
        dest = link / "victim.npz"
    os.lchown(link, OTHER_UID, OTHER_UID)
    with pytest.raises(PermissionError, match=rf"symbolic link owned by uid {OTHER_UID}, not "
                                              r"by you \(uid 0\) or root; refusing to follow"):
        bpnet.Network([3, 2], rng=1).save(dest)
    assert victim.read_bytes() == before and os.path.islink(link)
    assert sorted(os.listdir(tmp_path)) == ["shared", "victim.npz"]  # no temporary left
    with pytest.raises(PermissionError, match="refusing to follow"):  # every save path
        bpnet.save(bpnet.Network([3, 2], rng=1), dest)
    assert victim.read_bytes() == before


@needs_root
def test_save_follows_the_callers_own_link_in_a_shared_directory(tmp_path, shared_tmp):
    target = tmp_path / "mine.npz"
    bpnet.Network([3, 2], rng=0).save(target)
    os.symlink(target, shared_tmp / "mine.npz")  # owned by the caller (root)
    net = bpnet.Network([3, 2], rng=1)
    net.save(shared_tmp / "mine.npz")
    assert os.path.islink(shared_tmp / "mine.npz")
    assert bpnet.load(target).theta.tobytes() == net.theta.tobytes()


def test_save_follows_the_callers_own_link_chain(tmp_path):
    (tmp_path / "sub").mkdir()
    os.symlink("sub", tmp_path / "dirlink")
    os.symlink("dirlink/m.npz", tmp_path / "l1.npz")
    os.symlink("l1.npz", tmp_path / "l2.npz")
    net = bpnet.Network([3, 2], rng=1)
    net.save(tmp_path / "l2.npz")
    assert bpnet.load(tmp_path / "sub" / "m.npz").theta.tobytes() == net.theta.tobytes()
    assert os.path.islink(tmp_path / "l2.npz") and os.path.islink(tmp_path / "l1.npz")
    os.symlink("loop.npz", tmp_path / "loop.npz")
    with pytest.raises(OSError, match="too many levels of symbolic links"):
        net.save(tmp_path / "loop.npz")
