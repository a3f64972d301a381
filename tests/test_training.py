"""Training: fit, fit_more and partial_fit, schedules, stopping rules, callbacks, sample and
class weights, divergence and Ctrl-C, for every way of training (the compiled epochs and
L-BFGS)."""

import math
import os
import signal
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlpcore
from _helpers import classification_data as data
from mlpcore import _engine
from _helpers import params, problems, quiet_fit, same_weights


# -- learning -----------------------------------------------------------------------------------

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


@given(problems(max_scale=1e6), st.sampled_from([None, np.float32]),
       st.sampled_from([1e-3, 0.1, 10.0]))
def test_training_never_crashes_nor_returns_non_finite_parameters(problem, dtype, lr):
    X, Y, settings, _ = problem
    model = quiet_fit(X, Y, dtype=dtype, learning_rate=lr, **settings)
    assert all(np.isfinite(p).all() for p in params(model))
    assert np.isfinite(model.history["loss"]).all()
    assert len(model.predict(X[:3])) == len(X[:3])


# -- resuming and online learning ---------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["sgd", "adam", "nesterov"])
def test_fit_more_continues_exactly(rng, optimizer):
    X, y = data(rng)
    kw = dict(hidden=(8,), optimizer=optimizer, batch_size=16, seed=5)
    whole = mlpcore.fit(X, y, epochs=10, **kw)
    split = mlpcore.fit(X, y, epochs=4, **kw)
    split.fit_more(X, y, epochs=6)
    assert same_weights(whole, split)
    assert whole.history == split.history
    assert whole.optimizer.t == split.optimizer.t


def test_partial_fit_in_chunks_equals_one_epoch(rng):
    X, y = data(rng, n=96)
    kw = dict(hidden=(8,), batch_size=8, shuffle=False, seed=1)
    one_epoch = mlpcore.fit(X, y, epochs=1, **kw)
    online = mlpcore.MLP(**kw)
    for start in range(0, 96, 24):  # chunks end on batch boundaries
        online.partial_fit(X[start:start + 24], y[start:start + 24], classes=[0, 1, 2])
    assert same_weights(one_epoch, online)
    assert len(online.history["loss"]) == 4


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_per_sample_lookahead_forward_is_exact(rng, optimizer, dtype):
    # Per-sample training forms the next sample's first-layer sum while it updates W1; each
    # partial_fit call starts with a plain forward pass instead. Both must agree bit for bit,
    # for rows above and below the kernels' long-row length and with zero inputs skipped.
    X, y = data(rng, n=60)
    X[X < -0.6] = 0
    for width in (40, 5):
        kw = dict(hidden=(width,), batch_size=1, shuffle=False, optimizer=optimizer,
                  learning_rate=0.01, seed=3, dtype=dtype)
        one_epoch = mlpcore.fit(X, y, epochs=1, **kw)
        online = mlpcore.MLP(**kw)
        for start in range(0, 60, 7):
            online.partial_fit(X[start:start + 7], y[start:start + 7], classes=[0, 1, 2])
        assert same_weights(one_epoch, online)


def test_partial_fit_needs_known_classes(rng):
    X, y = data(rng)
    model = mlpcore.MLP((4,))
    model.partial_fit(X[:10], np.zeros(10, dtype=int), classes=[0, 1, 2])
    assert model.classes.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="not seen in training"):
        model.partial_fit(X[:5], np.array([0, 1, 2, 3, 1]))
    with pytest.raises(ValueError, match="early_stopping"):
        mlpcore.MLP((4,), early_stopping=True).partial_fit(X, y)


# -- schedules ----------------------------------------------------------------------------------

def test_invscaling_schedule_follows_samples_seen(rng):
    X, y = data(rng, n=50)
    model = mlpcore.fit(X, y, hidden=(4,), schedule="invscaling", power_t=0.5,
                        learning_rate=0.2, epochs=4, seed=0)
    expected = [0.2] + [0.2 / (50 * e + 1) ** 0.5 for e in range(1, 4)]
    np.testing.assert_allclose(model.history["lr"], expected, rtol=1e-15)


