"""One fit at a time per object: a second concurrent ``fit`` raises.

Two threads fitting the same network or estimator would interleave their
updates of ``theta`` and of the fitted attributes (a merged ``loss_curve_``,
``classes_`` from one run and weights from the other). The guard refuses the
second fit with a clear error instead. Prediction takes no guard: it reads
the parameters and uses the calling thread's own core workspace.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["ConcurrentFitError", "exclusive_fit", "fit_guarded"]

_F = TypeVar("_F", bound=Callable[..., Any])

_lock = threading.Lock()
_busy: dict[int, str] = {}  # id(obj) -> name of the thread fitting it


class ConcurrentFitError(RuntimeError):
    """``fit`` was called on an object that another thread is fitting."""

    __module__ = "bpnet"


@contextmanager
def exclusive_fit(obj: object, method: str = "fit") -> Iterator[None]:
    """Hold the fit guard of ``obj`` for the ``with`` block (raise if taken)."""
    key = id(obj)  # obj is alive for the whole block, so its id is not reused
    me = threading.current_thread().name
    with _lock:
        holder = _busy.get(key)
        if holder is not None:
            raise ConcurrentFitError(
                f"{type(obj).__name__}.{method}: this object is already being fitted "
                f"(by thread {holder!r}); concurrent fits of one object would mix their "
                "results. Fit separate objects (e.g. sklearn.base.clone) or wait"
            )
        _busy[key] = me
    try:
        yield
    finally:
        with _lock:
            del _busy[key]


def fit_guarded(method: _F) -> _F:
    """Decorate a fitting method: it runs under :func:`exclusive_fit`."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with exclusive_fit(self, method.__name__.lstrip("_")):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
