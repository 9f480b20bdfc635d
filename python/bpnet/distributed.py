"""Data-parallel full-batch training on a Dask cluster, bitwise equal to one process.

The core cuts the m examples into C fixed leaves that depend on m only
(``leaf_starts(m)``: at most 4096 rows each, C = 16 for mid-sized m and
growing with m beyond 16 x 4096 rows), sums each leaf's gradient into its own
buffer and adds the leaf sums in a fixed binary tree (``reduce_tree``) before
it finalizes. This module runs the same leaves, and the same tree, on Dask
workers:

1. **Once per fit**, the leaves are cut into shards of one or more whole,
   consecutive leaves, one shard per worker (``min(W, C)`` shards: with more
   workers than leaves the extra workers idle, and a warning says so). Each
   shard is sent once (``client.scatter`` from a NumPy source, or computed on
   the cluster from a dask array), made C-contiguous and aligned once on
   arrival, and pinned as a future for the whole fit. It is never re-sent
   (except to replace a lost worker).
2. **Each step** sends ``theta`` (P values) to the workers; each worker runs
   ``partial_sums`` over its leaves with one core ``Workspace`` per worker
   thread and reduces them with ``reduce_tree`` to O(log C) tree nodes. The
   shard results are then merged by worker tasks in a balanced pairwise tree
   over the shards, in leaf order (each merge runs on the left operand's
   worker, so the right operand's nodes travel worker to worker), and the
   driver receives only the root: one gradient (P,), the loss and the
   weight sums. Every result carries the leaf range and the row count it
   covers; a merge refuses operands that are not adjacent and the driver
   refuses a root that does not cover leaves [0, C) and m rows, so every leaf
   is counted exactly once. The driver calls ``finalize``; the optimizer
   (SciPy CG or L-BFGS-B, via :func:`bpnet.optimize.minimize_full_batch`)
   runs on the driver.

Any grouping of contiguous leaf runs reduced by ``reduce_tree`` gives the same
bits (each addition has the same two operands whoever performs it), so the
result is bitwise equal to ``cost_grad`` in one process for any number of
workers, on the same ISA build of the core: the builds (baseline, avx2,
avx512) differ in the last bits, so a fit runs one build everywhere. The
driver asks each worker which builds it can run and picks its own
``BPNET_ISA`` if all can, else the highest build common to all
(:func:`choose_build`); every task and the driver's ``finalize`` run on it
(:func:`bpnet._runtime.using_build`).

Worker failure: if a step fails because a worker died (its shard was lost,
its task was cancelled or the connection closed) or did not answer within
the step timeout, the lost shards are re-sent from the client's source to a
live worker and the *same* step is evaluated again; since the leaves and the
tree do not change, the gradient, and so the whole trajectory, stays bitwise
identical. After ``max_retries`` failed attempts of one step, or with no live
worker left, the fit stops with :class:`WorkerLostError`, the network keeps
the last good parameters and the error carries them in ``partial_result``.
So it does when the client is closed mid-fit, or loses its scheduler for
longer than ``scheduler_timeout`` (a killed scheduler). A shard that would
take a worker over its ``memory_limit``, and a dask array with unknown chunk
sizes, are refused before anything is sent, naming what to change.

Mini-batch solvers are not distributed: see ``docs/distributed.md`` for the
measurements (a Dask round trip costs more than a whole mini-batch step).

Dask is optional: this module imports ``distributed`` lazily and the rest of
bpnet never imports it.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _params as P
from . import _runtime, _warn
from . import functional as F
from ._about import install_hint
from ._inputs import prepare_weight, prepare_X, prepare_y
from .optimize import StepFailed

__all__ = ["WORKER_ENV", "DistributedObjective", "WorkerLostError", "is_dask_array"]

# Environment for Dask worker processes (``LocalCluster(env=WORKER_ENV)`` or the
# ``distributed.nanny.pre-spawn-environ`` config). Dask's default
# MALLOC_TRIM_THRESHOLD_=65536 also turns off glibc's adaptive mmap threshold,
# so every per-step buffer above 128 KiB (the leaf sums, the received theta)
# is a fresh mmap whose pages fault in again on each step. Serving buffers up
# to 32 MiB from the heap and trimming only beyond 64 MiB keeps them warm; see
# docs/distributed.md for the measurement.
WORKER_ENV: dict[str, str] = {
    "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20),
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
}


class WorkerLostError(StepFailed):
    """A distributed step could not be completed because workers were lost.

    Attributes
    ----------
    partial_result : FitResult
        Set by the optimizer loop it stopped: the last good parameters and
        the loss history up to the last completed iteration.
    """


# ---------------------------------------------------------------------------
# Worker side: module-level functions, pickled by reference.
# ---------------------------------------------------------------------------
# One core Workspace per worker thread, kept for the worker's lifetime: the
# runtime's thread-local workspace (bpnet._runtime.workspace).


def _worker_threads() -> int:
    """The worker's thread count, within the core's limit (1 outside a worker)."""
    try:
        from distributed import get_worker

        return min(max(1, int(get_worker().state.nthreads)), _runtime.MAX_THREADS)
    except (ImportError, ValueError, AttributeError):
        return 1


def _builtin_dtype(a: np.ndarray) -> np.ndarray:
    """``a`` viewed with NumPy's builtin dtype object (no copy).

    An unpickled array carries an equal but distinct dtype object, and the
    core's dtype check compares dtype objects by identity; a view with the
    builtin descriptor passes it.
    """
    return a.view(np.dtype(a.dtype.str))


def _settle_shard(
    X: Any, y: Any, w: Any, spec: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Make one shard C-contiguous, aligned and of the working dtype (once, on arrival).

    From a NumPy source the driver has already prepared the rows
    (:mod:`bpnet._inputs`), so this copies only if deserialization left a
    buffer unaligned or non-contiguous. From a dask source the rows are
    prepared and checked here, by the same rules, naming the dask row.
    """
    dtype = np.dtype(spec["dtype"])
    if spec["validate"]:
        X = prepare_X(X, spec["n_inputs"], dtype, row0=spec["row0"], source="the dask array")
        y = prepare_y(y, X.shape[0], spec["output"], dtype)
        w = prepare_weight(w, X.shape[0], dtype, positive_sum=False)  # a shard may weigh 0
    X = np.require(X, dtype=dtype, requirements=["C", "A"])
    y = np.require(y, requirements=["C", "A"])
    if w is not None:
        w = np.require(w, dtype=dtype, requirements=["C", "A"])
    return _builtin_dtype(X), _builtin_dtype(y), None if w is None else _builtin_dtype(w)


