"""The one door into the compiled core: every Python call of ``bpnet._core``
goes through this module.

It owns what a core call needs besides its arrays:

- the **thread-count policy** (:func:`effective_threads`, :func:`usable_cpus`):
  an ``n_threads`` of -1 means OpenMP's limit, capped at the CPUs this
  process may use, and 1 in a child made by ``os.fork``;
- the **fork policy**: a child made by ``os.fork`` inherits the parent's
  OpenMP thread pool without its threads, and a parallel region there hangs
  (the libgomp-after-fork problem), so the child runs the core on one thread
  and drops the parent's workspaces;
- the **workspace pool**: one reusable core ``Workspace`` per Python thread
  and build (calls never share one);
- the **build in use** (:func:`using_build`, :func:`active_build`): the
  ISA build :mod:`bpnet._native` loaded, or, inside ``using_build(isa)``,
  another one, for the calling thread only (a distributed fit runs every
  worker's leaves, and the driver's steps, on one build);
- thin **raw calls** (:func:`cost_grad`, :func:`forward`, :func:`predict`,
  :func:`forward_cost`, :func:`partial_sums`, :func:`reduce_tree`,
  :func:`finalize`): the core's signatures with the thread count resolved and
  the workspace supplied. They check nothing the core checks; the callers
  (``functional``, ``Network``, the optimizers, the Dask workers) pass
  prepared arrays;
- **bound calls** for loops of many small core calls (a mini-batch fit takes
  one step per batch: thousands per second on a narrow net):
  :func:`batch_cost_grad` and the fused updates :func:`adam_stepper` and
  :func:`sgd_stepper` resolve the build, the workspace and the thread count
  once, for the whole loop, and return a callable that passes only what
  changes.

Results never depend on the thread count (the core's leaves are fixed).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from . import _native
from ._native import ISAError, core

__all__ = [
    "ISAS",
    "MAX_THREADS",
    "ISAError",  # a bad BPNET_ISA (the `bpnet` command reports it as a usage error)
    "active_build",
    "adam_stepper",
    "available_isas",
    "batch_cost_grad",
    "build_info",
    "cost_grad",
    "effective_threads",
    "finalize",
    "forced_build",
    "forward",
    "forward_cost",
    "leaf_starts",
    "n_params",
    "partial_sums",
    "predict",
    "reduce_tree",
    "sgd_stepper",
    "usable_cpus",
    "using_build",
    "workspace",
]

ISAS: tuple[str, ...] = _native.ISAS  # the builds, lowest first
MAX_THREADS: int = int(core.max_threads_limit)  # the core's limit on an explicit n_threads

_local = threading.local()
_forked = False  # set in a child made by os.fork(): the core runs on one thread there
_cpu_count: int | None = None


def _after_fork_in_child() -> None:
    global _forked, _cpu_count
    _forked = True
    _cpu_count = None
    _local.__dict__.pop("workspaces", None)  # locked by threads that do not exist here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; 1 in a forked child)."""
    global _cpu_count
    if _forked:
        return 1
    if _cpu_count is None:
        try:
            _cpu_count = max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            _cpu_count = max(1, os.cpu_count() or 1)
    return _cpu_count


def effective_threads(n_threads: int | None) -> int:
    """The thread count a core call runs with, for a checked ``n_threads``
    (None or -1: OpenMP's limit; else 1..MAX_THREADS), capped at the CPUs this
    process may use, and 1 in a child made by ``os.fork``."""
    n = -1 if n_threads is None else int(n_threads)
    if n == -1:
        n = int(core.max_threads())
    return max(1, min(n, usable_cpus()))


def _core() -> ModuleType:
    """The build the calling thread's core calls use."""
    mod: ModuleType | None = getattr(_local, "core", None)
    return core if mod is None else mod


def active_build() -> str:
    """The ISA build (``"baseline"``, ``"avx2"`` or ``"avx512"``) the calling
    thread's core calls use: the one :mod:`bpnet._native` loaded, or the one
    of an enclosing :func:`using_build`."""
    return str(_core().build_info["isa"])


