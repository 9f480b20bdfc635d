"""Bounds for a test on a busy machine: behaviour is asserted, wall time only
guards against a hang. A guard scales with the load the test starts under
(the README's test command must pass with every CPU busy); latency figures
live in bench/latency.py, not in the tests."""

from __future__ import annotations

import os


def load_factor() -> float:
    """How many runnable tasks share each CPU now (1-minute load average per
    CPU), at least 1."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        return 1.0
    return max(1.0, load / (os.cpu_count() or 1))


def generous(seconds: float) -> float:
    """A hang guard: ``seconds`` on an idle machine, times three, times the load."""
    return 3.0 * seconds * load_factor()
