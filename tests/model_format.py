"""The model-file format's digest rule, written from its specification
(bpnet._modelfile's docstring), for tests that rewrite a file's metadata."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(body: dict[str, Any]) -> bytes:
    """The bytes the metadata's sha256 is taken over: sorted keys, no spaces."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
