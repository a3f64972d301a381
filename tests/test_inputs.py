"""What fit and the model accept as input, and what they refuse.

* Target kinds: labels, one-hot, booleans, regression, and an explicit output and loss.
* Every input layout and dtype trains exactly like a C-contiguous copy; float32 input
  trains in float32, other numbers in float64 unless ``dtype`` says otherwise.
* Nothing is copied needlessly: a C-contiguous array of the working dtype reaches the
  engine as it is, any other layout is converted once per fit, and the work buffers are
  allocated once.
* Bad input is refused with a message naming the argument and the problem, and a refused
  call changes nothing.
"""

import json
import pickle
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlpcore
from _helpers import make_problem, params, problems, quiet_fit, same_weights
from mlpcore import _engine


RNG = np.random.default_rng(2024)
X = RNG.normal(size=(12, 3))
Y = np.array([0, 1, 2] * 4)
FAST = dict(hidden=(4,), epochs=1, seed=0)


def fit(X=X, Y=Y, **kwargs):
    return mlpcore.fit(X, Y, **{**FAST, **kwargs})


@pytest.fixture(scope="module")
def model():
    return fit()


def with_value(a, index, value):
    a = np.array(a, dtype=float)
    a[index] = value
    return a


def good_init(**change):
    W = [np.zeros((3, 4)), np.zeros((4, 3))]
    b = [np.zeros(4), np.zeros(3)]
    for key, value in change.items():
        kind, l = key[0], int(key[1])
        (W if kind == "W" else b)[l] = value
    return W, b


# -- what the targets mean ----------------------------------------------------------------------

def test_classification_targets(rng):
    X = rng.normal(size=(30, 2))
    labels = np.array(["cat", "dog", "emu"])[rng.integers(0, 3, 30)]
    labels[:3] = ["cat", "dog", "emu"]
    model = mlpcore.fit(X, labels, hidden=4, epochs=2, seed=0)
    assert model.classes.tolist() == ["cat", "dog", "emu"]
    assert model.output == "softmax" and model.loss_name == "cross_entropy"
    assert set(model.predict(X)) <= set(model.classes)
    proba = model.predict_proba(X)
    assert proba.shape == (30, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)

    onehot = np.eye(3)[rng.integers(0, 3, 30)]
    model = mlpcore.fit(X, onehot, hidden=4, epochs=2, seed=0)
    assert model.classes.tolist() == [0, 1, 2] and model.output == "softmax"
    assert 0 <= model.score(X, onehot) <= 1

    booleans = X[:, 0] > 0
    model = mlpcore.fit(X, booleans, hidden=4, epochs=2, seed=0, output="sigmoid")
    assert model.n_outputs == 1 and model.classes.tolist() == [False, True]
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1)


def test_regression_targets(rng):
    X = rng.normal(size=(80, 2))
    y = X[:, 0] - 0.5 * X[:, 1]
    model = mlpcore.fit(X, y, hidden=(8,), activation="tanh", epochs=60, learning_rate=0.05,
                        seed=0)
    assert model.output == "identity" and model.loss_name == "mse" and model.classes is None
    assert model.predict(X).shape == (80,)
    assert model.score(X, y) > 0.9
    Y2 = np.column_stack([y, -y])
    model = mlpcore.fit(X, Y2, hidden=(8,), activation="tanh", epochs=5, seed=0)
    assert model.predict(X).shape == (80, 2)
    with pytest.raises(AttributeError):
        model.predict_proba(X)


def test_explicit_output_and_loss_win(rng):
    X = rng.normal(size=(20, 2))
    y = rng.integers(0, 3, 20)
    model = mlpcore.fit(X, y, hidden=3, epochs=1, output="sigmoid", loss="mse")
    assert (model.output, model.loss_name, model.n_outputs) == ("sigmoid", "mse", 3)


def test_init_is_copied_not_aliased(rng):
    X = rng.normal(size=(20, 2))
    y = rng.integers(0, 2, 20)
    W = [rng.normal(size=(2, 3)), rng.normal(size=(3, 2))]
    b = [np.zeros(3), np.zeros(2)]
    before = [w.copy() for w in W]
    model = mlpcore.fit(X, y, hidden=(3,), epochs=3, init=(W, b))
    for w, w0 in zip(W, before):
        assert np.array_equal(w, w0)
    assert not np.array_equal(model.weights[0], W[0])


# -- input layouts and dtypes -------------------------------------------------------------------

XL = RNG.normal(size=(40, 5))
YL = RNG.integers(0, 3, 40)
LAYOUT_KW = dict(hidden=(6,), epochs=3, seed=1, batch_size=8)


def _memmap(tmp_path, a):
    path = tmp_path / f"array{len(list(tmp_path.iterdir()))}.npy"  # never overwrite a mapped file
    np.save(path, a)
    return np.load(path, mmap_mode="r")


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


