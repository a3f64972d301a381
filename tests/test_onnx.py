"""ONNX export: ``MLP.to_onnx`` and ``mlpcore export``, each graph run under onnxruntime and
compared with the model's own ``predict`` and ``predict_proba``."""

import csv
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime  # noqa: F401 (the graphs run under it: a missing one fails here)
import pandas as pd
import pytest

import mlpcore
from _helpers import onnx_session

HIDDEN = ["identity", "sigmoid", "tanh", "relu"]
# Every output/loss pairing the model accepts (mlpcore._base.check_output_loss).
PAIRS = [("identity", "mse"), ("sigmoid", "mse"), ("sigmoid", "cross_entropy"),
         ("softmax", "mse"), ("softmax", "cross_entropy"), ("exp", "poisson")]
# The float32 graphs are compared within 1e-5, the float64 ones within 1e-12.
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def run_graph(proto, X):
    sess = onnx_session(proto)
    names = [o.name for o in sess.get_outputs()]
    dtype = np.float64 if "double" in sess.get_inputs()[0].type else np.float32
    return dict(zip(names, sess.run(None, {"X": np.asarray(X, dtype=dtype)})))


def decisive(model, X, margin=1e-4):
    """Rows whose predicted class does not hang on rounding (top-two gap above margin)."""
    A = model.forward(X).astype(np.float64)
    if model.targets.single_sigmoid or model.targets.multilabel:  # thresholds at 0.5
        return (np.abs(A - 0.5) > margin).all(axis=1)
    top = np.sort(A, axis=1)
    return top[:, -1] - top[:, -2] > margin


def assert_graph_matches(model, X, dtype):
    """The exported graph's outputs equal predict (and predict_proba) within TOLERANCE."""
    tol = TOLERANCE[dtype]
    proto = model.to_onnx(dtype=dtype)
    got = run_graph(proto, X)
    if model.classes is not None:
        assert list(got) == ["label", "probabilities"]
        proba = model.predict_proba(X)
        assert got["probabilities"].dtype == dtype
        assert got["probabilities"].shape == proba.shape
        np.testing.assert_allclose(got["probabilities"], proba, rtol=tol, atol=tol)
        expected = model.predict(X)
        rows = decisive(model, X) if dtype == np.float32 else np.ones(len(X), bool)
        assert rows.mean() > 0.9
        labels = got["label"]
        if expected.dtype.kind == "U":
            labels = labels.astype(str)
        assert labels.dtype == expected.dtype
        np.testing.assert_array_equal(labels[rows], expected[rows])
    else:
        assert list(got) == ["predictions"]
        expected = model.predict(X)
        assert got["predictions"].shape == expected.shape
        np.testing.assert_allclose(got["predictions"], expected, rtol=tol, atol=tol)
    return proto


def targets_for(task, output, rng, X):
    """Y for one task and output, as a user of that pairing would give it."""
    if task == "classification":  # three labels
        return np.array([2, 0, 1])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    if task == "multilabel":  # a 0/1 matrix, several ones per row
        Y = (X[:, :3] > 0).astype(int)
        Y[:2] = 1  # rows with every label, so it is not one-hot
        return Y
    if output in ("identity", "sigmoid"):  # values (in 0..1 for the sigmoid)
        V = np.column_stack([X[:, 0] - 2 * X[:, 1], X[:, 2] * X[:, 3], X[:, 1]])
        return 1 / (1 + np.exp(-V)) if output == "sigmoid" else V
    if output == "softmax":  # soft labels: rows of proportions
        P = np.exp(X[:, :3])
        return P / P.sum(axis=1, keepdims=True)
    return rng.poisson(np.exp(0.5 * X[:, :2]))  # exp + poisson: counts, two outputs


