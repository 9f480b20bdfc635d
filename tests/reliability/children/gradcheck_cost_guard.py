"""The gradient check refuses a costly net or m, and samples when asked.

Run by test_reliability_attacks.py::test_gradcheck_refuses_with_the_cost_or_samples."""

import contextlib
import io
import time

import numpy as np
from childlib import outcome, report

import bpnet
from bpnet.cli import main

err = io.StringIO()
t = time.time()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    refused = main(["gradcheck", "--layers", "300,300,10"])
    refused_m = main(["gradcheck", "--examples", "1000000000"])
t_refuse = time.time() - t
out = io.StringIO()
with contextlib.redirect_stdout(out):
    sampled = main(["gradcheck", "--layers", "300,300,10", "--sample", "60"])
py = outcome(lambda: bpnet.check_gradients((300, 300, 10)))
rep = bpnet.check_gradients((300, 300, 10), sample=40, lam=1.0)
report(refused=refused, refused_m=refused_m, t_refuse=t_refuse,
       err=err.getvalue().splitlines(), sampled=sampled, py=py,
       n_checked=int(rep.checked.size), ok=rep.ok(),
       nan=int(np.isnan(rep.numerical).sum()), P=int(rep.numerical.size))
