"""What every attack child of tests/reliability/test_reliability_attacks.py
shares: warnings ignored, a real Ctrl-C handler, and the one ``RESULT {json}``
line the test judges.

Imported first (before bpnet) by each child, which runs as a script:
``python tests/reliability/children/NAME.py`` (its folder is then on sys.path).
"""

from __future__ import annotations

import json
import signal
import warnings
from typing import Any, Callable

warnings.simplefilter("ignore")
# Ctrl-C raises KeyboardInterrupt however pytest was started (a shell runs a
# background job with SIGINT ignored, and Python then installs no handler)
signal.signal(signal.SIGINT, signal.default_int_handler)


def report(**kw: Any) -> None:
    """Print the child's result, the line the test reads."""
    print("RESULT " + json.dumps(kw), flush=True)


def outcome(f: Callable[..., Any], *args: Any) -> str:
    """``"ok"``, or the exception ``f(*args)`` raised as ``"Type: message"``."""
    try:
        f(*args)
    except BaseException as err:
        return type(err).__name__ + ": " + " ".join(str(err).split())
    return "ok"
