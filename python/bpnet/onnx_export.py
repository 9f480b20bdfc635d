"""ONNX export for serving: :func:`to_onnx`.

The graph is the forward pass: per layer a ``Gemm`` (``a W + b`` with W the
weights in scikit-learn's (s_l, s_{l+1}) layout, b the bias column of
``Theta^(l)``) and the activation (``Sigmoid``, ``Tanh``, ``Relu``, ``Identity``), then the
output unit (``Softmax`` over axis 1, ``Sigmoid``, ``Exp`` for poisson, or none for identity).
Operator set: ONNX opset 17 (default domain only, IR version 8), which
onnxruntime 1.12 and later run.

Inputs and outputs
------------------
- input ``X``: (N, s_0) float32 (or float64 with ``dtype=np.float64``);
- :class:`bpnet.Network`: output ``output`` (N, K), the output activations
  ``a^(L)`` (:meth:`~bpnet.Network.predict_proba`);
- :class:`bpnet.BPNetClassifier`: outputs ``label`` (N,) — the labels of
  ``classes_``, exactly: int64 for signed integers and unsigned ones up to 32
  bits, uint64 for uint64 labels (values >= 2**63 stay positive), bool for
  bool, the labels' own float type for float labels (float64 labels stay
  float64 in a float32 export, so 2**24 and 2**24 + 1 stay apart), string
  otherwise — and ``probabilities`` (N, K); for multi-label targets
  ``label`` is (N, K) int64 0/1;
- :class:`bpnet.BPNetRegressor`: output ``predictions`` (N, n_targets);
- a scikit-learn Pipeline of ``StandardScaler`` / ``MinMaxScaler`` steps and a
  bpnet estimator (what ``bpnet train`` saves): the scalers come first in the
  graph, so it takes raw features. ``StandardScaler(with_mean=False)`` only
  divides and ``with_std=False`` only subtracts, as scikit-learn does.

Precision of scaler pipelines
-----------------------------
The scalers run in float64 inside the graph also in a float32 export (the
float32 input is cast up, scaled, and cast down before the first layer), so
features far from zero (``mean_`` near 1.7e9, or 1e6 with a spread of 0.05)
are centred without the cancellation a float32 subtraction (or a scaler
folded into a float32 first layer) would suffer: the outputs equal the
pipeline's on the same float32 input to 1e-5. What float32 cannot do is
carry such features at all: a float32 input near 1e6 is rounded to
multiples of 0.0625, more than a standard deviation of 0.03. A float32
export therefore refuses (``ValueError`` naming the feature; use
``dtype=np.float64``) when rounding a scaler's training range to float32
moves a feature by more than :data:`FLOAT32_INPUT_RESOLUTION` (1e-5) of its
scale (``scale_`` of a StandardScaler, ``data_range_`` of a MinMaxScaler),
since serving it would then differ from the model on the user's own
(float64) features by more than the promised 1e-5.

``onnx`` is an optional dependency (``pip install 'bpnet-mlp[onnx]'``);
this module imports it only when called.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._about import __version__, install_hint

__all__ = ["FLOAT32_INPUT_RESOLUTION", "ONNX_IR_VERSION", "ONNX_OPSET", "to_onnx"]

ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # the IR version of opset 17 (onnx 1.12)
# a float32 export refuses scaled features that float32 rounds by more than this
# fraction of their scale (see "Precision of scaler pipelines")
FLOAT32_INPUT_RESOLUTION = 1e-5
_ACTIVATIONS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "identity": "Identity"}


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as err:
        raise ImportError(
            f"bpnet.to_onnx needs the onnx package: {install_hint('onnx')}"
        ) from err
    return onnx


class _Graph:
    """The nodes and initializers of the graph being built, with the onnx
    modules that make them (imported once, by :func:`to_onnx`)."""

    def __init__(self, onnx: Any, dt: np.dtype) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self.onnx, self.helper, self.numpy_helper = onnx, helper, numpy_helper
        self.TensorProto = TensorProto
        self.dt = dt  # the element type of inputs, weights and float outputs
        self.elem = TensorProto.FLOAT if dt == np.float32 else TensorProto.DOUBLE
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def const(self, key: str, value: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(value), key))
        return key

    def op(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], **attrs))
        return output


def to_onnx(
    model: Any, *, dtype: type | np.dtype | str = np.float32, name: str | None = None
) -> Any:
    """Export a network or a fitted estimator as an ONNX model.

    Parameters
    ----------
    model : Network, BPNetClassifier, BPNetRegressor or Pipeline
        A fitted estimator (or a Pipeline of ``StandardScaler`` /
        ``MinMaxScaler`` steps ending in one), or any :class:`bpnet.Network`.
    dtype : {numpy.float32, numpy.float64}, default float32
        Element type of the input, the weights and the float outputs.
    name : str, optional
        The graph's name (default ``"bpnet_<kind>"``).

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker.check_model``; opset :data:`ONNX_OPSET`.
        See the module documentation for its inputs and outputs.

    Raises
    ------
    ImportError
        Without the ``onnx`` package.
    TypeError, ValueError
        For an unsupported object, an unfitted estimator or a bad ``dtype``;
        ValueError for a float32 export of a scaler whose features float32
        cannot hold (see the module documentation), and for weights of 2 GiB
        or more (protobuf's limit on one model).
    """
    onnx = _import_onnx()
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64; got {dtype!r}")
    g = _Graph(onnx, dt)
    final, scalers, kind, net = _unpack(model)
    _check_size(net, dt)

    h = _scaler_nodes(g, scalers, "X")
    out_name = {"Network": "output", "BPNetClassifier": "probabilities",
                "BPNetRegressor": "predictions"}[kind]
    _network_nodes(g, net, h, out_name)
    outputs = [g.helper.make_tensor_value_info(out_name, g.elem, ["N", net.layer_sizes[-1]])]
    if kind == "BPNetClassifier":
        outputs.insert(0, _label_nodes(g, final, net, out_name))
    return _model(g, kind, net, outputs, name or f"bpnet_{kind}")


# protobuf, ONNX's container, cannot serialize a message of 2 GiB or more; the
# graph beside the weights takes well under the 16 MiB margin.
PROTOBUF_LIMIT = 2**31 - 2**24


def _check_size(net: Any, dt: np.dtype) -> None:
    """ValueError, before anything is built, when the weights alone would not
    fit in one protobuf message (where ``onnx`` itself would fail later with
    protobuf's ``EncodeError`` or a checker error)."""
    nbytes = int(net.n_params) * dt.itemsize
    if nbytes >= PROTOBUF_LIMIT:
        raise ValueError(
            f"the network's {net.n_params:,} parameters take {nbytes / 2**30:.2f} GiB as "
            f"{dt.name}; one ONNX model (a protobuf message) holds less than 2 GiB: "
            + ("export with dtype=np.float32 (half the size), or " if dt.itemsize == 8 else "")
            + "save the weights as ONNX external data yourself"
        )


def _unpack(model: Any) -> tuple[Any, list[Any], str, Any]:
    """``(final, scalers, kind, net)``: the last step of ``model`` (``model``
    itself if it is no Pipeline), the scalers before it, its class name and
    its :class:`~bpnet.Network`; TypeError / ValueError for what cannot be
    exported."""
    from ._pipeline import split_pipeline
    from .network import Network

    final, _, _ = split_pipeline(model)
    scalers = [step for _, step in model.steps[:-1]] if final is not model else []
    kind = type(final).__name__
    if isinstance(final, Network):
        net = final
    elif kind in ("BPNetClassifier", "BPNetRegressor"):
        fitted = getattr(final, "network_", None)
        if fitted is None:
            raise ValueError(f"model is an unfitted {kind}; fit it before exporting")
        net = fitted
    else:
        raise TypeError(
            "model must be a bpnet.Network, BPNetClassifier, BPNetRegressor or a Pipeline "
            f"ending in one; got {type(model).__name__}"
        )
    return final, scalers, kind, net


def _scaler_nodes(g: _Graph, scalers: list[Any], h: str) -> str:
    """The scalers' nodes on input ``h``: raw features -> what the network was
    trained on, computed in float64 (a float32 input is cast up first and the
    result cast down). Returns the name of their output."""
    if not scalers:
        return h
    if g.dt == np.float32:
        for i, sc in enumerate(scalers):
            _check_float32_range(sc, i)
        h = g.op("Cast", [h], "X_float64", to=g.TensorProto.DOUBLE)
    f8 = np.float64
    for i, sc in enumerate(scalers):
        p = f"scaler{i}_"
        if type(sc).__name__ == "StandardScaler":  # (X - mean_) / scale_, as configured
            if sc.with_mean and sc.mean_ is not None:
                h = g.op("Sub", [h, g.const(p + "mean", np.asarray(sc.mean_, f8))],
                         p + "centered")
            if sc.with_std and sc.scale_ is not None:
                h = g.op("Div", [h, g.const(p + "scale", np.asarray(sc.scale_, f8))],
                         p + "out")
        else:  # MinMaxScaler: X * scale_ + min_, clipped to feature_range if clip
            h = g.op("Mul", [h, g.const(p + "scale", np.asarray(sc.scale_, f8))], p + "scaled")
            h = g.op("Add", [h, g.const(p + "min", np.asarray(sc.min_, f8))], p + "out")
            if sc.clip:
                lo, hi = (np.array(v, f8) for v in sc.feature_range)
                h = g.op("Clip", [h, g.const(p + "lo", lo), g.const(p + "hi", hi)],
                         p + "clipped")
    if g.dt == np.float32:
        h = g.op("Cast", [h], "scaled_float32", to=g.TensorProto.FLOAT)
    return h


def _check_float32_range(sc: Any, i: int) -> None:
    """ValueError if float32 rounds the training range of scaler ``i``'s
    features by more than :data:`FLOAT32_INPUT_RESOLUTION` of their scale."""
    if type(sc).__name__ == "StandardScaler":
        var = getattr(sc, "var_", None)
        if var is None or getattr(sc, "mean_", None) is None:
            return
        unit = np.sqrt(np.asarray(var, np.float64))
        reach = np.abs(np.asarray(sc.mean_, np.float64)) + 3 * unit
    else:
        unit = np.asarray(sc.data_range_, np.float64)
        reach = np.maximum(np.abs(sc.data_min_), np.abs(sc.data_max_)).astype(np.float64)
    half_ulp = np.spacing(reach.astype(np.float32)).astype(np.float64) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = np.where(unit > 0, half_ulp / unit, 0.0)
    if (moved > FLOAT32_INPUT_RESOLUTION).any():
        j = int(np.argmax(moved))
        raise ValueError(
            f"scaler {i} ({type(sc).__name__}): feature {j} spans about "
            f"{reach[j]:.6g} with a scale of {unit[j]:.3g}; float32 input rounds it by up to "
            f"{moved[j]:.2g} of its scale (more than {FLOAT32_INPUT_RESOLUTION:g}), so a "
            "float32 graph cannot serve this model to the promised 1e-5; export with "
            "dtype=np.float64"
        )


def _network_nodes(g: _Graph, net: Any, h: str, out_name: str) -> None:
    """The forward pass on input ``h``: per layer ``z^(l+1) = a^(l) W + b``
    (Gemm) and the hidden activation, then the output unit into ``out_name``."""
    helper = g.helper
    thetas = net.thetas
    L = len(thetas)
    for l, T in enumerate(thetas):
        W = g.const(f"W{l + 1}", np.asarray(T[:, 1:].T, dtype=g.dt))  # (s_l, s_{l+1})
        b = g.const(f"b{l + 1}", np.asarray(T[:, 0], dtype=g.dt))  # (s_{l+1},)
        z = f"z{l + 2}"
        g.nodes.append(helper.make_node("Gemm", [h, W, b], [z], name=f"layer{l + 1}"))
        if l < L - 1:
            h = f"a{l + 2}"
            g.nodes.append(helper.make_node(_ACTIVATIONS[net.activation], [z], [h]))
        else:
            h = z
    if net.output == "softmax":
        g.nodes.append(helper.make_node("Softmax", [h], [out_name], axis=1))
    elif net.output == "sigmoid":
        g.nodes.append(helper.make_node("Sigmoid", [h], [out_name]))
    elif net.output == "poisson":  # h = e^z (a regressor's loss="poisson")
        g.nodes.append(helper.make_node("Exp", [h], [out_name]))
    else:
        g.nodes.append(helper.make_node("Identity", [h], [out_name]))


def _label_nodes(g: _Graph, clf: Any, net: Any, proba: str) -> Any:
    """A classifier's ``label`` output from the probabilities ``proba``:
    0/1 above one half per unit (multi-label: sigmoid outputs), else the class
    of the largest probability. Returns its value info."""
    helper, TensorProto = g.helper, g.TensorProto
    if net.output == "sigmoid":  # a classifier's sigmoid output: multi-label targets
        above = g.op("Greater", [proba, g.const("half", np.array(0.5, g.dt))], "above_half")
        g.op("Cast", [above], "label", to=TensorProto.INT64)
        return helper.make_tensor_value_info("label", TensorProto.INT64,
                                             ["N", net.layer_sizes[-1]])
    classes = np.asarray(clf.classes_)
    g.nodes.append(helper.make_node("ArgMax", [proba], ["label_index"], axis=1, keepdims=0))
    label_type, table = _label_table(g, classes)
    g.inits.append(g.numpy_helper.from_array(table, "classes"))
    g.nodes.append(helper.make_node("Gather", ["classes", "label_index"], ["label"], axis=0))
    return helper.make_tensor_value_info("label", label_type, ["N"])


def _label_table(g: _Graph, classes: np.ndarray) -> tuple[int, np.ndarray]:
    """(ONNX element type, table) holding ``classes`` exactly: int64 for signed
    and small unsigned integers, uint64, bool, the classes' own float type,
    or strings."""
    TensorProto = g.TensorProto
    kind, size = classes.dtype.kind, classes.dtype.itemsize
    if kind == "b":
        return TensorProto.BOOL, classes.astype(np.bool_)
    if kind == "u" and size == 8:  # values >= 2**63 do not fit int64
        return TensorProto.UINT64, classes.astype(np.uint64)
    if kind in "iu":
        return TensorProto.INT64, classes.astype(np.int64)
    if kind == "f" and size in (2, 4, 8):  # never rounded to the export's float type
        table = classes.astype(classes.dtype.newbyteorder("="))
        return int(g.helper.np_dtype_to_tensor_dtype(table.dtype)), table
    if kind in "US" or classes.dtype == object:
        return TensorProto.STRING, np.array([str(c) for c in classes], dtype=object)
    raise ValueError(f"classes_ of dtype {classes.dtype} cannot be exported")


def _model(g: _Graph, kind: str, net: Any, outputs: list[Any], name: str) -> Any:
    """The checked ModelProto of the graph ``g``: opset :data:`ONNX_OPSET`,
    IR :data:`ONNX_IR_VERSION`, the network's shape in the metadata."""
    helper = g.helper
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info("X", g.elem, ["N", net.layer_sizes[0]])],
        outputs, initializer=g.inits,
    )
    onnx_model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="bpnet",
        producer_version=__version__,
        doc_string=f"bpnet {kind} {'-'.join(map(str, net.layer_sizes))}, {net.activation} "
        f"hidden units, {net.output} output",
    )
    onnx_model.ir_version = ONNX_IR_VERSION
    helper.set_model_props(onnx_model, {
        "layer_sizes": ",".join(map(str, net.layer_sizes)), "activation": net.activation,
        "output": net.output, "kind": kind,
    })
    g.onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model
