"""Sample weights: mlpcore's rule and the scikit-learn drop-in's.

mlpcore scales the weights to mean 1 over the training set, and a batch of B rows has the
loss sum_i w_i l_i / B (+ alpha/2 sum ||W||^2 / B): a full batch gives sum w l / sum w as
before, and per-sample steps scale with w_i (before, each batch was divided by its own total
weight, so at batch size 1 the weights cancelled). The drop-in keeps scikit-learn's rule
(each batch divided by its total weight, of any sign) and matches scikit-learn itself.
"""

import warnings

import numpy as np
import pytest

import mlpcore
import reference as ref
from _helpers import flat
from mlpcore import _engine

NET = ("tanh", "softmax", "cross_entropy")


def problem(rng, n=30, d=4, m=6, k=3, imbalance=False):
    X = rng.normal(size=(n, d))
    if imbalance:  # class 0 dominates: 'balanced' weights are far from 1
        y = np.where(rng.random(n) < 0.75, 0, rng.integers(1, k, n))
        y[:k] = np.arange(k)
    else:
        y = rng.integers(0, k, n)
    Y = np.eye(k)[y]
    Ws = [rng.normal(scale=0.5, size=(d, m)), rng.normal(scale=0.5, size=(m, k))]
    bs = [rng.normal(scale=0.1, size=m), rng.normal(scale=0.1, size=k)]
    return X, y, Y, Ws, bs


def init(Ws, bs):
    return [W.copy() for W in Ws], [b.copy() for b in bs]


def core_fit(X, y, Ws, bs, **kw):
    settings = dict(hidden=(Ws[0].shape[1],), activation="tanh", learning_rate=0.1,
                    shuffle=False, epochs=2, init=init(Ws, bs))
    settings.update(kw)
    return mlpcore.fit(X, y, **settings)


def reference_epochs(X, Y, Ws, bs, batch, epochs=2, lr=0.1, **kw):
    Wr, br = Ws, bs
    losses = []
    for _ in range(epochs):
        Wr, br, loss = ref.train_epoch(Wr, br, X, Y, *NET, batch, lr, return_loss=True, **kw)
        losses.append(loss)
    return flat(Wr, br), losses


def theta(model):
    return flat(model.weights, model.biases)


def balanced(y):
    counts = np.bincount(y)
    return (len(y) / (len(counts) * counts))[y]


# -- mlpcore's rule ---------------------------------------------------------------------------

