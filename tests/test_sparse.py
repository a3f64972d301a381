"""Sparse input: scipy.sparse X trains and predicts like its dense form, without densifying.

* The oracle is mlpcore's own dense path (itself checked against NumPy and finite
  differences in test_maths.py): sparse and dense X give the same weights to 1e-12 in
  float64 for every update rule, batch mode (1, k, full), L2 setting and sample weighting,
  with empty rows, explicit zeros, unsorted indices and duplicate entries; float32 within
  float32 rounding.
* The scale factor that keeps plain SGD's L2 shrink sparse (src/_sparse.pxd) is folded back
  exactly, also when it would underflow or the shrink factor is not positive.
* The drop-in estimators match scikit-learn's own on sparse input to 1e-9.
* X is never densified (toarray/todense are forbidden during the calls), and a fit whose
  dense X would not fit in memory completes within 1.3x of X's CSR bytes + parameters +
  optimizer state.
* Bad sparse input is refused with a clear error, never read out of bounds.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import mlpcore
from _helpers import params
from mlpcore import _engine

N, D, K = 90, 40, 3


def awkward_csr(dense, rng):
    """A CSR matrix equal to ``dense`` whose rows hold every legal oddity: each value split
    into two duplicate entries (halves add back exactly), explicit zeros, unsorted indices."""
    rows, cols, vals = [], [], []
    for i, row in enumerate(dense):
        (nz,) = np.nonzero(row)
        entries = [(j, row[j] / 2) for j in nz] + [(j, row[j] / 2) for j in nz]
        entries += [(int(j), 0.0) for j in rng.choice(dense.shape[1], 2, replace=False)]
        order = rng.permutation(len(entries))
        for e in order:
            rows.append(i)
            cols.append(entries[e][0])
            vals.append(entries[e][1])
    indptr = np.searchsorted(rows, np.arange(dense.shape[0] + 1)).astype(np.int32)
    X = sp.csr_matrix((np.array(vals, dtype=dense.dtype), np.array(cols, dtype=np.int32),
                       indptr), shape=dense.shape)
    assert not X.has_sorted_indices and not X.has_canonical_format
    assert np.array_equal(X.toarray(), dense)
    return X


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X = rng.random((N, D))
    X[X < 0.85] = 0
    X[[3, 40]] = 0  # empty rows
    X[:, 7] = 0  # a feature no row has (explicit zeros may still be stored for it)
    y = np.argmax(X[:, :K] + 0.1 * rng.random((N, K)), axis=1)
    return X, y, awkward_csr(X, rng)


def max_difference(a, b):
    return max(float(np.abs(u - v).max()) for u, v in zip(params(a), params(b)))


def fit_both(X, Xs, y, **settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mlpcore.FeatureScaleWarning)
        return mlpcore.fit(X, y, **settings), mlpcore.fit(Xs, y, **settings)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("batch_size", [1, 7, None])
@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_sparse_trains_like_dense(data, optimizer, batch_size, alpha):
    X, y, Xs = data
    dense, sparse = fit_both(X, Xs, y, hidden=(6,), activation="tanh", optimizer=optimizer,
                             batch_size=batch_size, alpha=alpha, epochs=4,
                             learning_rate=0.02, seed=3)
    assert max_difference(dense, sparse) < 1e-12
    np.testing.assert_allclose(sparse.history["loss"], dense.history["loss"], rtol=1e-12)
    # The optimizer state too (velocities, Adam's moments): the lazy rows of momentum and
    # Nesterov are caught up before Python sees them, so training resumes identically.
    for a, b in zip(dense.optimizer.state, sparse.optimizer.state):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)


def test_lazy_momentum_catches_up_rows_unused_for_many_steps(data):
    # Feature 0 appears only in the first rows visited; its row of W1 then coasts on its
    # velocity for the rest of the epoch, caught up in closed form at the end.
    X, y, Xs = data
    X2 = X.copy()
    X2[:, 0] = 0
    X2[:3, 0] = 1.0
    Xs2 = sp.csr_matrix(X2)
    for optimizer in ("momentum", "nesterov"):
        dense, sparse = fit_both(X2, Xs2, y, hidden=(4,), optimizer=optimizer, batch_size=1,
                                 shuffle=False, epochs=2, learning_rate=0.05, seed=0)
        assert max_difference(dense, sparse) < 1e-12
        for a, b in zip(dense.optimizer.state, sparse.optimizer.state):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-13)


@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_lbfgs_on_sparse_input_matches_dense(data, alpha):
    # L-BFGS's line search and curvature pairs amplify the last-bit differences of the
    # summation order (the sparse gradient adds entry by entry, gemm in blocks) by about
    # 10x per iteration late in a run; 8 iterations keep them below 1e-12.
    X, y, Xs = data
    dense, sparse = fit_both(X, Xs, y, hidden=(6,), optimizer="lbfgs", alpha=alpha,
                             epochs=8, seed=3)
    assert max_difference(dense, sparse) < 1e-12


@pytest.mark.parametrize("hidden", [(), (5, 4)])
def test_any_depth_no_hidden_layer_and_two(data, hidden):
    X, y, Xs = data
    dense, sparse = fit_both(X, Xs, y, hidden=hidden, optimizer="sgd", batch_size=5,
                             alpha=1e-3, epochs=3, seed=1)
    assert max_difference(dense, sparse) < 1e-12


def test_sample_and_class_weights(data):
    X, y, Xs = data
    w = np.random.default_rng(1).random(N) * 3
    for batch in (1, 8):
        dense, sparse = fit_both(X, Xs, y, hidden=(5,), batch_size=batch, alpha=1e-2,
                                 epochs=3, seed=2, class_weight="balanced")
        assert max_difference(dense, sparse) < 1e-12
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mlpcore.FeatureScaleWarning)
            a = mlpcore.fit(X, y, hidden=(5,), batch_size=batch, epochs=3, seed=2)
            b = mlpcore.fit(Xs, y, hidden=(5,), batch_size=batch, epochs=3, seed=2)
            c = mlpcore.MLP(hidden=(5,), batch_size=batch, epochs=3, seed=2).fit(
                Xs, y, sample_weight=w)
            d = mlpcore.MLP(hidden=(5,), batch_size=batch, epochs=3, seed=2).fit(
                X, y, sample_weight=w)
        assert max_difference(a, b) < 1e-12
        assert max_difference(c, d) < 1e-12


def test_float32(data):
    X, y, Xs = data
    dense, sparse = fit_both(X.astype(np.float32), Xs.astype(np.float32), y, hidden=(6,),
                             batch_size=4, alpha=1e-2, epochs=3, seed=3)
    assert sparse.dtype == np.float32 and sparse.weights[0].dtype == np.float32
    assert max_difference(dense, sparse) < 2e-5


@pytest.mark.parametrize("lr,alpha", [(0.5, 1.0), (1.0, 2.0)],
                         ids=["scale underflows", "shrink factor not positive"])
def test_l2_scale_factor_is_folded_exactly(data, lr, alpha):
    # At batch size 1 the shrink per step is 1 - lr alpha: 0.5 takes the factor below 1e-6
    # within 20 samples (folded into W1 and restarted), 1 - 2 = -1 flips the sign (applied
    # densely). The weights stay the dense path's, including the biases, which are not
    # shrunk.
    X, y, Xs = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dense, sparse = fit_both(X, Xs, y, hidden=(4,), batch_size=1, epochs=2,
                                 learning_rate=lr, alpha=alpha, seed=0)
    assert max_difference(dense, sparse) < 1e-12
    assert np.isfinite(sparse.weights[0]).all()


def test_validation_early_stopping_partial_fit_and_fit_more(data):
    X, y, Xs = data
    dense, sparse = fit_both(X, Xs, y, hidden=(5,), epochs=6, early_stopping=True,
                             validation_fraction=0.2, seed=4)
    assert max_difference(dense, sparse) < 1e-12
    np.testing.assert_allclose(sparse.history["val_loss"], dense.history["val_loss"],
                               rtol=1e-12)
    models = []
    for inputs in (X, Xs):
        m = mlpcore.MLP(hidden=(5,), batch_size=10, seed=4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mlpcore.FeatureScaleWarning)
            m.partial_fit(inputs[:30], y[:30], classes=[0, 1, 2])
            m.partial_fit(inputs[30:], y[30:])
            m.fit_more(inputs, y, epochs=2)
        models.append(m)
    assert max_difference(*models) < 1e-12
    # A model trained on sparse X predicts dense X and back.
    mixed = models[1]
    np.testing.assert_array_equal(mixed.predict(X), mixed.predict(Xs))


def test_inference_functions(data):
    X, y, Xs = data
    model = mlpcore.fit(X, y, hidden=(6,), epochs=2, seed=0)
    np.testing.assert_allclose(model.forward(Xs), model.forward(X), rtol=1e-13)
    np.testing.assert_allclose(model.predict_proba(Xs), model.predict_proba(X), rtol=1e-13)
    np.testing.assert_array_equal(model.predict(Xs), model.predict(X))
    assert model.score(Xs, y) == model.score(X, y)
    np.testing.assert_allclose(model.loss(Xs, y), model.loss(X, y), rtol=1e-13)
    for gs, gd in zip(model.gradients(Xs, y), model.gradients(X, y)):
        for a, b in zip(gs, gd):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    # The gradient with respect to W1 has rows only for features present in X.
    absent = np.abs(X).sum(axis=0) == 0
    assert absent.any()
    assert not model.gradients(Xs, y)[0][0][absent].any()


@pytest.mark.parametrize("convert", [
    sp.csc_matrix, sp.coo_matrix, sp.lil_matrix, sp.csr_array, sp.dok_matrix,
    lambda a: sp.csr_matrix(a).astype(np.float32),
    lambda a: sp.csr_matrix((a * 4).round()).astype(np.int64),
], ids=["csc", "coo", "lil", "csr_array", "dok", "float32 csr", "int64 csr"])
def test_every_sparse_format_and_dtype(data, convert):
    X, y, _ = data
    source = X if "int" not in repr(convert(X[:2]).dtype) else (X * 4).round()
    Xs = convert(source)
    dense = mlpcore.fit(Xs.toarray(), y, hidden=(5,), epochs=2, seed=0, dtype=np.float64)
    sparse = mlpcore.fit(Xs, y, hidden=(5,), epochs=2, seed=0, dtype=np.float64)
    assert max_difference(dense, sparse) < 1e-12


def test_int64_indices(data):
    X, y, Xs = data
    wide = Xs.copy()
    wide.indices, wide.indptr = Xs.indices.astype(np.int64), Xs.indptr.astype(np.int64)
    assert wide.indices.dtype == np.int64
    a, b = fit_both(X, wide, y, hidden=(5,), batch_size=3, alpha=1e-3, epochs=2, seed=0)
    assert max_difference(a, b) < 1e-12


def test_x_is_never_densified(data, monkeypatch):
    X, y, Xs = data

    def refuse(*args, **kwargs):
        raise AssertionError("sparse X was densified")

    for cls in (sp.csr_matrix, sp.csr_array, sp.csc_matrix):
        for name in ("toarray", "todense", "__array__"):
            monkeypatch.setattr(cls, name, refuse, raising=False)
    for optimizer in ("sgd", "adam", "lbfgs"):
        model = mlpcore.fit(Xs, y, hidden=(5,), optimizer=optimizer, epochs=2,
                            early_stopping=optimizer != "lbfgs", scale="maxabs")
        model.predict(Xs)
        model.loss(Xs, y)
        model.gradients(Xs, y)


def test_maxabs_scaling_and_refused_scalings(data):
    X, y, Xs = data
    dense, sparse = fit_both(X * 50, Xs * 50, y, hidden=(5,), epochs=2, seed=0, scale="maxabs")
    assert max_difference(dense, sparse) < 1e-12
    np.testing.assert_allclose(sparse.scaling.scale, np.abs(X * 50).max(axis=0).clip(1e-300)
                               + (np.abs(X).max(axis=0) == 0), rtol=1e-15)
    assert not sparse.scaling.shift.any()
    for how in ("standard", "minmax"):
        with pytest.raises(ValueError, match=r"scale='maxabs'"):
            mlpcore.fit(Xs, y, scale=how)


def test_spread_warning_names_the_sparse_scaling(data):
    X, y, Xs = data
    wide = Xs.multiply(np.where(np.arange(D) % 2, 1.0, 1e5)).tocsr()
    with pytest.warns(mlpcore.FeatureScaleWarning, match=r"scale='maxabs'"):
        mlpcore.fit(wide, y, hidden=(3,), epochs=1)


def test_bad_sparse_input_is_refused(data):
    X, y, Xs = data
    bad = Xs.copy()
    bad.data[5] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(first at row"):
        mlpcore.fit(bad, y)
    with pytest.raises(ValueError, match=r"X has 39 features, but the model expects 40"):
        mlpcore.fit(X, y, epochs=1).predict(Xs[:, :39])
    with pytest.raises(ValueError, match=r"X has zero samples"):
        mlpcore.fit(Xs[:0], y[:0])
    with pytest.raises(TypeError, match=r"X has complex dtype"):
        mlpcore.fit(Xs.astype(complex), y)
    with pytest.raises(ValueError, match=r"float32's range"):
        mlpcore.fit(Xs * 1e300, y, dtype=np.float32)


def test_engine_refuses_a_malformed_csr_instead_of_reading_out_of_bounds(data):
    X, y, Xs = data
    model = mlpcore.fit(X, y, hidden=(4,), epochs=1)
    out = np.empty((N, K))
    for index_dtype in (np.int32, np.int64):  # each index width has its own pointers
        for field, value in (("indices", D), ("indices", -1), ("indptr", None)):
            bad = Xs.copy()
            bad.indices = bad.indices.astype(index_dtype)
            bad.indptr = bad.indptr.astype(index_dtype)
            if field == "indices":
                bad.indices[10] = value
            else:
                bad.indptr[5] = bad.indptr[6] + 1  # a row pointer going backwards
            with pytest.raises(ValueError, match=r"not a valid CSR matrix"):
                _engine.forward(model._network, model._theta, bad, out)
    with pytest.raises(ValueError, match=r"dtype float32"):
        _engine.forward(model._network, model._theta, Xs.astype(np.float32), out)
    dense_only = _engine.Workspace(model._network, 8, np.float64, True)
    with pytest.raises(ValueError, match=r"made for sparse input"):
        _engine.train_epoch(model._network, dense_only, model._theta, X,
                            np.eye(K)[y], None, None, 8, "sgd", 0.1)


def test_dropin_matches_scikit_learn_on_sparse_input(data):
    pytest.importorskip("sklearn")
    from sklearn.neural_network import MLPClassifier as Reference

    from mlpcore.sklearn import MLPClassifier

    X, y, Xs = data
    weights = np.random.default_rng(3).random(N) * 2
    cases = [("sgd", 1, 1e-3, 0.9, None), ("sgd", 16, 1e-3, 0.9, None),
             ("sgd", 16, 0.0, 0.9, None),  # Nesterov without L2: the lazy rows
             ("sgd", 8, 1e-2, 0.0, weights),  # plain SGD, L2 as a scale factor, weights
             ("adam", 16, 1e-3, 0.9, weights), ("lbfgs", "auto", 1e-3, 0.9, None)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for solver, batch, alpha, momentum, sw in cases:
            settings = dict(hidden_layer_sizes=(7,), solver=solver, batch_size=batch,
                            max_iter=5, random_state=0, alpha=alpha, momentum=momentum)
            ours = MLPClassifier(**settings).fit(Xs, y, sample_weight=sw)
            ref = Reference(**settings).fit(Xs, y, sample_weight=sw)
            for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
            np.testing.assert_allclose(ours.predict_proba(Xs), ref.predict_proba(Xs),
                                       atol=1e-9)


MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, scipy.sparse as sp
    import mlpcore

    def rss(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024

    n, d, nnz = {n}, {d}, {nnz}
    rng = np.random.default_rng(0)
    # Warm up every import and code path on a tiny problem first.
    tiny = sp.random(50, d, density=0.001, format="csr", random_state=0)
    mlpcore.fit(tiny, np.arange(50) % 2, hidden=(8,), epochs=1, n_threads=1)
    X = sp.csr_matrix((rng.random(n * nnz), rng.integers(0, d, n * nnz, dtype=np.int32),
                       np.arange(n + 1, dtype=np.int32) * nnz), shape=(n, d))
    y = rng.integers(0, 2, n)
    csr_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    before = rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # restart the peak (VmHWM) from here
        f.write("5")
    model = mlpcore.fit(X, y, hidden=(8,), optimizer="sgd", batch_size=200, epochs=1,
                        n_threads=1)
    peak = rss("VmHWM")
    params = sum(a.nbytes for a in model.weights + model.biases)
    print(json.dumps(dict(csr=csr_bytes, params=params, extra=peak - before,
                          dense=n * d * 8)))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_fit_on_sparse_x_whose_dense_form_would_not_fit_in_memory(tmp_path):
    # 40,000 x 200,000 float64 is 64 GB dense; as CSR with 100 nonzeros per row, 48 MB.
    import json

    script = tmp_path / "memory.py"
    script.write_text(MEMORY_SCRIPT.format(n=40_000, d=200_000, nnz=100))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    m = json.loads(done.stdout.strip().splitlines()[-1])
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert m["dense"] > total  # the dense form would not fit in this machine's memory
    # Peak while fitting: X (held before the fit) plus what the fit allocated.
    budget = 1.3 * (m["csr"] + m["params"])  # plain SGD has no optimizer state
    assert m["csr"] + m["extra"] < budget, m
