"""bpnet: fast backpropagation neural networks for the CPU.

A C++/Eigen core (forward pass, regularized cross-entropy cost and backprop
gradient) behind a thin NumPy/SciPy API.
"""

from __future__ import annotations

from ._about import DISTRIBUTION, __version__
from ._native import core as _core_module
from .functional import cost_grad, forward, layer_shapes, n_params, predict, roll, unroll
from .gradcheck import GradientReport, check_gradients
from .initialization import debug_theta, random_theta
from .network import Network
from .optimize import FitResult, IterationInfo
from .persist import ModelFileError, load, save

__all__ = [
    "DISTRIBUTION",
    "FitResult",
    "GradientReport",
    "IterationInfo",
    "ModelFileError",
    "Network",
    "__version__",
    "build_info",
    "check_gradients",
    "cost_grad",
    "debug_theta",
    "forward",
    "layer_shapes",
    "load",
    "n_params",
    "predict",
    "random_theta",
    "roll",
    "save",
    "unroll",
]


def build_info() -> dict:
    """How this bpnet was built and what it runs on: the active instruction-set
    build (``isa``), Eigen's SIMD sets, Eigen version, OpenMP, compiler, the
    builds this CPU could use, and the default thread count."""
    from . import _native

    info = dict(_core_module.build_info)
    info["available_isas"] = _native.available()
    info["max_threads"] = int(_core_module.max_threads())
    return info


_LAZY = ("BPNetClassifier", "BPNetRegressor")  # not in __all__: `import *` needs no sklearn


def __getattr__(name: str):
    """The scikit-learn estimators load on first use: ``import bpnet`` does not
    import scikit-learn (an optional extra)."""
    if name in _LAZY:
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'bpnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