@contextlib.contextmanager
def using_build(isa: str | None) -> Iterator[str]:
    """Run the calling thread's core calls on the ``isa`` build (None: the
    current one) inside the block; yields the build's name.

    Raises
    ------
    ValueError
        If this install or CPU lacks that build (:func:`bpnet._native.load`).
    """
    if isa is None or isa == active_build():
        yield active_build()
        return
    previous = getattr(_local, "core", None)
    _local.core = _native.load(isa)
    try:
        yield isa
    finally:
        _local.core = previous


def workspace() -> Any:
    """The calling thread's own core workspace for the build in use (created
    on first use, kept; a build's functions take only its own workspaces)."""
    mod = _core()
    pool: dict[str, Any] = _local.__dict__.setdefault("workspaces", {})
    ws = pool.get(mod.__name__)
    if ws is None:
        ws = pool[mod.__name__] = mod.Workspace()
    return ws


def build_info() -> dict[str, Any]:
    """The active core's build facts, the ISA builds this CPU could use and
    OpenMP's default thread count."""
    info = dict(core.build_info)
    info["available_isas"] = available_isas()
    info["max_threads"] = int(core.max_threads())
    return info


def available_isas() -> list[str]:
    """ISA levels built into this install and supported by this CPU, lowest first."""
    return _native.available()


def forced_build() -> str | None:
    """The build ``BPNET_ISA`` forced when bpnet was imported (None: not set)."""
    return _native.FORCED


def n_params(sizes: Sequence[int]) -> int:
    """``P`` for checked layer sizes."""
    return int(core.n_params(sizes))


def leaf_starts(m: int) -> np.ndarray:
    """First rows of the core's fixed leaves for ``m`` examples (and ``m``)."""
    starts: np.ndarray = core.leaf_starts(m)
    return starts


# -- raw calls: prepared arrays in, the thread count and workspace supplied ------------
def cost_grad(
    theta: np.ndarray, sizes: Sequence[int], X: Any, y: np.ndarray, lam: float,
    activation: str, output: str, w: np.ndarray | None, out: np.ndarray | None,
    rows: np.ndarray | None, n_threads: int | None,
) -> tuple[float, np.ndarray]:
    """Regularized cost and gradient (see :func:`bpnet.cost_grad`)."""
    J, grad = _core().cost_grad(theta, sizes, X, y, lam, activation, output, w, out, rows,
                             effective_threads(n_threads), workspace())
    return float(J), grad


def forward(
    theta: np.ndarray, sizes: Sequence[int], X: Any, activation: str, output: str,
    out: np.ndarray | None, n_threads: int | None,
) -> np.ndarray:
    """Output activations (m, K) (see :func:`bpnet.forward`)."""
    a: np.ndarray = _core().forward(theta, sizes, X, activation, output, out, None,
                                 effective_threads(n_threads), workspace())
    return a


def predict(
    theta: np.ndarray, sizes: Sequence[int], X: Any, activation: str, n_threads: int | None
) -> np.ndarray:
    """Class indices (m,) int64 (see :func:`bpnet.predict`)."""
    labels: np.ndarray = _core().predict(theta, sizes, X, activation, None, None,
                                      effective_threads(n_threads), workspace())
    return labels


def forward_cost(
    theta: np.ndarray, sizes: Sequence[int], X: Any, y: np.ndarray, lam: float,
    activation: str, output: str, w: np.ndarray | None, out: np.ndarray | None,
    n_threads: int | None,
) -> tuple[float, np.ndarray]:
    """Regularized cost and output activations in one pass (see :func:`bpnet.forward_cost`)."""
    J, h = _core().forward_cost(theta, sizes, X, y, lam, activation, output, w, out, None,
                             effective_threads(n_threads), workspace())
    return float(J), h


