"""After kill_9_during_save.py: the old file loads and a new save cleans the temporary.

Run by test_reliability_attacks.py::test_kill_9_during_save_leaves_no_lasting_temporary."""

import os

from childlib import outcome, report

import bpnet

res = {"load_old": outcome(lambda: bpnet.load("m.npz"))}
bpnet.Network([4, 3, 2], rng=5).save("m.npz")
res["files"] = sorted(os.listdir("."))
report(**res)