def _aligned(a: Any) -> Any:
    """``a`` itself when aligned (or not a dense array), else an aligned copy."""
    return np.require(a, requirements=["C", "A"]) if isinstance(a, np.ndarray) else a


def _shard_partial_sums(
    shard: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    theta: np.ndarray,
    layer_sizes: tuple[int, ...],
    activation: str,
    output: str,
    local_starts: np.ndarray,
    chunk_ids: tuple[int, ...],
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-leaf unnormalized sums over one shard (runs on a worker).

    Returns ``(chunk_ids, chunk_grads (k, P), loss (k,), weight (k,), leaf_rows (k,))``.
    """
    # theta arrives in a message frame, and a shard read by the worker itself
    # (zarr, an on-disk dask array) in buffers, that may be unaligned: at most
    # one copy of each, none for an aligned array
    X, y, w = (_aligned(a) for a in shard)
    theta = _builtin_dtype(np.require(theta, requirements=["C", "A"]))
    local_starts = _builtin_dtype(np.require(local_starts, requirements=["C", "A"]))
    k = len(chunk_ids)
    chunk_grads = np.empty((k, theta.shape[0]), dtype=theta.dtype)
    loss, weight = _runtime.partial_sums(
        theta, layer_sizes, X, y, activation, output, w, local_starts, chunk_grads,
        _worker_threads(),
    )
    return chunk_ids, chunk_grads, loss, weight, np.diff(local_starts)


# One shard's (or a merged run of shards') reduced sums, as sent between
# workers and, for the root, to the driver:
#   (leaf0, leaf1, n_rows, nodes)
# covering leaves [leaf0, leaf1) and ``n_rows`` examples; ``nodes`` are the
# reduce_tree nodes [(level, index, grad (P,), loss, weight), ...] in leaf
# order, O(log C) of them (one, the root, once all C leaves are merged).
TreeSums = tuple[int, int, int, list[tuple[int, int, np.ndarray, float, float]]]


def _shard_tree_sums(
    shard: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    theta: np.ndarray,
    layer_sizes: tuple[int, ...],
    activation: str,
    output: str,
    local_starts: np.ndarray,
    leaf0: int,
    n_leaves: int,
    build: str | None = None,
) -> TreeSums:
    """One shard's leaves summed and reduced by the fixed tree (runs on a worker).

    ``local_starts`` (k + 1,) are the shard's leaf boundaries shifted to 0;
    its leaves are ``leaf0 .. leaf0 + k - 1`` of ``n_leaves``. ``build``: the
    fit's ISA build of the core (None: the worker's default).
    """
    k = len(local_starts) - 1
    ids = tuple(range(leaf0, leaf0 + k))
    with _runtime.using_build(build):
        _, grads, loss, weight, leaf_rows = _shard_partial_sums(
            shard, theta, layer_sizes, activation, output, local_starts, ids
        )
        nodes = [(0, c, grads[j], float(loss[j]), float(weight[j])) for j, c in enumerate(ids)]
        return leaf0, leaf0 + k, int(leaf_rows.sum()), _runtime.reduce_tree(nodes, n_leaves)


def _merge_tree_sums(
    left: TreeSums, right: TreeSums, n_leaves: int, build: str | None = None
) -> TreeSums:
    """Merge two adjacent runs of leaves by the fixed tree (runs on a worker),
    on the fit's ISA build ``build`` (None: the worker's default).

    The merge adds into the left operand's buffers (only those: both operands
    are already reduced, so no two of the right operand's nodes are
    siblings), so it works on a copy of them: the stored left result stays
    as computed, and a re-run of this task gives the same bits.

    Raises
    ------
    WorkerLostError
        If the runs are not adjacent (``left`` must end where ``right``
        starts): a leaf would be missing or counted twice.
    """
    a0, a1, n_rows_a, nodes_a = left
    b0, b1, n_rows_b, nodes_b = right
    if a1 != b0:
        raise WorkerLostError(
            f"shard results cover leaves [{a0}, {a1}) and [{b0}, {b1}), which are not "
            "adjacent: a leaf is missing or repeated; refusing a wrong gradient"
        )
    nodes = [
        (lv, i, _builtin_dtype(np.array(g, copy=True)), lo, we) for lv, i, g, lo, we in nodes_a
    ]
    nodes += [
        (lv, i, _builtin_dtype(np.require(g, requirements=["C", "A", "W"])), lo, we)
        for lv, i, g, lo, we in nodes_b
    ]
    with _runtime.using_build(build):
        return a0, b1, n_rows_a + n_rows_b, _runtime.reduce_tree(nodes, n_leaves)


def _root_sums(
    result: TreeSums, C: int, m: int, P: int, dtype: np.dtype
) -> tuple[np.ndarray, float, float]:
    """The sums of a root that covers every leaf [0, C) and m rows exactly once,
    with a gradient (P,) of ``dtype``; WorkerLostError otherwise."""
    leaf0, leaf1, n_rows, nodes = result
    if (leaf0, leaf1) != (0, C):
        raise WorkerLostError(
            f"the reduced sums cover leaves [{leaf0}, {leaf1}); expected [0, {C}): "
            "refusing a wrong gradient"
        )
    if n_rows != m:
        raise WorkerLostError(
            f"the reduced sums were computed over {n_rows} rows; expected m = {m}: "
            "refusing a wrong gradient"
        )
    if len(nodes) != 1 or nodes[0][1] != 0 or (1 << nodes[0][0]) < C:
        raise WorkerLostError(
            f"the reduced sums are {[(n[0], n[1]) for n in nodes]} (level, index) "
            f"nodes; expected the root of a tree of {C} leaves"
        )
    _, _, grad, loss_sum, weight_sum = nodes[0]
    if grad.shape != (P,) or grad.dtype != dtype:
        raise WorkerLostError(
            f"a worker returned a gradient of shape {grad.shape} {grad.dtype}; "
            f"expected ({P},) {dtype}"
        )
    return grad, float(loss_sum), float(weight_sum)


# ---------------------------------------------------------------------------
# Driver side.
# ---------------------------------------------------------------------------
@dataclass
class _Shard:
    index: int
    chunk_ids: tuple[int, ...]
    row0: int  # first row (global)
    row1: int  # one past the last row
    local_starts: np.ndarray  # (k + 1,) leaf boundaries inside the shard
    worker: str = ""
    future: Any = None


# theta travels inside the step's tasks (no extra round trip for a scatter)
# while its copies, one per shard task, total at most this many bytes; beyond,
# it is scattered once per step and replicated to the workers by Dask, so the
# driver sends P values, not W x P.
_INLINE_THETA_BYTES = 1 << 20


class _WorkerGone(Exception):
    """A shard's worker left the cluster (internal; triggers a recovery)."""