LAYOUTS = {
    "list": lambda a, tmp: a.tolist(),
    "tuple of tuples": lambda a, tmp: tuple(map(tuple, a)),
    "fortran": lambda a, tmp: np.asfortranarray(a),
    "strided columns": lambda a, tmp: np.repeat(a, 2, axis=1)[:, ::2],
    "reversed rows": lambda a, tmp: a[::-1].copy()[::-1],
    "read-only": lambda a, tmp: _readonly(a),
    "memmap": lambda a, tmp: _memmap(tmp, a),
    "fortran memmap": lambda a, tmp: _memmap(tmp, np.asfortranarray(a)),
    "matrix": lambda a, tmp: np.asmatrix(a),
    "masked, nothing masked": lambda a, tmp: np.ma.masked_array(a),
    "big-endian": lambda a, tmp: a.astype(a.dtype.newbyteorder(">")),
}


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_trains_exactly_like_a_c_contiguous_copy(tmp_path, layout, dtype):
    base = XL.astype(dtype)
    expected = mlpcore.fit(np.ascontiguousarray(base), YL, **LAYOUT_KW)
    if layout in ("list", "tuple of tuples"):
        expected = mlpcore.fit(base.astype(np.float64), YL, **LAYOUT_KW)  # lists are float64
    Xv = LAYOUTS[layout](base, tmp_path)
    Yv = YL if layout == "matrix" else LAYOUTS[layout](YL.reshape(-1, 1), tmp_path)
    got = mlpcore.fit(Xv, Yv, **LAYOUT_KW)
    assert got.dtype == expected.dtype
    for a, b in zip(params(got), params(expected)):
        assert np.array_equal(a, b)
    np.testing.assert_array_equal(got.predict_proba(Xv), expected.predict_proba(base))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.float16, bool])
def test_int_bool_and_float16_inputs_train_in_float64(dtype):
    Xi = RNG.integers(0, 4, size=(40, 5)).astype(dtype)
    got = mlpcore.fit(Xi, YL, **LAYOUT_KW)
    expected = mlpcore.fit(Xi.astype(np.float64), YL, **LAYOUT_KW)
    assert got.dtype == np.float64
    for a, b in zip(params(got), params(expected)):
        assert np.array_equal(a, b)
    as32 = mlpcore.fit(Xi, YL, dtype=np.float32, **LAYOUT_KW)  # or float32 when asked
    assert as32.dtype == np.float32 and as32.weights[0].dtype == np.float32


def test_float32_result_close_to_float64():
    a = mlpcore.fit(XL.astype(np.float32), YL, **LAYOUT_KW)
    b = mlpcore.fit(XL, YL, **LAYOUT_KW)
    for p, q in zip(params(a), params(b)):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5)


def test_dtype_can_be_forced(rng):
    X, Y, _, _ = make_problem(rng, n=50)
    assert mlpcore.fit(X, Y, hidden=4, epochs=1, dtype=np.float32).dtype == np.float32
    assert mlpcore.fit(X.astype(np.float32), Y, hidden=4, epochs=1,
                       dtype=np.float64).dtype == np.float64
    assert mlpcore.fit(X.astype(np.int64), Y, hidden=4, epochs=1).dtype == np.float64


DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int8, np.uint8, bool]
PROPERTY_LAYOUTS = ["C", "F", "strided", "negative strides", "read-only", "list"]


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


def assert_close(a, b, rtol):
    """Equal up to rtol relative to the array's scale (float32 rounding of float64 training)."""
    scale = max(1.0, float(np.abs(b).max()))
    assert np.abs(a.astype(np.float64) - b).max() <= rtol * scale


@given(problems(), st.sampled_from(DTYPES), st.sampled_from(PROPERTY_LAYOUTS))
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


# -- copies and allocations ---------------------------------------------------------------------

@pytest.fixture
def engine_inputs(monkeypatch):
    """Records the X arrays that reach the engine's training and forward calls."""
    seen = {"train": [], "forward": []}
    train, forward = _engine.train_epoch, _engine.forward

    def spy_train(network, workspace, theta, X, *args, **kwargs):
        seen["train"].append(X)
        return train(network, workspace, theta, X, *args, **kwargs)

    def spy_forward(network, theta, X, out):
        seen["forward"].append(X)
        return forward(network, theta, X, out)

    monkeypatch.setattr(_engine, "train_epoch", spy_train)
    monkeypatch.setattr(_engine, "forward", spy_forward)
    return seen


@pytest.mark.parametrize("kind", ["float64", "float32", "read-only", "memmap", "float32 memmap"])
def test_c_contiguous_working_dtype_is_never_copied(tmp_path, engine_inputs, kind):
    base = XL.astype(np.float32 if "float32" in kind else np.float64)
    Xv = {"read-only": lambda: _readonly(base),
          "memmap": lambda: _memmap(tmp_path, base),
          "float32 memmap": lambda: _memmap(tmp_path, base)}.get(kind, lambda: base)()
    snapshot = np.array(Xv, copy=True)
    m = mlpcore.fit(Xv, YL, **LAYOUT_KW)
    m.predict(Xv)
    assert engine_inputs["train"] and engine_inputs["forward"]
    for seen in engine_inputs["train"] + engine_inputs["forward"]:
        assert np.shares_memory(seen, Xv)
    assert np.array_equal(Xv, snapshot)  # and never written to


