"""mlpcore.sklearn against scikit-learn itself: same parameters, same results, same contract."""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from mlpcore.datasets import load_digits  # noqa: E402
from mlpcore.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100),
                          MLPClassifier(solver="sgd", max_iter=50)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def digits(n=400):
    X, y = load_digits()
    return X[:n] / 16, y[:n]


def assert_same_fit(ours, theirs, rtol=1e-10):
    assert len(ours.coefs_) == len(theirs.coefs_)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-10)
    if hasattr(theirs, "loss_curve_"):
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
        assert ours.t_ == theirs.t_


SOLVERS = [
    dict(solver="sgd", momentum=0.0),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=False),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=True, learning_rate="invscaling"),
    dict(solver="adam"),
    dict(solver="lbfgs"),
]


# L-BFGS uses no batches: it is paired with the default batch_size only.
ONE_EPOCH_CASES = [(p, b) for p in SOLVERS for b in ([1, 32, "auto"] if p["solver"] != "lbfgs"
                                                     else ["auto"])]


@pytest.mark.parametrize("params,batch_size", ONE_EPOCH_CASES,
                         ids=lambda v: "-".join(map(str, v.values())) if isinstance(v, dict)
                         else str(v))
def test_one_epoch_matches_scikit_learn(params, batch_size):
    X, y = digits(150)
    kw = dict(hidden_layer_sizes=(20,), random_state=0, max_iter=1, batch_size=batch_size,
              alpha=1e-3, **params)
    assert_same_fit(MLPClassifier(**kw).fit(X, y), sk.MLPClassifier(**kw).fit(X, y))


@pytest.mark.parametrize("params", SOLVERS, ids=lambda p: "-".join(map(str, p.values())))
def test_same_starting_weights_give_same_weights(params):
    # The same initial coefs_ set by hand (not drawn from random_state), then one epoch.
    X, y = digits(120)
    rng = np.random.default_rng(0)
    coefs = [rng.normal(scale=0.3, size=(64, 16)), rng.normal(scale=0.3, size=(16, 10))]
    intercepts = [rng.normal(scale=0.1, size=16), rng.normal(scale=0.1, size=10)]
    fitted = []
    for cls in (MLPClassifier, sk.MLPClassifier):
        est = cls(hidden_layer_sizes=(16,), max_iter=1, warm_start=True, shuffle=False,
                  **params)
        est.fit(X, y)  # initialises; then replace the weights and train one more epoch
        est.coefs_ = [c.copy() for c in coefs]
        est.intercepts_ = [i.copy() for i in intercepts]
        est.fit(X, y)
        fitted.append(est)
    for a, b in zip(fitted[0].coefs_ + fitted[0].intercepts_,
                    fitted[1].coefs_ + fitted[1].intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("task", ["binary", "multilabel", "squared_error", "multioutput",
                                  "poisson", "early_stopping", "adaptive", "sample_weight"])
def test_full_fits_match_scikit_learn(task):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(160, 5))
    kw = dict(hidden_layer_sizes=(12, 7), random_state=3, max_iter=30, tol=1e-6)
    fit_kw = {}
    if task == "binary":
        y, cls = (X[:, 0] > 0).astype(int), "MLPClassifier"
    elif task == "multilabel":
        y, cls = (X[:, :3] > 0).astype(int), "MLPClassifier"
    elif task == "squared_error":
        y, cls = X @ [1.0, -1.0, 0.5, 0.0, 2.0], "MLPRegressor"
    elif task == "multioutput":
        y, cls = np.column_stack([X[:, 0], X[:, 1] * X[:, 2]]), "MLPRegressor"
        kw.update(solver="lbfgs")
    elif task == "poisson":
        y, cls = rng.poisson(np.exp(0.3 * X[:, 0])), "MLPRegressor"
        kw.update(loss="poisson", learning_rate_init=0.01)
    elif task == "early_stopping":
        y, cls = (X[:, 0] + X[:, 1] > 0).astype(int), "MLPClassifier"
        kw.update(early_stopping=True, validation_fraction=0.2, n_iter_no_change=3)
    elif task == "adaptive":
        y, cls = X @ [1.0, -1.0, 0.5, 0.0, 2.0], "MLPRegressor"
        kw.update(solver="sgd", learning_rate="adaptive", tol=10.0, n_iter_no_change=2)
    else:
        y, cls = (X[:, 0] > 0).astype(int), "MLPClassifier"
        fit_kw = dict(sample_weight=rng.random(160) * 2)
    ours = globals()[cls](**kw).fit(X, y, **fit_kw)
    theirs = getattr(sk, cls)(**kw).fit(X, y, **fit_kw)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    if task == "early_stopping":
        assert ours.validation_scores_ == pytest.approx(theirs.validation_scores_)
        assert ours.best_validation_score_ == theirs.best_validation_score_
        assert ours.best_loss_ is None
    if task == "adaptive":
        assert ours._optimizer.learning_rate == theirs._optimizer.learning_rate
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-12)