def _lost_errors() -> tuple[type[BaseException], ...]:
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    return (
        _WorkerGone,
        concurrent.futures.CancelledError,
        KilledWorker,
        CommClosedError,
        OSError,
        TimeoutError,
        concurrent.futures.TimeoutError,
    )


def _scheduler_address(client: Any) -> str:
    """" at ADDRESS" of the client's scheduler ("" once the client forgot it)."""
    try:
        return f" at {client.scheduler.address}" if client.scheduler.address else ""
    except AttributeError:
        return ""


def _await_scheduler(client: Any, scheduler_timeout: float, step: int) -> None:
    """Return once ``client`` is connected to its scheduler.

    Raises
    ------
    WorkerLostError
        If the client was closed, or lost its scheduler and did not get it
        back within ``scheduler_timeout`` seconds (``step``: for the message).
    """
    t0 = time.monotonic()
    while client.status not in ("running", "closing", "closed"):
        if time.monotonic() - t0 >= scheduler_timeout:
            raise WorkerLostError(
                f"step {step}: lost the connection to the Dask scheduler"
                f"{_scheduler_address(client)} and it did not come back within "
                f"scheduler_timeout={scheduler_timeout:g} s (the scheduler died, or the "
                "network to it is cut)"
            )
        time.sleep(0.05)
    if client.status != "running":
        raise WorkerLostError(
            f"step {step}: the Dask client is {client.status} (client.close() was called "
            f"during the fit, or it lost its scheduler{_scheduler_address(client)} and "
            "gave up reconnecting)"
        )


def _wait_connected(client: Any, future: Any, limit: float | None) -> bool:
    """Wait up to ``limit`` seconds (None: no limit) for ``future``; whether it
    finished. Raises _WorkerGone as soon as the client loses its scheduler
    (tasks submitted while it reconnects would never run)."""
    import distributed

    deadline = None if limit is None else time.monotonic() + limit
    while True:
        left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
        try:
            distributed.wait(future, timeout=max(left, 0.0))
            return True
        except (TimeoutError, concurrent.futures.TimeoutError):
            if client.status != "running":
                raise _WorkerGone(f"the client is {client.status}: it lost its scheduler") from None
            if deadline is not None and time.monotonic() >= deadline:
                return False


def is_dask_array(a: Any) -> bool:
    """Whether ``a`` is a dask array (without importing dask)."""
    return type(a).__module__.startswith("dask.array") and hasattr(a, "to_delayed")


def _unknown_chunks_message(name: str, a: Any) -> str:
    """The error for a dask array whose chunk sizes are unknown ("" if they are known)."""
    if not any(isinstance(d, float) and np.isnan(d) for d in a.shape):
        return ""
    return (
        f"{name} is a dask array with unknown chunk sizes (shape {a.shape}), as one made "
        "from a dask DataFrame (df.values, df.to_dask_array()); bpnet needs each row's "
        f"place to cut its leaves: call {name} = {name}.compute_chunk_sizes() first (one pass "
        "over the data), or make it with df.to_dask_array(lengths=True)"
    )


