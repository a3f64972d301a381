"""The engine's maths against the NumPy reference (tests/reference.py) and against finite
differences: forward pass, loss and backpropagation for every hidden activation, output and
loss, the epochs they drive, and their numerical range."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlpcore
import reference as ref
from _helpers import HIDDEN, flat, make_problem, problems
from _helpers import classification_data as data
from mlpcore import _engine

OUTPUT_LOSS = [("softmax", "cross_entropy"), ("sigmoid", "cross_entropy"),
               ("softmax", "mse"), ("sigmoid", "mse"), ("identity", "mse"), ("exp", "poisson")]


def fitted_model(X, Y, Ws, bs, activation, output, loss, **kw):
    """A model holding exactly (Ws, bs), built for (X, Y) but not trained."""
    model = mlpcore.MLP([W.shape[1] for W in Ws[:-1]], activation=activation, output=output,
                        loss=loss, init=(Ws, bs), **kw)
    model.build(X, Y)
    return model


def relerr(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def smooth_problem(rng, activation, output, **kw):
    """make_problem, drawn again until every unit is away from relu's kink at 0."""
    X, Y, Ws, bs = make_problem(rng, output=output, **kw)
    while activation == "relu" and min(
            np.abs(a @ W + b).min() for a, W, b in
            zip([X] + ref.forward(Ws, bs, X, "relu", output)[:-1], Ws, bs)) < 1e-3:
        X, Y, Ws, bs = make_problem(rng, output=output, **kw)
    return X, Y, Ws, bs


def numeric_gradient(model, X, Y, sample_weight=None, h=1e-6):
    """dJ/dtheta by central differences of ``model.loss``, in the engine's parameter layout."""
    theta = model._theta
    numeric = np.empty_like(theta)
    for i in range(len(theta)):
        old = theta[i]
        theta[i] = old + h
        up = model.loss(X, Y, sample_weight)
        theta[i] = old - h
        down = model.loss(X, Y, sample_weight)
        theta[i] = old
        numeric[i] = (up - down) / (2 * h)
    return numeric


@pytest.mark.parametrize("activation,output_loss", list(itertools.product(HIDDEN, OUTPUT_LOSS)))
def test_gradients_match_finite_differences(rng, activation, output_loss):
    output, loss = output_loss
    X, Y, Ws, bs = smooth_problem(rng, activation, output)
    model = fitted_model(X, Y, Ws, bs, activation, output, loss)
    analytic = flat(*model.gradients(X, Y))
    assert relerr(analytic, numeric_gradient(model, X, Y)) < 1e-6

@pytest.mark.parametrize("activation,output_loss", list(itertools.product(HIDDEN, OUTPUT_LOSS)))
def test_loss_and_gradients_match_reference(rng, activation, output_loss):
    output, loss = output_loss
    X, Y, Ws, bs = make_problem(rng, n=11, output=output)
    sw = rng.random(len(X)) + 0.1
    model = fitted_model(X, Y, Ws, bs, activation, output, loss, alpha=0.3)
    assert model.loss(X, Y, sample_weight=sw) == pytest.approx(
        ref.loss(Ws, bs, X, Y, activation, output, loss, sw, 0.3), rel=1e-12)
    gw, gb = model.gradients(X, Y, sample_weight=sw)
    rw, rb = ref.gradients(Ws, bs, X, Y, activation, output, loss, sw, 0.3)
    for a, b in zip(gw + gb, rw + rb):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)



@pytest.mark.parametrize("activation,output_loss", list(itertools.product(HIDDEN, OUTPUT_LOSS)))
@pytest.mark.parametrize("d, hidden, k", [(4, (5, 3), 3), (70, (80,), 13)])
def test_one_row_matches_reference_and_finite_differences(rng, activation, output_loss, d,
                                                          hidden, k):
    """A single row (n = 1) takes its own kernels: _vrow.h for layers of up to 4,096 weights,
    gemv and gemm above (the 70 x 80 and 80 x 13 layers: one of each)."""
    output, loss = output_loss
    X, Y, Ws, bs = smooth_problem(rng, activation, output, n=1, d=d, hidden=hidden, k=k)
    model = fitted_model(X, Y, Ws, bs, activation, output, loss, alpha=0.3)
    np.testing.assert_allclose(model.forward(X), ref.forward(Ws, bs, X, activation, output)[-1],
                               rtol=1e-12, atol=1e-15)
    assert model.loss(X, Y) == pytest.approx(
        ref.loss(Ws, bs, X, Y, activation, output, loss, None, 0.3), rel=1e-12)
    gw, gb = model.gradients(X, Y)
    rw, rb = ref.gradients(Ws, bs, X, Y, activation, output, loss, None, 0.3)
    for a, b in zip(gw + gb, rw + rb):  # relative to each array's largest entry: a
        assert relerr(a, b) < 1e-12        # gradient entry can be a cancellation (L2 term)
    if d == 4:  # finite differences on the small network (one loss per parameter)
        assert relerr(flat(gw, gb), numeric_gradient(model, X, Y)) < 1e-6