def test_adaptive_schedule_divides_by_five_on_plateau(rng):
    X, y = data(rng, n=60)
    # A tol so large no epoch after the first counts as an improvement: the rate drops once
    # more than n_iter_no_change such epochs follow (scikit-learn's rule), then every
    # n_iter_no_change + 1 epochs, until it would pass 1e-6 and training stops.
    model = mlpcore.fit(X, y, hidden=(4,), schedule="adaptive", learning_rate=0.1, tol=10.0,
                        n_iter_no_change=2, epochs=200, seed=0)
    lrs = model.history["lr"]
    assert lrs[:4] == [0.1] * 4 and lrs[4:7] == pytest.approx([0.02] * 3)
    assert min(lrs) <= 1e-6 * 5 and len(lrs) < 200
    assert model.training_result.stop_reason == "plateau"


def test_callable_schedule_and_callback_stop(rng):
    X, y = data(rng, n=40)
    seen = []

    def callback(epoch, model, logs):
        seen.append((epoch, logs["lr"], sorted(logs)))
        return epoch < 3

    model = mlpcore.fit(X, y, hidden=(4,), schedule=lambda e: 0.1 / (e + 1), epochs=50,
                        callback=callback)
    assert [s[0] for s in seen] == [1, 2, 3]
    assert [s[1] for s in seen] == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert seen[0][2] == ["loss", "lr", "time"]
    assert len(model.history["loss"]) == 3
    assert model.training_result.stop_reason == "callback"
    with pytest.raises(ValueError, match="positive finite"):
        mlpcore.fit(X, y, hidden=(4,), schedule=lambda e: -1.0, epochs=2)


# -- stopping, validation and progress ----------------------------------------------------------

def test_tol_stops_on_training_loss_plateau(rng):
    X, y = data(rng, n=60)
    model = mlpcore.fit(X, y, hidden=(4,), tol=10.0, n_iter_no_change=3, epochs=100, seed=0)
    # The first epoch sets the best; stopping comes when more than 3 more fail to beat it.
    assert len(model.history["loss"]) == 5
    no_stop = mlpcore.fit(X, y, hidden=(4,), epochs=30, seed=0)
    assert len(no_stop.history["loss"]) == 30


def test_history_and_n_iter_no_change_inf(rng):
    X, y = data(rng, n=40)
    model = mlpcore.fit(X, y, hidden=(4,), epochs=5, tol=1.0, n_iter_no_change=math.inf)
    assert len(model.history["loss"]) == 5


def test_early_stopping_restores_best_validation_weights(rng):
    X, y = data(rng, n=200)
    Xv, yv = data(rng, n=60)
    snapshots = []

    def keep(epoch, model, logs):
        snapshots.append((logs["val_loss"], [w.copy() for w in model.weights]))

    # A learning rate high enough that the validation loss goes up again after a while.
    model = mlpcore.fit(X, y, hidden=(32,), optimizer="adam", learning_rate=0.05, epochs=60,
                        early_stopping=True, validation_data=(Xv, yv), n_iter_no_change=5,
                        callback=keep, seed=0)
    val = model.history["val_loss"]
    best = int(np.argmin(val))
    assert best < len(val) - 1, "the test needs a run whose last epoch is not the best"
    for w, w_best in zip(model.weights, snapshots[best][1]):
        assert np.array_equal(w, w_best)
    assert model.loss(Xv, yv) == pytest.approx(min(val), rel=1e-12)
    assert set(model.history) >= {"loss", "lr", "val_loss", "val_score"}


def test_validation_fraction_is_stratified_and_recorded(rng):
    X, y = data(rng, n=300)
    model = mlpcore.fit(X, y, hidden=(4,), validation_fraction=0.2, epochs=3, seed=0)
    assert len(model.history["val_loss"]) == 3 and len(model.history["val_score"]) == 3
    from mlpcore._splitting import validation_split

    train, val = validation_split(300, 0.2, np.random.default_rng(0), y)
    assert len(val) == 60 and len(np.intersect1d(train, val)) == 0
    for c in range(3):
        assert abs((y[val] == c).sum() - 0.2 * (y == c).sum()) <= 1


