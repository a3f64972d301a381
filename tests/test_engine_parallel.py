"""The engine's parallel passes: the same weights for any thread count, the NumPy reference's
results, one BLAS thread inside the parallel regions, the default thread policy.

Passes are split among threads only when each gets enough work; the fixture below lowers
those limits (``_engine._set_parallel_limits``) and turns the speed tuner off
(``_engine._set_tuning``), so that small networks take the parallel path on every pass and
the tests say something about it. ``last_region_blas_threads`` reports which engine threads
ran in the last parallel region, so each test also checks that the parallel path ran.
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.linalg import blas
from threadpoolctl import threadpool_info, threadpool_limits

import mlpcore
import reference as ref
from mlpcore import _engine
from mlpcore._threads import available_cpus, default_threads

pytestmark = pytest.mark.skipif(not _engine.OPENMP, reason="engine built without OpenMP")

HIDDEN = ["sigmoid", "tanh", "relu", "identity"]
OUTPUT_LOSS = [("softmax", "cross_entropy"), ("sigmoid", "cross_entropy"),
               ("softmax", "mse"), ("sigmoid", "mse"), ("identity", "mse")]


@pytest.fixture
def parallel():
    """Every pass of more than a few rows runs split, on the thread count a test sets.

    BLAS is held at one thread, as mlpcore._threads holds it during a fit: the one-thread
    runs are then the engine's sequential path with single-threaded BLAS (OpenBLAS's own
    threads split a product differently, which can change float32 results in the last bit).
    """
    _engine._set_parallel_limits(min_macs=1, split_min_weights=1)
    _engine._set_tuning(False)
    _engine._record_region_blas_threads(True)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        _engine._set_parallel_limits()
        _engine._set_tuning(True)
        _engine._record_region_blas_threads(False)
        _engine.set_num_threads(1)


def problem(sizes, n, dtype, output="softmax", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    k = sizes[-1]
    if output == "softmax":
        Y = np.eye(k, dtype=dtype)[rng.integers(0, k, n)]
    elif output == "sigmoid":
        Y = (rng.random((n, k)) < 0.5).astype(dtype)
    else:
        Y = rng.normal(size=(n, k)).astype(dtype)
    Ws = [rng.normal(scale=1 / np.sqrt(a), size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(scale=0.1, size=b) for b in sizes[1:]]
    return X, Y, Ws, bs


def network(sizes, hidden="sigmoid", output="softmax", loss="cross_entropy"):
    return _engine.Network(sizes, _engine.HIDDEN_ACTIVATIONS[hidden],
                           _engine.OUTPUT_ACTIVATIONS[output], _engine.LOSSES[loss])


def theta_of(net, Ws, bs, dtype):
    theta = np.empty(net.n_params, dtype=dtype)
    for (w, b), W, bias in zip(net.layer_slices(), Ws, bs):
        theta[w] = W.ravel()
        theta[b] = bias
    return theta


def split(net, theta, sizes):
    Ws = [theta[w].reshape(a, b) for (w, _), a, b in zip(net.layer_slices(), sizes[:-1],
                                                          sizes[1:])]
    return Ws, [theta[b] for _, b in net.layer_slices()]


def train(threads, sizes, n, batch, dtype, rule="sgd", epochs=2, sw=False, alpha=0.0,
          hidden="sigmoid", shuffle=True, normalize="rows"):
    """theta, losses and the engine threads that ran, after `epochs` epochs on `threads`."""
    X, Y, Ws, bs = problem(sizes, n, dtype)
    net = network(sizes, hidden)
    theta = theta_of(net, Ws, bs, dtype)
    s1, s2 = np.zeros_like(theta), np.zeros_like(theta)
    weights = np.random.default_rng(5).random(n).astype(dtype) if sw else None
    ws = _engine.Workspace(net, min(batch, _engine.CHUNK_ROWS), dtype)
    _engine.set_num_threads(threads)
    results, ran = [], set()
    try:
        for epoch in range(epochs):
            order = np.random.default_rng(epoch).permutation(n) if shuffle else None
            results.append(_engine.train_epoch(net, ws, theta, X, Y, weights, order, batch,
                                               rule, 0.05, alpha=alpha, momentum=0.9,
                                               state1=s1, state2=s2, t=10 * epoch,
                                               normalize=normalize))
            ran.add(len(_engine.last_region_blas_threads()))
    finally:
        _engine.set_num_threads(1)
    return theta, results, ran


CASES = [
    # sizes, N, batch, dtype, rule: fused SGD steps, gradient + update rules, a last short
    # batch, several chunks per batch (full batch over CHUNK_ROWS rows), a deeper network.
    ((30, 24, 5), 500, 64, np.float32, "sgd"),
    ((30, 24, 5), 500, 64, np.float64, "sgd"),
    ((30, 24, 5), 530, 100, np.float64, "adam"),
    ((30, 24, 5), 530, 100, np.float32, "momentum"),
    ((12, 16, 3), _engine.CHUNK_ROWS + 1000, None, np.float64, "nesterov"),
    ((12, 16, 3), _engine.CHUNK_ROWS + 1000, None, np.float32, "sgd"),
    ((20, 24, 16, 4), 400, 50, np.float32, "adam"),
    # Per-sample SGD on a large first layer (blocked: the block's products are split).
    ((200, 100, 5), 160, 1, np.float64, "sgd"),
    ((200, 100, 5), 160, 1, np.float32, "sgd"),
]


def blocked_threads(sizes, dtype, alpha):
    """Most threads blocked per-sample SGD uses: split by hidden units (one hidden layer, no
    L2: a chunk of HIDDEN_CHUNK units each), else by the block's samples (ROW_ALIGN each)."""
    if len(sizes) == 3 and alpha == 0:
        return -(-sizes[1] // _engine.HIDDEN_CHUNK)
    return _engine.GRAM_BLOCK // _engine.ROW_ALIGN[np.dtype(dtype)]


def test_blas_computes_each_row_of_a_product_independently_of_the_split():
    """What bit-identical weights across thread counts rest on: a product's rows, computed
    in blocks starting at multiples of ROW_ALIGN, equal the unsplit product's rows."""
    rng = np.random.default_rng(0)
    with threadpool_limits(1, user_api="blas"):
        for dtype, gemm in ((np.float32, blas.sgemm), (np.float64, blas.dgemm)):
            align = _engine.ROW_ALIGN[np.dtype(dtype)]
            A = rng.normal(size=(5 * align + 3, 100)).astype(dtype)
            B = rng.normal(size=(100, 40)).astype(dtype)
            whole = gemm(1.0, B.T, A.T).T  # row-major A B, as the engine's wrapper calls it
            blocks = np.vstack([gemm(1.0, B.T, A[i:i + 2 * align].T).T
                                for i in range(0, len(A), 2 * align)])
            assert np.array_equal(whole, blocks), dtype


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c}")
@pytest.mark.parametrize("options", [{}, {"sw": True, "alpha": 1e-3},
                                     {"sw": True, "alpha": 1e-3, "normalize": "weights"}],
                         ids=["plain", "sw+L2", "sw+L2 by weight"])