def _builds_probe() -> Callable[[], tuple[list[str], str]]:
    """A task that tells which core builds its worker can run, and why none if
    bpnet does not load there.

    A nested function travels by value (cloudpickle), so the worker does not
    import bpnet to unpickle it: a worker where bpnet fails to import answers
    with the reason instead of dropping its connection to the scheduler.
    """

    def probe() -> tuple[list[str], str]:
        import importlib

        try:
            return list(importlib.import_module("bpnet._runtime").available_isas()), ""
        except Exception as e:  # ImportError, a bad BPNET_ISA (ValueError), ...
            return [], f"{type(e).__name__}: {e}"

    return probe


def choose_build(driver: Sequence[str], workers: dict[str, Sequence[str]],
                 forced: str | None = None) -> str:
    """The ISA build of the core a distributed fit runs on everywhere.

    ``driver`` and ``workers`` (address -> builds) list the builds each can
    run (:func:`bpnet._runtime.available_isas`). ``forced``: the driver's
    ``BPNET_ISA``, used if every worker can run it; otherwise the highest
    build that the driver and every worker can run.

    Raises
    ------
    ValueError
        If no build is common to all, or if ``forced`` is not, naming the
        workers that lack it.
    """
    common = [b for b in _runtime.ISAS
              if b in driver and all(b in have for have in workers.values())]
    if forced is None and common:
        return common[-1]
    if forced is not None and forced in common:
        return forced
    have = {"the driver": list(driver), **{w: list(h) for w, h in sorted(workers.items())}}
    if forced is not None:
        head = f"BPNET_ISA={forced} on the driver, but not every process can run that build"
    else:
        head = "no build of bpnet's core that the driver and every worker can run"
    hint = (f"unset BPNET_ISA or set it to one of {common}" if common else
            "install the same bpnet wheel on every machine, or leave out the workers that "
            "lack a common build")
    raise ValueError(
        f"{head}: the builds each can run are {have} (bpnet._native.available()); a "
        f"distributed fit runs one build everywhere to keep its bits: {hint}"
    )


def _check_options(client: Any, max_retries: Any, timeout: Any,
                   scheduler_timeout: Any = 10.0) -> None:
    """``client`` is a live Dask client, ``max_retries`` an int >= 0, ``timeout``
    "auto", None or a number > 0, ``scheduler_timeout`` a number > 0."""
    try:
        import distributed
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"client= needs Dask distributed: {install_hint('dask')}"
        ) from e
    if not isinstance(client, distributed.Client):
        raise ValueError(f"client must be a distributed.Client; got {type(client).__name__}")
    if client.status in ("closing", "closed"):
        raise ValueError(
            f"client is closed (status {client.status!r}); pass a connected distributed.Client"
        )
    P.check("max_retries", max_retries, "retries")
    P.check("timeout", timeout)
    if (isinstance(scheduler_timeout, bool) or not isinstance(scheduler_timeout, (int, float))
            or not scheduler_timeout > 0 or not np.isfinite(scheduler_timeout)):
        raise ValueError(
            f"scheduler_timeout must be a number of seconds > 0; got {scheduler_timeout!r}"
        )


