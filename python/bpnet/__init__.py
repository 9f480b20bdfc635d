"""bpnet: fast backpropagation neural networks for the CPU.

A C++/Eigen core (forward pass, regularized cross-entropy cost and backprop
gradient) behind a thin NumPy/SciPy API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _runtime
from ._about import DISTRIBUTION, __version__
from ._guard import ConcurrentFitError
from .functional import (
    cost_grad,
    forward,
    forward_cost,
    layer_shapes,
    n_params,
    predict,
    roll,
    unroll,
)
from .gradcheck import GradientReport, check_gradients
from .initialization import debug_theta, random_theta
from .network import Network
from .optimize import FitResult, IterationInfo
from .persist import ModelFileError, load, save

__all__ = [
    "DISTRIBUTION",
    "ConcurrentFitError",
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
    "forward_cost",
    "layer_shapes",
    "load",
    "n_params",
    "predict",
    "random_theta",
    "roll",
    "save",
    "unroll",
]


if TYPE_CHECKING:  # for type checkers: the lazy names above
    from ._sklearn_convert import to_sklearn as to_sklearn
    from .estimators import BPNetClassifier as BPNetClassifier
    from .estimators import BPNetRegressor as BPNetRegressor
    from .estimators import FitInfo as FitInfo
    from .estimators import from_sklearn as from_sklearn
    from .onnx_export import to_onnx as to_onnx


def build_info() -> dict[str, Any]:
    """How this bpnet was built and what it runs on.

    Returns
    -------
    dict
        The core's build description: the active instruction-set build
        (``isa``), Eigen's SIMD sets, the Eigen version (``eigen``), OpenMP,
        the compiler; plus ``available_isas`` (the builds this CPU could use)
        and ``max_threads`` (the default thread count).

    Examples
    --------
    >>> import bpnet
    >>> info = bpnet.build_info()
    >>> info["isa"] in info["available_isas"]
    True
    """
    return _runtime.build_info()


# not in __all__: `import *` needs neither scikit-learn nor onnx
_LAZY = ("BPNetClassifier", "BPNetRegressor", "FitInfo", "from_sklearn", "to_sklearn",
         "to_onnx")


def __getattr__(name: str) -> Any:
    """The scikit-learn estimators, the MLP conversions and the ONNX export load
    on first use: ``import bpnet`` imports neither scikit-learn nor onnx
    (optional extras)."""
    if name in ("BPNetClassifier", "BPNetRegressor", "FitInfo", "from_sklearn"):
        from . import estimators

        return getattr(estimators, name)
    if name == "to_sklearn":
        from ._sklearn_convert import to_sklearn

        return to_sklearn
    if name == "to_onnx":
        from .onnx_export import to_onnx

        return to_onnx
    raise AttributeError(f"module 'bpnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