def test_verbose_prints_one_line_per_epoch(rng, capsys):
    X, y = data(rng, n=40)
    mlpcore.fit(X, y, hidden=(4,), epochs=3, verbose=True, validation_fraction=0.25)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1/3  ") and "val_score" in lines[0] and "loss" in lines[0]
    assert lines[2].startswith("epoch 3/3  ")


def test_verbose_counts_epochs_over_the_models_life_and_says_why_it_stopped(rng, capsys):
    X, y = data(rng, n=200)
    model = mlpcore.fit(X, y, hidden=(4,), epochs=2, verbose=True, seed=0)
    model.fit_more(X, y, epochs=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "epoch 1/2", "epoch 2/2", "epoch 3/4", "epoch 4/4"]
    model = mlpcore.fit(X, y, hidden=(4,), epochs=500, verbose=True, seed=0,
                        early_stopping=True, n_iter_no_change=2, learning_rate=2.0)
    assert model.training_result.stop_reason == "plateau"
    last = capsys.readouterr().out.strip().splitlines()[-1]
    best = int(np.argmin(model.history["val_loss"])) + 1
    assert last == (f"stopped at epoch {len(model.history['loss'])}: "
                    f"{model.training_result.message}; restored the weights of epoch {best}")


# -- sample and class weights -------------------------------------------------------------------