@pytest.mark.parametrize("weights", ["balanced", "1e6:1"])
@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_batch_size_one_weights_change_training_and_match_the_rule(rng, weights, alpha):
    X, y, Y, Ws, bs = problem(rng, imbalance=True)
    if weights == "balanced":
        kw = dict(class_weight="balanced")
        sw = balanced(y)
    else:
        sw = np.where(np.arange(len(y)) % 3 == 0, 1e6, 1.0)
        kw = dict(sample_weight=sw)
    plain = core_fit(X, y, Ws, bs, batch_size=1, alpha=alpha)
    weighted = core_fit(X, y, Ws, bs, batch_size=1, alpha=alpha, **kw)
    # The weights are not cancelled: training differs, and by much.
    assert np.abs(theta(weighted) - theta(plain)).max() > 1e-2
    want, losses = reference_epochs(X, Y, Ws, bs, 1, sw=sw, alpha=alpha)
    np.testing.assert_allclose(theta(weighted), want, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(weighted.history["loss"], losses, rtol=1e-11)


def test_the_old_rule_cancelled_the_weights_at_batch_size_one(rng):
    # What the transcription of the old rule (each batch divided by its own weight) gives:
    # unweighted training exactly, which is what the new rule changes.
    X, y, Y, Ws, bs = problem(rng, imbalance=True)
    old, _ = reference_epochs(X, Y, Ws, bs, 1, sw=balanced(y), normalize="weights")
    plain, _ = reference_epochs(X, Y, Ws, bs, 1)
    np.testing.assert_allclose(old, plain, rtol=1e-13, atol=1e-15)
    new, _ = reference_epochs(X, Y, Ws, bs, 1, sw=balanced(y))
    assert np.abs(new - plain).max() > 1e-2


@pytest.mark.parametrize("batch", [4, 7, 30])
@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_mini_batch_weighted_training_matches_the_rule(rng, batch, alpha):
    X, y, Y, Ws, bs = problem(rng)
    sw = rng.random(len(y)) * 3
    sw[[2, 5, 6]] = 0
    sw[8:12] = 0  # a whole batch of 4 without weight: still a step (L2) under the rule
    model = core_fit(X, y, Ws, bs, batch_size=batch, alpha=alpha, sample_weight=sw)
    want, losses = reference_epochs(X, Y, Ws, bs, batch, sw=sw, alpha=alpha)
    np.testing.assert_allclose(theta(model), want, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(model.history["loss"], losses, rtol=1e-11)
    assert model.optimizer.t == 2 * -(-len(y) // batch)  # every batch is an update


@pytest.mark.parametrize("batch", [4, 1])
def test_shuffled_weighted_training_matches_the_rule(rng, batch):
    X, y, Y, Ws, bs = problem(rng)
    sw = rng.random(len(y)) + 0.2
    model = core_fit(X, y, Ws, bs, batch_size=batch, sample_weight=sw, shuffle=True,
                     seed=5, alpha=0.02)
    order_rng = np.random.default_rng(5)
    Wr, br = Ws, bs
    for _ in range(2):
        Wr, br = ref.train_epoch(Wr, br, X, Y, *NET, batch, 0.1,
                                 order=order_rng.permutation(len(y)), sw=sw, alpha=0.02)
    np.testing.assert_allclose(theta(model), flat(Wr, br), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("rule", ["momentum", "nesterov", "adam"])
@pytest.mark.parametrize("batch", [None, 5, 1])
def test_update_rules_with_weights_match_the_rule(rng, rule, batch):
    X, y, Y, Ws, bs = problem(rng, n=24)
    sw = rng.random(len(y)) * 2
    sw[[3, 10]] = 0
    lr = 0.01 if rule == "adam" else 0.1
    model = core_fit(X, y, Ws, bs, batch_size=batch, optimizer=rule, learning_rate=lr,
                     epochs=3, alpha=0.01, sample_weight=sw)
    rW, rb = ref.optimizer_epochs(rule, Ws, bs, X, Y, *NET, batch or len(X), lr, epochs=3,
                                  alpha=0.01, sw=sw)
    np.testing.assert_allclose(theta(model), flat(rW, rb), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("batch", [None, 6, 1])
@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_weights_scaled_by_a_constant_train_identically(rng, batch, alpha):
    X, y, Y, Ws, bs = problem(rng)
    sw = rng.random(len(y)) + 0.1
    base = core_fit(X, y, Ws, bs, batch_size=batch, alpha=alpha, sample_weight=sw)
    for c in (2.0 ** 600, 2.0 ** -600):  # exact scalings: bit-identical training
        other = core_fit(X, y, Ws, bs, batch_size=batch, alpha=alpha, sample_weight=sw * c)
        assert np.array_equal(theta(other), theta(base)), c
        assert other.history["loss"] == base.history["loss"]
    for c in (3.0, 1e300, 1e-300):
        other = core_fit(X, y, Ws, bs, batch_size=batch, alpha=alpha, sample_weight=sw * c)
        np.testing.assert_allclose(theta(other), theta(base), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("value", [1e308, 1e-320, 7.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_equal_weights_of_any_magnitude_are_no_weights(rng, value, dtype):
    X, y, Y, Ws, bs = problem(rng)
    kw = dict(batch_size=4, alpha=0.01, dtype=dtype)
    plain = core_fit(X, y, Ws, bs, **kw)
    weighted = core_fit(X, y, Ws, bs, sample_weight=np.full(len(y), value), **kw)
    assert np.array_equal(theta(weighted), theta(plain))
    # Relative weights beyond float32's range train too (scaled in float64 first).
    sw = np.where(np.arange(len(y)) % 2 == 0, 1e300, 1e-10)
    model = core_fit(X, y, Ws, bs, sample_weight=sw, **kw)
    assert np.isfinite(theta(model)).all()


@pytest.mark.parametrize("alpha", [0.0, 0.03])
@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
def test_full_batch_weighted_training_is_unchanged(rng, alpha, optimizer):
    # Full batch: sum w' l / N with mean-1 weights is sum w l / sum w, the rule before. The
    # L2 term is alpha/2 ||W||^2 / N, which is the old alpha/2 ||W||^2 / sum w for weights
    # given with mean 1 (other weights no longer change the strength of L2).
    X, y, Y, Ws, bs = problem(rng)
    sw = rng.random(len(y)) * 5
    sw[4] = 0
    rate = dict(learning_rate=None) if optimizer == "lbfgs" else {}
    model = core_fit(X, y, Ws, bs, batch_size=None, alpha=alpha, sample_weight=sw,
                     optimizer=optimizer, epochs=3, **rate)
    old_rule_weights = sw if alpha == 0 else ref.mean_one(sw)
    if optimizer == "sgd":
        want, losses = reference_epochs(X, Y, Ws, bs, len(y), epochs=3, sw=old_rule_weights,
                                        alpha=alpha, normalize="weights")
        np.testing.assert_allclose(theta(model), want, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(model.history["loss"], losses, rtol=1e-12)
    else:  # L-BFGS: the same iterates as with the mean-1 weights given as they are
        again = core_fit(X, y, Ws, bs, batch_size=None, alpha=alpha, optimizer=optimizer,
                         epochs=3, sample_weight=ref.mean_one(sw), **rate)
        np.testing.assert_allclose(theta(model), theta(again), rtol=1e-10, atol=1e-12)
    # loss() of given weights keeps J = (sum w l + L2) / sum w.
    assert model.loss(X, y, sample_weight=sw) == pytest.approx(
        ref.loss(model.weights, model.biases, X, Y, *NET, sw, alpha), rel=1e-12)


def test_class_weight_and_sample_weight_multiply_then_scale(rng):
    X, y, Y, Ws, bs = problem(rng, imbalance=True)
    sw = rng.random(len(y)) + 0.5
    a = core_fit(X, y, Ws, bs, batch_size=3, class_weight="balanced", sample_weight=sw)
    b = core_fit(X, y, Ws, bs, batch_size=3, sample_weight=sw * balanced(y))
    np.testing.assert_allclose(theta(a), theta(b), rtol=1e-13, atol=1e-15)


def test_validation_split_scales_the_training_part_to_mean_one(rng):
    X, y, Y, Ws, bs = problem(rng, n=40)
    sw = rng.random(len(y)) + 0.1
    model = core_fit(X, y, Ws, bs, batch_size=1, sample_weight=sw, validation_fraction=0.25,
                     epochs=1, seed=2)
    # Same split, trained on the training rows with their weights: the same model.
    train_rows, _ = mlpcore._splitting.validation_split(
        len(X), 0.25, np.random.default_rng(2), y)
    again = core_fit(X[train_rows], y[train_rows], Ws, bs, batch_size=1,
                     sample_weight=sw[train_rows] * 123.0, epochs=1)
    np.testing.assert_allclose(theta(model), theta(again), rtol=1e-12, atol=1e-14)


def test_engine_normalisations_agree_without_weights(rng):
    X, y, Y, Ws, bs = problem(rng)
    net = _engine.Network((4, 6, 3), _engine.HIDDEN_ACTIVATIONS["tanh"],
                          _engine.OUTPUT_ACTIVATIONS["softmax"], _engine.LOSSES["cross_entropy"])
    results = []
    for normalize in ("rows", "weights"):
        for batch in (1, 4):
            th = flat(Ws, bs)
            ws = _engine.Workspace(net, batch, np.float64)
            out = _engine.train_epoch(net, ws, th, X, Y, None, None, batch, "sgd", 0.1,
                                      alpha=0.01, normalize=normalize)
            results.append((th, out))
    assert np.array_equal(results[0][0], results[2][0]) and results[0][1] == results[2][1]
    assert np.array_equal(results[1][0], results[3][0]) and results[1][1] == results[3][1]
    with pytest.raises(ValueError, match="normalize must be 'rows' or 'weights'"):
        _engine.train_epoch(net, ws, flat(Ws, bs), X, Y, None, None, 4, "sgd", 0.1,
                            normalize="batch")


# -- the scikit-learn drop-in keeps scikit-learn's rule ----------------------------------------

sklearn = pytest.importorskip("sklearn")
from sklearn import neural_network as sk  # noqa: E402

from mlpcore.sklearn import MLPClassifier  # noqa: E402


def sk_data(n=90):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(n, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y, rng


def weight_cases(rng, n):
    positive = rng.random(n) * 3 + 0.1
    zero = positive.copy()
    zero[::4] = 0
    negative = positive.copy()
    negative[::3] *= -0.5
    return {"positive": positive, "zero": zero, "negative": negative,
            "all negative": -positive}


def fit_both(cls, X, y, sw, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = getattr(__import__("mlpcore.sklearn", fromlist=[cls]), cls)(**kw).fit(
            X, y, sample_weight=sw)
        theirs = getattr(sk, cls)(**kw).fit(X, y, sample_weight=sw)
    return ours, theirs


SK_SOLVERS = [dict(solver="sgd", momentum=0.0), dict(solver="sgd", momentum=0.9),
              dict(solver="adam"), dict(solver="lbfgs")]


# L-BFGS has no batches: it runs once, not once per batch size.
SK_CASES = [(p, b) for p in SK_SOLVERS for b in ([16] if p["solver"] == "lbfgs" else [16, 1])]


@pytest.mark.parametrize("case", ["positive", "zero", "negative", "all negative"])
@pytest.mark.parametrize("params,batch_size", SK_CASES,
                         ids=["-".join(map(str, p.values())) + f"-{b}" for p, b in SK_CASES])
def test_drop_in_matches_scikit_learn_with_sample_weights(case, params, batch_size):
    X, y, rng = sk_data()
    sw = weight_cases(rng, len(y))[case]
    if case == "zero" and batch_size == 1:
        sw = np.where(sw == 0, 1e-3, sw)  # a zero-weight batch: see the ZeroDivisionError test
    kw = dict(hidden_layer_sizes=(7,), random_state=1, max_iter=4, alpha=1e-3,
              batch_size=batch_size, learning_rate_init=0.01, **params)
    ours, theirs = fit_both("MLPClassifier", X, y, sw, **kw)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    if hasattr(theirs, "loss_curve_"):
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_drop_in_loss_with_all_negative_weights_is_scikit_learn_s(solver):
    X, y, rng = sk_data()
    sw = -(rng.random(len(y)) + 0.5)
    kw = dict(hidden_layer_sizes=(6,), random_state=0, max_iter=3, solver=solver)
    ours, theirs = fit_both("MLPClassifier", X, y, sw, **kw)
    assert np.isfinite(theirs.loss_)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    ours, theirs = fit_both("MLPRegressor", X, X[:, 0] - X[:, 1], sw, **kw)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_drop_in_raises_scikit_learn_s_error_for_a_batch_of_zero_weight(solver):
    X, y, rng = sk_data()
    sw = np.ones(len(y))
    sw[:10] = 0 if solver == "sgd" else sw[:10]
    if solver == "lbfgs":
        sw[:] = 0
        sw[0], sw[1] = 1.0, -1.0
    kw = dict(hidden_layer_sizes=(6,), random_state=0, max_iter=2, solver=solver,
              batch_size=10, shuffle=False)
    for cls in (MLPClassifier, sk.MLPClassifier):
        with pytest.raises(ZeroDivisionError, match="Weights sum to zero"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls(**kw).fit(X, y, sample_weight=sw)


def test_drop_in_regressor_weights_match_at_batch_size_one():
    X, _, rng = sk_data(60)
    y = X @ [1.0, -2.0, 0.5, 0.0, 1.0]
    sw = rng.random(60) * 4 + 0.1
    sw[::5] *= -1
    kw = dict(hidden_layer_sizes=(5,), random_state=2, max_iter=3, batch_size=1,
              solver="sgd", learning_rate_init=0.001, alpha=1e-2)
    ours, theirs = fit_both("MLPRegressor", X, y, sw, **kw)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_blocked_per_sample_training_with_zero_and_large_weights_matches_the_rule(rng, alpha):
    # A first layer of >= GRAM_MIN_WEIGHTS weights: per-sample SGD runs in Gram blocks.
    n, d, m = _engine.GRAM_BLOCK + 9, 200, 90
    X = rng.normal(size=(n, d)) * 0.2
    y = rng.integers(0, 3, n)
    Y = np.eye(3)[y]
    Ws = [rng.normal(scale=0.1, size=(d, m)), rng.normal(scale=0.1, size=(m, 3))]
    bs = [rng.normal(scale=0.1, size=m), rng.normal(scale=0.1, size=3)]
    sw = rng.random(n) + 0.5
    sw[[0, 5, 6, 33]] = 0
    sw[[2, 20]] = 30.0
    model = core_fit(X, y, Ws, bs, batch_size=1, alpha=alpha, sample_weight=sw,
                     learning_rate=0.02)
    assert model._workspace.gram_block > 0
    want, losses = reference_epochs(X, Y, Ws, bs, 1, lr=0.02, sw=sw, alpha=alpha)
    np.testing.assert_allclose(theta(model), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.history["loss"], losses, rtol=1e-10)


def test_drop_in_blocked_per_sample_path_matches_scikit_learn_with_negative_weights():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(50, 120)) * 0.3
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    sw = rng.random(50) + 0.3
    sw[::4] *= -1
    kw = dict(hidden_layer_sizes=(150,), random_state=0, max_iter=2, batch_size=1,
              solver="sgd", momentum=0.0, learning_rate_init=0.005, alpha=1e-2)
    assert 120 * 150 >= _engine.GRAM_MIN_WEIGHTS
    ours, theirs = fit_both("MLPClassifier", X, y, sw, **kw)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