def test_accuracy_after_full_training_matches_on_digits():
    X, y = load_digits()
    Xtr, Xte, ytr, yte = train_test_split(X / 16, y, test_size=0.25, random_state=0,
                                          stratify=y)
    kw = dict(random_state=0, max_iter=60)
    ours = MLPClassifier(**kw).fit(Xtr, ytr).score(Xte, yte)
    theirs = sk.MLPClassifier(**kw).fit(Xtr, ytr).score(Xte, yte)
    assert ours > 0.95
    assert abs(ours - theirs) <= 0.02


def test_convergence_warning_when_max_iter_is_reached():
    X, y = digits(100)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(max_iter=2, random_state=0).fit(X, y)


@pytest.mark.parametrize("params,error", [
    (dict(alpha=-1.0), "alpha"),
    (dict(solver="newton"), "solver"),
    (dict(activation="softplus"), "activation"),
    (dict(learning_rate="cyclic"), "learning_rate"),
    (dict(batch_size=0), "batch_size"),
    (dict(max_iter=0), "max_iter"),
    (dict(momentum=1.5), "momentum"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(beta_1=1.0), "beta_1"),
    (dict(n_iter_no_change=0), "n_iter_no_change"),
])
def test_parameter_validation_raises_like_scikit_learn(params, error):
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = digits(50)
    for cls in (MLPClassifier, sk.MLPClassifier):
        with pytest.raises(InvalidParameterError, match=error):
            cls(**params).fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPClassifier(hidden_layer_sizes=(3, 0)).fit(X, y)


def test_float32_stays_float32_with_every_solver():
    X, y = digits(120)
    X = X.astype(np.float32)
    for solver in ("sgd", "adam", "lbfgs"):
        clf = MLPClassifier(solver=solver, max_iter=5, random_state=0).fit(X, y)
        assert all(c.dtype == np.float32 for c in clf.coefs_ + clf.intercepts_)
        assert clf.predict_proba(X).dtype == np.float32
    reg = MLPRegressor(max_iter=5, random_state=0).fit(X, y.astype(np.float32))
    assert reg.predict(X).dtype == np.float32


def test_pipeline_grid_search_cross_validation_clone_and_pickle():
    X, y = digits(300)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    reference = cross_val_score(
        make_pipeline(StandardScaler(), sk.MLPClassifier(max_iter=30, random_state=0)), X, y,
        cv=3)
    np.testing.assert_allclose(scores, reference)
    assert scores.mean() > 0.7
    grid = GridSearchCV(MLPClassifier(max_iter=20, random_state=0),
                        {"hidden_layer_sizes": [(10,), (30,)], "alpha": [1e-4, 1e-2]}, cv=2)
    grid.fit(X, y)
    assert grid.best_params_["hidden_layer_sizes"] in [(10,), (30,)]
    clf = clone(grid.best_estimator_)
    assert not hasattr(clf, "coefs_")
    clf.fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    before = [c.copy() for c in restored.coefs_]
    restored.partial_fit(X, y)  # training resumes after unpickling
    assert any(not np.array_equal(a, b) for a, b in zip(before, restored.coefs_))


def test_partial_fit_and_warm_start_match_scikit_learn():
    X, y = digits(200)
    pair = []
    for cls in (MLPClassifier, sk.MLPClassifier):
        est = cls(hidden_layer_sizes=(16,), random_state=0, solver="sgd")
        for start in range(0, 200, 50):
            est.partial_fit(X[start:start + 50], y[start:start + 50], classes=np.arange(10))
        pair.append(est)
    for a, b in zip(pair[0].coefs_, pair[1].coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="classes"):
        MLPClassifier().partial_fit(X, y)


def test_user_assigned_coefs_are_used_for_prediction():
    X, y = digits(100)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    ref = sk.MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    zeros = [np.zeros_like(c) for c in clf.coefs_]
    clf.coefs_, ref.coefs_ = zeros, [z.copy() for z in zeros]
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), rtol=1e-12)
    clf.intercepts_[1][:] = 0  # in place, on a view of the engine's parameters
    ref.intercepts_[1][:] = 0
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), rtol=1e-12)