def test_sample_weight_of_two_equals_no_weights(rng):
    X, y = data(rng)
    a = mlpcore.fit(X, y, hidden=(6,), batch_size=10, epochs=3, seed=2)
    b = mlpcore.fit(X, y, hidden=(6,), batch_size=10, epochs=3, seed=2,
                    sample_weight=np.full(len(X), 2.0))
    for x1, x2 in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_allclose(x1, x2, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("batch_size", [None, 1])
def test_zero_weight_removes_a_sample(rng, batch_size):
    X, y = data(rng, n=40)
    sw = np.ones(40)
    sw[[3, 17, 18]] = 0  # 17 and 18: a skipped sample right after a skipped one
    keep = sw > 0
    kw = dict(hidden=(6,), batch_size=batch_size, epochs=2, shuffle=False, seed=4)
    a = mlpcore.fit(X, y, sample_weight=sw, **kw)
    # The weights are scaled to mean 1: the 37 others weigh 40/37 each. A full batch does not
    # see the scale; per-sample steps scale with the weight, as a rate 40/37 times larger.
    rate = 0.1 if batch_size is None else 0.1 * 40 / 37
    b = mlpcore.fit(X[keep], y[keep], learning_rate=rate, **kw)
    for x1, x2 in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_allclose(x1, x2, rtol=1e-12, atol=1e-14)


def test_class_weight_equals_matching_sample_weights(rng):
    X, y = data(rng)
    kw = dict(hidden=(6,), batch_size=None, epochs=3, seed=2)
    a = mlpcore.fit(X, y, class_weight={0: 2.0, 2: 0.5}, **kw)
    b = mlpcore.fit(X, y, sample_weight=np.array([2.0, 1.0, 0.5])[y], **kw)
    np.testing.assert_allclose(a.weights[0], b.weights[0], rtol=1e-13)
    counts = np.bincount(y)
    c = mlpcore.fit(X, y, class_weight="balanced", **kw)
    d = mlpcore.fit(X, y, sample_weight=(len(y) / (3 * counts))[y], **kw)
    np.testing.assert_allclose(c.weights[0], d.weights[0], rtol=1e-13)
    with pytest.raises(ValueError, match="label 7"):
        mlpcore.fit(X, y, class_weight={7: 1.0}, **kw)


# -- divergence ---------------------------------------------------------------------------------

def test_divergence_keeps_last_finite_parameters(rng):
    X = rng.normal(size=(50, 3)) * 100
    y = X.sum(axis=1) * 100
    with pytest.warns(mlpcore.TrainingDivergedWarning, match="epoch .* smaller"):
        model = mlpcore.fit(X, y, hidden=(4,), activation="relu", epochs=50,
                            learning_rate=10.0, seed=0)
    assert all(np.isfinite(w).all() for w in model.weights + model.biases)
    assert all(np.isfinite(model.history["loss"]))
    assert len(model.history["loss"]) < 50


XD = np.random.default_rng(2024).normal(size=(60, 3)) * 100
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
    assert all(np.isfinite(p).all() for p in params(m) + list(m.optimizer.state))
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
    assert all(np.isfinite(p).all() for p in params(m))
    assert np.isfinite(m.history["loss"]).all()


def test_divergence_in_fit_more_keeps_the_earlier_training():
    m = mlpcore.fit(XD / 100, YD / 1e4, hidden=(4,), activation="relu", epochs=3,
                    learning_rate=0.01, seed=0)
    history = list(m.history["loss"])
    with pytest.warns(mlpcore.TrainingDivergedWarning, match=r"epoch \d+"):
        m.fit_more(XD * 100, YD * 1e4, epochs=5)
    assert np.isfinite(m._theta).all()
    assert m.history["loss"][:3] == history and np.isfinite(m.history["loss"]).all()


# -- Ctrl-C -------------------------------------------------------------------------------------

@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to self is POSIX")
def test_ctrl_c_stops_after_the_current_batch(rng):
    X = rng.normal(size=(20000, 20))
    y = rng.integers(0, 2, 20000)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.warns(mlpcore.TrainingInterruptedWarning):
            model = mlpcore.fit(X, y, hidden=(64,), batch_size=1, epochs=1000, seed=0)
    finally:
        timer.cancel()
    assert model.training_result.stop_reason == "interrupted"
    assert len(model.history["loss"]) < 1000
    assert all(np.isfinite(w).all() for w in model.weights + model.biases)
    assert model.optimizer.t > 0
    assert 0 <= model.score(X[:100], y[:100]) <= 1
    # One sample per update: every update applied is a sample seen, and the history holds
    # exactly the epochs completed.
    assert model.samples_seen == model.optimizer.t
    assert len(model.history["loss"]) == model.samples_seen // 20000


def interrupt_after_engine_calls(monkeypatch, calls):
    """Make the engine report Ctrl-C after its ``calls``-th whole epoch (the signal arriving
    when the epoch's last batch is done, as the engine checks between segments)."""
    real = _engine.train_epoch
    count = [0]

    def train_epoch(*args, **kwargs):
        out = real(*args, **kwargs)
        count[0] += 1
        return (*out[:3], _engine.EPOCH_INTERRUPTED) if count[0] == calls else out

    monkeypatch.setattr(_engine, "train_epoch", train_epoch)


@pytest.mark.parametrize("batch_size", [None, 16, 1])
def test_ctrl_c_after_an_epochs_last_batch_records_that_epoch(rng, monkeypatch, batch_size):
    X, y = data(rng, n=64)
    interrupt_after_engine_calls(monkeypatch, 3)
    with pytest.warns(mlpcore.TrainingInterruptedWarning, match="end of epoch 3"):
        model = mlpcore.fit(X, y, hidden=(4,), epochs=10, seed=0, batch_size=batch_size)
    monkeypatch.undo()
    reference = mlpcore.fit(X, y, hidden=(4,), epochs=3, seed=0, batch_size=batch_size)
    assert model.training_result.stop_reason == "interrupted"
    assert model.history["loss"] == reference.history["loss"]
    assert model.optimizer.t == reference.optimizer.t
    assert model.samples_seen == reference.samples_seen == 3 * 64
    assert same_weights(model, reference)


def test_ctrl_c_during_validation_still_records_the_epoch_it_ended(rng, monkeypatch):
    from mlpcore import _training

    X, y = data(rng, n=64)
    real = _training.validation_logs
    calls = [0]

    def validation_logs(model, validation):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt
        return real(model, validation)

    monkeypatch.setattr(_training, "validation_logs", validation_logs)
    with pytest.warns(mlpcore.TrainingInterruptedWarning):
        model = mlpcore.fit(X, y, hidden=(4,), epochs=10, seed=0, batch_size=None,
                            validation_data=(X, y))
    assert len(model.history["loss"]) == model.optimizer.t == 2
    assert model.samples_seen == 2 * 64
    assert len(model.history["val_loss"]) == 1  # the second epoch had no validation


# -- divergence in the last update, and a loss that runs away -----------------------------------

@pytest.mark.parametrize("case", ["poisson", "regression", "tutorial"])
def test_divergence_in_the_last_update_is_caught(rng, case):
    X = rng.normal(size=(100, 3))
    y, kw = {
        "poisson": (rng.poisson(np.exp(X[:, 0])), dict(output="exp", loss="poisson",
                                                       learning_rate=1000)),
        "regression": (X.sum(axis=1), dict(learning_rate=1e308)),
        "tutorial": (np.eye(2)[(X[:, 0] > 0).astype(int)],
                     dict(output="sigmoid", loss="mse", activation="relu",
                          learning_rate=1e308)),
    }[case]
    with pytest.warns(mlpcore.TrainingDivergedWarning):
        model = mlpcore.fit(X, y, batch_size=None, epochs=1, seed=0, **kw)
    assert model.training_result.stop_reason == "diverged"
    assert all(np.isfinite(p).all() for p in params(model))
    assert np.isfinite(model.forward(X)).all() and np.isfinite(model.loss(X, y))
    assert len(model.history["loss"]) == model.optimizer.t  # the discarded epoch is not kept


def test_a_last_update_that_makes_the_loss_explode_warns(rng):
    X = rng.normal(size=(100, 3))
    counts = rng.poisson(np.exp(X[:, 0]))
    with pytest.warns(mlpcore.TrainingDivergedWarning, match=r"grew from .* in 1 epoch: "):
        model = mlpcore.fit(X, counts, output="exp", batch_size=None, epochs=1,
                            learning_rate=100, seed=0)
    assert model.loss(X, counts) > 1e6 * model.history["loss"][0]


def test_a_loss_that_grows_by_orders_of_magnitude_warns():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_linnerud()  # raw targets in the hundreds: the default rate runs away
    with pytest.warns(mlpcore.TrainingDivergedWarning, match="grew from .* in 100 epochs"):
        model = mlpcore.fit(d.data, d.target, seed=0)
    assert model.history["loss"][-1] > 1e6 * model.history["loss"][0]


def test_lbfgs_stopping_without_converging_warns_and_says_why(rng):
    X = rng.normal(size=(100, 3))
    y = X.sum(axis=1)
    with pytest.warns(mlpcore.TrainingFailedWarning, match="without converging"):
        model = mlpcore.fit(X, y, hidden=(4,), seed=0, optimizer=mlpcore.LBFGS(max_fun=3),
                            epochs=100)
    assert model.training_result.stop_reason == "failed"
    assert model.training_result.message
    assert len(model.history["loss"]) == model.optimizer.t < 100
    # Targets whose loss overflows even at the start: said, not hidden behind an empty history.
    with pytest.warns(mlpcore.TrainingDivergedWarning, match="even at the starting"):
        model = mlpcore.fit(X, y * 1e200, hidden=(4,), seed=0, optimizer="lbfgs")
    assert model.training_result.stop_reason == "diverged"


def lbfgs_threads():
    return [t for t in threading.enumerate() if t.name == "mlpcore-lbfgs" and t.is_alive()]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to self is POSIX")
def test_ctrl_c_stops_lbfgs_promptly_and_ends_its_thread(rng):
    # L-BFGS runs scipy's loop in a helper thread; Ctrl-C reaches the calling thread while
    # it waits for the next iteration, and the helper must be told to stop and be joined.
    X = rng.normal(size=(40000, 50))
    y = rng.integers(0, 2, 40000)
    sent, timers = [], []

    def interrupt():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    def interrupt_soon(epoch, model, logs):
        if epoch == 1:  # one iteration is recorded: interrupt one of those after it
            timers.append(threading.Timer(0.2, interrupt))
            timers[0].start()

    try:
        with pytest.warns(mlpcore.TrainingInterruptedWarning):
            model = mlpcore.fit(X, y, hidden=(64,), optimizer=mlpcore.LBFGS(ftol=0),
                                epochs=10000, tol=0, seed=0, callback=interrupt_soon)
    finally:
        for timer in timers:
            timer.cancel()
    returned = time.perf_counter()
    assert sent, "the fit ended before the interrupt was sent"
    assert returned - sent[0] < 5, "the fit did not stop promptly after Ctrl-C"
    assert not lbfgs_threads()
    assert model.training_result.stop_reason == "interrupted"
    assert 1 <= len(model.history["loss"]) < 10000
    assert len(model.history["loss"]) == model.optimizer.t
    assert np.isfinite(model._theta).all()
    assert np.isfinite(model.loss(X, y))
    # The parameters are those of the last recorded iteration, not one scipy took after it.
    assert model.loss(X, y) == pytest.approx(model.history["loss"][-1], rel=1e-12)
    assert 0 <= model.score(X[:100], y[:100]) <= 1


# -- L-BFGS and the callback --------------------------------------------------------------------

def test_a_callback_returning_false_stops_lbfgs_after_that_iteration(rng):
    X, y = data(rng, n=200)
    calls = []

    def stop_at_the_third(epoch, model, logs):
        calls.append(epoch)
        return epoch < 3

    kw = dict(hidden=(8,), optimizer=mlpcore.LBFGS(ftol=0), tol=0, seed=0)
    model = mlpcore.fit(X, y, epochs=1000, callback=stop_at_the_third, **kw)
    assert calls == [1, 2, 3]
    assert len(model.history["loss"]) == 3 and model.optimizer.t == 3
    assert model.training_result.stop_reason == "callback"
    assert not lbfgs_threads()
    # The model keeps the third iterate: the one three iterations without a callback reach.
    three = mlpcore.fit(X, y, epochs=3, **kw)
    assert same_weights(model, three)
    assert model.history["loss"] == three.history["loss"]
    assert model.loss(X, y) == pytest.approx(model.history["loss"][-1], rel=1e-12)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_ctrl_c_just_after_a_step_undoes_that_step_whole(rng, monkeypatch, optimizer):
    # Ctrl-C can land after a method's step has moved the parameters (and its count) but
    # before the driver read its outcome: that step is undone whole, so the history, the
    # step count, the samples seen and the parameters still agree (those of 2 epochs).
    from mlpcore._lbfgs import LBFGSIterations
    from mlpcore._training import CompiledEpochs

    X = rng.normal(size=(200, 4))
    y = (X[:, 0] > 0).astype(int)
    settings = dict(hidden=(5,), optimizer=optimizer, batch_size=16, seed=0, tol=None)
    two = mlpcore.fit(X, y, epochs=2, **settings)
    cls = LBFGSIterations if optimizer == "lbfgs" else CompiledEpochs
    real_step, calls = cls.step, []

    def step_then_interrupt(self, lr):
        outcome = real_step(self, lr)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return outcome

    monkeypatch.setattr(cls, "step", step_then_interrupt)
    with pytest.warns(mlpcore.TrainingInterruptedWarning):
        model = mlpcore.fit(X, y, epochs=10, **settings)
    assert len(model.history["loss"]) == 2
    assert model.optimizer.t == two.optimizer.t
    assert model.samples_seen == two.samples_seen
    for a, b in zip(model.weights + model.biases, two.weights + two.biases):
        np.testing.assert_array_equal(a, b)
