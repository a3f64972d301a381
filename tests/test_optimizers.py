"""Update rules against the NumPy transcription of scikit-learn's formulas
(``reference.optimizer_epochs``), step by step; L-BFGS's convergence and refusals."""

import numpy as np
import pytest

import mlpcore
import reference as ref
from _helpers import flat

# The network the update rules are checked on: tanh hidden units, softmax, cross-entropy.
NET = ("tanh", "softmax", "cross_entropy")


def problem(rng, n=24, m=6):
    X = rng.normal(size=(n, 4))
    y = rng.integers(0, 3, n)
    Y = np.eye(3)[y]
    Ws = [rng.normal(scale=0.5, size=(4, m)), rng.normal(scale=0.5, size=(m, 3))]
    bs = [rng.normal(scale=0.1, size=m), rng.normal(scale=0.1, size=3)]
    return X, y, Y, Ws, bs


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("batch", [None, 5, 1])
@pytest.mark.parametrize("width", [6, 40])  # per-sample rows below and above MLPCORE_LONG_ROW
def test_rule_matches_numpy_transcription(rng, rule, batch, width):
    X, y, Y, Ws, bs = problem(rng, m=width)
    lr = 0.01 if rule == "adam" else 0.1
    model = mlpcore.fit(X, y, hidden=(width,), activation="tanh", optimizer=rule, learning_rate=lr,
                        batch_size=batch, epochs=3, shuffle=False, alpha=0.01,
                        init=([W.copy() for W in Ws], [b.copy() for b in bs]))
    rW, rb = ref.optimizer_epochs(rule, Ws, bs, X, Y, *NET, batch or len(X), lr, epochs=3,
                                  alpha=0.01)
    np.testing.assert_allclose(flat(model.weights, model.biases), flat(rW, rb),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 10])
def test_adam_bias_correction(rng, steps):
    X, y, Y, Ws, bs = problem(rng)
    lr = 0.01
    model = mlpcore.fit(X, y, hidden=(6,), activation="tanh", optimizer="adam",
                        learning_rate=lr, batch_size=None, epochs=steps,
                        init=([W.copy() for W in Ws], [b.copy() for b in bs]))
    rW, rb = ref.optimizer_epochs("adam", Ws, bs, X, Y, *NET, len(X), lr, epochs=steps)
    np.testing.assert_allclose(flat(model.weights, model.biases), flat(rW, rb),
                               rtol=1e-12, atol=1e-12)
    assert model.optimizer.t == steps
    if steps == 1:
        # With bias correction m_hat / sqrt(s_hat) = g / |g| at step 1: every parameter
        # moves by almost exactly lr (uncorrected, it would be lr (1 - b1) / sqrt(1 - b2),
        # about 3.2 lr). In scikit-learn's form, with the correction folded into the step,
        # epsilon acts as eps / sqrt(1 - b2^t): the move is lr |g| / (|g| + eps / sqrt(1 - b2)).
        start = mlpcore.MLP((6,), activation="tanh", init=(Ws, bs))
        start.build(X, y)
        g = np.abs(flat(*start.gradients(X, y)))
        moved = np.abs(flat(model.weights, model.biases) - flat(Ws, bs))
        np.testing.assert_allclose(moved, lr * g / (g + 1e-8 / np.sqrt(1 - 0.999)), rtol=1e-9)


def test_optimizer_objects_carry_settings(rng):
    X, y, Y, Ws, bs = problem(rng)
    init = ([W.copy() for W in Ws], [b.copy() for b in bs])
    model = mlpcore.fit(X, y, hidden=(6,), activation="tanh", batch_size=None, epochs=2,
                        optimizer=mlpcore.Momentum(learning_rate=0.05, momentum=0.5), init=init)
    rW, rb = ref.optimizer_epochs("momentum", Ws, bs, X, Y, *NET, len(X), 0.05, epochs=2,
                                  momentum=0.5)
    np.testing.assert_allclose(flat(model.weights, model.biases), flat(rW, rb), rtol=1e-12)
    with pytest.raises(ValueError, match="learning_rate"):
        mlpcore.fit(X, y, optimizer=mlpcore.Adam(), learning_rate=0.1)
    with pytest.raises(ValueError, match="momentum"):
        mlpcore.Momentum(momentum=1.5)


def test_momentum_and_adam_beat_plain_sgd_in_the_same_epochs(rng):
    X = rng.normal(size=(300, 5))
    y = (np.sin(X[:, 0]) + X[:, 1] * X[:, 2] > 0).astype(int)
    final = {}
    for name, lr in [("sgd", 0.01), ("momentum", 0.01), ("adam", 0.01)]:
        model = mlpcore.fit(X, y, hidden=(16,), optimizer=name, learning_rate=lr, epochs=20,
                            seed=0)
        final[name] = model.history["loss"][-1]
    assert final["momentum"] < final["sgd"]
    assert final["adam"] < final["sgd"]


def test_lbfgs_drives_the_gradient_to_zero(rng):
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    model = mlpcore.fit(X, y, hidden=(5,), activation="tanh", epochs=5000, alpha=1e-3, seed=0,
                        optimizer=mlpcore.LBFGS(ftol=0), tol=1e-7)
    gw, gb = model.gradients(X, y)
    assert np.sqrt(sum((g ** 2).sum() for g in gw + gb)) < 1e-5
    assert model.training_result.stop_reason == "converged"
    assert len(model.history["loss"]) == model.optimizer.t
    assert model.history["loss"][-1] < model.history["loss"][0]


def test_lbfgs_refuses_partial_fit_and_learning_rate(rng):
    X, y, *_ = problem(rng)
    with pytest.raises(ValueError, match="learning_rate"):
        mlpcore.fit(X, y, optimizer="lbfgs", learning_rate=0.1)
    model = mlpcore.MLP((4,), optimizer="lbfgs")
    with pytest.raises(ValueError, match="stochastic"):
        model.partial_fit(X, y)


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("batch", [None, 5, 1])
@pytest.mark.parametrize("width", [6, 40])
def test_float32_rules_follow_the_transcription(rng, rule, batch, width):
    # The float32 kernels are separate code: same steps, within float32 rounding.
    X, y, Y, Ws, bs = problem(rng, m=width)
    lr = 0.01 if rule == "adam" else 0.1
    model = mlpcore.fit(X.astype(np.float32), y, hidden=(width,), activation="tanh",
                        optimizer=rule, learning_rate=lr, batch_size=batch, epochs=3,
                        shuffle=False, alpha=0.01, dtype=np.float32,
                        init=([W.astype(np.float32) for W in Ws],
                              [b.astype(np.float32) for b in bs]))
    rW, rb = ref.optimizer_epochs(rule, [W.astype(np.float32).astype(np.float64) for W in Ws],
                                  [b.astype(np.float32).astype(np.float64) for b in bs],
                                  X.astype(np.float32).astype(np.float64), Y, *NET,
                                  batch or len(X), lr, epochs=3, alpha=0.01)
    got = flat(model.weights, model.biases)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, flat(rW, rb), rtol=1e-4, atol=1e-4)
