"""Reliability (issue 7): bad input is refused clearly, every input layout trains the same,
nothing is copied needlessly, and a diverging fit never returns NaN weights.

The refusal battery below covers every case the issue lists. Variants already in
``test_fit.py::test_bad_input_is_refused_clearly`` (NaN/inf in X, NaN in Y, zero samples or
features, 1-D X, zero or negative learning rate, batch_size 0 or above N, epochs 0, a zero or
fractional hidden width, unknown names, wrong init shapes, complex or object X) are not
repeated here; this battery adds the others.
"""

import platform
import tracemalloc
import warnings

import numpy as np
import pytest

import mlpcore
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
    ("X sparse", lambda: fit(pytest.importorskip("scipy.sparse").csr_matrix(X)),
     TypeError, r"X is a sparse matrix.*toarray"),
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


@pytest.mark.parametrize("call,exc,match", [c[1:] for c in BAD_FIT_CALLS],
                         ids=[c[0] for c in BAD_FIT_CALLS])
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


# -- input layouts and dtypes -------------------------------------------------------------------

XL = RNG.normal(size=(40, 5))
YL = RNG.integers(0, 3, 40)
LAYOUT_KW = dict(hidden=(6,), epochs=3, seed=1, batch_size=8)


def _params(m):
    return m.weights + m.biases


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
    for a, b in zip(_params(got), _params(expected)):
        assert np.array_equal(a, b)
    np.testing.assert_array_equal(got.predict_proba(Xv), expected.predict_proba(base))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.float16, bool])
def test_int_bool_and_float16_inputs_train_in_float64(dtype):
    Xi = RNG.integers(0, 4, size=(40, 5)).astype(dtype)
    got = mlpcore.fit(Xi, YL, **LAYOUT_KW)
    expected = mlpcore.fit(Xi.astype(np.float64), YL, **LAYOUT_KW)
    assert got.dtype == np.float64
    for a, b in zip(_params(got), _params(expected)):
        assert np.array_equal(a, b)
    as32 = mlpcore.fit(Xi, YL, dtype=np.float32, **LAYOUT_KW)  # or float32 when asked
    assert as32.dtype == np.float32 and as32.weights[0].dtype == np.float32


def test_float32_result_close_to_float64():
    a = mlpcore.fit(XL.astype(np.float32), YL, **LAYOUT_KW)
    b = mlpcore.fit(XL, YL, **LAYOUT_KW)
    for p, q in zip(_params(a), _params(b)):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5)


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

    def recording_workspace(network, rows, dtype):
        made.append(rows)
        return real(network, rows, dtype)

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


# -- divergence ---------------------------------------------------------------------------------

XD = RNG.normal(size=(60, 3)) * 100
YD = XD.sum(axis=1) * 100


@pytest.mark.parametrize("options", [
    dict(), dict(batch_size=1), dict(batch_size=None), dict(optimizer="momentum"),
    dict(optimizer="nesterov"), dict(dtype=np.float32), dict(dtype=np.float32, batch_size=1),
    dict(activation="identity", learning_rate=1e3), dict(early_stopping=True),
    dict(alpha=1e6, batch_size=1),
], ids=lambda o: ",".join(f"{k}={getattr(v, '__name__', v)}" for k, v in o.items()) or "sgd")
def test_divergence_stops_with_a_warning_and_finite_parameters(options):
    settings = dict(hidden=(4,), activation="relu", epochs=30, learning_rate=10.0, seed=0)
    settings.update(options)
    with pytest.warns(mlpcore.TrainingDivergedWarning,
                      match=r"diverged in epoch \d+: the loss became NaN or infinite .*"
                            r"learning rate .* too large; try a smaller one") as record:
        m = mlpcore.fit(XD, YD, **settings)
    assert len(record) == 1
    assert m.training_result.stop_reason == "diverged"
    assert all(np.isfinite(p).all() for p in _params(m) + list(m.optimizer.state))
    assert np.isfinite(m.history["loss"]).all() and len(m.history["loss"]) < 30
    # Finite parameters are not enough: the model kept must have a finite loss and outputs.
    assert np.isfinite(m.loss(XD, YD)) and np.isfinite(m.predict(XD)).all()
    epoch = int(str(record[0].message).split("epoch ")[1].split(":")[0])
    assert epoch == len(m.history["loss"]) + 1  # the epoch named is the one not kept


