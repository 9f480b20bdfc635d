"""Shared fixtures: the compiled core of every instruction-set build this CPU
runs, called through its raw signatures, and fixed-seed generators."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/oracle.py

from bpnet import _native

ISAS = _native.available()


class RawCore:
    """One ISA build of the core, called with its raw (keyword) signatures."""

    def __init__(self, isa: str) -> None:
        self.isa = isa
        self.mod = _native.load(isa)
        self.workspace = self.mod.Workspace()

    def __repr__(self) -> str:
        return f"RawCore({self.isa!r})"

    def cost_grad(self, theta, sizes, X, y, lam=0.0, activation="sigmoid", output="sigmoid",
                  sample_weight=None, grad=None, rows=None, n_threads=1):
        J, g = self.mod.cost_grad(theta, list(sizes), X, y, lam, activation, output,
                                  sample_weight, grad, rows, n_threads, self.workspace)
        return float(J), g

    def forward(self, theta, sizes, X, activation="sigmoid", output="sigmoid", out=None,
                rows=None, n_threads=1):
        return self.mod.forward(theta, list(sizes), X, activation, output, out, rows,
                                n_threads, self.workspace)

    def predict(self, theta, sizes, X, activation="sigmoid", out=None, rows=None, n_threads=1):
        return self.mod.predict(theta, list(sizes), X, activation, out, rows, n_threads,
                                self.workspace)

    def partial_sums(self, theta, sizes, X, y, starts, leaf_grads, activation="sigmoid",
                     output="sigmoid", sample_weight=None, n_threads=1):
        return self.mod.partial_sums(theta, list(sizes), X, y, activation, output,
                                     sample_weight, starts, leaf_grads, n_threads,
                                     self.workspace)

    def finalize(self, theta, sizes, lam, loss, weight, grad):
        return self.mod.finalize(theta, list(sizes), lam, loss, weight, grad)


_CORES = {isa: RawCore(isa) for isa in ISAS}


@pytest.fixture(params=ISAS)
def core(request) -> RawCore:
    """The raw core of each ISA build this CPU supports (baseline, avx2, avx512)."""
    return _CORES[request.param]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240607)
