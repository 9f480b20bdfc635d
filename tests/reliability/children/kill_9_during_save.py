"""Save once, then die by SIGKILL in the middle of the second save's write (run in a
temporary directory). Prints no RESULT: the test checks the signal and the files left.

Run by test_reliability_attacks.py::test_kill_9_during_save_leaves_no_lasting_temporary."""

import os
import signal

import childlib  # noqa: F401  (what every child sets up: warnings, Ctrl-C)
import numpy

import bpnet

net = bpnet.Network([4, 3, 2], rng=0)
net.save("m.npz")


def dying_savez(f, **arrays):
    f.write(b"PK partial")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)


numpy.savez = dying_savez
net.save("m.npz")