def test_divergence_during_partial_fit_keeps_the_model_finite():
    m = mlpcore.MLP(hidden=(4,), activation="relu", learning_rate=10.0, seed=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(4):
            m.partial_fit(XD, YD)
    assert any(issubclass(w.category, mlpcore.TrainingDivergedWarning) for w in record)
    assert all(np.isfinite(p).all() for p in _params(m))
    assert np.isfinite(m.history["loss"]).all()


def test_divergence_in_fit_more_keeps_the_earlier_training():
    m = mlpcore.fit(XD / 100, YD / 1e4, hidden=(4,), activation="relu", epochs=3,
                    learning_rate=0.01, seed=0)
    history = list(m.history["loss"])
    with pytest.warns(mlpcore.TrainingDivergedWarning, match=r"epoch \d+"):
        m.fit_more(XD * 100, YD * 1e4, epochs=5)
    assert np.isfinite(m._theta).all()
    assert m.history["loss"][:3] == history and np.isfinite(m.history["loss"]).all()


# -- the engine's own boundary ------------------------------------------------------------------

def test_engine_refuses_a_workspace_made_for_another_network():
    small = _engine.Network((2, 2, 2), 1, 1, 0)
    wide = _engine.Network((2, 2000, 2), 1, 1, 0)
    workspace = _engine.Workspace(small, 32, np.float64)
    Xe, Ye = RNG.random((64, 2)), RNG.random((64, 2))
    theta = RNG.random(wide.n_params)
    with pytest.raises(ValueError, match=r"workspace was made for layer sizes \(2, 2, 2\)"):
        _engine.train_epoch(wide, workspace, theta, Xe, Ye, None, None, 32, "sgd", 0.1)
    with pytest.raises(ValueError, match="another network's layer sizes"):
        _engine.loss_gradient(wide, theta, Xe, Ye, None, 0.0, np.empty_like(theta), workspace)


def test_engine_refuses_sizes_and_rows_it_cannot_address():
    with pytest.raises(ValueError, match="more than can be addressed"):
        _engine.Network((2**62, 4, 2), 1, 1, 0)  # 2**64 weights would wrap to 0
    with pytest.raises(ValueError, match="too large to address"):
        _engine.Workspace(_engine.Network((3, 4, 2), 1, 1, 0), 2**62, np.float64)


def test_training_leaves_subnormals_to_python_and_flushes_them_inside():
    # Inside an epoch subnormals count as zero (see src/_fpenv.h): Adam's first moment of a
    # weight whose gradient vanished after the first sample decays by beta1 per step and
    # becomes exactly 0, not subnormal. Outside, the floating-point flags are restored.
    n = 1200  # 0.9 ** 1200 ~ 1e-55: below float32's smallest normal number
    X = np.zeros((n, 2), dtype=np.float32)
    X[:, 1] = np.linspace(-1, 1, n)
    X[0, 0] = 1.0  # feature 0 has a gradient at the first sample only
    y = (X[:, 1] > 0).astype(int)
    model = mlpcore.fit(X, y, hidden=(3,), optimizer="adam", batch_size=1, epochs=1,
                        shuffle=False, seed=0, dtype=np.float32)
    m = model.optimizer.state[0]
    first_row = m[:3]  # W1[0, :], the weights from feature 0
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert np.all(first_row == 0)
    else:  # no flush elsewhere (see src/_fpenv.h): the moments are merely tiny
        assert np.all(np.abs(first_row) < np.finfo(np.float32).tiny)
    assert np.all(np.isfinite(model.weights[0]))
    tiny = np.float64(np.finfo(np.float64).tiny)
    assert tiny * np.float64(0.5) != 0  # Python-side arithmetic still has subnormals
    assert np.float32(np.finfo(np.float32).tiny) * np.float32(0.5) != 0
