"""A FIFO and a device node as model file, data file and save target (run in a temporary
directory, as root).

Run by test_reliability_attacks.py::test_fifo_and_devices_never_block_or_get_replaced."""

import os
import stat

from childlib import outcome, report

import bpnet
from bpnet.cli import main
from bpnet.persist import read_metadata

os.mkfifo("model.npz")
DEVNULL = "null"
os.mknod(DEVNULL, stat.S_IFCHR | 0o666, os.makedev(1, 3))
net = bpnet.Network([3, 2], rng=0)
res = {
    "load": outcome(lambda: bpnet.load("model.npz")),
    "read_metadata": outcome(lambda: read_metadata("model.npz")),
    "info": main(["info", "model.npz"]),
    "gradcheck": main(["gradcheck", "--model", "model.npz"]),
    "save_fifo": outcome(lambda: net.save("model.npz")),
    # never the real /dev/null: a buggy save run as root would replace it for
    # the whole machine; a node of the same device in the test's directory
    "save_devnull": outcome(lambda: net.save(DEVNULL)),
    "fifo_kept": __import__("stat").S_ISFIFO(os.stat("model.npz").st_mode),
    "devnull_kept": __import__("stat").S_ISCHR(os.stat(DEVNULL).st_mode),
}
os.mkfifo("data.csv")
res["train_on_fifo"] = main(["train", "data.csv", "-q"])
report(**res)
