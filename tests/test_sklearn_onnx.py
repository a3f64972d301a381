"""skl2onnx on the scikit-learn drop-in: importing ``mlpcore.sklearn`` registers its classes
with skl2onnx's MLP converters, so they convert alone and inside pipelines, with the options
and results of scikit-learn's own classes; each graph is run under onnxruntime."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
import onnxruntime  # noqa: E402, F401 (the graphs run under it)
import skl2onnx  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from _helpers import onnx_session  # noqa: E402
from mlpcore.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


def skl2onnx_outputs(estimator, X, options=None, dtype=np.float32):
    proto = skl2onnx.to_onnx(estimator, X[:1].astype(dtype), options=options)
    sess = onnx_session(proto)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: X.astype(dtype)})))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_skl2onnx_double_graphs_of_the_drop_in_are_exact():
    rng = np.random.default_rng(14)
    X = rng.normal(size=(50, 3))
    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(6,), max_iter=10,
                                                        random_state=0)).fit(X, X[:, 0] > 0)
    got = skl2onnx_outputs(clf, X, options={"zipmap": False}, dtype=np.float64)
    assert got["probabilities"].dtype == np.float64
    np.testing.assert_allclose(got["probabilities"], clf.predict_proba(X), rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_array_equal(got["label"], clf.predict(X))
    reg = MLPRegressor(hidden_layer_sizes=(6,), max_iter=10, random_state=0).fit(X, X[:, 1])
    got = skl2onnx_outputs(reg, X, dtype=np.float64)
    np.testing.assert_allclose(got["variable"].ravel(), reg.predict(X), rtol=1e-12,
                               atol=1e-14)


def scikit_learn_twin(clf, X, y):
    """scikit-learn's own MLPClassifier fitted alike, then given the drop-in's weights."""
    from sklearn.base import clone
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    twin = SkMLPClassifier(**clone(clf).get_params()).fit(X, y)
    twin.coefs_ = [c.copy() for c in clf.coefs_]
    twin.intercepts_ = [b.copy() for b in clf.intercepts_]
    return twin


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("in_pipeline", [False, True], ids=["alone", "pipeline"])
def test_skl2onnx_converts_the_drop_in_classifier(n_classes, in_pipeline):
    rng = np.random.default_rng(10)
    X = rng.normal(size=(120, 4)) * [1, 10, 0.1, 1] + [0, 50, 0, 0]
    y = np.array(["a", "b", "c"])[rng.integers(0, n_classes, size=120)]
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0)
    est = make_pipeline(StandardScaler(), clf) if in_pipeline else clf
    est.fit(X, y)
    got = skl2onnx_outputs(est, X, options={id(clf): {"zipmap": False}})
    np.testing.assert_allclose(got["probabilities"], est.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(got["label"], est.predict(X))
    # zipmap (the default): one {class: probability} dict per row
    got = skl2onnx_outputs(est, X)
    assert got["output_probability"][0].keys() == set(clf.classes_)
    assert got["output_probability"][0][clf.classes_[0]] == pytest.approx(
        est.predict_proba(X[:1])[0, 0], abs=1e-5)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("options", [{"zipmap": "columns"}, {"zipmap": False, "nocl": True},
                                     {"zipmap": False, "nocl": False}], ids=str)
def test_skl2onnx_options_give_what_they_give_for_scikit_learns_own_class(options):
    # skl2onnx's MLP converter accepts nocl but keeps the class labels (for integer classes;
    # string classes with nocl=True make it build an invalid graph): the drop-in's graph is
    # scikit-learn's in every case.
    rng = np.random.default_rng(13)
    X = rng.normal(size=(60, 3))
    y = np.array([10, 20, 30])[rng.integers(0, 3, size=60)]
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=10, random_state=0).fit(X, y)
    twin = scikit_learn_twin(clf, X, y)
    ours = skl2onnx_outputs(clf, X, options={id(clf): options})
    theirs = skl2onnx_outputs(twin, X, options={id(twin): options})
    assert list(ours) == list(theirs)
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-6)
    label = "output_label" if options["zipmap"] == "columns" else "label"
    np.testing.assert_array_equal(ours[label], clf.predict(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_skl2onnx_converts_the_drop_in_regressor_and_multilabel_classifier():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(100, 3))
    reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(6,), max_iter=30,
                                                       random_state=0)).fit(X, X @ [1, 2, 3])
    got = skl2onnx_outputs(reg, X)
    np.testing.assert_allclose(got["variable"].ravel(), reg.predict(X), rtol=1e-4, atol=1e-4)
    Y = (X > 0).astype(int)
    ml = MLPClassifier(hidden_layer_sizes=(6,), max_iter=30, random_state=0).fit(X, Y)
    got = skl2onnx_outputs(ml, X, options={id(ml): {"zipmap": False}})
    np.testing.assert_allclose(got["probabilities"], ml.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(got["label"], ml.predict(X))


def test_skl2onnx_registration_keeps_scikit_learns_own_classes_converting():
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    from skl2onnx.common._registration import get_converter

    options = get_converter("SklearnMLPClassifier").get_allowed_options()
    assert {"zipmap", "nocl"} <= set(options)
    X = np.random.default_rng(12).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    sk = SkMLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        sk.fit(X, y)
    got = skl2onnx_outputs(sk, X, options={id(sk): {"zipmap": False}})
    np.testing.assert_allclose(got["probabilities"], sk.predict_proba(X), atol=1e-5)


def test_prediction_benchmark_runs(tmp_path):
    # bench/onnx_predict.py checks that the three implementations agree before timing them.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, os.path.join(root, "bench", "onnx_predict.py"),
                           "--smoke", "--json", str(out)], capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {(r["dtype"], r["batch"]) for r in rows} == {
        (d, b) for d in ("float32", "float64") for b in (1, 1000)}
    assert {"onnxruntime run", "mlpcore predict", "scikit-learn predict"} <= {
        r["impl"] for r in rows}
    assert all(r["us_per_call"] > 0 for r in rows)
