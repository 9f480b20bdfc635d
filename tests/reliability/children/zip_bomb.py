"""Zip bombs as model files (with and without a self-consistent lie in the metadata):
rejected before decompressing (run in a temporary directory).

Run by test_reliability_attacks.py::test_zip_bomb_is_rejected_before_decompressing."""

import hashlib
import json
import os
import resource
import time
import zipfile

import numpy as np
from childlib import outcome, report

import bpnet


def _canonical(b):  # the format's digest rule
    return json.dumps(b, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


net = bpnet.Network([4, 3, 2], rng=0)
net.save("good.npz")
with np.load("good.npz") as f:
    arrays = {k: f[k] for k in f.files}
body = json.loads(arrays["metadata"].tobytes())["body"]


def bomb(path, claim_in_metadata):
    n = 16_000_000  # 128 MB of zeros in a file of 0.13 MB
    b = json.loads(json.dumps(body))
    if claim_in_metadata:  # a self-consistent lie: digest recomputed
        b["arrays"]["theta"]["shape"] = [n]
    meta = json.dumps({"body": b, "sha256": hashlib.sha256(_canonical(b)).hexdigest()})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k, a in arrays.items():
            with z.open(k + ".npy", "w", force_zip64=True) as f:
                if k == "metadata":
                    np.lib.format.write_array(f, np.frombuffer(meta.encode(), np.uint8))
                elif k == "theta":
                    np.lib.format.write_array_header_1_0(
                        f, {"descr": "<f8", "fortran_order": False, "shape": (n,)})
                    zero = bytes(1 << 20)
                    for _ in range(123):
                        f.write(zero)
                else:
                    np.lib.format.write_array(f, a)


res = {}
for claim in (False, True):
    bomb("bomb.npz", claim)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.time()
    res[f"claim_{claim}"] = [outcome(lambda: bpnet.load("bomb.npz")), time.time() - t,
                             os.path.getsize("bomb.npz")]
    res[f"rss_{claim}"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0)
report(**res)
