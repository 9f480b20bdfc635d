"""The Examples sections of the public docstrings run and print what they show
(they are the API reference's examples: docs/api.rst)."""

from __future__ import annotations

import doctest
import importlib

import pytest

# modules whose docstrings carry examples; each must keep at least one
MODULES = ["bpnet", "bpnet.gradcheck", "bpnet.initialization", "bpnet.optimize"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name} has no examples left"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
