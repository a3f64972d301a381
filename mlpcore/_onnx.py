"""Export of an :class:`mlpcore.MLP` to an ONNX graph (``MLP.to_onnx``, ``mlpcore export``).

The graph is built with the ``onnx`` package's helper API (optional: ``pip install
"mlpcore[onnx]"``) and reads the model only through its public attributes (``weights``,
``biases``, ``activation``, ``output``, ``loss_name``, ``classes``, ``targets``, ``sizes``,
``scaling`` and ``feature_names``). It computes what ``predict`` and ``predict_proba``
compute:

* the model's input scaling if it has one (``scale=``): ``Sub`` + ``Div``;
* per layer ``MatMul`` + ``Add``, then the hidden activation (``Sigmoid``, ``Tanh``,
  ``Relu``; nothing for identity) or, on the last layer, the output activation
  (``Softmax`` over each row, ``Sigmoid``, ``Exp``; nothing for identity);
* classification: output ``label`` (shape [N], the class labels in their own type: int64,
  bool or string) and ``probabilities`` (shape [N, n_classes]). The label is the class of
  the largest output (``ArgMax``, first of equals, as ``numpy.argmax``), or for one sigmoid
  unit ``classes[p > 0.5]`` with probabilities ``[1 - p, p]``; outputs other than softmax
  are normalised per row as ``predict_proba`` does (identity outputs clipped at 0 first; a
  row summing to 0 becomes uniform);
* multi-label classification: ``label`` is the 0/1 matrix (int64, shape [N, K], an output
  above 0.5 is a 1) and ``probabilities`` the K per-label probabilities;
* regression: output ``predictions``, shape [N] if the model was trained on a 1-D target,
  else [N, K].

The input is ``X``, shape [N, D], of the graph's dtype (float32 by default, or float64);
the weights are stored in that dtype. Its columns are taken by position; the model's
feature names, when it has them, are the input's documentation (``doc_string``).
"""

import os

import numpy as np

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax over one axis, and ReduceSum with its axes as an input