def test_other_layouts_are_copied_once(engine_inputs):
    Xf = np.asfortranarray(XL)
    mlpcore.fit(Xf, YL, **LAYOUT_KW)
    first = engine_inputs["train"][0]
    assert first.flags.c_contiguous and not np.shares_memory(first, Xf)
    assert all(seen is first for seen in engine_inputs["train"])  # one conversion per fit


def test_work_buffers_are_allocated_once_per_fit_and_sized_by_the_batch(monkeypatch):
    made = []
    real = _engine.Workspace

    def recording_workspace(network, rows, dtype, sparse=False):
        made.append(rows)
        return real(network, rows, dtype, sparse)

    monkeypatch.setattr(_engine, "Workspace", recording_workspace)
    Xm = RNG.normal(size=(5000, 8))
    ym = (Xm[:, 0] > 0).astype(int)
    model = mlpcore.fit(Xm, ym, hidden=(6,), epochs=3, batch_size=16, seed=0)
    assert made == [16]
    model.fit_more(Xm, ym, epochs=2)
    assert made == [16]  # reused
    mlpcore.fit(Xm, ym, hidden=(6,), epochs=2, batch_size=None, seed=0)
    assert made == [16, _engine.CHUNK_ROWS]  # full batches are processed in chunks


def test_fit_allocates_no_copy_of_a_c_contiguous_x():
    Xm = RNG.normal(size=(20_000, 50))  # 8 MB
    ym = RNG.integers(0, 3, 20_000)
    Xf = np.asfortranarray(Xm)
    model = mlpcore.fit(Xm[:100], ym[:100], hidden=(16,), epochs=1, seed=0)
    tracemalloc.start()
    try:
        model.fit(Xm, ym)  # NumPy reports its allocations to tracemalloc
        in_place = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        model.fit(Xf, ym)
        converted = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert in_place < 0.25 * Xm.nbytes  # labels, one-hot targets, shuffling order
    assert Xm.nbytes < converted < 1.25 * Xm.nbytes  # exactly one C-contiguous copy


# -- refusals of bad input ----------------------------------------------------------------------

# Two batteries: test_bad_input_is_refused_clearly holds the basic cases (NaN/inf in X, NaN in
# Y, zero samples or features, 1-D X, bad learning rates, batch sizes and epochs, zero or
# fractional widths, unknown names, wrong init shapes, complex or object X); BAD_FIT_CALLS
# the others, with the exact message. A case is in one of them, not both.
GOOD_X = np.arange(20.0).reshape(10, 2)
GOOD_Y = np.array([0, 1] * 5)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(X=GOOD_X[:9]), ValueError, "samples"),
        (dict(X=np.where(np.eye(10, 2) > 0, np.nan, GOOD_X)), ValueError, "X contains NaN"),
        (dict(X=np.where(np.eye(10, 2) > 0, np.inf, GOOD_X)), ValueError, "X contains NaN or inf"),
        (dict(Y=np.where(np.arange(10) == 3, np.nan, 1.0)), ValueError, "Y contains NaN"),
        (dict(X=np.empty((0, 2)), Y=np.empty(0)), ValueError, "zero samples"),
        (dict(X=np.empty((10, 0))), ValueError, "zero features"),
        (dict(X=GOOD_X[:, 0]), ValueError, "2-D"),
        (dict(learning_rate=0), ValueError, "learning_rate"),
        (dict(learning_rate=-0.1), ValueError, "learning_rate"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=11), ValueError, "batch_size"),
        (dict(batch_size=2.5), TypeError, "batch_size"),
        (dict(epochs=0), ValueError, "epochs"),
        (dict(hidden=(3, 0)), ValueError, "hidden"),
        (dict(hidden=(3.5,)), TypeError, "hidden"),
        (dict(activation="softplus"), ValueError, "activation.*'relu'"),
        (dict(output="tanh"), ValueError, "output"),
        (dict(loss="hinge"), ValueError, "loss"),
        (dict(output="identity", loss="cross_entropy"), ValueError, "cross_entropy"),
        (dict(optimizer="rmsprop"), ValueError, "optimizer.*'adam'"),
        (dict(init=([np.zeros((2, 3))], [np.zeros(3)])), ValueError, "init"),
        (dict(init=([np.zeros((2, 4)), np.zeros((4, 2))], [np.zeros(4), np.zeros(2)])),
         ValueError, r"init weights\[0\] has shape"),
        (dict(init=([np.zeros((2, 3)), np.zeros((3, 2))], [np.zeros(3), np.zeros(3)])),
         ValueError, r"init biases\[1\]"),
        (dict(init=([np.zeros((2, 3), complex), np.zeros((3, 2))], [np.zeros(3), np.zeros(2)])),
         TypeError, "init weights"),
        (dict(X=GOOD_X.astype(complex)), TypeError, "complex"),
        (dict(X=GOOD_X.astype(object)), TypeError, "object"),
        (dict(Y=np.zeros(10, dtype=int)), ValueError, "two classes"),
        (dict(dtype=np.int32), TypeError, "dtype"),
    ],
)
def test_bad_input_is_refused_clearly(kwargs, exc, match):
    args = dict(X=GOOD_X, Y=GOOD_Y, hidden=(3,), epochs=1)
    args.update(kwargs)
    X, Y = args.pop("X"), args.pop("Y")
    with pytest.raises(exc, match=match):
        mlpcore.fit(X, Y, **args)