# Every hidden activation x output/loss pairing x task the model accepts (softmax outputs
# need rows summing to 1, which multi-label rows do not).
CASES = [(act, out, loss, task) for act in HIDDEN for out, loss in PAIRS
         for task in ("classification", "multilabel", "regression")
         if not (task == "multilabel" and out == "softmax")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("activation,output,loss,task", CASES,
                         ids=["-".join(c) for c in CASES])
def test_every_activation_output_and_loss(activation, output, loss, task, dtype):
    rng = np.random.default_rng(abs(hash((activation, output, loss, task))) % 2**32)
    X = rng.normal(size=(60, 4))
    Y = targets_for(task, output, rng, X)
    model = mlpcore.fit(X.astype(dtype), Y, hidden=(7, 5), activation=activation,
                        output=output, loss=loss, epochs=3, seed=0, learning_rate=0.01,
                        dtype=dtype, task="regression" if task == "regression" else
                        "classification")
    assert model.output == output and model.loss_name == loss
    assert (model.classes is not None) == (task != "regression")
    assert model.targets.multilabel == (task == "multilabel")
    assert_graph_matches(model, X.astype(dtype), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_binary_with_one_sigmoid_unit(dtype):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 3))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    model = mlpcore.fit(X, y, hidden=(6,), output="sigmoid", epochs=20, seed=1, dtype=dtype)
    assert model.targets.single_sigmoid and model.n_outputs == 1
    assert_graph_matches(model, X.astype(dtype), dtype)


@pytest.mark.parametrize("labels", [np.array([10, 20, 30]), np.array(["cat", "dog", "emu"]),
                                    np.array([False, True])], ids=["int", "str", "bool"])
def test_labels_keep_their_type(labels):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(90, 3))
    y = labels[rng.integers(0, len(labels), size=90)]
    y[: len(labels)] = labels
    model = mlpcore.fit(X, y, hidden=(5,), epochs=5, seed=0)
    got = run_graph(assert_graph_matches(model, X, np.float64), X)
    assert set(np.unique(got["label"]).astype(labels.dtype)) <= set(labels)


def test_one_hot_targets_and_a_float64_model_in_a_float32_graph():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(70, 5))
    Y = np.eye(4)[rng.integers(0, 4, size=70)]
    model = mlpcore.fit(X, Y, hidden=(8,), epochs=10, seed=0)  # float64
    assert model.dtype == np.float64
    proto = assert_graph_matches(model, X, np.float32)  # the default graph type
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert run_graph(proto, X)["label"].dtype == np.int64


def test_identity_outputs_for_classes_clip_and_normalise_like_predict_proba():
    # An identity-output classifier whose outputs are all negative for some rows: clipped
    # to zero, those rows are uniform.
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, size=40)
    model = mlpcore.fit(X, y, hidden=(4,), output="identity", loss="mse", epochs=2, seed=0,
                        task="classification")
    model.biases[-1][:] = -50.0  # every output negative
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba, 1 / 3)
    got = run_graph(model.to_onnx(dtype=np.float64), X)
    np.testing.assert_allclose(got["probabilities"], proba, rtol=1e-12)
    np.testing.assert_array_equal(got["label"], model.predict(X))


def test_regression_shapes_follow_predict():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 3))
    one = mlpcore.fit(X, X[:, 0] * 2, hidden=(4,), epochs=3, seed=0)
    several = mlpcore.fit(X, X[:, :2], hidden=(4,), epochs=3, seed=0)
    assert run_graph(one.to_onnx(), X)["predictions"].shape == (50,)
    assert run_graph(several.to_onnx(), X)["predictions"].shape == (50, 2)
    no_hidden = mlpcore.fit(X, X[:, :2], hidden=(), epochs=3, seed=0)
    assert_graph_matches(no_hidden, X, np.float64)


