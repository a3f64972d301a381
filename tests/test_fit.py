"""The public API: fit, the model's methods, save/load, and refusals of bad input."""

import time

import numpy as np
import pytest

import mlpcore

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0, 1, 1, 0])


def digits_split():
    from sklearn.model_selection import train_test_split

    from mlpcore.datasets import load_digits

    X, y = load_digits()
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


def test_learns_xor_with_sigmoid_hidden_units():
    # The tutorial's setup: sigmoid hidden and output units, squared error.
    model = mlpcore.fit(XOR_X, XOR_Y, hidden=(4,), output="sigmoid", loss="mse",
                        batch_size=None, epochs=5000, learning_rate=5.0, seed=1)
    assert model.n_outputs == 1
    assert model.predict(XOR_X).tolist() == [0, 1, 1, 0]
    assert model.history["loss"][-1] < 0.01


def test_loss_decreases_on_a_separable_problem(rng):
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = mlpcore.fit(X, y, hidden=(8,), epochs=30, learning_rate=0.5, seed=0)
    loss = model.history["loss"]
    assert len(loss) == 30
    assert loss[-1] < 0.5 * loss[0]
    assert model.score(X, y) > 0.95


@pytest.mark.parametrize("batch_size", [None, 1, 10])
def test_three_training_methods_all_learn(rng, batch_size):
    X = rng.normal(size=(100, 3))
    y = (X @ [1.0, -2.0, 0.5] > 0).astype(int)
    model = mlpcore.fit(X, y, hidden=(6,), batch_size=batch_size, epochs=40,
                        learning_rate=0.5 if batch_size else 2.0, seed=0)
    assert model.history["loss"][-1] < model.history["loss"][0]
    assert model.score(X, y) > 0.9


def test_defaults_reach_95_percent_on_digits_quickly():
    Xtr, Xte, ytr, yte = digits_split()
    start = time.perf_counter()
    model = mlpcore.fit(Xtr, ytr, seed=0)
    elapsed = time.perf_counter() - start
    assert model.score(Xte, yte) >= 0.95
    assert elapsed < 10


def test_same_seed_gives_bit_identical_weights(rng):
    X = rng.normal(size=(64, 5))
    y = rng.integers(0, 3, 64)
    a = mlpcore.fit(X, y, hidden=(7,), epochs=3, seed=42)
    b = mlpcore.fit(X, y, hidden=(7,), epochs=3, seed=42)
    c = mlpcore.fit(X, y, hidden=(7,), epochs=3, seed=43)
    for wa, wb in zip(a.weights + a.biases, b.weights + b.biases):
        assert np.array_equal(wa, wb)
    assert not np.array_equal(a.weights[0], c.weights[0])


def test_shuffle_false_differs_from_shuffle_true(rng):
    X = rng.normal(size=(64, 5))
    y = rng.integers(0, 3, 64)
    a = mlpcore.fit(X, y, hidden=(7,), epochs=2, seed=42, shuffle=False)
    b = mlpcore.fit(X, y, hidden=(7,), epochs=2, seed=42, shuffle=True)
    assert not np.array_equal(a.weights[0], b.weights[0])


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


def test_weights_shapes_follow_the_tutorial(rng):
    X = rng.normal(size=(10, 6))
    y = rng.integers(0, 4, 10)
    model = mlpcore.fit(X, y, hidden=(5, 3), epochs=1)
    assert [w.shape for w in model.weights] == [(6, 5), (5, 3), (3, 4)]
    assert [b.shape for b in model.biases] == [(5,), (3,), (4,)]
    assert model.sizes == (6, 5, 3, 4)


def test_save_load_round_trip(tmp_path, rng):
    X = rng.normal(size=(40, 3))
    y = np.array(["a", "b"])[rng.integers(0, 2, 40)]
    model = mlpcore.fit(X, y, hidden=(6, 4), activation="relu", epochs=4, seed=0,
                        optimizer="adam", learning_rate=0.01)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = mlpcore.load(path)
    assert repr(loaded) == repr(model)
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.predict(X).tolist() == model.predict(X).tolist()
    assert loaded.history == model.history
    assert loaded.optimizer.t == model.optimizer.t
    for a, b in zip(loaded.optimizer.state, model.optimizer.state):
        assert np.array_equal(a, b)


def test_save_load_regression_float32(tmp_path, rng):
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = X.sum(axis=1)
    model = mlpcore.fit(X, y, hidden=(6,), epochs=2, seed=0)
    model.save(tmp_path / "m")
    loaded = mlpcore.load(tmp_path / "m")
    assert loaded.dtype == np.float32
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_load_refuses_foreign_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a readable mlpcore model"):
        mlpcore.load(bad)
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(ValueError, match="mlpcore model"):
        mlpcore.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        mlpcore.load(tmp_path / "missing.npz")


# -- refusals -----------------------------------------------------------------------------------

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


def test_predict_with_wrong_feature_count_is_refused():
    model = mlpcore.fit(GOOD_X, GOOD_Y, hidden=3, epochs=1)
    with pytest.raises(ValueError, match="3 features, but the model expects 2"):
        model.predict(np.zeros((4, 3)))


def test_unseen_labels_are_refused_in_loss():
    model = mlpcore.fit(GOOD_X, GOOD_Y, hidden=3, epochs=1)
    with pytest.raises(ValueError, match="not seen in training"):
        model.loss(GOOD_X[:2], [0, 7])


def test_divergence_keeps_last_finite_parameters(rng):
    X = rng.normal(size=(50, 3)) * 100
    y = X.sum(axis=1) * 100
    with pytest.warns(mlpcore.TrainingDivergedWarning, match="epoch .* smaller"):
        model = mlpcore.fit(X, y, hidden=(4,), activation="relu", epochs=50,
                            learning_rate=10.0, seed=0)
    assert all(np.isfinite(w).all() for w in model.weights + model.biases)
    assert all(np.isfinite(model.history["loss"]))
    assert len(model.history["loss"]) < 50