# (id, call, exception type, regex the message must match: it names the argument and problem)
BAD_FIT_CALLS = [
    # NaN / inf, anywhere and in any argument
    ("X inf float32", lambda: fit(with_value(X, (5, 1), -np.inf).astype(np.float32)),
     ValueError, r"X contains NaN or inf.*row 5"),
    ("X NaN in a list", lambda: fit(with_value(X, (2, 0), np.nan).tolist()),
     ValueError, r"X contains NaN"),
    ("X NaN past the first check block", lambda: fit(
        with_value(np.zeros((70_001, 1)), (70_000, 0), np.nan), np.arange(70_001) % 2),
     ValueError, r"X contains NaN or infinity \(first at row 70000\)"),
    ("Y inf, regression", lambda: fit(Y=with_value(Y, 4, np.inf)),
     ValueError, r"Y contains NaN or inf"),
    ("Y NaN, multi-output", lambda: fit(Y=with_value(np.ones((12, 2)), (3, 1), np.nan)),
     ValueError, r"Y contains NaN"),
    ("sample_weight NaN", lambda: fit(sample_weight=with_value(np.ones(12), 0, np.nan)),
     ValueError, r"sample_weight contains NaN"),
    ("validation X inf", lambda: fit(validation_data=(with_value(X, (0, 0), np.inf), Y)),
     ValueError, r"validation X contains NaN"),
    # object, complex and other non-numbers
    ("Y complex", lambda: fit(Y=Y.astype(complex)), TypeError, r"Y has complex dtype"),
    ("Y object floats", lambda: fit(Y=np.array(list(X[:, 0]), dtype=object)),
     TypeError, r"Y must hold numbers.*object"),
    ("Y mixed labels", lambda: fit(Y=np.array(["a", 1] * 6, dtype=object)),
     TypeError, r"labels in Y must all be of one kind"),
    ("X strings", lambda: fit(X.astype(str)), TypeError, r"X must hold numbers"),
    ("X structured", lambda: fit(np.zeros(12, dtype=[("a", float), ("b", float)])),
     TypeError, r"X must hold numbers"),
    ("X Python ints too big for int64", lambda: fit([[2**70, 1, 1]] * 12),
     TypeError, r"X must hold numbers.*object"),
    ("sample_weight complex", lambda: fit(sample_weight=np.ones(12, complex)),
     TypeError, r"sample_weight has complex dtype"),
    ("Y sparse", lambda: fit(Y=pytest.importorskip("scipy.sparse").csr_matrix(
        np.eye(3)[Y])), TypeError, r"Y is a sparse matrix.*toarray"),
    ("sample_weight sparse", lambda: fit(sample_weight=pytest.importorskip(
        "scipy.sparse").csr_matrix(np.ones((1, 12)))),
     TypeError, r"sample_weight is a sparse matrix.*toarray"),
    ("X masked", lambda: fit(np.ma.masked_array(X, mask=X > 1)),
     ValueError, r"X is a masked array with masked entries"),
    ("Y masked", lambda: fit(Y=np.ma.masked_array(Y, mask=Y == 2)),
     ValueError, r"Y is a masked array with masked entries"),
    ("X ragged list", lambda: fit([[1.0, 2.0, 3.0], [4.0]] * 6),
     ValueError, r"X could not be converted"),
    ("Y ragged list", lambda: fit(Y=[[0], [1, 2]] * 6),
     ValueError, r"Y could not be converted"),
    # dimensions
    ("X 3-D", lambda: fit(X.reshape(12, 3, 1)), ValueError, r"X must be 2-D .* got 3-D"),
    ("X 0-D", lambda: fit(np.float64(1.0)), ValueError, r"X must be 2-D .* got 0-D"),
    ("Y 3-D", lambda: fit(Y=np.zeros((12, 2, 2))), ValueError, r"Y must be 1-D or 2-D, got 3-D"),
    ("Y scalar", lambda: fit(Y=1.0), ValueError, r"Y must be 1-D or 2-D, got 0-D"),
    # N mismatch between X and Y (and the per-sample arguments)
    ("labels one short", lambda: fit(Y=Y[:11]), ValueError, r"X has 12 samples but Y has 11"),
    ("one-hot one long", lambda: fit(Y=np.eye(3)[[0, 1, 2] * 4 + [0]]),
     ValueError, r"X has 12 samples but Y has 13"),
    ("regression one short", lambda: fit(Y=X[:11, 0]),
     ValueError, r"X has 12 samples but Y has 11"),
    ("sample_weight one short", lambda: fit(sample_weight=np.ones(11)),
     ValueError, r"sample_weight must have shape \(12,\)"),
    ("validation Y one short", lambda: fit(validation_data=(X, Y[:11])),
     ValueError, r"X has 12 samples but Y has 11"),
    # zero samples / zero features in other positions
    ("empty list", lambda: fit([], []), ValueError, r"X must be 2-D|X has zero samples"),
    ("empty Y", lambda: fit(Y=np.array([], dtype=float)), ValueError, r"Y has 0"),
    # hidden sizes
    ("hidden 0", lambda: fit(hidden=0), ValueError, r"hidden layer width must be >= 1, got 0"),
    ("hidden negative", lambda: fit(hidden=(4, -2)),
     ValueError, r"hidden layer width must be >= 1, got -2"),
    ("hidden float", lambda: fit(hidden=2.0), TypeError, r"hidden must be a sequence"),
    ("hidden float in tuple", lambda: fit(hidden=(4, 2.0)),
     TypeError, r"hidden layer width must be an integer, got 2.0"),
    ("hidden bool", lambda: fit(hidden=(True,)),
     TypeError, r"hidden layer width must be an integer, got True"),
    ("hidden string", lambda: fit(hidden="8"),
     TypeError, r"hidden layer width must be an integer"),
    ("hidden None", lambda: fit(hidden=None), TypeError, r"hidden must be a sequence"),
    ("hidden beyond addressable", lambda: fit(hidden=(2**62,) * 4),
     ValueError, r"layer widths .* more than can be addressed"),
    ("hidden beyond int64", lambda: fit(hidden=(2**63,)),
     ValueError, r"layer widths .* more than can be addressed"),
    # names: the message lists the valid ones
    ("unknown loss", lambda: fit(loss="hinge"), ValueError, r"unknown loss 'hinge'.*'mse'"),
    ("unknown output", lambda: fit(output="tanh"),
     ValueError, r"unknown output 'tanh'.*'softmax'"),
    ("unknown optimizer", lambda: fit(optimizer="rmsprop"),
     ValueError, r"unknown optimizer 'rmsprop'.*'sgd'"),
    ("unknown schedule", lambda: fit(schedule="cosine"),
     ValueError, r"unknown schedule 'cosine'.*'invscaling'"),
    ("activation not a string", lambda: fit(activation=None),
     TypeError, r"activation must be a string"),
    ("optimizer not a name", lambda: fit(optimizer=3),
     TypeError, r"optimizer must be a name or an Optimizer"),
    # learning rate
    ("learning_rate NaN", lambda: fit(learning_rate=float("nan")),
     ValueError, r"learning_rate must be > 0 and finite, got nan"),
    ("learning_rate inf", lambda: fit(learning_rate=float("inf")),
     ValueError, r"learning_rate must be > 0 and finite"),
    ("learning_rate string", lambda: fit(learning_rate="0.1"),
     TypeError, r"learning_rate must be a number"),
    ("learning_rate 0 in an optimizer", lambda: fit(optimizer=mlpcore.Momentum(learning_rate=0)),
     ValueError, r"learning_rate must be > 0"),
    # batch size
    ("batch_size negative", lambda: fit(batch_size=-4),
     ValueError, r"batch_size must be >= 1, got -4"),
    ("batch_size bool", lambda: fit(batch_size=True),
     TypeError, r"batch_size must be an integer, got True"),
    ("batch_size string", lambda: fit(batch_size="full"),
     TypeError, r"batch_size must be an integer, got 'full'"),
    ("batch_size above N after the validation split", lambda: fit(
        batch_size=12, validation_fraction=0.25),
     ValueError, r"batch_size=12 is larger than the 9 training samples"),
    # epochs
    ("epochs negative", lambda: fit(epochs=-1), ValueError, r"epochs must be >= 1, got -1"),
    ("epochs float", lambda: fit(epochs=1.0), TypeError, r"epochs must be an integer"),
    # init
    ("init object dtype", lambda: fit(init=good_init(W0=np.zeros((3, 4), object))),
     TypeError, r"init weights\[0\] must hold real numbers, got dtype object"),
    ("init bool dtype", lambda: fit(init=good_init(b1=np.zeros(3, bool))),
     TypeError, r"init biases\[1\] must hold real numbers"),
    ("init 3-D", lambda: fit(init=good_init(W1=np.zeros((4, 3, 1)))),
     ValueError, r"init weights\[1\] has shape \(4, 3, 1\), expected \(4, 3\)"),
    ("init transposed", lambda: fit(init=good_init(W0=np.zeros((4, 3)))),
     ValueError, r"init weights\[0\] has shape \(4, 3\), expected \(3, 4\)"),
    ("init NaN", lambda: fit(init=good_init(W0=np.full((3, 4), np.nan))),
     ValueError, r"init layer 0 contains NaN"),
    ("init too many layers", lambda: fit(init=([np.zeros((3, 4))] * 3, [np.zeros(4)] * 3)),
     ValueError, r"init needs 2 weight matrices"),
    ("init not a pair", lambda: fit(init="weights"),
     TypeError, r"init must be a pair \(weights, biases\)"),
    # dtype
    ("dtype float16", lambda: fit(dtype=np.float16),
     TypeError, r"dtype must be float32 or float64"),
    ("dtype nonsense", lambda: fit(dtype="nonsense"),
     TypeError, r"dtype must be float32 or float64"),
]


