"""The command line's hostile cases, each through bpnet.cli.main (run in a temporary
directory).

Run by test_reliability_attacks.py::cli_results."""

import contextlib
import io
import os
import time

import numpy as np
from childlib import report

import bpnet
from bpnet.cli import main

rng = np.random.default_rng(0)
X = rng.standard_normal((60, 4))
y = (X[:, 0] > 0).astype(int)
np.savetxt("d.csv", np.c_[X, y], delimiter=",", fmt="%.6f")
with open("long.csv", "w") as f:
    f.write("a,b\n" + "1" * 200000 + ",1\n")
with open("bad.npz", "wb") as f:
    np.savez(f, X=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
np.savez("diverge.npz", X=X * 1e5, y=y)
bpnet.Network([4, 3, 2], rng=0).save("net.npz")
with open("s.csv", "w") as f:
    f.write("a,b,c,d,label\n1,2,3,4,x\n2,3,4,5,y\n")
os.mkdir("adir")
os.mkfifo("fifo.npz")  # never the real /dev/null: a buggy save as root would replace it
cases = {
    "hidden huge": ["train", "--hidden", "1000000000"],
    "long field": ["train", "long.csv"],
    "gradcheck examples": ["gradcheck", "--examples", "1000000000"],
    "diverge early stop": ["train", "diverge.npz", "--solver", "sgd", "--learning-rate", "1e30",
                           "-o", "o.npz"],
    "object npz": ["train", "bad.npz"],
    "output dir missing": ["train", "d.csv", "-o", "no/such/dir/m.npz", "--iterations", "100000"],
    "output is dir": ["train", "d.csv", "-o", "adir"],
    "output device": ["train", "d.csv", "-o", "fifo.npz"],
    "plot onto file": ["train", "d.csv", "--plot", "d.csv/x", "--iterations", "100000"],
    "threads": ["train", "d.csv", "--threads", "5000"],
    "seed": ["train", "d.csv", "--seed", "-5"],
    "lambda nan": ["train", "d.csv", "--lambda", "nan"],
    "lr with lbfgs": ["train", "d.csv", "--learning-rate", "0.1"],
    "batch with cg": ["train", "d.csv", "--solver", "cg", "--batch-size", "10"],
    "patience without validation": ["train", "d.csv", "--patience", "5",
                                    "--validation-split", "0"],
    "evaluate string labels": ["evaluate", "net.npz", "s.csv"],
    "predict to missing dir": ["predict", "net.npz", "d.csv", "-o", "no/dir/p.csv"],
    "info missing": ["info", "nope.npz"],
    "info on csv": ["info", "d.csv"],
    "evaluate on dir": ["evaluate", "net.npz", "adir"],
}
res = {}
for label, argv in cases.items():
    err = io.StringIO()
    t = time.time()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv + (["-q"] if argv[0] == "train" else []))
        except SystemExit as e:
            code = e.code
        except BaseException as e:
            code = "escaped " + type(e).__name__
    res[label] = [code, err.getvalue().splitlines(), time.time() - t]
report(**res)
