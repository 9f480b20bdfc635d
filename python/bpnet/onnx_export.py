"""ONNX export for serving: :func:`to_onnx`.

The graph is the forward pass: per layer a ``Gemm`` (``a W + b`` with W the
weights in scikit-learn's (s_l, s_{l+1}) layout, b the bias column of
``Theta^(l)``) and the activation (``Sigmoid``, ``Tanh``, ``Relu``), then the
output unit (``Softmax`` over axis 1, ``Sigmoid``, or none for identity).
Operator set: ONNX opset 17 (default domain only, IR version 8), which
onnxruntime 1.12 and later run.

Inputs and outputs
------------------
- input ``X``: (N, s_0) float32 (or float64 with ``dtype=np.float64``);
- :class:`bpnet.Network`: output ``output`` (N, K), the output activations
  ``a^(L)`` (:meth:`~bpnet.Network.predict_proba`);
- :class:`bpnet.BPNetClassifier`: outputs ``label`` (N,) — the labels of
  ``classes_`` (int64 or string) — and ``probabilities`` (N, K); for
  multi-label targets ``label`` is (N, K) int64 0/1;
- :class:`bpnet.BPNetRegressor`: output ``predictions`` (N, n_targets);
- a scikit-learn Pipeline of ``StandardScaler`` / ``MinMaxScaler`` steps and a
  bpnet estimator (what ``bpnet train`` saves): the scalers come first in the
  graph, so it takes raw features.

``onnx`` is an optional dependency (``pip install 'bpnet-mlp[onnx]'``);
this module imports it only when called.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._about import __version__, install_hint

__all__ = ["ONNX_IR_VERSION", "ONNX_OPSET", "to_onnx"]

ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # the IR version of opset 17 (onnx 1.12)
_ACTIVATIONS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as err:
        raise ImportError(
            f"bpnet.to_onnx needs the onnx package: {install_hint('onnx')}"
        ) from err
    return onnx


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
        For an unsupported object, an unfitted estimator or a bad ``dtype``.
    """
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    from ._pipeline import split_pipeline
    from .network import Network

    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64; got {dtype!r}")
    elem = TensorProto.FLOAT if dt == np.float32 else TensorProto.DOUBLE

    final, _, _ = split_pipeline(model)
    scalers = [step for _, step in model.steps[:-1]] if final is not model else []
    kind = type(final).__name__
    if isinstance(final, Network):
        net = final
    elif kind in ("BPNetClassifier", "BPNetRegressor"):
        net = final.__dict__.get("network_")
        if net is None:
            raise ValueError(f"model is an unfitted {kind}; fit it before exporting")
    else:
        raise TypeError(
            "model must be a bpnet.Network, BPNetClassifier, BPNetRegressor or a Pipeline "
            f"ending in one; got {type(model).__name__}"
        )

    nodes: list[Any] = []
    inits: list[Any] = []

    def const(key: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), key))
        return key

    def op(op_type: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    h = "X"
    for i, sc in enumerate(scalers):  # raw features -> what the network was trained on
        p = f"scaler{i}_"
        if type(sc).__name__ == "StandardScaler":  # (X - mean_) / scale_
            if sc.mean_ is not None:
                h = op("Sub", [h, const(p + "mean", sc.mean_.astype(dt))], p + "centered")
            if sc.scale_ is not None:
                h = op("Div", [h, const(p + "scale", sc.scale_.astype(dt))], p + "out")
        else:  # MinMaxScaler: X * scale_ + min_, clipped to feature_range if clip
            h = op("Mul", [h, const(p + "scale", sc.scale_.astype(dt))], p + "scaled")
            h = op("Add", [h, const(p + "min", sc.min_.astype(dt))], p + "out")
            if sc.clip:
                lo, hi = (np.array(v, dt) for v in sc.feature_range)
                h = op("Clip", [h, const(p + "lo", lo), const(p + "hi", hi)], p + "clipped")

    thetas = net.thetas
    L = len(thetas)
    for l, T in enumerate(thetas):
        W = const(f"W{l + 1}", np.asarray(T[:, 1:].T, dtype=dt))  # (s_l, s_{l+1})
        b = const(f"b{l + 1}", np.asarray(T[:, 0], dtype=dt))  # (s_{l+1},)
        z = f"z{l + 2}"
        nodes.append(helper.make_node("Gemm", [h, W, b], [z], name=f"layer{l + 1}"))
        if l < L - 1:
            h = f"a{l + 2}"
            nodes.append(helper.make_node(_ACTIVATIONS[net.activation], [z], [h]))
        else:
            h = z
    K = net.layer_sizes[-1]
    out_name = {"Network": "output", "BPNetClassifier": "probabilities",
                "BPNetRegressor": "predictions"}[kind]
    if net.output == "softmax":
        nodes.append(helper.make_node("Softmax", [h], [out_name], axis=1))
    elif net.output == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", [h], [out_name]))
    else:
        nodes.append(helper.make_node("Identity", [h], [out_name]))
    outputs = [helper.make_tensor_value_info(out_name, elem, ["N", K])]

    if kind == "BPNetClassifier":
        if final._multilabel:
            above = op("Greater", [out_name, const("half", np.array(0.5, dt))], "above_half")
            op("Cast", [above], "label", to=TensorProto.INT64)
            label_info = helper.make_tensor_value_info("label", TensorProto.INT64, ["N", K])
        else:
            classes = np.asarray(final.classes_)
            nodes.append(helper.make_node("ArgMax", [out_name], ["label_index"], axis=1,
                                          keepdims=0))
            if classes.dtype.kind in "iub":
                label_type = TensorProto.INT64
                table = classes.astype(np.int64)
            elif classes.dtype.kind in "US" or classes.dtype == object:
                label_type = TensorProto.STRING
                table = np.array([str(c) for c in classes], dtype=object)
            elif classes.dtype.kind == "f":
                label_type = elem
                table = classes.astype(dt)
            else:
                raise ValueError(f"classes_ of dtype {classes.dtype} cannot be exported")
            inits.append(numpy_helper.from_array(table, "classes"))
            nodes.append(helper.make_node("Gather", ["classes", "label_index"], ["label"], axis=0))
            label_info = helper.make_tensor_value_info("label", label_type, ["N"])
        outputs = [label_info, *outputs]

    graph = helper.make_graph(
        nodes, name or f"bpnet_{kind}",
        [helper.make_tensor_value_info("X", elem, ["N", net.layer_sizes[0]])],
        outputs, initializer=inits,
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
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model