XE = np.random.default_rng(3).normal(size=(40, 3))
YE = (XE[:, 0] > 0).astype(int)

NAMED_REFUSALS = [
    ("seed -1", lambda: mlpcore.MLP(seed=-1), ValueError, r"seed must be a non-negative"),
    ("seed bool", lambda: mlpcore.MLP(seed=True), TypeError, r"seed must be an integer"),
    ("n_threads 10**20", lambda: mlpcore.MLP(n_threads=10**20), ValueError,
     r"n_threads must be at most 2147483647.*got 10{20}"),
    ("class_weight value", lambda: mlpcore.MLP(class_weight={0: "x"}), TypeError,
     r"class_weight\[0\] must be a number, got 'x'"),
    ("class_weight label", lambda: mlpcore.fit(XE, YE, epochs=1, class_weight={"a": 1}),
     ValueError, r"class_weight names label 'a', which is not one of the classes \[0, 1\]"),
    ("validation_data int", lambda: mlpcore.fit(XE, YE, epochs=1, validation_data=3),
     TypeError, r"validation_data must be a tuple .*got int"),
    ("labels beyond int64", lambda: mlpcore.fit(XE, np.array([2**70, 1] * 20, dtype=object),
                                                epochs=1),
     ValueError, r"labels beyond 64-bit integers"),
    ("Y with no columns", lambda: mlpcore.fit(XE, np.zeros((40, 0)), epochs=1), ValueError,
     r"Y has no columns"),
    ("a float after 1,000 labels",
     lambda: mlpcore.fit(np.zeros((1240, 2)), np.array([0, 1] * 600 + [0.5] + [1] * 39,
                                                       dtype=object), epochs=1),
     TypeError, r"Y mixes labels and other values: .*Y\[1200\] is 0.5"),
    # Training scales the weights to mean 1 (huge and tiny weights train, see test_training);
    # the loss of given data divides by their sum as given, which must be a normal number.
    ("sample_weight overflow", lambda: mlpcore.fit(XE, YE, epochs=1).loss(
        XE, YE, sample_weight=np.full(40, 1e308)),
     ValueError, r"sample_weight sums beyond float64's range"),
    ("sample_weight underflow", lambda: mlpcore.fit(XE, YE, epochs=1).score(
        XE, YE, sample_weight=np.full(40, 1e-320)),
     ValueError, r"sample_weight sums to .*below float64's normal range"),
    ("float64 beyond float32", lambda: mlpcore.fit(XE * 1e300, YE, epochs=1,
                                                   dtype=np.float32),
     ValueError, r"beyond float32's range"),
    ("power_t 1e308", lambda: mlpcore.fit(XE, YE, epochs=2, schedule="invscaling",
                                          power_t=1e308),
     ValueError, r"power_t=1e\+308 takes the learning rate to 0"),
]


