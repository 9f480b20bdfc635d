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
from pathlib import Path

import pytest
from loadaware import generous

CHILDREN = Path(__file__).resolve().parent / "children"  # the attacks' code


def run_child(name: str, *args: str, env: dict[str, str] | None = None,
              timeout: float | None = None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(CHILDREN / f"{name}.py"), *args],
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
    r = run_child("core_labels_race", output)
    assert outcome(r).startswith("ok")


def test_rows_changed_by_another_thread_never_crash():
    r = run_child("core_rows_race")
    assert outcome(r) == "ok"


@pytest.mark.parametrize("fn", ["cost_grad", "predict", "adam_update"])
def test_a_huge_omp_num_threads_is_capped(fn):
    """OMP_NUM_THREADS=5000 must not make libgomp try (and fail) to start 5000 threads."""
    r = run_child("core_huge_omp", fn, env={"OMP_NUM_THREADS": "5000"})
    assert outcome(r) == "ok"


@pytest.mark.parametrize("stack", ["16K", "64K"])
def test_small_omp_stacks_do_not_crash(stack):
    r = run_child("core_small_stacks", env={"OMP_STACKSIZE": stack})
    assert outcome(r) == "ok True"


def test_little_address_space_gives_memory_error_or_a_result():
    """Under an address-space limit, calls on two threads either work or raise
    MemoryError: never 'libgomp: Thread creation failed' (exit status 1) or an
    abort from an allocation failure inside a parallel region."""
    r = run_child("core_address_space")
    assert outcome(r).startswith("ok")


def test_ctrl_c_stops_a_long_core_call_inside_the_call():
    """SIGINT during one long cost_grad raises KeyboardInterrupt from inside the
    call: the core polls for it between row blocks. Measured in CPU time, not
    wall time (the test must hold with every CPU busy): a call interrupted after
    a tenth of its work returns having done well under half of it. The wall-
    clock latency is a benchmark: bench/latency.py."""
    r = run_child("core_ctrl_c", timeout=generous(120))
    report = json.loads(outcome(r))
    assert report["outcome"] == "interrupted", report
    # a call that ignored SIGINT until its end would have done all of its work
    assert report["done"] < 0.5, report


@pytest.mark.parametrize("stalled", [0, 1])
def test_leaves_taken_from_a_slow_worker_give_the_same_bits(stalled):
    """A worker held back (as by a busy core) has leaves of its range taken by the
    other, and rows of the finalize and slices of the Adam and SGD updates: the
    result is bitwise what one thread computes, for dense and sparse X and for
    the updates."""
    r = run_child("core_stalled_worker", env={"BPNET_TEST_STALL_WORKER": str(stalled)})
    out = outcome(r)
    assert out.startswith("ok")
    if out != "ok 2":
        pytest.skip(f"needs 2 usable CPUs to run 2 workers; {out}")