def test_sparse_input_is_accepted():
    import scipy.sparse

    X, y = digits(120)
    dense = MLPClassifier(max_iter=5, random_state=0).fit(X, y)
    sparse = MLPClassifier(max_iter=5, random_state=0).fit(scipy.sparse.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.coefs_[0], dense.coefs_[0], rtol=1e-12)
    np.testing.assert_allclose(sparse.predict_proba(scipy.sparse.csr_matrix(X)),
                               dense.predict_proba(X), rtol=1e-12)


def test_poisson_refuses_negative_targets():
    X = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(ValueError, match="negative"):
        MLPRegressor(loss="poisson", max_iter=2).fit(X, X[:, 0])


def test_mlpcore_imports_without_scikit_learn():
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "import numpy as np, mlpcore\n"
        "m = mlpcore.fit(np.eye(4), [0, 1, 0, 1], hidden=3, epochs=2)\n"
        "try:\n"
        "    import mlpcore.sklearn\n"
        "except ImportError as e:\n"
        "    print('needs:', e)\n"
    )
    with warnings.catch_warnings():
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'mlpcore[sklearn]'" in out.stdout


@pytest.mark.parametrize("cls", ["MLPClassifier", "MLPRegressor"])
@pytest.mark.parametrize("params", [dict(solver="lbfgs"), dict(solver="sgd"),
                                    dict(solver="adam", early_stopping=True)],
                         ids=lambda p: "-".join(map(str, p.values())))
def test_every_fitted_attribute_scikit_learn_sets_is_set_alike(cls, params):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 4))
    y = (X[:, 0] > 0).astype(int) if cls == "MLPClassifier" else X @ [1.0, 2.0, 0.0, -1.0]
    kw = dict(hidden_layer_sizes=(6,), max_iter=4, random_state=0, **params)
    ours = globals()[cls](**kw).fit(X, y)
    theirs = getattr(sk, cls)(**kw).fit(X, y)
    assert set(vars(theirs)) <= set(vars(ours)), set(vars(theirs)) - set(vars(ours))
    for name, theirs_value in vars(theirs).items():
        ours_value = getattr(ours, name)
        assert type(ours_value) is type(theirs_value), name
        if name in ("_coef_indptr", "_intercept_indptr", "_no_improvement_count", "t_",
                    "n_iter_", "n_layers_", "n_outputs_", "out_activation_"):
            assert ours_value == theirs_value, name
    if params["solver"] == "lbfgs":
        assert ours._coef_indptr[0] == (0, 24, (4, 6))
        assert ours._intercept_indptr[-1] == (36, 37)


