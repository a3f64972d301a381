"""The compiled engine's own boundary: it refuses buffers, sizes and dtypes that do not fit
the network, and keeps its floating-point environment to itself."""

import platform

import numpy as np
import pytest

import mlpcore
from mlpcore import _engine

RNG = np.random.default_rng(2024)


def test_engine_refuses_a_workspace_made_for_another_network():
    small = _engine.Network((2, 2, 2), 1, 1, 0)
    wide = _engine.Network((2, 2000, 2), 1, 1, 0)
    workspace = _engine.Workspace(small, 32, np.float64)
    Xe, Ye = RNG.random((64, 2)), RNG.random((64, 2))
    theta = RNG.random(wide.n_params)
    with pytest.raises(ValueError, match=r"workspace was made for layer sizes \(2, 2, 2\)"):
        _engine.train_epoch(wide, workspace, theta, Xe, Ye, None, None, 32, "sgd", 0.1)
    with pytest.raises(ValueError, match="another network's layer sizes"):
        _engine.loss_gradient(wide, theta, Xe, Ye, None, 0.0, np.empty_like(theta), workspace)


def test_engine_refuses_sizes_and_rows_it_cannot_address():
    with pytest.raises(ValueError, match="more than can be addressed"):
        _engine.Network((2**62, 4, 2), 1, 1, 0)  # 2**64 weights would wrap to 0
    with pytest.raises(ValueError, match="too large to address"):
        _engine.Workspace(_engine.Network((3, 4, 2), 1, 1, 0), 2**62, np.float64)


def test_engine_refuses_mixed_dtypes(rng):
    net = _engine.Network((3, 2), 1, 4, 1)
    theta = np.zeros(net.n_params, dtype=np.float32)
    with pytest.raises((TypeError, ValueError), match="dtype|signature"):
        _engine.forward(net, theta, np.zeros((2, 3)), np.zeros((2, 2)))


def test_training_leaves_subnormals_to_python_and_flushes_them_inside():
    # Inside an epoch subnormals count as zero (see src/_fpenv.h): Adam's first moment of a
    # weight whose gradient vanished after the first sample decays by beta1 per step and
    # becomes exactly 0, not subnormal. Outside, the floating-point flags are restored.
    n = 1200  # 0.9 ** 1200 ~ 1e-55: below float32's smallest normal number
    X = np.zeros((n, 2), dtype=np.float32)
    X[:, 1] = np.linspace(-1, 1, n)
    X[0, 0] = 1.0  # feature 0 has a gradient at the first sample only
    y = (X[:, 1] > 0).astype(int)
    model = mlpcore.fit(X, y, hidden=(3,), optimizer="adam", batch_size=1, epochs=1,
                        shuffle=False, seed=0, dtype=np.float32)
    m = model.optimizer.state[0]
    first_row = m[:3]  # W1[0, :], the weights from feature 0
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert np.all(first_row == 0)
    else:  # no flush elsewhere (see src/_fpenv.h): the moments are merely tiny
        assert np.all(np.abs(first_row) < np.finfo(np.float32).tiny)
    assert np.all(np.isfinite(model.weights[0]))
    tiny = np.float64(np.finfo(np.float64).tiny)
    assert tiny * np.float64(0.5) != 0  # Python-side arithmetic still has subnormals
    assert np.float32(np.finfo(np.float32).tiny) * np.float32(0.5) != 0


NONE_ARGUMENTS = """
import numpy as np, mlpcore
from mlpcore import _engine
X = np.random.default_rng(0).normal(size=(10, 3)); y = (X[:, 0] > 0).astype(int)
m = mlpcore.fit(X, y, hidden=(2,), epochs=1)
net, th, Y = m._network, m._theta, np.eye(2)[y]
out, g = np.empty((10, 2)), np.empty_like(th)
ws = _engine.Workspace(net, 10, np.float64)
calls = [
    lambda: _engine.forward(None, th, X, out), lambda: _engine.forward(net, None, X, out),
    lambda: _engine.forward(net, th, None, out), lambda: _engine.forward(net, th, X, None),
    lambda: _engine.evaluate(None, th, X, Y, None, 0.0, out),
    lambda: _engine.evaluate(net, th, X, None, None, 0.0, out),
    lambda: _engine.loss_gradient(None, th, X, Y, None, 0.0, g),
    lambda: _engine.loss_gradient(net, th, X, Y, None, 0.0, None),
    lambda: _engine.train_epoch(None, ws, th, X, Y, None, None, 2, "sgd", 0.1),
    lambda: _engine.train_epoch(net, None, th, X, Y, None, None, 2, "sgd", 0.1),
    lambda: _engine.train_epoch(net, ws, None, X, Y, None, None, 2, "sgd", 0.1),
    lambda: _engine.Workspace(None, 10, np.float64),
    lambda: _engine.penalty(None, th),
]
for call in calls:
    try:
        call()
    except TypeError:
        print("refused")
try:
    _engine.train_epoch(net, ws, th.copy(), X, Y, None, None, 2, "sgd", 0.1,
                        penalty_out=np.empty(0))
except ValueError as exc:
    print("refused", exc)
"""


def test_the_engine_refuses_none_and_a_short_penalty_out_instead_of_crashing():
    # In a subprocess: before these checks, each call was a segmentation fault.
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", NONE_ARGUMENTS], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stdout.splitlines()
    assert lines.count("refused") == 13, proc.stdout
    assert lines[-1] == "refused penalty_out must have room for one value, got an empty array"