_HIDDEN_OPS = {"identity": None, "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}
_OUTPUT_OPS = {"identity": None, "sigmoid": "Sigmoid", "softmax": "Softmax", "exp": "Exp"}


def _import_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("exporting to ONNX needs the onnx package; install it with: "
                          "pip install 'mlpcore[onnx]'") from exc
    return onnx


def _check_dtype(dtype):
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be np.float32 or np.float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be np.float32 or np.float64, got {dtype.name}")
    return dtype


def _check_opset(opset, onnx):
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return min(DEFAULT_OPSET, newest)
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset must be an integer, got {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be between {MIN_OPSET} and {newest} (the newest the "
                         f"installed onnx {onnx.__version__} knows), got {opset}")
    return int(opset)


class _Graph:
    """Nodes and initializers under construction, with unique names."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.helper = onnx.helper
        self.dtype = dtype
        self.nodes = []
        self.initializers = []
        self._count = 0

    def name(self, base):
        self._count += 1
        return f"{base}_{self._count}"

    def constant(self, base, array):
        """An initializer holding ``array`` (strings become an ONNX string tensor)."""
        name = self.name(base)
        array = np.asarray(array)
        if array.dtype.kind in "US":
            values = [v.encode("utf-8") if isinstance(v, str) else bytes(v)
                      for v in array.ravel().tolist()]
            tensor = self.helper.make_tensor(name, self.onnx.TensorProto.STRING,
                                             array.shape, values)
        else:
            tensor = self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name)
        self.initializers.append(tensor)
        return name

    def scalar(self, base, value):
        return self.constant(base, np.array(value, dtype=self.dtype))

    def op(self, op_type, inputs, output=None, **attributes):
        output = output or self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [output],
                                                name=self.name(op_type), **attributes))
        return output


def _tensor_type(onnx, dtype):
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _label_type(onnx, classes):
    if classes.dtype.kind in "US":
        return onnx.TensorProto.STRING
    return _tensor_type(onnx, classes.dtype)


def _scaled(g, model, x):
    """The model's own input scaling (``scale=``), ``(X - shift) / scale``, if it has one."""
    scaling = getattr(model, "scaling", None)
    if scaling is None:
        return x
    shift = g.constant("input_shift", np.asarray(scaling.shift, dtype=g.dtype))
    scale = g.constant("input_scale", np.asarray(scaling.scale, dtype=g.dtype))
    return g.op("Div", [g.op("Sub", [x, shift]), scale])


def _layers(g, model, x):
    """MatMul + Add + activation for every layer; returns the output activations' name."""
    weights, biases = model.weights, model.biases
    last = len(weights) - 1
    for i, (W, b) in enumerate(zip(weights, biases)):
        w = g.constant(f"W{i + 1}", np.asarray(W, dtype=g.dtype))
        bias = g.constant(f"b{i + 1}", np.asarray(b, dtype=g.dtype))
        x = g.op("Add", [g.op("MatMul", [x, w]), bias])
        op = _OUTPUT_OPS[model.output] if i == last else _HIDDEN_OPS[model.activation]
        if op == "Softmax":
            x = g.op(op, [x], axis=1)
        elif op is not None:
            x = g.op(op, [x])
    return x


def _probabilities(g, model, A, output_name):
    """``predict_proba`` from the output activations (see ``Targets.probabilities``)."""
    if model.targets.single_sigmoid:
        p = g.op("Reshape", [A, g.constant("column", np.array([-1, 1], dtype=np.int64))])
        return g.op("Concat", [g.op("Sub", [g.scalar("one", 1.0), p]), p], output_name,
                    axis=1)
    if model.output == "softmax" or getattr(model.targets, "multilabel", False):
        return g.op("Identity", [A], output_name)  # multi-label: one probability per label
    P = g.op("Relu", [A]) if model.output == "identity" else A
    total = g.op("ReduceSum", [P, g.constant("axis", np.array([1], dtype=np.int64))],
                 keepdims=1)
    empty = g.op("LessOrEqual", [total, g.scalar("zero", 0.0)])
    P = g.op("Where", [empty, g.scalar("one", 1.0), P])
    total = g.op("Where", [empty, g.scalar("n_classes", float(len(model.classes))), total])
    return g.op("Div", [P, total], output_name)


def _labels(g, model, A, output_name):
    """``predict``'s class labels from the output activations."""
    if getattr(model.targets, "multilabel", False):  # the 0/1 matrix, as int64
        return g.op("Cast", [g.op("Greater", [A, g.scalar("half", 0.5)])], output_name,
                    to=g.onnx.TensorProto.INT64)
    classes = g.constant("classes", np.asarray(model.classes))
    if model.targets.single_sigmoid:
        p = g.op("Reshape", [A, g.constant("flat", np.array([-1], dtype=np.int64))])
        index = g.op("Cast", [g.op("Greater", [p, g.scalar("half", 0.5)])],
                     to=g.onnx.TensorProto.INT64)
    else:
        index = g.op("ArgMax", [A], axis=1, keepdims=0, select_last_index=0)
    return g.op("Gather", [classes, index], output_name, axis=0)


def build_onnx(model, *, dtype=np.float32, opset=None):
    """The ONNX graph of a trained model's ``predict`` (and ``predict_proba``).

    Parameters
    ----------
    model : mlpcore.MLP
        A trained (or built) model.
    dtype : {np.float32, np.float64}, default np.float32
        The graph's floating-point type: of its input ``X``, its weights and its outputs.
    opset : int, optional
        The ONNX operator set (default 17, or the installed onnx's newest if older; at
        least 13).

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker.check_model``.

    Raises
    ------
    TypeError, ValueError
        For a bad ``dtype`` or ``opset``, or ``feature_names`` of the wrong length.
    mlpcore.NotFittedError
        If the model has not been trained.
    ImportError
        If the onnx package is not installed.
    """
    onnx = _import_onnx()
    dtype = _check_dtype(dtype)
    opset = _check_opset(opset, onnx)
    sizes = model.sizes  # refuses an untrained model
    helper = onnx.helper
    g = _Graph(onnx, dtype)
    float_type = _tensor_type(onnx, dtype)

    names = getattr(model, "feature_names", None)
    if names is not None:
        names = [str(name) for name in names]
        if len(names) != sizes[0]:
            raise ValueError(f"feature_names has {len(names)} names but the model takes "
                             f"{sizes[0]} features")
    doc = (f"{sizes[0]} features" if names is None else
           "features, in order: " + ", ".join(map(str, names)))
    inputs = [helper.make_tensor_value_info("X", float_type, ["N", sizes[0]], doc_string=doc)]
    A = _layers(g, model, _scaled(g, model, "X"))
    if model.targets.task == "classification":
        classes = np.asarray(model.classes)
        labels = _labels(g, model, A, "label")
        proba = _probabilities(g, model, A, "probabilities")
        if getattr(model.targets, "multilabel", False):
            label_info = helper.make_tensor_value_info(labels, onnx.TensorProto.INT64,
                                                       ["N", len(classes)])
        else:
            label_info = helper.make_tensor_value_info(labels, _label_type(onnx, classes),
                                                       ["N"])
        outputs = [label_info,
                   helper.make_tensor_value_info(proba, float_type, ["N", len(classes)])]
    else:
        if model.targets.ndim == 1:
            flat = g.constant("flat", np.array([-1], dtype=np.int64))
            pred = g.op("Reshape", [A, flat], "predictions")
            shape = ["N"]
        else:
            pred = g.op("Identity", [A], "predictions")
            shape = ["N", sizes[-1]]
        outputs = [helper.make_tensor_value_info(pred, float_type, shape)]

    description = (f"mlpcore MLP {'-'.join(map(str, sizes))}: {model.activation} hidden units, "
                   f"{model.output} output, trained with the {model.loss_name} loss")
    graph = helper.make_graph(g.nodes, "mlpcore_mlp", inputs, outputs, g.initializers,
                              doc_string=description)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="mlpcore",
                              producer_version=_version(), doc_string=description,
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _version():
    # From the installed metadata: importing the mlpcore package here would reach back up
    # through the layers (mlpcore imports the model, which imports this module).
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlpcore")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "unknown"


def to_onnx(model, path=None, *, dtype=np.float32, opset=None):
    """Build the model's ONNX graph (see :func:`build_onnx`) and write it to ``path`` if given.

    Parameters
    ----------
    model : mlpcore.MLP
    path : str or os.PathLike, optional
        Where to write the serialised graph (usually ``*.onnx``).
    dtype : {np.float32, np.float64}, default np.float32
    opset : int, optional

    Returns
    -------
    onnx.ModelProto
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    proto = build_onnx(model, dtype=dtype, opset=opset)
    if path is not None:
        data = proto.SerializeToString()
        tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return proto
