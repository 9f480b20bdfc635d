"""The functional API: cost and gradient, forward pass and prediction.

Dimension letters: ``m`` examples, ``L`` layers with ``s_l`` units
(``layer_sizes``), ``K = s_{L-1}`` outputs, ``P`` parameters.

``theta`` (P,) holds every ``Theta^(l)`` (shape ``(s_{l+1}, s_l + 1)``, bias in
column 0) unrolled row-major in layer order. The dtype of ``theta`` (float64
or float32) selects the precision; ``X`` (and a target matrix or sample
weights) must have the same dtype and be C-contiguous. Nothing is converted
behind your back: convert once with ``np.ascontiguousarray(X, dtype=...)``
before a loop. Integer class labels of any integer dtype are accepted (a
non-int64 vector is converted, O(m)).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, Union

import numpy as np

from . import _runtime
from ._params import ACTIVATIONS, DTYPES, OUTPUTS, check, check_activation, check_lam

__all__ = [
    "ACTIVATIONS",
    "DTYPES",
    "MAX_THREADS",
    "OUTPUTS",
    "cost_grad",
    "forward",
    "forward_cost",
    "layer_shapes",
    "n_params",
    "predict",
    "roll",
    "unroll",
]

_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))
_MAX_LAYER = 2**62  # the core (int64 sizes) rejects anything near this with a clear message
MAX_THREADS: int = _runtime.MAX_THREADS  # the core's limit on an explicit n_threads


def check_layer_sizes(layer_sizes: Sequence[int]) -> tuple[int, ...]:
    """Validate ``layer_sizes`` and return it as a tuple of Python ints."""
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
        raise ValueError(f"layer_sizes must be a sequence of ints; got {layer_sizes!r}")
    sizes = []
    for i, s in enumerate(layer_sizes):
        if isinstance(s, (bool, np.bool_)):
            raise ValueError(f"layer_sizes[{i}] must be an int; got {s!r}")
        try:
            s = operator.index(s)
        except TypeError:
            raise ValueError(f"layer_sizes[{i}] must be an int; got {s!r}") from None
        if s < 1:
            raise ValueError(f"layer_sizes[{i}] must be >= 1; got {s}")
        if s > _MAX_LAYER:
            raise ValueError(f"layer_sizes[{i}] = {s} is too large")
        sizes.append(s)
    if len(sizes) < 2:
        raise ValueError(
            f"layer_sizes must have at least 2 layers (input and output); got {list(sizes)}"
        )
    return tuple(sizes)










def check_theta(theta: np.ndarray, P: int | None = None) -> np.ndarray:
    if not isinstance(theta, np.ndarray):
        theta = np.asarray(theta, dtype=np.float64)
    if theta.dtype not in _FLOATS:
        raise ValueError(
            f"theta must have dtype float64 or float32 (it selects the precision); "
            f"got {theta.dtype}"
        )
    if theta.ndim != 1:
        raise ValueError(f"theta must be 1-D (P,); got shape {theta.shape}")
    if P is not None and theta.shape[0] != P:
        raise ValueError(f"theta has shape {theta.shape}; expected ({P},) for these layer_sizes")
    if not theta.flags.c_contiguous:
        raise ValueError("theta must be contiguous; convert it once with np.ascontiguousarray")
    if not theta.flags.aligned:
        raise ValueError("theta is not aligned to its dtype: copy it once with np.array(theta)")
    return theta


def check_array(
    name: str, a: np.ndarray, dtype: np.dtype, ndim: int, check_finite: bool
) -> np.ndarray:
    """An input array of the working dtype, C-contiguous; never copied here."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray; got {type(a).__name__}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {a.shape}")
    if a.dtype != dtype:
        raise ValueError(
            f"{name} has dtype {a.dtype} but theta is {dtype}: convert it once with "
            f"np.ascontiguousarray({name}, dtype=np.{dtype})"
        )
    if not a.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous: convert it once with np.ascontiguousarray({name})"
        )
    if not a.flags.aligned:
        raise ValueError(f"{name} is not aligned to its dtype: copy it once with np.array({name})")
    if check_finite and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        where = tuple(int(i) for i in bad)
        raise ValueError(f"{name} contains a non-finite value at index {where}")
    return a


