"""The per-step split of a mini-batch fit (not a test): how much of an epoch is
the core's calls and how much the Python loop around them.

Each case fits ``Network`` for one epoch on one thread, timing the epoch loop
(``bpnet.optimize._epochs``) in thread CPU time, which a busy machine
stretches less than wall time. One more fit records the loop's core calls
(the cost and gradient of each batch, the fused update); replaying exactly
those calls in a bare loop gives the core's time. The difference, per step,
is the Python the loop costs (on the full batch, one step per epoch, it
includes the epoch's shuffle of the row order).

    python bench/step_profile.py [--reps 15] [--cases D,N64,Nfull]

Cases: D ``[784, 128, 10]`` relu and N64 ``[4, 32, 16, 4]`` tanh, batches of
64 rows; Nfull the narrow net on the full batch (one step per epoch); 10,000
rows, Adam and SGD, float32 and float64.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import bpnet
from bpnet import _runtime, optimize

CASES = {"D": ((784, 128, 10), "relu", 64), "N64": ((4, 32, 16, 4), "tanh", 64),
         "Nfull": ((4, 32, 16, 4), "tanh", 10_000)}
M = 10_000
FACTORIES = ("batch_cost_grad", "adam_stepper", "sgd_stepper")  # bpnet._runtime's bound calls


def recorded_calls(fit):
    """The core calls (bound callable, arguments) of one run of ``fit``, in order."""
    calls = []
    real = {name: getattr(_runtime, name) for name in FACTORIES}

    def recording(factory):
        def make(*args, **kwargs):
            fn = factory(*args, **kwargs)

            def call(*a):
                calls.append((fn, a))
                return fn(*a)
            return call
        return make

    for name, factory in real.items():
        setattr(_runtime, name, recording(factory))
    try:
        fit()
    finally:
        for name, factory in real.items():
            setattr(_runtime, name, factory)
    return calls


def epoch_time(fit):
    """Thread CPU seconds of the epoch loop of one run of ``fit``."""
    real, spent = optimize._epochs, []

    def timed(*args, **kwargs):
        t0 = time.thread_time()
        try:
            return real(*args, **kwargs)
        finally:
            spent.append(time.thread_time() - t0)

    optimize._epochs = timed
    try:
        fit()
    finally:
        optimize._epochs = real
    return spent[0]


def replay_time(calls):
    t0 = time.thread_time()
    for fn, args in calls:
        fn(*args)
    return time.thread_time() - t0


def profile(case, dtype, solver, reps):
    sizes, activation, batch = CASES[case]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((M, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], M)

    def fit():
        net = bpnet.Network(list(sizes), activation=activation, output="softmax", lam=1e-4,
                            rng=0, dtype=dtype, n_threads=1)
        net.fit(X, y, solver=solver, max_iter=1, batch_size=batch, tol=0)

    fit()  # warm: imports, workspaces, pages of X
    loop = min(epoch_time(fit) for _ in range(reps))
    calls = recorded_calls(fit)
    core = min(replay_time(calls) for _ in range(reps))
    steps = -(-M // batch)
    return loop, core, steps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args(argv)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"core build {_runtime.active_build()}; one thread; thread CPU time, best of "
          f"{args.reps}")
    print(f"{'case':<22}{'epoch loop ms':>14}{'core calls ms':>14}{'steps':>7}"
          f"{'Python us/step':>16}")
    for case in args.cases.split(","):
        for dtype in ("float32", "float64"):
            for solver in ("adam", "sgd"):
                loop, core, steps = profile(case, dtype, solver, args.reps)
                print(f"{f'{case} {dtype} {solver}':<22}{loop * 1e3:>14.2f}{core * 1e3:>14.2f}"
                      f"{steps:>7}{(loop - core) / steps * 1e6:>16.1f}", flush=True)


if __name__ == "__main__":
    main()