def partial_sums(
    theta: np.ndarray, sizes: Sequence[int], X: np.ndarray, y: np.ndarray, activation: str,
    output: str, w: np.ndarray | None, local_starts: np.ndarray, chunk_grads: np.ndarray,
    n_threads: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalized per-leaf sums over the leaves ``local_starts`` (gradients into
    ``chunk_grads``); returns the per-leaf losses and weights."""
    loss, weight = _core().partial_sums(theta, sizes, X, y, activation, output, w, local_starts,
                                     chunk_grads, effective_threads(n_threads), workspace())
    return loss, weight


def reduce_tree(nodes: Any, n_leaves: int) -> Any:
    """Merge per-leaf sums by the core's fixed reduction tree."""
    return _core().reduce_tree(nodes, n_leaves)


def finalize(
    theta: np.ndarray, sizes: Sequence[int], lam: float, loss_sum: float, weight_sum: float,
    grad: np.ndarray,
) -> float:
    """Normalize reduced sums into ``J`` and the gradient (in place in ``grad``)."""
    return float(_core().finalize(theta, sizes, lam, loss_sum, weight_sum, grad))


# -- bound calls: one loop's core calls, the build, workspace and threads resolved once -----
# The loop runs on the calling thread, inside one using_build block if any; a thread
# count is fixed for the loop (the results do not depend on it).
BatchCostGrad = Callable[[np.ndarray, float, np.ndarray, np.ndarray], float]
AdamStep = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float, float, float],
                    bool]
SgdStep = Callable[[np.ndarray, np.ndarray, np.ndarray, float, float, bool], bool]


def batch_cost_grad(
    sizes: Sequence[int], X: Any, y: np.ndarray, activation: str, output: str,
    w: np.ndarray | None, n_threads: int | None,
) -> BatchCostGrad:
    """``f(theta, lam, grad, rows) -> J``: :func:`cost_grad` over the examples
    ``rows`` of prepared ``X``, ``y``, ``w``, the gradient into ``grad``."""
    fn, nt, ws = _core().cost_grad, effective_threads(n_threads), workspace()
    sizes = tuple(sizes)

    def call(theta: np.ndarray, lam: float, grad: np.ndarray, rows: np.ndarray) -> float:
        J: float = fn(theta, sizes, X, y, lam, activation, output, w, grad, rows, nt, ws)[0]
        return J

    return call


def all_finite(x: np.ndarray, n_threads: int | None) -> bool:
    """Whether every value of the float64 or float32 array ``x`` (any shape) is finite:
    the core's ``scan_finite``, on up to ``n_threads`` threads with the GIL released."""
    flat = np.ascontiguousarray(x).reshape(-1)  # a view of a C-contiguous x
    finite: bool = _core().scan_finite(flat, effective_threads(n_threads))
    return finite


def adam_stepper(n_threads: int | None) -> AdamStep:
    """``f(theta, m1, m2, grad, beta_1, beta_2, step_size, epsilon) -> finite``: one fused
    Adam step in place (``theta``, ``m1``, ``m2``; the core's ``adam_update``); whether
    theta stayed finite."""
    fn, nt = _core().adam_update, effective_threads(n_threads)

    def step(theta: np.ndarray, m1: np.ndarray, m2: np.ndarray, grad: np.ndarray,
             beta_1: float, beta_2: float, step_size: float, epsilon: float) -> bool:
        finite: bool = fn(theta, m1, m2, grad, beta_1, beta_2, step_size, epsilon, nt)
        return finite

    return step


def sgd_stepper(n_threads: int | None) -> SgdStep:
    """``f(theta, velocity, grad, learning_rate, momentum, nesterov) -> finite``: one fused
    SGD-with-momentum step in place (``theta``, ``velocity``; the core's ``sgd_update``);
    whether theta stayed finite."""
    fn, nt = _core().sgd_update, effective_threads(n_threads)

    def step(theta: np.ndarray, velocity: np.ndarray, grad: np.ndarray, learning_rate: float,
             momentum: float, nesterov: bool) -> bool:
        finite: bool = fn(theta, velocity, grad, learning_rate, momentum, nesterov, nt)
        return finite

    return step