class _Placement:
    """Where a distributed fit's data lives: the C leaves cut into one shard of
    whole leaves per worker, sent once from the client's source (NumPy or dask),
    re-sent to a responsive worker when one is lost or stops answering."""

    def __init__(self, client: Any, X: Any, y: Any, sample_weight: Any,
                 timeout: float | str | None, spec: dict[str, Any]) -> None:
        self.client, self.timeout, self.spec = client, timeout, spec
        self.unresponsive: set[str] = set()  # workers that missed a step's deadline
        self.resent_shards = 0  # shards re-sent to replace a lost worker
        self.shards: list[_Shard] = []
        self.idle_workers: list[str] = []
        self.builds: dict[str, list[str]] = {}  # worker -> the core builds it can run
        self.build_errors: dict[str, str] = {}  # worker -> why bpnet did not load there
        self.build: str | None = None  # the one build of this fit, chosen by place()
        self.memory_limits: dict[str, int] = {}  # worker -> memory_limit, read before sending
        self._X, self._y, self._w = X, y, sample_weight
        self._from_dask = is_dask_array(X)
        for name, a in (("X", X), ("y", y), ("sample_weight", sample_weight)):
            if a is not None and is_dask_array(a) and _unknown_chunks_message(name, a):
                raise ValueError(_unknown_chunks_message(name, a))
        self.m = int(X.shape[0])
        for name, a in (("y", y), ("sample_weight", sample_weight)):
            if a is not None and a.shape[:1] != (self.m,):
                raise ValueError(f"{name} has shape {a.shape}; expected {self.m} rows to match X")
        self.starts = np.asarray(_runtime.leaf_starts(self.m), dtype=np.int64)  # (C + 1,)
        self.n_chunks = self.starts.size - 1

    def place(self) -> None:
        """Send every shard to its worker and wait until each has settled there."""
        import distributed

        live = self.live_workers(wait=True)
        self.query_builds(live)
        live = [w for w in live if w not in self.unresponsive]
        try:
            self.build = choose_build(_runtime.available_isas(),
                                      {w: self.builds[w] for w in live}, _runtime.forced_build())
        except ValueError as e:
            why = "; ".join(f"{w}: {err}" for w, err in sorted(self.build_errors.items()))
            raise ValueError(f"{e}" + (f" (where bpnet failed to load: {why})" if why else "")) \
                from None
        workers = self.plan(live)
        self.memory_limits = self.read_memory_limits()
        self.check_memory(workers)
        try:
            for shard, worker in zip(self.shards, workers):
                self.send(shard, worker)
            distributed.wait([s.future for s in self.shards], timeout=self.wait_limit())
            for s in self.shards:
                if s.future.status == "error":
                    s.future.result()  # re-raises the validation error from the worker
        except _lost_errors() as e:
            self.close()
            raise WorkerLostError(
                f"a Dask worker was lost while the shards were being placed ({type(e).__name__}: "
                f"{e}){self.memory_note(workers)}"
            ) from e
        except BaseException:
            self.close()
            raise

    def query_builds(self, workers: list[str]) -> None:
        """Ask the workers not asked yet which builds of the core they can run."""
        import distributed

        new = [w for w in workers if w not in self.builds]
        probe = _builds_probe()
        futures = {w: self.client.submit(probe, workers=[w], allow_other_workers=False,
                                         pure=False) for w in new}
        try:
            distributed.wait(list(futures.values()), timeout=self.wait_limit())
        except (TimeoutError, concurrent.futures.TimeoutError):
            pass
        for w, f in futures.items():
            if not f.done():
                self.unresponsive.add(w)  # it did not answer: given no work in this fit
            elif f.status == "finished":
                self.builds[w], why = f.result()
                if why:  # bpnet does not load there (not installed, a bad BPNET_ISA, ...)
                    self.build_errors[w] = why
            else:
                self.builds[w] = []
                self.build_errors[w] = f"{type(f.exception()).__name__}: {f.exception()}"
            f.release()

    def shard_bytes(self, shard: _Shard) -> int:
        """A worker's memory for one shard: its rows in the working dtype (twice
        from a dask source, whose chunks are held while converted) and the
        step's per-leaf gradient sums."""
        itemsize = np.dtype(self.spec["dtype"]).itemsize
        per_row = self.spec["n_inputs"] * itemsize * (2 if self._from_dask else 1)
        for a in (self._y, self._w):
            if a is not None:
                per_row += int(np.prod(a.shape[1:], dtype=np.int64)) * max(a.dtype.itemsize,
                                                                          itemsize)
        k = len(shard.chunk_ids)
        return int((shard.row1 - shard.row0) * per_row + (k + 2) * self.spec["n_params"] * itemsize)

    def check_memory(self, workers: list[str]) -> None:
        """Refuse a placement that would take a worker over its ``memory_limit``.

        Dask pauses a worker at ``distributed.worker.memory.pause`` (80 %) of
        its limit and restarts it at ``terminate`` (95 %); a shard that does
        not fit would be re-sent and lost again, step after step.
        """
        import dask

        fraction = (dask.config.get("distributed.worker.memory.pause", 0.8)
                    or dask.config.get("distributed.worker.memory.terminate", 0.95))
        if not fraction:
            return
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        for shard, worker in zip(self.shards, workers):
            limit = int(info.get(worker, {}).get("memory_limit") or 0)
            used = int(info.get(worker, {}).get("metrics", {}).get("memory") or 0)
            need = self.shard_bytes(shard)
            if limit and used + need > float(fraction) * limit:
                mib = 2.0**20
                raise ValueError(
                    f"shard {shard.index} (rows {shard.row0}..{shard.row1 - 1}, about "
                    f"{need / mib:.0f} MiB) would take Dask worker {worker} to about "
                    f"{(used + need) / mib:.0f} MiB, over {float(fraction):.0%} of its "
                    f"memory_limit of {limit / mib:.0f} MiB (where Dask pauses it; it restarts "
                    "a worker at 95 %): raise the workers' memory limit "
                    "(LocalCluster(memory_limit=...), `dask worker --memory-limit ...`) or "
                    "add workers, so that each holds fewer rows"
                )

    def read_memory_limits(self) -> dict[str, int]:
        """Each worker's ``memory_limit`` in bytes (0: none), as the scheduler
        reports it now."""
        try:
            info = self.client.scheduler_info(n_workers=-1)["workers"]
        except Exception:  # only for a hint: the scheduler may be gone
            return {}
        return {w: int(v.get("memory_limit") or 0) for w, v in info.items()}

    def memory_note(self, workers: list[str]) -> str:
        """A hint naming the workers' memory limit, for an error about lost workers.

        The limits are those read before the shards were sent: once a worker is
        restarted for memory the scheduler may know no worker at all (seen in
        CI: "Lost all workers" before the error reached the client).
        """
        limits = {self.memory_limits.get(w, 0) for w in workers}
        if not limits or 0 in limits:
            return ""
        need = max((self.shard_bytes(s) for s in self.shards), default=0)
        return (
            f"; if it was restarted for memory: the largest shard needs about "
            f"{need / 2**20:.0f} MiB and the workers' memory_limit is "
            f"{min(limits) / 2**20:.0f} MiB: raise it (LocalCluster(memory_limit=...), "
            "`dask worker --memory-limit ...`) or add workers"
        )

    def plan(self, live: list[str]) -> list[str]:
        """Cut the C leaves into one shard of whole, consecutive leaves per
        worker, up to C workers (the rest idle, with a warning); the workers
        in shard order."""
        self.idle_workers = sorted(live)[self.n_chunks :]
        workers = sorted(live)[: self.n_chunks]
        if self.idle_workers:
            _warn.warn(
                f"{len(self.idle_workers)} of {len(workers) + len(self.idle_workers)} Dask "
                f"workers hold no data and idle: m = {self.m} rows make C = {self.n_chunks} "
                "leaves (bpnet._runtime.leaf_starts(m)) and a shard is at least one "
                "whole leaf",
                UserWarning,
            )
        groups = np.array_split(np.arange(self.n_chunks), len(workers))
        self.shards = []
        for i, g in enumerate(groups):
            a, b = int(g[0]), int(g[-1]) + 1
            self.shards.append(
                _Shard(
                    index=i,
                    chunk_ids=tuple(int(c) for c in g),
                    row0=int(self.starts[a]),
                    row1=int(self.starts[b]),
                    local_starts=self.starts[a : b + 1] - self.starts[a],
                )
            )
        return workers

    def wait_limit(self) -> float:
        """Seconds to wait for shards to arrive or a worker to appear."""
        return 30.0 if not isinstance(self.timeout, (int, float)) else float(self.timeout)

    def live_workers(self, wait: bool = False) -> list[str]:
        if wait:
            self.client.wait_for_workers(1, timeout=self.wait_limit())
        listed = list(self.client.scheduler_info(n_workers=-1)["workers"])
        # a worker that missed a deadline may still be listed (SIGSTOP keeps its
        # connections open): it is not given work again in this fit
        workers = [w for w in listed if w not in self.unresponsive]
        if not workers:
            raise WorkerLostError(
                "the Dask cluster has no live workers"
                + (f" ({len(self.unresponsive)} unresponsive: {sorted(self.unresponsive)})"
                   if self.unresponsive else "")
            )
        return workers

    def send(self, shard: _Shard, worker: str) -> None:
        """Send one shard from the client's source to ``worker`` and settle it there."""
        import dask

        sl = slice(shard.row0, shard.row1)
        spec = {**self.spec, "validate": self._from_dask, "row0": shard.row0}
        parts = [self._X[sl], self._y[sl], None if self._w is None else self._w[sl]]
        if self._from_dask:
            # Computed on the cluster from the dask graph; the task is kept, so
            # Dask itself can recompute a lost shard.
            task = dask.delayed(_settle_shard, pure=False)(*parts, spec)  # type: ignore[attr-defined]
            shard.future = self.client.compute(task, workers=[worker], allow_other_workers=True)
        else:
            raw = self.client.scatter(parts, workers=[worker], hash=False)
            shard.future = self.client.submit(
                _settle_shard, *raw, spec, workers=[worker], allow_other_workers=True, pure=False
            )
            del raw  # the scattered copies are released once settled
        shard.worker = worker

    def who_has(self) -> dict[int, tuple[str, ...]]:
        """Shard index -> addresses of the workers holding it (empty if lost)."""
        alive = [s for s in self.shards if s.future is not None and s.future.status == "finished"]
        keys = self.client.who_has([s.future for s in alive]) if alive else {}
        return {
            s.index: tuple(keys.get(s.future.key, ())) if s in alive else () for s in self.shards
        }

    def recover(self) -> None:
        """Re-send every shard whose future is gone or whose worker died."""
        import distributed

        live = self.live_workers(wait=True)
        self.query_builds(live)  # a worker that joined since: can it run the fit's build?
        live = [w for w in live if self.build in self.builds.get(w, ())]
        if not live:
            raise WorkerLostError(
                f"no live Dask worker can run the fit's {self.build!r} build of bpnet's core"
            )
        holders = self.who_has()
        load = dict.fromkeys(live, 0)
        lost = []
        for s in self.shards:
            # a shard held only by an unresponsive worker is as good as lost
            where = [w for w in holders.get(s.index, ()) if w in load]
            if s.future is not None and s.future.status == "finished" and where:
                s.worker = where[0]
                load[s.worker] += 1
            else:
                lost.append(s)
        for s in lost:
            target = min(load, key=load.__getitem__)
            if s.future is not None:
                s.future.release()
            self.send(s, target)
            load[target] += 1
            self.resent_shards += 1
        distributed.wait([s.future for s in self.shards], timeout=self.wait_limit())

    def close(self) -> None:
        """Release the shards on the workers (nothing to release once the client
        has lost its scheduler: the shards are gone with it)."""
        for s in self.shards:
            if s.future is not None:
                try:
                    s.future.release()
                except Exception:  # a closed client or a lost scheduler
                    pass
                s.future = None