def test_private_numpy_helpers_work_on_a_drop_in_fitted_model():
    # scikit-learn's _loss_grad_lbfgs / _backprop / _forward_pass, called on the drop-in,
    # give what they give on scikit-learn's own model with the same weights; and the loss
    # is the one the drop-in's engine minimised.
    X, y = digits(60)
    kw = dict(hidden_layer_sizes=(7,), solver="lbfgs", max_iter=3, random_state=0,
              activation="tanh", alpha=1e-3)
    ours = MLPClassifier(**kw).fit(X, y)
    theirs = sk.MLPClassifier(**kw).fit(X, y)
    theirs.coefs_ = [c.copy() for c in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    Y = ours._label_binarizer.transform(y).astype(float)
    theta = np.hstack([a.ravel() for a in ours.coefs_ + ours.intercepts_])
    results = []
    for est in (ours, theirs):
        units = [64, 7, 10]
        acts = [X] + [np.empty((60, u)) for u in units[1:]]
        deltas = [np.empty((60, u)) for u in units[1:]]
        cg = [np.empty((a, b)) for a, b in zip(units[:-1], units[1:])]
        ig = [np.empty(b) for b in units[1:]]
        results.append(est._loss_grad_lbfgs(theta, X, Y, None, acts, deltas, cg, ig))
        np.testing.assert_allclose(est._forward_pass(acts)[-1], ours.predict_proba(X),
                                   rtol=1e-10)
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)
    assert results[0][0] == pytest.approx(ours.loss_, rel=1e-8)  # no step taken since
    # _loss_grad_lbfgs unpacks the vector it is given into coefs_/intercepts_; predictions
    # then come from those parameters, as in scikit-learn.
    before = ours.predict_proba(X)
    moved = theta + 0.05 * np.random.default_rng(0).normal(size=theta.size)
    for est in (ours, theirs):
        est._loss_grad_lbfgs(moved, X, Y, None, acts, deltas, cg, ig)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-10)
    assert not np.allclose(ours.predict_proba(X), before)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_divergence_follows_scikit_learn(early_stopping):
    # A learning rate far too high: the losses overflow in iteration 6. scikit-learn goes
    # on with non-finite weights (NaN losses and validation scores) to max_iter and then
    # raises, unless early stopping restores the best weights.
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    kw = dict(hidden_layer_sizes=20, activation="identity", solver="sgd",
              learning_rate_init=1, max_iter=12, early_stopping=early_stopping,
              random_state=0)
    fitted = []
    for cls in (MLPRegressor, sk.MLPRegressor):
        est = cls(**kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
                if early_stopping:
                    est.fit(X, y)
                else:
                    with pytest.raises(ValueError, match="^Solver produced non-finite "
                                       "parameter weights. The input data may contain large "
                                       "values and need to be preprocessed.$"):
                        est.fit(X, y)
        fitted.append(est)
    ours, theirs = fitted
    assert ours.n_iter_ == theirs.n_iter_ == 12
    assert np.isnan(ours.loss_curve_).tolist() == np.isnan(theirs.loss_curve_).tolist()
    assert 0 < np.isnan(ours.loss_curve_).sum() < 12
    finite = ~np.isnan(theirs.loss_curve_)
    np.testing.assert_allclose(np.array(ours.loss_curve_)[finite],
                               np.array(theirs.loss_curve_)[finite], rtol=1e-9)
    assert ours._no_improvement_count == theirs._no_improvement_count
    if early_stopping:
        ours_scores, theirs_scores = (np.array(e.validation_scores_) for e in fitted)
        assert np.isnan(ours_scores).tolist() == np.isnan(theirs_scores).tolist()
        assert np.isnan(ours_scores).any()
        np.testing.assert_allclose(ours_scores[finite], theirs_scores[finite], rtol=1e-9)
        assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_)
        assert all(np.isfinite(c).all() for c in ours.coefs_)
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9)
    else:
        assert not all(np.isfinite(c).all() for c in ours.coefs_)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_divergence_leaves_the_optimizer_as_scikit_learn_does(solver):
    # Half the rows overflow the loss at once: every epoch is NaN, the optimizer state
    # becomes NaN and Adam still counts every batch; early stopping keeps the fit going.
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(40, 2))
    X[20:] *= 1e200
    y = rng.standard_normal(size=40)
    fitted = []
    for cls in (MLPRegressor, sk.MLPRegressor):
        est = cls(hidden_layer_sizes=5, solver=solver, max_iter=6, early_stopping=True,
                  random_state=0, batch_size=8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
        fitted.append(est)
    ours, theirs = (e._optimizer for e in fitted)
    assert np.isnan(fitted[0].loss_curve_).all() and np.isnan(fitted[1].loss_curve_).all()
    assert len(fitted[0].validation_scores_) == len(fitted[1].validation_scores_) == 6
    assert ours.learning_rate == pytest.approx(theirs.learning_rate, rel=1e-12)
    if solver == "adam":
        assert ours.t == theirs.t == 30
        states = [(o.ms[0], o.vs[0]) for o in (ours, theirs)]
    else:
        states = [(o.velocities[0],) for o in (ours, theirs)]
    for a, b in zip(*states):
        assert np.isnan(a).all() and not np.isfinite(b).all()
    np.testing.assert_allclose(fitted[0].predict(X[:20]), fitted[1].predict(X[:20]),
                               rtol=1e-9)


def test_partial_fit_that_diverges_raises_scikit_learns_error():
    X = np.finfo(np.float64).max * np.random.default_rng(0).uniform(size=(10, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
            MLPRegressor().partial_fit(X, np.arange(10.0))


@pytest.mark.parametrize("params", [
    dict(solver="lbfgs", max_iter=1),
    dict(solver="lbfgs", max_fun=5),
    dict(solver="lbfgs", max_iter=3, verbose=True),
    dict(solver="sgd", max_iter=2),
    dict(solver="adam", max_iter=3, batch_size=1000),
    dict(solver="sgd", learning_rate="adaptive", max_iter=50, tol=10.0, verbose=True),
    dict(solver="adam", early_stopping=True, max_iter=30, n_iter_no_change=2, verbose=True),
], ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_same_warnings_and_output_as_scikit_learn(params, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int)
    seen = []
    for cls in (MLPClassifier, sk.MLPClassifier):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            cls(hidden_layer_sizes=(5,), random_state=0, **params).fit(X, y)
        seen.append(([(w.category, str(w.message)) for w in record], capsys.readouterr().out))
    assert seen[0] == seen[1]
    assert seen[0][0] or seen[0][1]  # each case warns or prints something