def test_weights_are_bit_identical_for_any_thread_count(parallel, case, options):
    sizes, n, batch, dtype, rule = case
    batch = batch or n
    theta1, results1, ran1 = train(1, sizes, n, batch, dtype, rule, **options)
    assert ran1 == {0}  # one thread: no parallel region
    for threads in (2, 3):
        theta, results, ran = train(threads, sizes, n, batch, dtype, rule, **options)
        if batch == 1:
            threads = min(threads, blocked_threads(sizes, dtype, options.get("alpha", 0)))
        assert ran == {threads}, "the passes did not run on every thread"
        assert np.array_equal(theta, theta1), threads
        assert results == results1  # losses, weight sums, update counts, statuses


def test_same_seed_and_thread_count_give_identical_weights(parallel):
    first = train(2, (30, 24, 5), 500, 32, np.float64, "adam", epochs=3)[0]
    again = train(2, (30, 24, 5), 500, 32, np.float64, "adam", epochs=3)[0]
    assert np.array_equal(first, again)


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output_loss", OUTPUT_LOSS, ids=lambda o: "+".join(o))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_parallel_gradient_matches_reference(parallel, hidden, output_loss, dtype):
    output, loss = output_loss
    sizes = (9, 14, 7, 3)
    X, Y, Ws, bs = problem(sizes, 300, dtype, output)
    sw = np.random.default_rng(3).random(300).astype(dtype)
    net = network(sizes, hidden, output, loss)
    theta = theta_of(net, Ws, bs, dtype)
    grad = np.empty_like(theta)
    _engine.set_num_threads(2)
    value = _engine.loss_gradient(net, theta, X, Y, sw, 0.01, grad)
    assert _engine.last_region_blas_threads() == [1, 1]
    Ws64, bs64 = [W.astype(np.float64) for W in Ws], [b.astype(np.float64) for b in bs]
    args = (Ws64, bs64, X.astype(np.float64), Y.astype(np.float64), hidden, output, loss,
            sw.astype(np.float64), 0.01)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    assert value == pytest.approx(ref.loss(*args), rel=tol)
    dWs, dbs = ref.gradients(*args)
    gW, gb = split(net, grad, sizes)
    for got, want in zip(gW + gb, dWs + dbs):
        assert np.abs(got - want).max() <= tol * max(np.abs(want).max(), 1e-3)


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output_loss", OUTPUT_LOSS, ids=lambda o: "+".join(o))
def test_parallel_epoch_matches_reference(parallel, hidden, output_loss):
    output, loss = output_loss
    sizes = (9, 14, 3)
    X, Y, Ws, bs = problem(sizes, 260, np.float64, output)
    net = network(sizes, hidden, output, loss)
    theta = theta_of(net, Ws, bs, np.float64)
    order = np.random.default_rng(1).permutation(260)
    ws = _engine.Workspace(net, 40, np.float64)
    _engine.set_num_threads(2)
    loss_sum, weight_sum, updates, status = _engine.train_epoch(
        net, ws, theta, X, Y, None, order, 40, "sgd", 0.1)
    assert _engine.last_region_blas_threads() == [1, 1]
    want_W, want_b, want_loss = ref.train_epoch(Ws, bs, X, Y, hidden, output, loss, 40, 0.1,
                                                order=order, return_loss=True)
    gW, gb = split(net, theta, sizes)
    for got, want in zip(gW + gb, want_W + want_b):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert (status, updates) == (_engine.EPOCH_DONE, 7)
    assert loss_sum / weight_sum == pytest.approx(want_loss, rel=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_parallel_forward_matches_one_thread_exactly(parallel, dtype):
    sizes = (11, 20, 4)
    X, _, Ws, bs = problem(sizes, 1000, dtype)
    net = network(sizes)
    theta = theta_of(net, Ws, bs, dtype)
    one, two = np.empty((1000, 4), dtype), np.empty((1000, 4), dtype)
    _engine.forward(net, theta, X, one)
    _engine.set_num_threads(2)
    _engine.forward(net, theta, X, two)
    assert _engine.last_region_blas_threads() == [1, 1]
    assert np.array_equal(one, two)
    want = ref.forward([W.astype(np.float64) for W in Ws], [b.astype(np.float64) for b in bs],
                       X.astype(np.float64), "sigmoid", "softmax")[-1]
    np.testing.assert_allclose(two, want, rtol=1e-10 if dtype == np.float64 else 1e-4,
                               atol=1e-12 if dtype == np.float64 else 1e-6)


def scipy_blas_threads():
    return [lib["num_threads"] for lib in threadpool_info()
            if lib["user_api"] == "blas" and "scipy" in lib["filepath"]
            and "numpy" not in lib["filepath"]]


@pytest.mark.skipif(not _engine.BLAS_THREADS_CONTROLLABLE,
                    reason="the BLAS thread count cannot be read from the engine")
def test_blas_is_single_threaded_inside_the_parallel_region_even_if_set_higher(parallel):
    # Called directly (no mlpcore._threads policy around it), with BLAS at 2 threads: the
    # engine itself drops BLAS to one thread for its parallel segment and restores it.
    with threadpool_limits(limits=2, user_api="blas"):
        assert _engine.blas_num_threads() == 2
        train(2, (30, 24, 5), 300, 64, np.float64, epochs=1)
        assert _engine.last_region_blas_threads() == [1, 1]
        assert _engine.blas_num_threads() == 2


def test_fit_with_n_threads_runs_the_engine_on_them_with_single_threaded_blas(parallel):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 10))
    y = (X[:, 0] > 0).astype(int)
    before = scipy_blas_threads()
    model = mlpcore.fit(X, y, hidden=(16,), epochs=2, batch_size=64, n_threads=2, seed=0)
    assert _engine.last_region_blas_threads() == [1, 1]
    assert scipy_blas_threads() == before
    _engine._record_region_blas_threads(False)
    serial = mlpcore.fit(X, y, hidden=(16,), epochs=2, batch_size=64, n_threads=1, seed=0)
    for a, b in zip(model.weights + model.biases, serial.weights + serial.biases):
        assert np.array_equal(a, b)


