"""Seeing training: ``MLP.summary()`` and ``MLP.plot_history()``.

The pictures are checked by reading the PNG back (size, pixels that are not background);
matplotlib's absence is simulated by putting None in ``sys.modules``.
"""

import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest

import mlpcore
from mlpcore import NotFittedError
from mlpcore.datasets import load_digits

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
needs_matplotlib = pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()
    return X[:600] / 16, y[:600]


@pytest.fixture(scope="module")
def trained(digits):
    X, y = digits
    return mlpcore.fit(X, y, hidden=(32, 16), optimizer="adam", epochs=6, seed=0,
                       validation_fraction=0.2)


def table_row(text, name):
    """The cells of the summary row that starts with ``name``."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line == name:
            return re.split(r"\s{2,}", line.strip())
    raise AssertionError(f"no row {name!r} in\n{text}")


# -- summary ---------------------------------------------------------------------------------
def test_summary_table_of_layers_shapes_and_parameters(trained):
    text = trained.summary(print_fn=None)
    lines = text.splitlines()
    assert lines[0] == "MLP 64-32-16-10: classification, 10 classes, float64"
    assert lines[1].split() == ["layer", "units", "activation", "weights", "biases", "parameters"]
    assert table_row(text, "input") == ["input", "64"]
    assert table_row(text, "hidden 1") == ["hidden 1", "32", "sigmoid", "(64, 32)", "(32,)",
                                           "2,080"]
    assert table_row(text, "hidden 2") == ["hidden 2", "16", "sigmoid", "(32, 16)", "(16,)",
                                           "528"]
    assert table_row(text, "output") == ["output", "10", "softmax", "(16, 10)", "(10,)", "170"]
    # The shapes and counts are the model's own.
    assert [w.shape for w in trained.weights] == [(64, 32), (32, 16), (16, 10)]
    assert f"total parameters: {trained.n_params:,} ({trained.n_params * 8:,} bytes)" in text
    assert 2080 + 528 + 170 == trained.n_params
    assert "loss: cross_entropy, L2 alpha 0" in text


def test_summary_optimizer_state_and_training_so_far(trained):
    text = trained.summary(print_fn=None)
    assert (f"optimizer: adam (learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-08); "
            f"{trained.optimizer.t:,} updates so far; state arrays: first moment m, second "
            f"moment s ({trained.n_params:,} values each)") in text
    h = trained.history
    assert f"training: 6 epochs, {trained.samples_seen:,} samples seen" in text
    assert trained.samples_seen == 6 * 480
    assert (f"last epoch: loss {h['loss'][-1]:.6g}, val_loss {h['val_loss'][-1]:.6g}, "
            f"val_score {h['val_score'][-1]:.4f} (accuracy), learning rate 0.001") in text
    assert "last call: 6 epochs, ran all its epochs" in text


def test_summary_prints_like_keras_and_returns_the_text_on_request(trained, capsys):
    assert trained.summary() is None
    printed = capsys.readouterr().out
    assert printed == trained.summary(print_fn=None) + "\n"
    lines = []
    assert trained.summary(print_fn=lines.append) is None
    assert lines == printed.splitlines()  # print_fn gets one line per call, like Keras'
    assert capsys.readouterr().out == ""


def test_summary_says_why_training_stopped(digits):
    X, y = digits
    model = mlpcore.fit(X, y, hidden=(8,), epochs=300, early_stopping=True, n_iter_no_change=2,
                        seed=0, optimizer="adam", learning_rate=0.05)
    assert model.training_result.stop_reason == "plateau"
    text = model.summary(print_fn=None)
    epochs = len(model.history["loss"])
    assert epochs < 300
    assert (f"last call: {epochs} epochs, stopped (plateau): validation loss did not improve"
            in text)
    assert "the weights of the best validation epoch were restored" in text


def test_summary_of_momentum_lbfgs_regression_and_a_loaded_model(digits, tmp_path):
    X, y = digits
    model = mlpcore.fit(X, y, hidden=(4,), optimizer=mlpcore.Momentum(momentum=0.8), epochs=2)
    text = model.summary(print_fn=None)
    assert "optimizer: momentum (learning_rate=0.1, momentum=0.8)" in text
    assert f"state arrays: velocity v ({model.n_params:,} values each)" in text

    reg = mlpcore.fit(X, X[:, :2], hidden=(5,), optimizer="lbfgs", epochs=3,
                      dtype=np.float32)
    text = reg.summary(print_fn=None)
    assert text.splitlines()[0] == "MLP 64-5-2: regression, 2 outputs, float32"
    assert table_row(text, "output")[:3] == ["output", "2", "identity"]
    assert f"({reg.n_params * 4:,} bytes)" in text
    assert f"{reg.optimizer.t} iterations so far; no state arrays" in text
    assert f"training: {len(reg.history['loss'])} iterations" in text

    model.save(tmp_path / "m.npz")
    loaded = mlpcore.load(tmp_path / "m.npz")
    text = loaded.summary(print_fn=None)
    assert "training: 2 epochs" in text and "last call" not in text  # not kept in files


def test_summary_of_a_multi_label_model(rng):
    X = rng.normal(size=(100, 3))
    Y = (rng.random((100, 4)) < 0.4).astype(int)
    model = mlpcore.fit(X, Y, hidden=(4,), epochs=2, validation_fraction=0.2, seed=0)
    text = model.summary(print_fn=None)
    assert text.splitlines()[0] == "MLP 3-4-4: multi-label classification, 4 labels, float64"
    assert table_row(text, "output")[:3] == ["output", "4", "sigmoid"]
    assert "(subset accuracy)" in text


def test_summary_before_building_and_before_training(digits):
    X, y = digits
    unbuilt = mlpcore.MLP((12, 7), activation="relu", optimizer="nesterov")
    text = unbuilt.summary(print_fn=None)
    assert text.startswith("MLP, not built yet")
    assert table_row(text, "input") == ["input", "?"]
    assert table_row(text, "hidden 2") == ["hidden 2", "7", "relu"]
    assert table_row(text, "output") == ["output", "?", "by task"]
    assert "optimizer: nesterov (learning_rate=0.1, momentum=0.9)" in text
    assert text.endswith("training: none yet")
    built = mlpcore.MLP((3,)).build(X, y)
    assert built.summary(print_fn=None).endswith("training: none yet (0 epochs)")


def test_summary_does_not_import_matplotlib():
    code = ("import sys, numpy as np, mlpcore\n"
            "m = mlpcore.fit(np.eye(4), [0, 1, 0, 1], hidden=(2,), epochs=2)\n"
            "m.summary(print_fn=None)\n"
            "print('matplotlib' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# -- plot_history ------------------------------------------------------------------------------
def read_png(path):
    from matplotlib.image import imread

    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def drawn_fraction(image):
    """The share of pixels that are not (near) white background."""
    return float((image[..., :3] < 0.95).any(axis=-1).mean())


@needs_matplotlib
def test_plot_history_with_validation_draws_two_panels(trained, tmp_path):
    from matplotlib.figure import Figure

    fig = trained.plot_history(tmp_path / "h.png")
    assert isinstance(fig, Figure)
    loss_ax, score_ax = fig.axes
    curves = {line.get_label(): line.get_ydata() for line in loss_ax.lines}
    assert np.array_equal(curves["training loss"], trained.history["loss"])
    assert np.array_equal(curves["validation loss"], trained.history["val_loss"])
    assert np.array_equal(score_ax.lines[0].get_ydata(), trained.history["val_score"])
    assert score_ax.get_ylabel() == "validation accuracy"
    assert list(loss_ax.lines[0].get_xdata()) == list(range(1, 7))
    image = read_png(tmp_path / "h.png")
    assert image.shape[:2] == (400, 1000)
    assert 0.02 < drawn_fraction(image) < 0.5
    # Both halves hold a drawing (the second panel is not empty).
    assert drawn_fraction(image[:, 500:]) > 0.02


@needs_matplotlib
def test_plot_history_without_validation_draws_one_panel(digits, tmp_path):
    X, y = digits
    model = mlpcore.fit(X, X[:, 10], hidden=(6,), epochs=4, seed=0)
    fig = model.plot_history()  # no path: nothing written
    assert len(fig.axes) == 1 and [ln.get_label() for ln in fig.axes[0].lines] == [
        "training loss"]
    assert not list(tmp_path.iterdir())
    fig.savefig(tmp_path / "one.png", dpi=100)
    image = read_png(tmp_path / "one.png")
    assert image.shape[:2] == (400, 600)
    assert drawn_fraction(image) > 0.02


@needs_matplotlib
def test_plot_history_of_an_untrained_model_is_refused():
    with pytest.raises(NotFittedError):
        mlpcore.MLP((3,)).plot_history()
    built = mlpcore.MLP((3,)).build(np.eye(3), [0, 1, 2])
    with pytest.raises(NotFittedError, match="history is empty"):
        built.plot_history()


def test_plot_history_without_matplotlib_says_how_to_install_it(trained, monkeypatch,
                                                                tmp_path):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    with pytest.raises(ImportError, match=re.escape('pip install "mlpcore[plot]"')):
        trained.plot_history(tmp_path / "h.png")
    assert not (tmp_path / "h.png").exists()
    assert "training: 6 epochs" in trained.summary(print_fn=None)  # summary needs none
