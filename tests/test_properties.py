"""Property-based tests (hypothesis) over random shapes, dtypes, memory layouts and options.

* Training never crashes and never returns non-finite parameters, whatever the options and
  however large the inputs (divergence is a warning, not an error).
* Every input layout and dtype trains exactly like its C-contiguous float64 copy; float32
  training stays within tolerance of float64 for smooth activations.
* Loss and gradients stay finite for inputs up to 1e6 in magnitude.
* ``mlpcore.load`` of arbitrarily mutated files is a working model or a clean ValueError.

The settings profile is chosen in ``conftest.py`` ("ci": few examples, derandomized).
"""

import io
import tempfile
import warnings
import zipfile

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import mlpcore

DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int8, np.uint8, bool]
LAYOUTS = ["C", "F", "strided", "negative strides", "read-only", "list"]
HIDDEN = ["sigmoid", "tanh", "relu", "identity"]


@st.composite
def problems(draw, max_scale=1.0):
    """(X as float64, Y, fit settings, task): a small random problem and random options."""
    n = draw(st.integers(2, 40))
    d = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1.0, max_scale]))
    X = rng.normal(size=(n, d)) * scale
    task = draw(st.sampled_from(["labels", "one-hot", "regression", "multi-output"]))
    k = draw(st.integers(2, 4))
    labels = np.arange(n) % k  # every class present
    rng.shuffle(labels)
    Y = {"labels": labels, "one-hot": np.eye(k)[labels],
         "regression": X.sum(axis=1), "multi-output": np.column_stack([X[:, 0], -X[:, -1]])}[task]
    settings = dict(
        hidden=tuple(draw(st.lists(st.integers(1, 6), max_size=2))),
        activation=draw(st.sampled_from(HIDDEN)),
        optimizer=draw(st.sampled_from(["sgd", "momentum", "nesterov", "adam"])),
        batch_size=draw(st.one_of(st.none(), st.just("auto"), st.integers(1, n))),
        epochs=draw(st.integers(1, 3)),
        shuffle=draw(st.booleans()),
        alpha=draw(st.sampled_from([0.0, 1e-3])),
        seed=seed % 1000,
    )
    if task == "labels" and draw(st.booleans()):
        settings["output"] = "sigmoid"
    return X, Y, settings, task


def as_layout(a, layout):
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        return np.repeat(a, 3, axis=1)[:, 1::3]
    if layout == "negative strides":
        return a[::-1].copy()[::-1]
    if layout == "read-only":
        a = a.copy()
        a.flags.writeable = False
        return a
    if layout == "list":
        return a.tolist()
    return np.ascontiguousarray(a)


def quiet_fit(X, Y, **settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mlpcore.TrainingDivergedWarning)
        return mlpcore.fit(X, Y, **settings)


def params(model):
    return model.weights + model.biases


@given(problems(max_scale=1e6), st.sampled_from([None, np.float32]),
       st.sampled_from([1e-3, 0.1, 10.0]))
def test_training_never_crashes_nor_returns_non_finite_parameters(problem, dtype, lr):
    X, Y, settings, _ = problem
    model = quiet_fit(X, Y, dtype=dtype, learning_rate=lr, **settings)
    assert all(np.isfinite(p).all() for p in params(model))
    assert np.isfinite(model.history["loss"]).all()
    assert len(model.predict(X[:3])) == len(X[:3])


def assert_close(a, b, rtol):
    """Equal up to rtol relative to the array's scale (float32 rounding of float64 training)."""
    scale = max(1.0, float(np.abs(b).max()))
    assert np.abs(a.astype(np.float64) - b).max() <= rtol * scale


@given(problems(), st.sampled_from(DTYPES), st.sampled_from(LAYOUTS))
def test_every_layout_and_dtype_trains_like_the_c_contiguous_float64_copy(problem, dtype,
                                                                          layout):
    X, Y, settings, _ = problem
    Xd = (X * 3).astype(dtype)  # the values this dtype can hold
    Yd = as_layout(Y, layout) if Y.ndim == 2 else Y
    reference = quiet_fit(np.ascontiguousarray(Xd, dtype=np.float64), Y, **settings)
    if dtype is np.float32 and layout != "list":
        model = quiet_fit(as_layout(Xd, layout), Yd, **settings)
        assert model.dtype == np.float32  # float32 input trains in float32: close, not equal
        smooth = settings["activation"] != "relu" and settings["optimizer"] != "adam"
        if smooth and "diverged" not in (model.training_result.stop_reason,
                                         reference.training_result.stop_reason):
            for a, b in zip(params(model), params(reference)):
                assert_close(a, b, rtol=1e-3)
        settings = dict(settings, dtype=np.float64)
    model = quiet_fit(as_layout(Xd, layout), Yd, **settings)
    assert model.dtype == np.float64
    for a, b in zip(params(model), params(reference)):
        assert np.array_equal(a, b)


@given(problems(), st.sampled_from([np.float64, np.float32]), st.floats(1.0, 1e6),
       st.sampled_from(["softmax", "sigmoid", "identity"]),
       st.sampled_from(["cross_entropy", "mse"]))
def test_loss_and_gradients_stay_finite_for_inputs_up_to_1e6(problem, dtype, magnitude, output,
                                                              loss):
    X, Y, settings, task = problem
    X = (X / np.abs(X).max() * magnitude).astype(dtype)
    if task in ("regression", "multi-output"):
        output, loss = ("identity" if output == "softmax" else output), "mse"
    if output == "identity":
        loss = "mse"
    model = mlpcore.MLP(settings["hidden"], activation=settings["activation"], output=output,
                        loss=loss, seed=settings["seed"], alpha=settings["alpha"])
    model.build(X, Y)
    grad_w, grad_b = model.gradients(X, Y)
    assert np.isfinite(model.loss(X, Y))
    assert all(np.isfinite(g).all() for g in grad_w + grad_b)
    assert np.isfinite(model.forward(X)).all()


def _model_file():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    model = mlpcore.fit(X, rng.integers(0, 3, 20), hidden=(4,), epochs=1, seed=0,
                        optimizer="momentum")
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as d:
        model.save(f"{d}/m.npz")
        with open(f"{d}/m.npz", "rb") as f:
            buffer.write(f.read())
    return buffer.getvalue()


MODEL_FILE = _model_file()


@given(st.lists(st.tuples(st.integers(0, len(MODEL_FILE) - 1), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.one_of(st.none(), st.integers(0, len(MODEL_FILE))))
def test_load_of_mutated_files_is_a_model_or_a_clean_error(edits, cut):
    raw = bytearray(MODEL_FILE)
    for pos, value in edits:
        raw[pos] = value
    raw = bytes(raw[:cut] if cut is not None else raw)
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/m.npz", "wb") as f:
            f.write(raw)
        try:
            model = mlpcore.load(f"{d}/m.npz")
        except ValueError as exc:
            assert "not a readable mlpcore model file" in str(exc)
            return
    assert np.isfinite(model.forward(np.zeros((2, model.n_features)))).all()
    with zipfile.ZipFile(io.BytesIO(raw)) as z:  # only bytes outside the arrays changed
        assert z.testzip() is None