class DistributedObjective:
    """Full-batch cost and gradient over data held on Dask workers.

    Create it once per fit: it sends the data to the workers (one shard of
    whole leaves per worker, up to C workers; more workers than leaves idle,
    with a ``UserWarning``), then each call ``objective(theta)`` is one
    distributed step, reduced on the workers. Use as a context manager (or
    call :meth:`close`) to release the shards.

    Attributes
    ----------
    n_chunks : int
        C, the number of leaves (``leaf_starts(m)``).
    shards : list
        One per worker in use: its leaves (``chunk_ids``), rows and worker.
    idle_workers : list of str
        Workers left without a shard (only when there are more than C).
    n_steps, n_recoveries, resent_shards : int
        Completed steps, steps re-run after losing workers, shards re-sent.
    received_bytes : int
        Payload the driver gathered over all steps: P values and two sums
        per step.
    build : str
        The ISA build of the core every worker and the driver compute with in
        this fit: the driver's ``BPNET_ISA`` if set, else the highest build
        that the driver and every worker can run (:func:`choose_build`).

    Parameters
    ----------
    client : distributed.Client
        A connected client; its current workers receive the shards.
    layer_sizes : sequence of int
        ``s_0 .. s_{L-1}``.
    X : ndarray (m, s_0) or dask array
        From NumPy: already converted to the working dtype (C order) and
        validated, as :meth:`bpnet.Network.fit` does. From dask: any real
        dtype; rows must have known chunk sizes. Converted and validated on
        the workers.
    y : ndarray (m,) int or (m, K), or dask array
        Class indices or a target matrix.
    sample_weight : ndarray (m,) or dask array, optional
    lam : float
        L2 strength.
    activation, output : str
        As in :class:`bpnet.Network`.
    dtype : numpy dtype
        Working precision (float64 or float32).
    max_retries : int
        Attempts to re-run one step after losing workers before giving up
        with :class:`WorkerLostError`.
    timeout : float, "auto" or None
        Seconds to wait for one step before treating the workers that have
        not answered as lost (a stopped or hung worker is handled like a dead
        one: its shard is re-sent to a responsive worker and the step is
        run again). ``"auto"`` (default): 60 s for the first step, then
        ``max(10 s, 20 x the slowest step so far)``. None: no limit (a
        stopped worker then hangs the fit). Recovery waits up to 30 s (or
        ``timeout``) for a live worker.
    scheduler_timeout : float
        Seconds to wait for a lost connection to the scheduler (a killed or
        restarted scheduler, a network cut that closes the connection) to
        come back before stopping with :class:`WorkerLostError` (default 10).
        A scheduler that comes back within it gets the shards again and the
        step is re-run, with the same bits.
    """

    def __init__(
        self,
        client: Any,
        layer_sizes: Sequence[int],
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        lam: float = 0.0,
        activation: str = "sigmoid",
        output: str = "sigmoid",
        dtype: np.dtype | type | str = np.float64,
        max_retries: int = 3,
        timeout: float | str | None = "auto",
        scheduler_timeout: float = 10.0,
    ) -> None:
        _check_options(client, max_retries, timeout, scheduler_timeout)
        self.scheduler_timeout = float(scheduler_timeout)
        self.client = client
        self.layer_sizes = F.check_layer_sizes(layer_sizes)
        self.lam = P.check_lam(lam)
        self.activation = P.check_activation(activation)
        self.output = P.check("output", output)
        self.dtype = P.check_dtype(dtype)
        self.max_retries = int(max_retries)
        self.timeout = timeout
        self.slowest_step = 0.0  # seconds, for the "auto" step timeout
        self.n_params = F.n_params(self.layer_sizes)
        self.n_steps = 0  # completed steps
        self.n_recoveries = 0  # steps re-run after losing a worker
        self.received_bytes = 0  # payload gathered by the driver: grad (P,) + 2 sums per step

        self._placement = _Placement(client, X, y, sample_weight, timeout, {
            "dtype": self.dtype.str, "n_inputs": self.layer_sizes[0], "output": self.output,
            "n_params": self.n_params,
        })
        self.m, self.n_chunks = self._placement.m, self._placement.n_chunks
        self._placement.place()
        self.build: str = str(self._placement.build)

    def step_timeout(self) -> float | None:
        """Seconds the next step may take before its silent workers count as lost."""
        if self.timeout is None:
            return None
        if self.timeout == "auto":
            return 60.0 if self.n_steps == 0 else max(10.0, 20.0 * self.slowest_step)
        return float(self.timeout)

    def close(self) -> None:
        """Release the shards on the workers."""
        self._placement.close()

    # the placement's state, as attributes of the objective
    @property
    def shards(self) -> list[_Shard]:
        return self._placement.shards

    @property
    def idle_workers(self) -> list[str]:
        return self._placement.idle_workers

    @property
    def unresponsive(self) -> set[str]:
        return self._placement.unresponsive

    @property
    def resent_shards(self) -> int:
        return self._placement.resent_shards

    def who_has(self) -> dict[int, tuple[str, ...]]:
        """Shard index -> addresses of the workers holding it (empty if lost)."""
        return self._placement.who_has()

    def __enter__(self) -> DistributedObjective:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one step ------------------------------------------------------------
    def reduced_sums(self, theta: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The tree's root over all C leaves, reduced on the workers, after recovery if needed.

        Returns ``(grad_sum (P,), loss_sum, weight_sum)``: the unnormalized
        sums that ``finalize`` turns into the cost and gradient.
        """
        theta = np.ascontiguousarray(theta, dtype=self.dtype)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta has shape {theta.shape}; expected ({self.n_params},)")
        lost_errors = _lost_errors()
        last: BaseException | None = None
        for attempt in range(self.max_retries + 1):
            try:
                self.await_scheduler()
                if attempt:
                    self._placement.recover()
                    self.n_recoveries += 1
                sums = self._step(theta)
                self.n_steps += 1
                return sums
            except WorkerLostError as e:
                raise WorkerLostError(str(e)) from e
            except Exception as e:
                if self.client.status == "running" and not isinstance(e, lost_errors):
                    raise
                last = e  # a client that lost its scheduler fails its calls in many ways
        self.await_scheduler()  # a lost scheduler is named as such
        raise WorkerLostError(
            f"step {self.n_steps + 1} failed {self.max_retries + 1} times after losing Dask "
            f"workers (last error: {type(last).__name__}: {last})"
        ) from last

    def await_scheduler(self) -> None:
        """Return once the client is connected to its scheduler.

        Raises
        ------
        WorkerLostError
            If the client was closed, or lost its scheduler and did not get it
            back within ``scheduler_timeout`` seconds.
        """
        _await_scheduler(self.client, self.scheduler_timeout, self.n_steps + 1)

    def _submit_tree(self, theta_arg: Any) -> tuple[Any, list[Any], list[tuple[Any, str]]]:
        """Submit one step: a task per shard, then a balanced pairwise tree of merges.

        Returns ``(root, shard_futures, merges)`` where ``merges`` pairs each
        merge future with the worker it was placed on.
        """
        client, C = self.client, self.n_chunks
        shard_futures = [
            client.submit(
                _shard_tree_sums, s.future, theta_arg, self.layer_sizes, self.activation,
                self.output, s.local_starts, s.chunk_ids[0], C, self.build, workers=[s.worker],
                allow_other_workers=True, pure=False,
            )
            for s in self.shards
        ]
        level = [(f, s.worker) for f, s in zip(shard_futures, self.shards)]
        merges: list[tuple[Any, str]] = []
        while len(level) > 1:
            nxt = []
            for (left, worker), (right, _) in zip(level[0::2], level[1::2]):
                # on the left operand's worker: the right operand's nodes move to it
                f = client.submit(_merge_tree_sums, left, right, C, self.build, workers=[worker],
                                  allow_other_workers=True, pure=False)
                merges.append((f, worker))
                nxt.append((f, worker))
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        return level[0][0], shard_futures, merges

    def _late_workers(self, shard_futures: list[Any], merges: list[tuple[Any, str]]) -> set[str]:
        """The workers that kept a timed-out step from finishing."""
        late = {s.worker for s, f in zip(self.shards, shard_futures) if not f.done()}
        if late:
            return late
        # every shard answered, a merge did not: a worker that stopped after its
        # own task (it no longer sends its heartbeat), else the merges' workers
        stuck = {w for f, w in merges if not f.done()}
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        seen = {w: float(info[w].get("last_seen", 0.0)) for w in info}
        newest = max(seen.values(), default=0.0)
        silent = {w for w in self.workers_in_use() if newest - seen.get(w, 0.0) > 5.0}
        return silent or stuck or set(self.workers_in_use())

    def workers_in_use(self) -> list[str]:
        """The workers holding a shard, in shard order (one per shard, repeated if several)."""
        return [s.worker for s in self.shards]

    def _step(self, theta: np.ndarray) -> tuple[np.ndarray, float, float]:
        client = self.client
        workers = sorted(set(self.workers_in_use()))
        theta_f = None
        if theta.nbytes * len(self.shards) > _INLINE_THETA_BYTES:
            # one synchronous broadcast, then the tasks refer to it
            try:
                theta_f = client.scatter(theta, workers=workers, broadcast=True, hash=False,
                                         timeout=self._placement.wait_limit())
            except KeyError as e:  # the scheduler no longer knows one of the workers
                raise _WorkerGone(f"worker {e} left the cluster") from e
        root, shard_futures, merges = self._submit_tree(theta if theta_f is None else theta_f)
        limit = self.step_timeout()
        t0 = time.perf_counter()
        try:
            if not _wait_connected(client, root, limit):
                # the workers that did not answer are treated as lost: their
                # shards are re-sent to responsive workers by the recovery
                late = self._late_workers(shard_futures, merges)
                self._placement.unresponsive |= late
                raise _WorkerGone(f"workers {sorted(late)} did not answer within {limit:g} s")
            result = client.gather(root)
        finally:
            for f in [*shard_futures, *(f for f, _ in merges)]:
                f.release()
            if theta_f is not None:
                theta_f.release()
        self.slowest_step = max(self.slowest_step, time.perf_counter() - t0)
        return self._check_root(result)

    def _check_root(self, result: TreeSums) -> tuple[np.ndarray, float, float]:
        """Refuse a root that does not cover every leaf exactly once; return its sums."""
        sums = _root_sums(result, self.n_chunks, self.m, self.n_params, self.dtype)
        self.received_bytes += int(sums[0].nbytes) + 16
        return sums

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Cost J and gradient (P,) at ``theta``, bitwise equal to ``bpnet.cost_grad``.

        The workers merge the leaves by the core's fixed tree (``reduce_tree``),
        for the gradient sums, the losses and the weights alike; the driver
        finalizes the root.
        """
        theta = np.ascontiguousarray(theta, dtype=self.dtype)
        grad_sum, loss_sum, weight_sum = self.reduced_sums(theta)
        # a fresh, writable gradient each call (SciPy may keep the previous one)
        grad = _builtin_dtype(np.array(grad_sum, dtype=self.dtype, copy=True))
        with _runtime.using_build(self.build):
            J = _runtime.finalize(theta, self.layer_sizes, self.lam, loss_sum, weight_sum, grad)
        return J, grad