def test_graph_structure_path_feature_names_and_opset(tmp_path):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(30, 3))
    model = mlpcore.fit(X, rng.integers(0, 2, size=30), hidden=(5, 4), activation="tanh",
                        epochs=2, seed=0)
    proto = model.to_onnx()
    ops = [n.op_type for n in proto.graph.node]
    assert ops[:6] == ["MatMul", "Add", "Tanh", "MatMul", "Add", "Tanh"]
    assert ops[6:9] == ["MatMul", "Add", "Softmax"]
    assert proto.opset_import[0].version == 17
    assert "3 features" in proto.graph.input[0].doc_string

    # A model trained on a DataFrame keeps its column names: they document the input.
    frame = pd.DataFrame(X, columns=["height", "width", "depth"])
    named = mlpcore.fit(frame, rng.integers(0, 2, size=30), hidden=(5,), epochs=2, seed=0)
    assert named.feature_names == ["height", "width", "depth"]
    path = tmp_path / "model.onnx"
    returned = named.to_onnx(path, opset=13)
    written = onnx.load(str(path))
    assert written == returned
    assert written.opset_import[0].version == 13
    assert written.graph.input[0].doc_string == "features, in order: height, width, depth"
    assert_graph_matches(named, frame, np.float32)
    np.testing.assert_array_equal(run_graph(written, X)["label"], named.predict(frame))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("scale", ["standard", "minmax"])
def test_a_model_that_scales_its_inputs(scale, dtype):
    # scale=: the model keeps the scaling and applies it to every input; so does the graph.
    rng = np.random.default_rng(16)
    X = (rng.normal(size=(80, 3)) * [1, 100, 0.01] + [0, 1000, 5]).astype(dtype)
    y = (X[:, 0] + (X[:, 1] - 1000) / 100 > 0).astype(int)
    for Y in (y, X[:, 0] * 2 + X[:, 2]):
        model = mlpcore.fit(X, Y, hidden=(6,), epochs=5, seed=0, scale=scale, dtype=dtype)
        assert model.scaling is not None
        proto = assert_graph_matches(model, X, dtype)
        assert [n.op_type for n in proto.graph.node][:3] == ["Sub", "Div", "MatMul"]


def test_opsets_13_to_21_run():
    # The operators' forms used are the same from 13 on. (Newer opsets are accepted up to
    # the installed onnx's newest, which onnxruntime may not know yet: not tested here.)
    rng = np.random.default_rng(15)
    X = rng.normal(size=(30, 3))
    model = mlpcore.fit(X, rng.integers(0, 3, size=30), hidden=(4,), output="identity",
                        loss="mse", epochs=2, seed=0, task="classification")
    for opset in range(13, min(21, onnx.defs.onnx_opset_version()) + 1):
        proto = model.to_onnx(dtype=np.float64, opset=opset)
        assert proto.opset_import[0].version == opset
        got = run_graph(proto, X)
        np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), rtol=1e-12)
        np.testing.assert_array_equal(got["label"], model.predict(X))


def test_bad_arguments_name_themselves(tmp_path):
    X = np.random.default_rng(7).normal(size=(20, 2))
    model = mlpcore.fit(X, X[:, 0] > 0, hidden=(3,), epochs=1, seed=0)
    with pytest.raises(ValueError, match="dtype"):
        model.to_onnx(dtype=np.float16)
    with pytest.raises(TypeError, match="dtype"):
        model.to_onnx(dtype="no-such-type")
    with pytest.raises(ValueError, match="opset"):
        model.to_onnx(opset=9)
    with pytest.raises(ValueError, match="opset"):
        model.to_onnx(opset=onnx.defs.onnx_opset_version() + 1)
    with pytest.raises(TypeError, match="opset"):
        model.to_onnx(opset=17.0)
    with pytest.raises(TypeError, match="path"):
        model.to_onnx(123)
    with pytest.raises(mlpcore.NotFittedError):
        mlpcore.MLP((3,)).to_onnx()
    model.feature_names = ["only one"]
    with pytest.raises(ValueError, match="feature_names has 1 names but the model takes 2"):
        model.to_onnx()