def is_sparse(X: object) -> bool:
    """Whether X is a SciPy sparse matrix or array (without importing SciPy's sparse module)."""
    return type(X).__module__.startswith("scipy.sparse")


CoreX = Union[np.ndarray, "tuple[Any, ...]"]  # what the core takes: an array, or a CSR's parts


def check_X(X: Any, dtype: np.dtype, check_finite: bool) -> CoreX:
    """X for the core: a C-contiguous (m, s_0) array of the working dtype, or a
    SciPy CSR matrix/array of that dtype, passed as its parts ``(data, indices,
    indptr, shape)`` (no copy; the core reads the first layer sparse)."""
    if not is_sparse(X):
        return check_array("X", X, dtype, 2, check_finite)
    if X.format != "csr":
        raise ValueError(
            f"a sparse X must be CSR; got {X.format.upper()}: convert it once with X.tocsr()"
        )
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D; got shape {X.shape}")
    if X.dtype != dtype:
        raise ValueError(
            f"X has dtype {X.dtype} but theta is {dtype}: convert it once with "
            f"X.astype(np.{dtype})"
        )
    if X.indices.dtype != X.indptr.dtype or X.indices.dtype not in (np.int32, np.int64):
        raise ValueError(
            f"X.indices and X.indptr must both be int32 or both int64; got "
            f"{X.indices.dtype} and {X.indptr.dtype}"
        )
    check_array("X.data", X.data, dtype, 1, check_finite)
    check_array("X.indices", X.indices, X.indices.dtype, 1, False)
    check_array("X.indptr", X.indptr, X.indptr.dtype, 1, False)
    return as_core_X(X)


def as_core_X(X: Any) -> CoreX:
    """A prepared X as the core takes it: the array itself, or a SciPy CSR
    matrix's parts ``(data, indices, indptr, shape)`` (no copy)."""
    if is_sparse(X):
        return (X.data, X.indices, X.indptr, (int(X.shape[0]), int(X.shape[1])))
    a: np.ndarray = X
    return a


def _x_buffer(X: CoreX) -> np.ndarray:
    return X[0] if isinstance(X, tuple) else X


def _x_rows(X: CoreX) -> int:
    return int(X[3][0]) if isinstance(X, tuple) else int(X.shape[0])