def test_tuner_measures_both_options_and_keeps_the_faster():
    # With the default limits, on the real tuner: a problem big enough to split.
    sizes = (200, 128, 10)
    X, Y, Ws, bs = problem(sizes, 4000, np.float64)
    net = network(sizes)
    theta = theta_of(net, Ws, bs, np.float64)
    ws = _engine.Workspace(net, 128, np.float64)
    _engine.set_num_threads(2)
    try:
        for _ in range(2):
            _engine.train_epoch(net, ws, theta, X, Y, None, None, 128, "sgd", 0.01)
    finally:
        _engine.set_num_threads(1)
    state = _engine._tuner_state(ws)
    # One thread is measured first (4 passes); the team at least for a warm-up pass and one
    # measured pass (more unless it measured 3x slower than one thread).
    assert state["passes_team"] >= 2 and state["passes_one"] >= 4
    assert state["rate_team"] > 0 and state["rate_one"] > 0
    # The team is kept only while clearly faster (margin: a close call prefers one thread).
    # (In the middle of a try of the other option the choice is updated when the try ends.)
    faster = "team" if state["rate_team"] < state["margin"] * state["rate_one"] else "one"
    assert state["choice"] == faster or state["trying"]


def test_default_threads_policy():
    cpus = available_cpus()
    assert default_threads(1, (20, 16, 2)) == 1         # per-sample, small: one thread
    # Per-sample on a large first layer: blocked SGD splits each block's products.
    assert default_threads(1, (784, 128, 10)) == min(cpus, 4)
    assert default_threads(32, (2, 16, 2)) == 1         # far too little work to split
    assert default_threads(256, (784, 128, 10)) == min(cpus, _engine.MAX_THREADS)
    # Capped by the pass: each thread needs PARALLEL_MIN_MACS multiply-adds.
    macs = 3 * 64 * (20 * 64 + 64 * 2)
    assert default_threads(64, (20, 64, 2)) == min(cpus, max(1, macs // _engine.PARALLEL_MIN_MACS))


@pytest.mark.parametrize("bad, error", [(0, ValueError), (_engine.MAX_THREADS + 1, ValueError),
                                        (1.5, TypeError), (True, TypeError), ("2", TypeError)])
def test_set_num_threads_refuses_bad_counts(bad, error):
    with pytest.raises(error):
        _engine.set_num_threads(bad)
    assert _engine.get_num_threads() == 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hidden", [(), (16,), (16, 8)])
@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_sparse_minibatches_split_among_threads_give_identical_weights(parallel, dtype,
                                                                       hidden, alpha):
    # Plain SGD on CSR rows: the rows phase split by rows, W1's step split by its rows
    # (each thread applies the entries of its columns in the one-thread order).
    import scipy.sparse

    rng = np.random.default_rng(5)
    X = rng.random((300, 200))
    X[X < 0.9] = 0
    Xs = scipy.sparse.csr_matrix(X.astype(dtype))
    y = rng.integers(0, 3, 300)
    models = []
    for threads in (1, 2, 3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mlpcore.FeatureScaleWarning)
            models.append(mlpcore.fit(Xs, y, hidden=hidden, batch_size=48, epochs=2,
                                      alpha=alpha, seed=0, n_threads=threads))
        if threads > 1:  # the last region: the final loss's forward pass
            assert _engine.last_region_blas_threads() == [1] * threads
    # A training epoch itself runs split, with single-threaded BLAS inside.
    m = models[-1]
    _engine.set_num_threads(2)
    workspace = _engine.Workspace(m._network, 48, m.dtype, True)
    _engine.train_epoch(m._network, workspace, m._theta.copy(), Xs,
                        np.eye(3, dtype=dtype)[y], None, None, 48, "sgd", 0.01, alpha=alpha)
    assert _engine.last_region_blas_threads() == [1, 1]
    for other in models[1:]:
        for a, b in zip(models[0].weights + models[0].biases, other.weights + other.biases):
            np.testing.assert_array_equal(a, b)


# Blocked per-sample SGD split by hidden units (run_samples_hidden in src/_per_sample.pxd):
# one hidden layer and no L2. Its products are split by their rows only: Z is formed
# transposed (hidden units as rows) and W_1's update by W_1's rows, because in OpenBLAS's
# sgemm a block of a product's columns is not computed as in the unsplit product.

def test_blas_rows_of_the_hidden_split_products_do_not_depend_on_the_split():
    """What the hidden split's bit-identity rests on, for its two products in the engine's
    row-major terms: Z^T = W^T X^T (rows: hidden units) and W + a X^T U (rows: inputs),
    computed in row blocks starting at multiples of ROW_ALIGN, equal the unsplit products."""
    rng = np.random.default_rng(1)
    with threadpool_limits(1, user_api="blas"):
        for dtype, gemm in ((np.float32, blas.sgemm), (np.float64, blas.dgemm)):
            align = _engine.ROW_ALIGN[np.dtype(dtype)]
            kb, d, m = _engine.GRAM_BLOCK, 5 * align + 3, 7 * align + 5
            X = rng.normal(size=(kb, d)).astype(dtype)
            W = rng.normal(size=(d, m)).astype(dtype)
            U = rng.normal(size=(kb, m)).astype(dtype)
            # Row-major Z^T (m x kb) = W^T X^T is column-major Z = X W, split along Z's columns.
            whole = gemm(1.0, X.T, W.T, trans_a=1, trans_b=1)
            blocks = np.hstack([gemm(1.0, X.T, W.T[i:i + 2 * align], trans_a=1, trans_b=1)
                                for i in range(0, m, 2 * align)])
            assert np.array_equal(whole, blocks), dtype
            # Row-major W (d x m) + a X^T U is column-major W^T + a U^T X, split along X's
            # columns.
            whole = gemm(-0.05, U.T, X.T, beta=1.0, c=np.asfortranarray(W.T), trans_b=1)
            blocks = np.hstack([gemm(-0.05, U.T, X.T[i:i + 2 * align], beta=1.0,
                                     c=np.asfortranarray(W.T[:, i:i + 2 * align]), trans_b=1)
                                for i in range(0, d, 2 * align)])
            assert np.array_equal(whole, blocks), dtype


HIDDEN_CASES = [
    # sizes, dtype, hidden activation, options: hidden units not a multiple of the chunk,
    # relu (zero activations skipped), more outputs than a padded vector, a single chunk,
    # sample weights (with zeros) under both rules, visiting rows in order.
    ((200, 100, 5), np.float64, "sigmoid", {}),
    ((200, 100, 5), np.float32, "relu", {}),
    ((150, 120, 21), np.float32, "tanh", {"sw": True}),
    ((150, 120, 21), np.float64, "sigmoid", {"sw": True, "normalize": "weights"}),
    ((300, 64, 3), np.float64, "identity", {"shuffle": False}),
    ((2000, 12, 4), np.float32, "sigmoid", {}),
]


@pytest.mark.parametrize("case", HIDDEN_CASES, ids=lambda c: f"{c}")
def test_hidden_split_is_bit_identical_to_one_thread(parallel, case):
    sizes, dtype, hidden, options = case
    n = 3 * _engine.GRAM_BLOCK + 7  # a short last block
    theta1, results1, ran1 = train(1, sizes, n, 1, dtype, hidden=hidden, **options)
    assert ran1 == {0}
    chunks = -(-sizes[1] // _engine.HIDDEN_CHUNK)
    for threads in (2, 3):
        theta, results, ran = train(threads, sizes, n, 1, dtype, hidden=hidden, **options)
        want = min(threads, chunks)
        assert ran == ({want} if want > 1 else {0})
        assert np.array_equal(theta, theta1), threads
        assert results == results1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hidden_split_matches_per_sample_sgd(parallel, dtype):
    """Two threads against the NumPy reference of per-sample SGD (the blocked form equals it
    up to floating-point reassociation)."""
    sizes, n = (200, 100, 5), 2 * _engine.GRAM_BLOCK + 9
    X, Y, Ws, bs = problem(sizes, n, dtype)
    net = network(sizes)
    theta = theta_of(net, Ws, bs, dtype)
    order = np.random.default_rng(2).permutation(n)
    ws = _engine.Workspace(net, 1, dtype)
    assert ws.gram_block > 0
    _engine.set_num_threads(2)
    loss_sum, weight_sum, updates, status = _engine.train_epoch(
        net, ws, theta, X, Y, None, order, 1, "sgd", 0.05)
    assert _engine.last_region_blas_threads() == [1, 1]
    want_W, want_b, want_loss = ref.train_epoch(
        [W.astype(np.float64) for W in Ws], [b.astype(np.float64) for b in bs],
        X.astype(np.float64), Y.astype(np.float64), "sigmoid", "softmax", "cross_entropy",
        1, 0.05, order=order, return_loss=True)
    gW, gb = split(net, theta, sizes)
    rtol, atol = (1e-9, 1e-12) if dtype == np.float64 else (2e-4, 2e-5)
    for got, want in zip(gW + gb, want_W + want_b):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    assert (status, updates) == (_engine.EPOCH_DONE, n)
    assert loss_sum / weight_sum == pytest.approx(want_loss, rel=rtol)


def test_hidden_split_stops_on_divergence_where_one_thread_does(parallel):
    sizes, n, dtype = (200, 100, 3), 2 * _engine.GRAM_BLOCK, np.float64
    X, Y, Ws, bs = problem(sizes, n, dtype, output="identity")
    X[40:] *= 1e150  # the loss overflows in the second block
    net = network(sizes, "identity", "identity", "mse")
    out = []
    for threads in (1, 2):
        theta = theta_of(net, Ws, bs, dtype)
        ws = _engine.Workspace(net, 1, dtype)
        _engine.set_num_threads(threads)
        result = _engine.train_epoch(net, ws, theta, X, Y, None, None, 1, "sgd", 1e-3)
        out.append((theta, result))
    _engine.set_num_threads(1)
    (theta1, result1), (theta2, result2) = out
    assert result1[3] == _engine.EPOCH_DIVERGED and 40 <= result1[2] < n
    assert result2 == result1
    assert np.array_equal(theta2, theta1) and np.isfinite(theta1).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hidden_split_blocks_called_off_finish_on_one_thread_identically(dtype):
    """With the tuner on, a split block past _set_hidden_bail's factor times one thread's
    measured time is finished by thread 0 alone (factor 0: from its first sample on). The
    tuner's team passes then all end that way, and the weights are still one thread's."""
    sizes, n = (200, 100, 5), 12 * _engine.GRAM_BLOCK + 5
    _engine._set_parallel_limits(min_macs=1, split_min_weights=1)
    _engine._set_hidden_bail(0.0)
    _engine._record_region_blas_threads(True)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            theta1, results1, _ = train(1, sizes, n, 1, dtype, sw=True, epochs=3)
            theta2, results2, ran = train(2, sizes, n, 1, dtype, sw=True, epochs=3)
    finally:
        _engine._set_hidden_bail()
        _engine._set_parallel_limits()
        _engine._record_region_blas_threads(False)
    assert 2 in ran  # the team ran (the tuner's first team passes)
    assert np.array_equal(theta2, theta1)
    assert results2 == results1


def test_w3_per_sample_runs_split_by_hidden_units_with_single_threaded_blas():
    """The W3 network (784-128-10) with the engine's own limits, tuner off: every block on
    two threads, BLAS at one thread inside them, the weights those of one thread."""
    sizes, n = (784, 128, 10), 3 * _engine.GRAM_BLOCK
    results = {}
    _engine._set_tuning(False)
    _engine._record_region_blas_threads(True)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for threads in (1, 2):
                results[threads] = train(threads, sizes, n, 1, np.float64, epochs=1)
                results[threads] += (_engine.last_region_blas_threads(),)
    finally:
        _engine._set_tuning(True)
        _engine._record_region_blas_threads(False)
    assert results[2][3] == [1, 1]
    assert np.array_equal(results[2][0], results[1][0])


def test_small_per_sample_networks_stay_on_one_thread():
    """W4-sized per-sample training (plain loops) never opens a parallel region, whatever
    n_threads is, nor does a blocked first layer of a single chunk of hidden units."""
    assert default_threads(1, (2, 16, 2)) == 1
    _engine._record_region_blas_threads(True)
    _engine._set_tuning(False)
    try:
        for sizes in [(2, 16, 2), (2000, _engine.HIDDEN_CHUNK, 2)]:
            train(2, sizes, 200, 1, np.float64, epochs=1)
            assert _engine.last_region_blas_threads() == [], sizes
    finally:
        _engine._set_tuning(True)
        _engine._record_region_blas_threads(False)


CHILD_HIDDEN = """
import ctypes, sys
import numpy as np
from threadpoolctl import threadpool_limits
from mlpcore import _engine as E

shim = ctypes.CDLL(sys.argv[1])
shim.shim_stop.restype = ctypes.c_long
gil_check = ctypes.cast(ctypes.pythonapi.PyGILState_Check, ctypes.c_void_p)
E._set_tuning(False)
counts = {}
with threadpool_limits(limits=1, user_api="blas"):
    for dtype in (np.float32, np.float64):
        for threads in (1, 2):
            rng = np.random.default_rng(0)
            net = E.Network((200, 100, 5), E.HIDDEN_ACTIVATIONS["sigmoid"],
                            E.OUTPUT_ACTIVATIONS["softmax"], E.LOSSES["cross_entropy"])
            X = rng.random((300, 200)).astype(dtype)
            Y = np.eye(5, dtype=dtype)[rng.integers(0, 5, 300)]
            w = rng.random(300).astype(dtype)
            theta = (rng.standard_normal(net.n_params) * 0.1).astype(dtype)
            ws = E.Workspace(net, 1, dtype)
            E.set_num_threads(threads)
            E.train_epoch(net, ws, theta, X, Y, w, rng.permutation(300), 1, "sgd", 1e-3)
            shim.shim_start(gil_check)
            for i in range(3):
                E.train_epoch(net, ws, theta, X, Y, w, rng.permutation(300), 1, "sgd", 1e-3)
            counts[(dtype.__name__, threads)] = shim.shim_stop()
print(counts)
sys.exit(1 if any(counts.values()) else 0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs glibc and LD_PRELOAD")
def test_hidden_split_allocates_nothing_inside_the_epoch_loop(tmp_path):
    """The malloc shim of test_engine_allocations.py over blocked per-sample SGD split by
    hidden units (no L2, so not the case that test covers), on 1 and 2 threads."""
    from test_engine_allocations import SHIM, _compiler

    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler to build the malloc shim")
    (tmp_path / "shim.c").write_text(SHIM)
    lib = tmp_path / "shim.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(tmp_path / "shim.c")],
                   check=True)
    proc = subprocess.run([sys.executable, "-c", CHILD_HIDDEN, str(lib)],
                          env=dict(os.environ, LD_PRELOAD=str(lib)), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("):") == 4, proc.stdout
