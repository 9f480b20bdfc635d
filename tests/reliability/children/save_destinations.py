"""Save through a symlink, onto a file's mode, a read-only file, a directory (run in a
temporary directory).

Run by test_reliability_attacks.py::test_save_destinations_symlinks_modes_read_only."""

import os
import stat

from childlib import outcome, report

import bpnet

net = bpnet.Network([4, 3, 2], rng=0)
net.save("target.npz")
os.symlink("target.npz", "link.npz")
other = bpnet.Network([4, 3, 2], rng=1)
res = {"link": outcome(lambda: other.save("link.npz"))}
res["still_link"] = os.path.islink("link.npz")
res["target_updated"] = bpnet.load("target.npz").theta.tobytes() == other.theta.tobytes()
net.save("mode.npz")
os.chmod("mode.npz", 0o640)
res["mode_save"] = outcome(lambda: other.save("mode.npz"))
res["mode"] = oct(stat.S_IMODE(os.stat("mode.npz").st_mode))
os.umask(0o022)
other.save("new.npz")
res["new_mode"] = oct(stat.S_IMODE(os.stat("new.npz").st_mode))
os.chmod("mode.npz", 0o444)
before = open("mode.npz", "rb").read()
res["read_only"] = outcome(lambda: net.save("mode.npz"))
res["read_only_intact"] = open("mode.npz", "rb").read() == before
os.mkdir("adir")
res["dir"] = outcome(lambda: net.save("adir"))
res["files"] = sorted(os.listdir("."))
report(**res)