def test_core_package_imports_no_optional_dependency_and_explains_a_missing_onnx():
    code = (
        "import sys, numpy as np, mlpcore\n"
        "m = mlpcore.fit(np.eye(4), [0, 1, 0, 1], hidden=(3,), epochs=2)\n"
        "m.predict(np.eye(4))\n"
        "loaded = [n for n in ('onnx', 'onnxruntime', 'skl2onnx', 'sklearn') if n in sys.modules]\n"
        "print('loaded:', loaded)\n"
        "sys.modules['onnx'] = None\n"
        "try:\n"
        "    m.to_onnx()\n"
        "except ImportError as e:\n"
        "    print('needs:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "loaded: []" in out.stdout
    assert "pip install 'mlpcore[onnx]'" in out.stdout


# -- the command line (the cli fixture is in conftest.py) ---------------------------------

@pytest.mark.parametrize("scale", ["standard", "minmax"])
def test_export_of_a_model_trained_with_folded_scaling(cli, tmp_path, scale):
    # mlpcore train folds the feature scaling into the first layer (and, for regression,
    # the target scaling into the last): the graph takes raw features and gives raw values.
    rng = np.random.default_rng(8)
    X = rng.normal(size=(150, 3)) * [1, 100, 0.01] + [0, 1000, 5]
    labels = np.where(X[:, 0] + (X[:, 1] - 1000) / 100 > 0, "hi", "lo")
    value = 3 * X[:, 0] + 0.02 * X[:, 1] + 50
    for target, y in (("label", labels), ("value", value)):
        with open(tmp_path / f"{target}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["a", "b", "c", target])
            writer.writerows([*map(float, x), t] for x, t in zip(X, y.tolist()))
        proc = cli("train", f"{target}.csv", "--target", target, "--scale", scale,
                   "--epochs", "30", "--seed", "0", "--optimizer", "adam",
                   "--learning-rate", "0.01", "--output", f"{target}.npz", "-q")
        assert proc.returncode == 0, proc.stderr
        proc = cli("export", f"{target}.npz", f"{target}.onnx")
        assert proc.returncode == 0, proc.stderr
        assert f"written to {target}.onnx" in proc.stdout
        model = mlpcore.load(tmp_path / f"{target}.npz")
        assert model.scaling is None  # folded into the weights, not kept as scaling
        graph = onnx.load(str(tmp_path / f"{target}.onnx"))
        assert graph.graph.input[0].doc_string == "features, in order: a, b, c"
        got = run_graph(graph, X)
        frame = pd.DataFrame(X, columns=["a", "b", "c"])  # the model matches names
        if target == "label":
            assert model.score(frame, labels) > 0.9  # the model takes raw features
            np.testing.assert_allclose(got["probabilities"], model.predict_proba(frame),
                                       rtol=1e-5, atol=1e-5)
            rows = decisive(model, frame)
            np.testing.assert_array_equal(got["label"].astype(str)[rows],
                                          model.predict(frame)[rows])
        else:
            assert model.score(frame, value) > 0.9
            np.testing.assert_allclose(got["predictions"], model.predict(frame), rtol=1e-5)
        proc = cli("export", f"{target}.npz", f"{target}64.onnx", "--dtype",
                   "float64", "--opset", "13")
        assert proc.returncode == 0, proc.stderr
        got = run_graph(onnx.load(str(tmp_path / f"{target}64.onnx")), X)
        key = "probabilities" if target == "label" else "predictions"
        expected = (model.predict_proba(frame) if target == "label" else
                    model.predict(frame))
        np.testing.assert_allclose(got[key], expected, rtol=1e-12, atol=1e-12)


def test_export_errors_are_one_line(cli, tmp_path):
    proc = cli("export", "missing.npz", "out.onnx")
    assert proc.returncode == 1 and proc.stderr.startswith("mlpcore: error: no such model file")
    X = np.random.default_rng(9).normal(size=(20, 2))
    mlpcore.fit(X, X[:, 0] > 0, hidden=(3,), epochs=1, seed=0).save(tmp_path / "m.npz")
    proc = cli("export", "m.npz", "out.onnx", "--opset", "5")
    assert proc.returncode == 2 and "opset must be between 13" in proc.stderr
    proc = cli("export", "m.npz", "out.onnx", "--dtype", "float16")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    proc = cli("export", "m.npz", tmp_path / "no-such-dir" / "out.onnx")
    assert proc.returncode == 1 and "cannot write the graph" in proc.stderr
    proc = cli("export", "--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout
    assert "usage: mlpcore export" in proc.stdout
