"""Attacks on the compiled core, each in its own subprocess under a timeout.

A crash (a signal, ``terminate``, libgomp ending the process) or a hang fails
the test instead of killing the run. What each child prints on its last line
is the outcome; the test checks it is one of the allowed ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from loadaware import generous

PRELUDE = """
import os, sys, threading, time, resource
import numpy as np
import bpnet
from bpnet import _native
core = _native.core
"""


def run_child(code: str, *, env: dict[str, str] | None = None, timeout: float | None = None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        env=full_env, capture_output=True, text=True,
        timeout=generous(60) if timeout is None else timeout,
    )


def outcome(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (
        f"child died: returncode {r.returncode}\nstdout: {r.stdout[-2000:]}\n"
        f"stderr: {r.stderr[-2000:]}"
    )
    return r.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("output", ["softmax", "identity", "sigmoid"])
def test_labels_changed_by_another_thread_never_crash(output):
    """Labels set out of range (or negative) after validation, while the core runs
    without the GIL: a ValueError or a result, never an out-of-bounds read."""
    r = run_child(f"""
        sizes = [20, 30, 5]
        rng = np.random.default_rng(0)
        X = rng.random((20000, 20)); y = rng.integers(0, 5, 20000)
        theta = bpnet.random_theta(sizes, rng=0)
        stop = False
        def attack():
            k = 0
            while not stop:
                y[k % y.size] = (-(10 ** 12) if k % 2 else 10 ** 12)
                y[(k - 1) % y.size] = 1
                k += 1
        t = threading.Thread(target=attack, daemon=True); t.start()
        errors = results = 0
        deadline = time.time() + 3
        try:
            while time.time() < deadline:
                try:
                    bpnet.cost_grad(theta, sizes, X, y, lam=1.0, activation="sigmoid",
                                    output={output!r}, n_threads=2)
                    results += 1
                except ValueError as e:
                    assert "class index" in str(e), e
                    errors += 1
        finally:
            stop = True; t.join()
        print("ok", results, errors)
    """)
    assert outcome(r).startswith("ok")


def test_rows_changed_by_another_thread_never_crash():
    r = run_child("""
        sizes = [20, 30, 5]
        rng = np.random.default_rng(0)
        X = rng.random((5000, 20)); y = rng.integers(0, 5, 5000)
        rows = np.arange(4000, dtype=np.int64)
        theta = bpnet.random_theta(sizes, rng=0)
        ws = core.Workspace(); grad = np.empty_like(theta)
        stop = False
        def attack():
            k = 0
            while not stop:
                rows[k % rows.size] = 10 ** 12 if k % 2 else -5
                rows[(k - 1) % rows.size] = 3
                k += 1
        t = threading.Thread(target=attack, daemon=True); t.start()
        deadline = time.time() + 3
        try:
            while time.time() < deadline:
                try:
                    core.cost_grad(theta, sizes, X, y, 1.0, "sigmoid", "softmax", None, grad,
                                   rows, 2, ws)
                except ValueError as e:
                    assert "rows[" in str(e), e
        finally:
            stop = True; t.join()
        print("ok")
    """)
    assert outcome(r) == "ok"


@pytest.mark.parametrize("fn", ["cost_grad", "predict", "adam_update"])
def test_a_huge_omp_num_threads_is_capped(fn):
    """OMP_NUM_THREADS=5000 must not make libgomp try (and fail) to start 5000 threads."""
    r = run_child(f"""
        sizes = [64, 256, 10]
        rng = np.random.default_rng(0)
        X = rng.random((20000, 64)); y = rng.integers(0, 10, 20000)
        theta = bpnet.random_theta(sizes, rng=0)
        assert core.max_threads() <= os.cpu_count(), core.max_threads()
        if {fn!r} == "cost_grad":
            bpnet.cost_grad(theta, sizes, X, y, lam=1.0)
        elif {fn!r} == "predict":
            bpnet.predict(theta, sizes, X)
        else:
            big = np.ones(200_000)
            core.adam_update(big, np.zeros_like(big), np.zeros_like(big), big, 0.9, 0.999,
                             1e-3, 1e-8)
            core.adam_update(big, np.zeros_like(big), np.zeros_like(big), big, 0.9, 0.999,
                             1e-3, 1e-8, n_threads=1)
        print("ok")
    """, env={"OMP_NUM_THREADS": "5000"})
    assert outcome(r) == "ok"


@pytest.mark.parametrize("stack", ["16K", "64K"])
def test_small_omp_stacks_do_not_crash(stack):
    r = run_child("""
        sizes = [1024, 1024, 10]
        rng = np.random.default_rng(0)
        X = rng.random((3000, 1024)); y = rng.integers(0, 10, 3000)
        theta = bpnet.random_theta(sizes, rng=0)
        J, g = bpnet.cost_grad(theta, sizes, X, y, lam=1.0, n_threads=2)
        bpnet.predict(theta, sizes, X, n_threads=2)
        print("ok", np.isfinite(J))
    """, env={"OMP_STACKSIZE": stack})
    assert outcome(r) == "ok True"


def test_little_address_space_gives_memory_error_or_a_result():
    """Under an address-space limit, calls on two threads either work or raise
    MemoryError: never 'libgomp: Thread creation failed' (exit status 1) or an
    abort from an allocation failure inside a parallel region."""
    r = run_child("""
        sizes = [300, 400, 10]
        rng = np.random.default_rng(0)
        X = rng.random((4000, 300)); y = rng.integers(0, 10, 4000)
        theta = bpnet.random_theta(sizes, rng=0)
        def vm():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmSize"):
                        return int(line.split()[1]) * 1024
        base = vm()
        outcomes = {}
        for extra_mib in (1, 4, 16, 64, 256):
            limit = base + extra_mib * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
            try:
                bpnet.cost_grad(theta, sizes, X, y, lam=1.0, n_threads=2)
                outcomes[extra_mib] = "result"
            except MemoryError:
                outcomes[extra_mib] = "MemoryError"
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)
        print("ok", outcomes)
    """)
    assert outcome(r).startswith("ok")


def test_ctrl_c_stops_a_long_core_call_inside_the_call():
    """SIGINT during one long cost_grad raises KeyboardInterrupt from inside the
    call: the core polls for it between row blocks. Measured in CPU time, not
    wall time (the test must hold with every CPU busy): a call interrupted after
    a tenth of its work returns having done well under half of it. The wall-
    clock latency is a benchmark: bench/latency.py."""
    r = run_child("""
        import json, signal
        signal.signal(signal.SIGINT, signal.default_int_handler)  # also under a background shell
        sizes = [784, 1024, 1024, 10]
        rng = np.random.default_rng(0)
        m, m_small = 40000, 2000
        X = rng.random((m, 784)); y = rng.integers(0, 10, m)
        theta = bpnet.random_theta(sizes, rng=0)
        cpu = time.process_time  # every thread of this process
        c0 = cpu()
        bpnet.cost_grad(theta, sizes, X[:m_small], y[:m_small], lam=1.0, n_threads=1)
        full = (cpu() - c0) * m / m_small  # the CPU time of the whole call
        start = cpu()
        def interrupt():  # Ctrl-C once a tenth of the call's work is done
            while cpu() - start < 0.1 * full:
                time.sleep(0.002)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            bpnet.cost_grad(theta, sizes, X, y, lam=1.0, n_threads=1)
            outcome = "finished"
        except KeyboardInterrupt:
            outcome = "interrupted"
        print(json.dumps({"outcome": outcome, "done": (cpu() - start) / full}))
    """, timeout=generous(120))
    report = json.loads(outcome(r))
    assert report["outcome"] == "interrupted", report
    # a call that ignored SIGINT until its end would have done all of its work
    assert report["done"] < 0.5, report


@pytest.mark.parametrize("stalled", [0, 1])
def test_leaves_taken_from_a_slow_worker_give_the_same_bits(stalled):
    """A worker held back (as by a busy core) has leaves of its range taken by the
    other: the result is bitwise what one thread computes, for dense and sparse X."""
    r = run_child("""
        import scipy.sparse as sp
        for sizes, m in (([40, 30, 5], 20000), ([784, 64, 10], 3000)):
            rng = np.random.default_rng(0)
            X = rng.random((m, sizes[0])) * (rng.random((m, sizes[0])) < 0.3)
            y = rng.integers(0, sizes[-1], m)
            theta = bpnet.random_theta(sizes, rng=0)
            for Xk in (X, sp.csr_matrix(X)):
                J1, g1 = bpnet.cost_grad(theta, sizes, Xk, y, lam=1.0, n_threads=1)
                for _ in range(3):
                    J2, g2 = bpnet.cost_grad(theta, sizes, Xk, y, lam=1.0, n_threads=2)
                    assert J1 == J2 and np.array_equal(g1, g2), (sizes, type(Xk))
        print("ok", core.max_threads())
    """, env={"BPNET_TEST_STALL_WORKER": str(stalled)})
    out = outcome(r)
    assert out.startswith("ok")
    if out != "ok 2":
        pytest.skip(f"needs 2 usable CPUs to run 2 workers; {out}")
