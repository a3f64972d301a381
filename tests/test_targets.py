"""What the targets mean: the task, one-hot rows and labels, multi-label indicators, and the
targets each output and loss refuses."""

import numpy as np
import pytest

import mlpcore


def labelled(rng, n=90, d=4, k=3):
    X = rng.normal(size=(n, d))
    y = np.argmax(X[:, :k] + 0.3 * rng.normal(size=(n, k)), axis=1)
    return X, y


# -- one-hot rows and labels ----------------------------------------------------------------
def test_a_one_hot_model_takes_labels_wherever_it_takes_targets(rng):
    X, y = labelled(rng)
    Y = np.eye(3)[y]
    m = mlpcore.fit(X, Y, hidden=(6,), epochs=30, seed=0)
    assert m.targets.one_hot
    pred = m.predict(X)
    assert pred.ndim == 1
    assert m.score(X, pred) == 1.0
    assert m.score(X, y) == m.score(X, Y)
    assert m.loss(X, y) == m.loss(X, Y)
    for a, b in zip(*(sum(m.gradients(X, t), []) for t in (y, Y))):
        assert np.array_equal(a, b)
    twin = mlpcore.MLP.from_state(*m.get_state())
    m.fit_more(X, Y, epochs=3)
    twin.fit_more(X, y, epochs=3)
    assert all(np.array_equal(a, b) for a, b in zip(m.weights, twin.weights))
    m.partial_fit(X, y)
    twin.partial_fit(X, Y)
    assert all(np.array_equal(a, b) for a, b in zip(m.weights, twin.weights))
    m.fit_more(X, y, epochs=1, validation_data=(X, y))
    assert "val_score" in m.history


def test_a_one_hot_model_refuses_labels_outside_its_columns(rng):
    X, y = labelled(rng)
    m = mlpcore.fit(X, np.eye(3)[y], hidden=(4,), epochs=1, seed=0)
    with pytest.raises(ValueError, match="not seen in training"):
        m.score(X, np.full(len(X), 3))


# -- the task -------------------------------------------------------------------------------
def test_integer_counts_with_the_poisson_loss_are_regression(rng):
    X = rng.normal(size=(200, 3))
    counts = rng.poisson(np.exp(0.5 * X[:, 0]))
    assert counts.dtype.kind == "i"
    m = mlpcore.fit(X, counts, hidden=(4,), output="exp", loss="poisson", epochs=20, seed=0,
                    learning_rate=0.01)
    assert m.targets.task == "regression" and m.classes is None and m.n_outputs == 1
    pred = m.predict(X)
    assert pred.shape == (200,) and pred.dtype.kind == "f" and (pred > 0).all()
    assert len(np.unique(pred)) > 2  # values, not a constant class


def test_an_identity_output_means_regression(rng):
    X = rng.normal(size=(60, 3))
    y = rng.integers(0, 5, 60)
    m = mlpcore.fit(X, y, hidden=(3,), output="identity", epochs=2, seed=0)
    assert m.targets.task == "regression" and m.loss_name == "mse" and m.classes is None


def test_task_classification_classifies_numeric_labels(rng, tmp_path):
    X, y = labelled(rng)
    yf = y.astype(np.float64)  # 0.0, 1.0, 2.0
    inferred = mlpcore.fit(X, yf, hidden=(4,), epochs=2, seed=0)
    assert inferred.targets.task == "regression"
    m = mlpcore.fit(X, yf, hidden=(6,), epochs=30, seed=0, task="classification")
    assert m.targets.task == "classification" and m.classes.tolist() == [0.0, 1.0, 2.0]
    assert set(m.predict(X).tolist()) <= {0.0, 1.0, 2.0}
    assert m.score(X, yf) > 0.6 and m.score(X, yf) == m.score(X, y)
    m.save(tmp_path / "m.npz")
    back = mlpcore.load(tmp_path / "m.npz")
    assert back.task == "classification"
    assert np.array_equal(back.predict(X), m.predict(X))


def test_task_regression_fits_integer_targets_as_values(rng):
    X, y = labelled(rng)
    m = mlpcore.fit(X, y, hidden=(4,), epochs=2, seed=0, task="regression")
    assert m.targets.task == "regression" and m.output == "identity"
    assert m.predict(X).dtype.kind == "f"


def test_task_is_checked():
    with pytest.raises(ValueError, match="task must be"):
        mlpcore.MLP(task="clustering")