def check_out(out: np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """An output buffer: written in place, so never converted."""
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy.ndarray; got {type(out).__name__}")
    if out.dtype != dtype or out.shape != shape:
        raise ValueError(
            f"out has dtype {out.dtype} and shape {out.shape}; expected {dtype} {shape}"
        )
    if not (out.flags.c_contiguous and out.flags.aligned and out.flags.writeable):
        raise ValueError("out must be C-contiguous, aligned and writeable")
    return out


def check_no_overlap(out: np.ndarray, **inputs: np.ndarray | None) -> None:
    """Reject an ``out`` buffer that shares memory with an input: the core
    would read values it has already overwritten (a wrong answer, silently)."""
    for name, a in inputs.items():
        if a is not None and np.may_share_memory(out, a):
            raise ValueError(
                f"out shares memory with {name}: the core would overwrite {name} while "
                f"reading it; pass a separate buffer (e.g. np.empty_like({name}))"
            )


def check_targets(y: np.ndarray, dtype: np.dtype, check_finite: bool) -> np.ndarray:
    """Class indices (m,) as int64, or a target matrix (m, K) of the working dtype."""
    if not isinstance(y, np.ndarray):
        raise ValueError(f"y must be a numpy.ndarray; got {type(y).__name__}")
    if y.ndim == 1:
        if y.dtype.kind not in "iu":
            raise ValueError(
                f"y as a 1-D vector holds integer class indices 0..K-1; got dtype {y.dtype}"
            )
        if y.dtype.kind == "u" and y.size and y.max() > np.iinfo(np.int64).max:
            i = int(np.argmax(y > np.iinfo(np.int64).max))
            raise ValueError(f"y[{i}] = {y[i]} is not a class index 0..K-1")
        return np.require(y, dtype=np.int64, requirements=["C", "A"])
    if y.ndim == 2:
        return check_array("y", y, dtype, 2, check_finite)
    raise ValueError(f"y must be a 1-D vector of class indices or an (m, K) matrix; got {y.shape}")


def n_params(layer_sizes: Sequence[int]) -> int:
    """Number of parameters ``P = sum_l s_{l+1} (s_l + 1)``."""
    return _runtime.n_params(check_layer_sizes(layer_sizes))


def layer_shapes(layer_sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Shapes ``(s_{l+1}, s_l + 1)`` of the weight matrices ``Theta^(l)``."""
    s = check_layer_sizes(layer_sizes)
    return [(s[l + 1], s[l] + 1) for l in range(len(s) - 1)]


def unroll(thetas: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate ``Theta^(l)`` matrices row-major into one vector ``theta`` (P,)."""
    if len(thetas) < 1:
        raise ValueError("thetas must hold at least one matrix")
    mats = [np.asarray(t) for t in thetas]
    for l, t in enumerate(mats):
        if t.ndim != 2:
            raise ValueError(f"thetas[{l}] must be 2-D; got shape {t.shape}")
        if t.dtype.kind not in "fiu":
            raise ValueError(f"thetas[{l}] must hold real numbers; got dtype {t.dtype}")
        if l and t.shape[1] != mats[l - 1].shape[0] + 1:
            raise ValueError(
                f"thetas[{l}] has shape {t.shape}; expected ({t.shape[0]}, "
                f"{mats[l - 1].shape[0] + 1}) to follow thetas[{l - 1}] {mats[l - 1].shape}"
            )
    dtype = np.result_type(*mats)
    return np.concatenate([t.ravel(order="C") for t in mats]).astype(dtype, copy=False)


def roll(theta: np.ndarray, layer_sizes: Sequence[int]) -> list[np.ndarray]:
    """Views ``Theta^(l)`` (s_{l+1}, s_l + 1) into ``theta`` (no copy)."""
    shapes = layer_shapes(layer_sizes)
    P = sum(r * c for r, c in shapes)
    theta = check_theta(theta, P)
    out, o = [], 0
    for r, c in shapes:
        out.append(theta[o : o + r * c].reshape(r, c))
        o += r * c
    return out


def _check_cost_inputs(
    theta: np.ndarray, layer_sizes: Sequence[int], X: Any, y: np.ndarray, activation: str,
    output: str, sample_weight: np.ndarray | None, check_finite: bool,
) -> tuple[tuple[int, ...], np.ndarray, CoreX, np.ndarray, np.ndarray | None]:
    """The checks of every call that computes a cost (nothing is converted)."""
    sizes = check_layer_sizes(layer_sizes)
    check("activation", activation)
    check("output", output)
    theta = check_theta(theta, _runtime.n_params(sizes))  # sizes checked above
    X = check_X(X, theta.dtype, check_finite)
    y = check_targets(y, theta.dtype, check_finite)
    if sample_weight is not None:
        sample_weight = check_array("sample_weight", sample_weight, theta.dtype, 1, check_finite)
    return sizes, theta, X, y, sample_weight


def cost_grad(
    theta: np.ndarray,
    layer_sizes: Sequence[int],
    X: Any,  # an ndarray or a SciPy CSR matrix
    y: np.ndarray,
    lam: float = 0.0,
    *,
    activation: str = "sigmoid",
    output: str = "sigmoid",
    sample_weight: np.ndarray | None = None,
    out: np.ndarray | None = None,
    n_threads: int | None = None,
    check_finite: bool = False,
) -> tuple[float, np.ndarray]:
    """Regularized cost ``J`` and its gradient, in one pass of the C++ core.

    Parameters
    ----------
    theta : ndarray (P,), float64 or float32
        Unrolled weights; its dtype selects the precision.
    layer_sizes : sequence of int
        ``s_0 .. s_{L-1}``, at least 2 layers.
    X : ndarray (m, s_0) or scipy.sparse CSR matrix/array (m, s_0)
        Examples, same dtype as ``theta``, C-contiguous. A sparse X runs the
        first layer's products sparse in the core (nothing is densified).
    y : ndarray (m,) int or (m, K)
        Class indices ``0..K-1`` (no one-hot matrix is built) or a target
        matrix (0/1 for multi-label) of ``theta``'s dtype.
    lam : float
        L2 strength on the non-bias weights.
    activation : {"sigmoid", "tanh", "relu", "identity", "logistic"}
        Hidden-layer activation (``"logistic"``: scikit-learn's name for sigmoid).
    output : {"sigmoid", "softmax", "identity", "poisson"}
        Output unit: sigmoid with binary cross-entropy per output, softmax
        with categorical cross-entropy, identity with half squared error, or
        poisson (``h = e^z``) with the half Poisson deviance
        ``y log(y / h) - y + h`` per output (``y >= 0``; ``y log y = 0`` at 0).
    sample_weight : ndarray (m,), optional
        Non-negative weights; sums become weighted sums and ``m`` becomes
        ``sum(sample_weight)``.
    out : ndarray (P,), optional
        Buffer for the gradient (overwritten and returned).
    n_threads : int, optional
        Threads for the core; default all (OpenMP's limit).
    check_finite : bool, default False
        Also scan ``X``, matrix ``y`` and ``sample_weight`` for NaN/inf in
        NumPy first (an O(m n) pass). Off by default: the core itself refuses
        a non-finite ``theta``, ``y`` or ``sample_weight`` and any non-finite
        ``X`` entry (through the pre-activations it makes, 0 * inf being NaN),
        with a ``ValueError`` naming the row and column.

    Returns
    -------
    J : float
        ``-(1/m) sum_i sum_k [y log h + (1-y) log(1-h)] + lam/(2m) sum Theta_{:,1:}^2``
        for the sigmoid output (the others: docs/guide/math.rst, "What is computed").
    grad : ndarray (P,)
        ``D^(l) = Delta^(l)/m + (lam/m) Theta^(l)`` (no regularization on column 0).
    """
    activation = check_activation(activation)
    sizes, theta, X, y, sample_weight = _check_cost_inputs(
        theta, layer_sizes, X, y, activation, output, sample_weight, check_finite
    )
    if out is not None:
        check_out(out, theta.dtype, theta.shape)
        check_no_overlap(out, theta=theta, X=_x_buffer(X), y=y, sample_weight=sample_weight)
    return _runtime.cost_grad(
        theta, sizes, X, y, check_lam(lam), activation, output, sample_weight, out, None,
        check("n_threads", n_threads),
    )


def forward(
    theta: np.ndarray,
    layer_sizes: Sequence[int],
    X: Any,  # an ndarray or a SciPy CSR matrix
    *,
    activation: str = "sigmoid",
    output: str = "sigmoid",
    out: np.ndarray | None = None,
    n_threads: int | None = None,
    check_finite: bool = False,
) -> np.ndarray:
    """Output activations ``a^(L)`` (m, K) of the network for the rows of ``X``."""
    sizes = check_layer_sizes(layer_sizes)
    activation = check_activation(activation)
    check("output", output)
    theta = check_theta(theta, _runtime.n_params(sizes))  # sizes checked above
    X = check_X(X, theta.dtype, check_finite)
    if out is not None:
        check_out(out, theta.dtype, (_x_rows(X), sizes[-1]))
        check_no_overlap(out, theta=theta, X=_x_buffer(X))
    return _runtime.forward(
        theta, sizes, X, activation, output, out, check("n_threads", n_threads)
    )


def predict(
    theta: np.ndarray,
    layer_sizes: Sequence[int],
    X: Any,  # an ndarray or a SciPy CSR matrix
    *,
    activation: str = "sigmoid",
    n_threads: int | None = None,
    check_finite: bool = False,
) -> np.ndarray:
    """Predicted class index (m,) int64: ``argmax_k z^(L)_k`` (ties: lowest index)."""
    sizes = check_layer_sizes(layer_sizes)
    activation = check_activation(activation)
    theta = check_theta(theta, _runtime.n_params(sizes))  # sizes checked above
    X = check_X(X, theta.dtype, check_finite)
    return _runtime.predict(theta, sizes, X, activation, check("n_threads", n_threads))


def forward_cost(
    theta: np.ndarray,
    layer_sizes: Sequence[int],
    X: Any,  # an ndarray or a SciPy CSR matrix
    y: np.ndarray,
    lam: float = 0.0,
    *,
    activation: str,
    output: str,
    sample_weight: np.ndarray | None = None,
    out: np.ndarray | None = None,
    n_threads: int | None = None,
    check_finite: bool = False,
) -> tuple[float, np.ndarray]:
    """Regularized cost ``J`` and output activations ``a^(L)``, in one forward pass.

    What :func:`cost_grad` and :func:`forward` give together, without the
    backward pass: the score and loss of a validation split.

    Parameters
    ----------
    theta : ndarray (P,), float64 or float32
        Unrolled weights; its dtype selects the precision.
    layer_sizes : sequence of int
        ``s_0 .. s_{L-1}``, at least 2 layers.
    X : ndarray (m, s_0) or scipy.sparse CSR matrix/array (m, s_0)
        Examples, same dtype as ``theta``, C-contiguous.
    y : ndarray (m,) int or (m, K)
        Class indices ``0..K-1`` or a target matrix of ``theta``'s dtype.
    lam : float
        L2 strength on the non-bias weights.
    activation : {"sigmoid", "tanh", "relu", "identity", "logistic"}
        Hidden-layer activation (``"logistic"``: scikit-learn's name for sigmoid).
    output : {"sigmoid", "softmax", "identity", "poisson"}
        Output unit and its loss, as in :func:`cost_grad`.
    sample_weight : ndarray (m,), optional
        Non-negative weights with a positive sum.
    out : ndarray (m, K), optional
        Buffer for ``a^(L)`` (overwritten and returned).
    n_threads : int, optional
        Threads for the core; default all (OpenMP's limit). The results do
        not depend on it.
    check_finite : bool, default False
        Also scan ``X``, matrix ``y`` and ``sample_weight`` for NaN/inf in
        NumPy first (an O(m n) pass). Off by default: the core itself refuses
        a non-finite ``theta``, ``y`` or ``sample_weight`` and any non-finite
        ``X`` entry (through the pre-activations it makes, 0 * inf being NaN),
        with a ``ValueError`` naming the row and column.

    Returns
    -------
    J : float
        ``J = (1/W) sum_i w_i loss_i + lam/(2W) sum_l sum_{i, j>=1} Theta^(l)_ij^2``
        with ``W = sum_i w_i`` (``m`` without weights) and the per-example
        losses of :func:`cost_grad` (sigmoid: binary cross-entropy per output;
        softmax: ``logsumexp(z) - z_y``; identity: ``1/2 ||h - y||^2``;
        poisson: ``sum_k y log(y / h) - y + h``). It
        matches ``cost_grad``'s ``J`` to rounding (the sums run in another
        order) and has the same bits for any ``n_threads``.
    h : ndarray (m, K)
        ``a^(L)``, bit for bit what :func:`forward` returns.
    """
    activation = check_activation(activation)
    sizes, theta, X, y, sample_weight = _check_cost_inputs(
        theta, layer_sizes, X, y, activation, output, sample_weight, check_finite
    )
    if out is not None:
        check_out(out, theta.dtype, (_x_rows(X), sizes[-1]))
        check_no_overlap(out, theta=theta, X=_x_buffer(X), y=y, sample_weight=sample_weight)
    return _runtime.forward_cost(
        theta, sizes, X, y, check_lam(lam), activation, output, sample_weight, out,
        check("n_threads", n_threads),
    )