@pytest.mark.parametrize("call,exc,match", [c[1:] for c in BAD_FIT_CALLS + NAMED_REFUSALS],
                         ids=[c[0] for c in BAD_FIT_CALLS + NAMED_REFUSALS])
def test_bad_fit_input_is_refused_clearly(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


BAD_MODEL_CALLS = [
    ("predict wrong width", lambda m: m.predict(np.zeros((2, 4))),
     ValueError, r"X has 4 features, but the model expects 3"),
    ("predict_proba wrong width", lambda m: m.predict_proba(np.zeros((2, 2))),
     ValueError, r"X has 2 features, but the model expects 3"),
    ("score wrong width", lambda m: m.score(np.zeros((2, 1)), [0, 1]),
     ValueError, r"X has 1 features, but the model expects 3"),
    ("fit_more wrong width", lambda m: m.fit_more(np.zeros((12, 4)), Y),
     ValueError, r"X has 4 features, but the model expects 3"),
    ("predict 1-D", lambda m: m.predict(np.zeros(3)),
     ValueError, r"X must be 2-D .*reshape\(-1, 1\)"),
    ("predict zero rows", lambda m: m.predict(np.zeros((0, 3))), ValueError, r"zero samples"),
    ("predict NaN", lambda m: m.predict(np.full((1, 3), np.nan)), ValueError, r"X contains NaN"),
    ("predict complex", lambda m: m.predict(np.zeros((1, 3), complex)),
     TypeError, r"complex"),
    ("loss with unseen label", lambda m: m.loss(X, Y + 1),
     ValueError, r"labels not seen in training: \[3\]"),
    ("fit_more epochs 0", lambda m: m.fit_more(X, Y, epochs=0), ValueError, r"epochs must be >= 1"),
]


@pytest.mark.parametrize("call,exc,match", [c[1:] for c in BAD_MODEL_CALLS],
                         ids=[c[0] for c in BAD_MODEL_CALLS])
def test_bad_model_input_is_refused_clearly(model, call, exc, match):
    before = model._theta.copy()
    with pytest.raises(exc, match=match):
        call(model)
    assert np.array_equal(model._theta, before)  # a refused call changes nothing


def test_predict_with_wrong_feature_count_is_refused():
    model = mlpcore.fit(GOOD_X, GOOD_Y, hidden=3, epochs=1)
    with pytest.raises(ValueError, match="3 features, but the model expects 2"):
        model.predict(np.zeros((4, 3)))


def test_unseen_labels_are_refused_in_loss():
    model = mlpcore.fit(GOOD_X, GOOD_Y, hidden=3, epochs=1)
    with pytest.raises(ValueError, match="not seen in training"):
        model.loss(GOOD_X[:2], [0, 7])


def test_partial_fit_refuses_labels_it_has_not_seen():
    m = mlpcore.MLP(hidden=(3,), seed=0)
    m.partial_fit(X[:6], [0, 1, 0, 1, 0, 1])  # classes taken from this first chunk
    before = m._theta.copy()
    with pytest.raises(ValueError, match=r"Y contains labels not seen in training: \[2\]"):
        m.partial_fit(X[6:], [0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match=r"not seen in training: \['b'\]"):
        m.partial_fit(X[6:], np.array(["b"] * 6))
    assert np.array_equal(m._theta, before)
    with pytest.raises(ValueError, match=r"classes=.* differ from the classes of the first call"):
        m.partial_fit(X, Y, classes=[0, 1, 2])


def test_untrained_model_says_so():
    for call in (lambda m: m.predict(X), lambda m: m.predict_proba(X),
                 lambda m: m.score(X, Y), lambda m: m.fit_more(X, Y), lambda m: m.weights):
        with pytest.raises(mlpcore.NotFittedError, match="not been trained"):
            call(mlpcore.MLP())


# -- scale=: the model scales its inputs ---------------------------------------------------------

def breast_cancer_split():
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    train, test = order[:400], order[400:]
    return X[train], y[train], X[test], y[test]


def test_raw_features_far_apart_warn_and_scale_fixes_them():
    Xtr, ytr, Xte, yte = breast_cancer_split()
    with pytest.warns(mlpcore.FeatureScaleWarning, match="scale='standard'"):
        mlpcore.fit(Xtr, ytr, epochs=5, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", mlpcore.FeatureScaleWarning)
        model = mlpcore.fit(Xtr, ytr, seed=0, scale="standard")
    assert model.score(Xte, yte) > 0.9


@pytest.mark.parametrize("how", ["standard", "minmax"])
def test_a_scaling_model_is_the_model_of_the_scaled_data(rng, how, tmp_path):
    X = rng.normal(size=(120, 4)) * [1, 10, 100, 1000] + [0, 5, -50, 3000]
    y = (X[:, 0] + X[:, 1] / 10 > 0).astype(int)
    model = mlpcore.fit(X, y, hidden=(5,), epochs=5, seed=0, scale=how)
    if how == "standard":
        shift, scale = X.mean(axis=0), X.std(axis=0)
    else:
        shift, scale = X.min(axis=0), X.max(axis=0) - X.min(axis=0)
    assert np.array_equal(model.scaling.shift, shift) and np.array_equal(model.scaling.scale,
                                                                         scale)
    plain = mlpcore.fit((X - shift) / scale, y, hidden=(5,), epochs=5, seed=0)
    assert same_weights(model, plain)
    assert np.array_equal(model.forward(X), plain.forward((X - shift) / scale))
    assert model.score(X, y) == plain.score((X - shift) / scale, y)
    assert model.score(X, y) == np.mean(model.predict(X) == y)  # inputs scaled once
    assert model.loss(X, y) == plain.loss((X - shift) / scale, y)
    # The same network on raw features, by folding the scaling into the first layer.
    W1, b1 = model.scaling.fold(model.weights[0], model.biases[0])
    raw = mlpcore.MLP((5,), init=([W1, *model.weights[1:]], [b1, *model.biases[1:]]))
    raw.build(X, y)
    np.testing.assert_allclose(raw.forward(X), model.forward(X), rtol=1e-9, atol=1e-12)
    # The scaling is state: saved, loaded, pickled, and used by further training.
    model.save(tmp_path / "m.npz")
    back = mlpcore.load(tmp_path / "m.npz")
    assert back.scale == how and np.array_equal(back.forward(X), model.forward(X))
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.forward(X), model.forward(X))
    longer = mlpcore.fit(X, y, hidden=(5,), epochs=8, seed=0, scale=how)
    model.fit_more(X, y, epochs=3)
    assert same_weights(model, longer)


def test_scale_is_checked():
    with pytest.raises(ValueError, match="scale must be"):
        mlpcore.MLP(scale="robust")


# -- feature names: DataFrame columns are matched by name -----------------------------------------

def test_dataframe_columns_are_matched_by_name(tmp_path):
    pd = pytest.importorskip("pandas")
    datasets = pytest.importorskip("sklearn.datasets")
    iris = datasets.load_iris(as_frame=True)
    X, y = iris.data, iris.target.to_numpy()
    model = mlpcore.fit(X, y, hidden=(8,), epochs=200, seed=0, scale="standard")
    assert model.feature_names == list(X.columns)
    in_order = model.score(X, y)
    assert in_order > 0.9
    reordered = X[X.columns[::-1]]
    assert model.score(reordered, y) == in_order
    assert np.array_equal(model.predict(reordered), model.predict(X))
    model.fit_more(reordered, y, epochs=1, validation_data=(reordered, y))
    with pytest.raises(ValueError, match=r"missing \['petal width \(cm\)'\]"):
        model.predict(X.drop(columns="petal width (cm)"))
    with pytest.raises(ValueError, match=r"unknown \['extra'\]"):
        model.predict(X.assign(extra=1.0))
    with pytest.warns(UserWarning, match="no feature names.*by position"):
        assert np.array_equal(model.predict(X.to_numpy()), model.predict(X))
    model.save(tmp_path / "iris.npz")
    back = mlpcore.load(tmp_path / "iris.npz")
    assert back.feature_names == list(X.columns)
    assert np.array_equal(back.predict(reordered), model.predict(X))
    assert pickle.loads(pickle.dumps(model)).feature_names == list(X.columns)
    plain = mlpcore.fit(X.to_numpy(), y, hidden=(3,), epochs=1, seed=0)
    assert plain.feature_names is None
    with pytest.warns(UserWarning, match="trained without them"):
        plain.predict(X)
    with pytest.raises(ValueError, match="repeated column names"):
        mlpcore.fit(pd.DataFrame(X.to_numpy(), columns=["a", "a", "b", "c"]), y, epochs=1)


def test_feature_names_in_a_file_must_fit_the_inputs(tmp_path):
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = mlpcore.fit(X, [0, 1, 0, 1], hidden=(2,), epochs=1, seed=0)
    meta, arrays = model.get_state()
    meta["feature_names"] = ["a"]
    with pytest.raises(ValueError, match="feature names for 2 inputs"):
        mlpcore.MLP.from_state(meta, arrays)


# -- errors that name the problem (more in NAMED_REFUSALS, with the battery above) -----------

def test_pandas_nullable_columns_without_missing_values_are_accepted():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(XE, columns=["a", "b", "c"]).astype("Float64")
    model = mlpcore.fit(frame, YE, hidden=(3,), epochs=2, seed=0)
    plain = mlpcore.fit(XE, YE, hidden=(3,), epochs=2, seed=0)
    assert np.array_equal(model.weights[0], plain.weights[0])
    with pytest.raises(ValueError, match="NaN"):
        frame.iloc[3, 1] = pd.NA
        mlpcore.fit(frame, YE, hidden=(3,), epochs=1)


def test_a_model_file_with_a_5000_digit_number_names_the_file(tmp_path):
    model = mlpcore.fit(XE, YE, hidden=(2,), epochs=1, seed=0)
    meta, arrays = model.get_state()
    path = tmp_path / "huge.npz"
    text = json.dumps({"format": "mlpcore-model", "version": 1, **meta})
    text = text.replace('"samples_seen": 40', '"samples_seen": ' + "9" * 5000)
    np.savez(path, meta=np.frombuffer(text.encode(), dtype=np.uint8), **arrays)
    with pytest.raises(ValueError, match=r"huge\.npz is not a readable mlpcore model file"):
        mlpcore.load(path)


# -- API details --------------------------------------------------------------------------------

def test_build_returns_the_model_and_an_untrained_model_has_no_history():
    model = mlpcore.MLP((3,), seed=0)
    for name in ("history", "dtype", "output", "samples_seen", "weights"):
        with pytest.raises(mlpcore.NotFittedError, match="not been trained"):
            getattr(model, name)
    assert not hasattr(model, "history")
    built = model.build(XE, YE)
    assert built is model and model.history == {"loss": [], "lr": []}
    assert np.isfinite(model.build(XE, YE).loss(XE, YE))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(verbose="no"), TypeError, "verbose must be True or False"),
    (dict(early_stopping=1), TypeError, "early_stopping must be True or False"),
    (dict(hidden=b"x"), TypeError, "hidden must be a sequence"),
    (dict(hidden={}), TypeError, "hidden must be a sequence"),
    (dict(hidden={3, 4}), TypeError, "hidden must be a sequence"),
    (dict(optimizer="Adam", learning_rate="0.1"), TypeError, "learning_rate must be a number"),
])
def test_settings_take_only_what_they_document(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mlpcore.MLP(**kwargs)


def test_optimizer_constants_and_weights_must_be_numbers():
    with pytest.raises(TypeError, match="beta1 must be a number"):
        mlpcore.Adam(beta1="0.5")
    with pytest.raises(TypeError, match="momentum must be a number"):
        mlpcore.Momentum(momentum="0.9")
    with pytest.raises(TypeError, match="sample_weight must hold numbers"):
        mlpcore.fit(XE, YE, epochs=1, sample_weight=True)


def test_documented_aliases_give_the_canonical_names():
    model = mlpcore.MLP(activation="Logistic", output="linear", loss="squared_error",
                        optimizer="Adam")
    assert (model.activation, model._requested_output, model._requested_loss,
            model.optimizer.rule) == ("sigmoid", "identity", "mse", "adam")
    for alias in ("log_loss", "categorical_crossentropy", "binary_crossentropy"):
        assert mlpcore.MLP(loss=alias)._requested_loss == "cross_entropy"


def test_a_schedule_may_return_numpy_scalars_and_numpy_seeds_are_saved(tmp_path):
    model = mlpcore.fit(XE, YE, hidden=(2,), epochs=2, schedule=lambda e: np.float32(0.01),
                        seed=np.int64(7))
    assert model.history["lr"] == [float(np.float32(0.01))] * 2
    mlpcore.fit(XE, YE, hidden=(2,), epochs=1, schedule=lambda e: np.int64(1))
    model.save(tmp_path / "m.npz")
    assert mlpcore.load(tmp_path / "m.npz").seed == 7