# -- targets a loss cannot take ----------------------------------------------------------------
@pytest.mark.parametrize("make_y,kw,match", [
    (lambda X, y: 10 * X[:, :2], dict(output="softmax", loss="cross_entropy"),
     r"targets in \[0, 1\]"),
    (lambda X, y: np.column_stack([np.full(len(X), 0.5), np.full(len(X), 0.5),
                                   np.ones(len(X))]), dict(output="softmax"), "sum to 1"),
    (lambda X, y: 1.0 + np.abs(X[:, :2]), dict(output="sigmoid", loss="cross_entropy"),
     r"targets in \[0, 1\]"),
    (lambda X, y: X[:, 0], dict(output="softmax", loss="mse"), "at least two outputs"),
    (lambda X, y: -np.abs(X[:, :1]), dict(output="exp", loss="poisson"), "negative"),
])
def test_targets_the_output_or_loss_cannot_take_are_refused(rng, make_y, kw, match):
    X, y = labelled(rng)
    with pytest.raises(ValueError, match=match):
        mlpcore.fit(X, make_y(X, y), hidden=(3,), epochs=1, seed=0, **kw)


def test_negative_poisson_targets_are_refused_everywhere(rng):
    X = rng.normal(size=(50, 3))
    counts = rng.poisson(1.0, size=50)
    m = mlpcore.fit(X, counts, hidden=(3,), output="exp", epochs=1, seed=0,
                    learning_rate=0.01)
    bad = counts - 5
    for call in (lambda: m.loss(X, bad), lambda: m.score(X, bad), lambda: m.gradients(X, bad),
                 lambda: m.fit_more(X, bad, epochs=1),
                 lambda: m.fit_more(X, counts, epochs=1, validation_data=(X, bad))):
        with pytest.raises(ValueError, match="negative"):
            call()


def test_refused_validation_targets_are_named(rng):
    X, y = labelled(rng)
    Y = np.eye(3)[y]
    with pytest.raises(ValueError, match="validation Y"):
        mlpcore.fit(X, Y, hidden=(3,), epochs=1, output="softmax",
                    validation_data=(X, 2 * Y))


# -- multi-label ----------------------------------------------------------------------------
def multilabel(rng, n=300, d=8, k=4):
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, k))
    Y = (X @ W + 0.3 * rng.normal(size=(n, k)) > 0.3).astype(int)
    assert ((Y.sum(axis=1) != 1)).any()
    return X, Y


def test_an_indicator_matrix_is_multi_label_classification(rng, tmp_path):
    X, Y = multilabel(rng)
    m = mlpcore.fit(X, Y, hidden=(16,), epochs=60, seed=0, optimizer="adam",
                    learning_rate=0.01)
    assert m.targets.task == "classification" and m.targets.multilabel
    assert (m.output, m.loss_name, m.n_outputs) == ("sigmoid", "cross_entropy", 4)
    pred = m.predict(X)
    assert pred.shape == Y.shape and set(np.unique(pred)) <= {0, 1}
    proba = m.predict_proba(X)
    assert proba.shape == Y.shape and np.array_equal(proba, m.forward(X))
    assert np.array_equal(pred, (proba > 0.5).astype(int))
    subset_accuracy = np.mean((pred == Y).all(axis=1))
    assert m.score(X, Y) == pytest.approx(subset_accuracy)
    assert m.score(X, Y) > 0.6
    m.save(tmp_path / "ml.npz")
    back = mlpcore.load(tmp_path / "ml.npz")
    assert back.targets.multilabel and np.array_equal(back.predict(X), pred)


def test_multi_label_score_is_scikit_learns_subset_accuracy(rng):
    metrics = pytest.importorskip("sklearn.metrics")
    X, Y = multilabel(rng)
    m = mlpcore.fit(X, Y, hidden=(8,), epochs=5, seed=0)
    assert m.score(X, Y) == pytest.approx(metrics.accuracy_score(Y, m.predict(X)))


def test_one_hot_looking_rows_with_a_sigmoid_output_are_multi_label(rng):
    X, y = labelled(rng)
    m = mlpcore.fit(X, np.eye(3)[y], hidden=(4,), epochs=2, seed=0, output="sigmoid")
    assert m.targets.multilabel and m.predict(X).shape == (len(X), 3)


def test_multi_label_refuses_class_weight_and_non_indicator_targets(rng):
    X, Y = multilabel(rng)
    with pytest.raises(ValueError, match="class_weight"):
        mlpcore.fit(X, Y, hidden=(3,), epochs=1, class_weight="balanced")
    m = mlpcore.fit(X, Y, hidden=(3,), epochs=1, seed=0)
    with pytest.raises(ValueError, match="0/1 label rows"):
        m.score(X, Y * 2)