def test_l2_penalty_in_loss_and_gradients(rng):
    X, y = data(rng, n=30)
    model = mlpcore.MLP((5,), alpha=0.5, seed=0)
    model.build(X, y)
    plain = mlpcore.MLP((5,), alpha=0.0, seed=0)
    plain.build(X, y)
    penalty = 0.5 * 0.5 * sum((W ** 2).sum() for W in model.weights) / len(X)
    assert model.loss(X, y) == pytest.approx(plain.loss(X, y) + penalty, rel=1e-13)
    gw, gb = model.gradients(X, y)
    pw, pb = plain.gradients(X, y)
    for g, p, W in zip(gw, pw, model.weights):
        np.testing.assert_allclose(g, p + 0.5 * W / len(X), rtol=1e-12)
    for g, p in zip(gb, pb):  # biases carry no penalty
        np.testing.assert_allclose(g, p, rtol=1e-13)
    # The epoch loss of gradient descent is J at the epoch's starting weights, penalty included.
    trained = mlpcore.fit(X, y, hidden=(5,), alpha=0.5, seed=0, batch_size=None, epochs=1)
    assert trained.history["loss"][0] == pytest.approx(model.loss(X, y), rel=1e-12)

def test_forward_matches_reference(rng):
    X, Y, Ws, bs = make_problem(rng, n=9000)  # more rows than one chunk of the engine
    model = fitted_model(X, Y, Ws, bs, "tanh", "softmax", "cross_entropy")
    np.testing.assert_allclose(model.forward(X), ref.forward(Ws, bs, X, "tanh", "softmax")[-1],
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("activation", HIDDEN)
def test_exp_output_and_poisson_loss_match_reference_and_finite_differences(rng, activation):
    # a = exp(Z_L), l_i = sum_k [y log(y / a) - y + a] (0 log 0 = 0), delta_L = a - y.
    X, Y, Ws, bs = smooth_problem(rng, activation, "exp", n=11)
    assert (Y == 0).any() and (Y > 1).any()  # zero counts take the 0 log 0 branch
    sw = rng.random(len(X)) + 0.1
    model = fitted_model(X, Y, Ws, bs, activation, "exp", "poisson", alpha=0.3)
    assert (model.output, model.loss_name) == ("exp", "poisson")
    acts = ref.forward(Ws, bs, X, activation, "exp")
    z_last = (X if len(acts) == 1 else acts[-2]) @ Ws[-1] + bs[-1]
    np.testing.assert_allclose(acts[-1], np.exp(z_last), rtol=1e-15)
    np.testing.assert_allclose(model.forward(X), acts[-1], rtol=1e-13, atol=1e-15)
    a = acts[-1]
    by_hand = [sum(y * np.log(y / ak) - y + ak if y > 0 else ak for y, ak in zip(yi, ai))
               for yi, ai in zip(Y, a)]
    np.testing.assert_allclose(ref.per_sample_loss(a, Y, "exp", "poisson"), by_hand,
                               rtol=1e-13)
    assert model.loss(X, Y, sample_weight=sw) == pytest.approx(
        ref.loss(Ws, bs, X, Y, activation, "exp", "poisson", sw, 0.3), rel=1e-12)
    gw, gb = model.gradients(X, Y, sample_weight=sw)
    rw, rb = ref.gradients(Ws, bs, X, Y, activation, "exp", "poisson", sw, 0.3)
    for got, want in zip(gw + gb, rw + rb):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    numeric = numeric_gradient(model, X, Y, sample_weight=sw)
    assert relerr(flat(gw, gb), numeric) < 1e-6
    assert relerr(flat(rw, rb), numeric) < 1e-6  # and the reference agrees with J itself

def test_tutorial_cost_is_half_mean_squared_error(rng):
    # The tutorial's network: sigmoid hidden and output units, J = 1/(2N) sum (a2 - Y)^2.
    X = rng.normal(size=(20, 3))
    Y = rng.random((20, 2))
    W1, W2 = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    b1, b2 = np.zeros(4), np.zeros(2)
    model = fitted_model(X, Y, [W1, W2], [b1, b2], "sigmoid", "sigmoid", "mse")
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    a1 = sig(X @ W1)
    a2 = sig(a1 @ W2)
    J = ((a2 - Y) ** 2).sum() / (2 * len(X))
    assert model.loss(X, Y) == pytest.approx(J, rel=1e-13)
    delta2 = (a2 - Y) * a2 * (1 - a2)
    delta1 = (delta2 @ W2.T) * a1 * (1 - a1)
    gw, gb = model.gradients(X, Y)
    np.testing.assert_allclose(gw[1], a1.T @ delta2 / len(X), rtol=1e-12)
    np.testing.assert_allclose(gw[0], X.T @ delta1 / len(X), rtol=1e-12)



def test_weights_shapes_follow_the_tutorial(rng):
    X = rng.normal(size=(10, 6))
    y = rng.integers(0, 4, 10)
    model = mlpcore.fit(X, y, hidden=(5, 3), epochs=1)
    assert [w.shape for w in model.weights] == [(6, 5), (5, 3), (3, 4)]
    assert [b.shape for b in model.biases] == [(5,), (3,), (4,)]
    assert model.sizes == (6, 5, 3, 4)

def init_of(Ws, bs):
    return ([W.copy() for W in Ws], [b.copy() for b in bs])


@pytest.mark.parametrize("activation,output_loss", [("sigmoid", ("sigmoid", "mse")),
                                                    ("relu", ("softmax", "cross_entropy")),
                                                    ("tanh", ("identity", "mse"))])
def test_full_batch_step_matches_reference(rng, activation, output_loss):
    output, loss = output_loss
    X, Y, Ws, bs = make_problem(rng, n=30, output=output)
    model = mlpcore.fit(X, Y, hidden=(5, 3), activation=activation, output=output, loss=loss,
                        batch_size=None, epochs=1, learning_rate=0.5, init=init_of(Ws, bs))
    rW, rb = ref.train_epoch(Ws, bs, X, Y, activation, output, loss, batch_size=len(X), lr=0.5)
    for a, b in zip(model.weights + model.biases, rW + rb):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    assert model.history["loss"][0] == pytest.approx(
        ref.loss(Ws, bs, X, Y, activation, output, loss), rel=1e-12)


def test_full_batch_in_chunks_matches_reference(rng):
    # N above the engine's chunk size: gradients are summed over chunks before the step.
    X, Y, Ws, bs = make_problem(rng, n=_engine.CHUNK_ROWS * 2 + 17)
    model = mlpcore.fit(X, Y, hidden=(5, 3), batch_size=None, epochs=2, learning_rate=0.3,
                        init=init_of(Ws, bs))
    Ws2, bs2 = Ws, bs
    for _ in range(2):
        Ws2, bs2 = ref.train_epoch(Ws2, bs2, X, Y, "sigmoid", "softmax", "cross_entropy",
                                   batch_size=len(X), lr=0.3)
    for a, b in zip(model.weights + model.biases, Ws2 + bs2):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_per_sample_sgd_epoch_matches_reference(rng):
    X, Y, Ws, bs = make_problem(rng, n=40)
    model = mlpcore.fit(X, Y, hidden=(5, 3), batch_size=1, epochs=1, learning_rate=0.2,
                        shuffle=False, init=init_of(Ws, bs))
    rW, rb = ref.train_epoch(Ws, bs, X, Y, "sigmoid", "softmax", "cross_entropy", 1, 0.2)
    for a, b in zip(model.weights + model.biases, rW + rb):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("batch_size", [1, 8, 13, 40])
def test_shuffled_minibatch_epochs_match_reference(rng, batch_size):
    X, Y, Ws, bs = make_problem(rng, n=40, output="identity")
    seed = 7
    model = mlpcore.fit(X, Y, hidden=(5, 3), activation="tanh", batch_size=batch_size, epochs=3,
                        learning_rate=0.05, seed=seed, init=init_of(Ws, bs))
    order_rng = np.random.default_rng(seed)  # with init given, the seed only shuffles
    Wr, br = Ws, bs
    for _ in range(3):
        order = order_rng.permutation(len(X)) if batch_size < len(X) else None
        Wr, br = ref.train_epoch(Wr, br, X, Y, "tanh", "identity", "mse", batch_size, 0.05,
                                 order=order)
    for a, b in zip(model.weights + model.biases, Wr + br):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_sample_weights_and_l2_in_an_epoch_match_reference(rng):
    X, Y, Ws, bs = make_problem(rng, n=25)
    sw = rng.random(25)
    sw[3] = 0
    model = mlpcore.fit(X, Y, hidden=(5, 3), batch_size=4, epochs=1, learning_rate=0.3,
                        shuffle=False, init=init_of(Ws, bs), sample_weight=sw, alpha=0.01)
    rW, rb = ref.train_epoch(Ws, bs, X, Y, "sigmoid", "softmax", "cross_entropy", 4, 0.3,
                             sw=sw, alpha=0.01)
    for a, b in zip(model.weights + model.biases, rW + rb):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_float32_trains_in_float32_and_matches_float64(rng):
    X, Y, Ws, bs = make_problem(rng, n=200)
    kw = dict(hidden=(5, 3), batch_size=16, epochs=5, learning_rate=0.1, seed=3,
              init=init_of(Ws, bs))
    m64 = mlpcore.fit(X, Y, **kw)
    m32 = mlpcore.fit(X.astype(np.float32), Y, **kw)
    assert m32.dtype == np.float32 and m64.dtype == np.float64
    assert all(w.dtype == np.float32 for w in m32.weights + m32.biases)
    assert m32._workspace.dtype == np.float32
    assert m32.forward(X).dtype == np.float32
    for a, b in zip(m32.weights + m32.biases, m64.weights + m64.biases):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # float32 arithmetic really ran: the results are not float64's rounded to float32 ...
    assert any((a != b.astype(np.float32)).any() for a, b in zip(m32.weights, m64.weights))
    # ... and they agree with the NumPy reference run in float32 to float32 precision.
    Wr, br = [W.astype(np.float32) for W in Ws], [b.astype(np.float32) for b in bs]
    order_rng = np.random.default_rng(3)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    for _ in range(5):
        Wr, br = ref.train_epoch(Wr, br, X32, Y32, "sigmoid", "softmax", "cross_entropy", 16,
                                 np.float32(0.1), order=order_rng.permutation(len(X)))
    assert Wr[0].dtype == np.float32
    for a, b in zip(m32.weights, Wr):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_softmax_and_sigmoid_are_stable_for_huge_inputs():
    X = np.array([[800.0], [-800.0], [1e6], [-1e6]])
    Ws = [np.array([[1.0, -1.0]])]
    bs = [np.zeros(2)]
    Y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    for output in ("softmax", "sigmoid"):
        model = fitted_model(X, Y, Ws, bs, "sigmoid", output, "cross_entropy")
        a = model.forward(X)
        assert np.isfinite(a).all()
        assert np.isfinite(model.loss(X, Y))
        gw, gb = model.gradients(X, Y)
        assert np.isfinite(gw[0]).all() and np.isfinite(gb[0]).all()
    np.testing.assert_allclose(fitted_model(X, Y, Ws, bs, "sigmoid", "sigmoid", "mse").forward(X),
                               [[1, 0], [0, 1], [1, 0], [0, 1]])



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

@pytest.mark.parametrize("hidden,alpha,weighted", [((100,), 0.0, False), ((100, 7), 0.01, True),
                                                   ((), 0.02, True)])
def test_blocked_per_sample_sgd_matches_reference(rng, hidden, alpha, weighted):
    # A first layer with >= GRAM_MIN_WEIGHTS weights: per-sample SGD runs in Gram blocks.
    k = 4
    n, d = 3 * _engine.GRAM_BLOCK + 5, 200 if hidden else _engine.GRAM_MIN_WEIGHTS // k + 3
    X = rng.normal(size=(n, d)) * 0.2
    Y = np.eye(k)[rng.integers(0, k, n)]
    sizes = (d, *hidden, k)
    assert d * sizes[1] >= _engine.GRAM_MIN_WEIGHTS
    Ws = [rng.normal(scale=0.1, size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(scale=0.1, size=b) for b in sizes[1:]]
    sw = rng.random(n) + 0.5 if weighted else None
    if weighted:
        sw[[3, 40]] = 0
    model = mlpcore.fit(X, Y, hidden=hidden, activation="tanh", batch_size=1, epochs=2,
                        learning_rate=0.05, alpha=alpha, seed=11, sample_weight=sw,
                        init=init_of(Ws, bs))
    assert model._workspace.gram_block > 0
    order_rng = np.random.default_rng(11)
    Wr, br = Ws, bs
    losses = []
    for _ in range(2):
        Wr, br, epoch_loss = ref.train_epoch(Wr, br, X, Y, "tanh", "softmax", "cross_entropy",
                                             1, 0.05, order=order_rng.permutation(n), sw=sw,
                                             alpha=alpha, return_loss=True)
        losses.append(epoch_loss)
    for a, b in zip(model.weights + model.biases, Wr + br):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(model.history["loss"], losses, rtol=1e-11)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_single_row_forward_matches_batch_forward(rng, dtype):
    # One row goes through gemv, several through gemm: same numbers either way.
    X, Y, Ws, bs = make_problem(rng, n=20)
    model = fitted_model(X.astype(dtype), Y, Ws, bs, "relu", "softmax", "cross_entropy")
    rows = np.vstack([model.forward(X[i:i + 1]) for i in range(len(X))])
    tol = 1e-13 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(rows, model.forward(X), rtol=tol, atol=tol)
    np.testing.assert_allclose(rows, ref.forward(Ws, bs, X, "relu", "softmax")[-1],
                               rtol=100 * tol, atol=100 * tol)
