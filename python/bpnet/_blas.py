"""BLAS on one thread while bpnet's full-batch optimizers run.

SciPy's L-BFGS-B and CG do their vector work between bpnet's core calls with
the BLAS that NumPy and SciPy load (OpenBLAS). On vectors of a few thousand
parameters its threads cost far more than they give, and they compete with
the core's own threads for the cores: 60 L-BFGS-B iterations on a quadratic of
1,885 parameters took 22.3 ms with OpenBLAS's default two threads and 6.4 ms
with one, and the digits fit (bench case E) spent 104 of its 172 ms in the
optimizer with two (bench/README.md, case E). So a full-batch fit runs BLAS on
one thread, through threadpoolctl, and restores the setting when the last
concurrent fit ends (the limit is process-wide; the count is kept here). The
BLAS results of these vector operations do not depend on the thread count.
Set ``BPNET_BLAS_THREADS=keep`` to leave the BLAS setting alone.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

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
def single_threaded() -> Iterator[None]:
    """BLAS limited to one thread for the duration (re-entrant, thread-safe)."""
    global _active, _saved
    if os.environ.get("BPNET_BLAS_THREADS", "").strip().lower() == "keep":
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
