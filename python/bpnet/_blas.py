"""BLAS on one thread while bpnet's full-batch optimizers run.

SciPy's L-BFGS-B and CG do their vector work between bpnet's core calls with
the BLAS that NumPy and SciPy load (OpenBLAS). On vectors of a few thousand
parameters its threads cost far more than they give, and they compete with
the core's own threads for the cores (the measurements are in bench/README.md,
"BLAS threads during full-batch fits", and case E). So a full-batch fit runs
BLAS on one thread, through threadpoolctl, and restores the setting when the
last concurrent fit ends (the limit is process-wide; the count is kept here).
Below ``MAX_PARAMS`` parameters, then, those results do not depend on the
machine's core count. From ``MAX_PARAMS`` on, the vectors are long enough for
BLAS's threads to pay, and the setting is left alone: OpenBLAS then splits a
long dot product over its threads, so the last bits of an L-BFGS-B fit depend
on its thread count (a [2^18, 64, 20] fit of bench_sparse_text.py ends at
another loss in the 16th digit on one thread than on two). Set
``BPNET_BLAS_THREADS=keep`` to always leave it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

MAX_PARAMS = 1 << 17  # limit BLAS below this many parameters
_lock = threading.Lock()
_active = 0
_saved: Any = None  # the threadpoolctl limiter of the outermost fit
_controller: Any = None


def _get_controller() -> Any:
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # optional: without it the BLAS setting is left alone
            _controller = False
        else:
            _controller = ThreadpoolController()
    return _controller


@contextlib.contextmanager
def single_threaded(n_params: int) -> Iterator[None]:
    """BLAS limited to one thread for the duration, for fewer than MAX_PARAMS
    parameters (re-entrant, thread-safe)."""
    global _active, _saved
    if n_params >= MAX_PARAMS or os.environ.get("BPNET_BLAS_THREADS", "").strip().lower() == "keep":
        yield
        return
    with _lock:
        if _active == 0:
            controller = _get_controller()
            _saved = controller.limit(limits=1, user_api="blas") if controller else None
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                _saved.restore_original_limits()
                _saved = None
