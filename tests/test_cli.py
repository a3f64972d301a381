"""The command line, end to end: ``python -m mlpcore ...`` in a subprocess.

Every run uses few epochs except the digits accuracy test, so the file stays well under
30 seconds on a 2-core machine.
"""

import csv
import gzip
import importlib.util
import io
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

import mlpcore
from mlpcore import _cli
from mlpcore._cli import _compare_methods, _digits
from mlpcore.datasets import load_digits

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def run(args, cwd, env=None, timeout=120):
    """Run ``python -m mlpcore ARGS`` in ``cwd``; return the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.pop("MLPCORE_DEBUG", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "mlpcore", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, status, *fragments):
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mlpcore: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def idx_bytes(array):
    array = np.asarray(array, dtype=np.uint8)
    return (struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
            + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def blobs(rng, n_per_class=30):
    """Three separable 2-D classes with text labels, plus a noise feature."""
    centers = {"setosa": (0, 0), "versicolor": (4, 0), "virginica": (0, 4)}
    rows = []
    for label, (cx, cy) in centers.items():
        for _ in range(n_per_class):
            rows.append((cx + rng.normal(scale=0.5), cy + rng.normal(scale=0.5),
                         rng.normal(), label))
    return rows


@pytest.fixture
def blobs_csv(tmp_path, rng):
    path = tmp_path / "blobs.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "y", "noise", "species"])
        w.writerows(blobs(rng))
    return path


def parse_percent(text, label):
    m = re.search(label + r" ([0-9.]+)%", text)
    assert m, text
    return float(m.group(1)) / 100


class InProcess:
    """``mlpcore.__main__.main`` in this process: exit status, stdout, stderr."""

    def __init__(self, capsys):
        self.capsys = capsys

    def __call__(self, *args):
        status = _cli.main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(args, status, out, err)


@pytest.fixture
def cli(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return InProcess(capsys)


# -- digits ---------------------------------------------------------------------------------
def test_digits_job_reaches_97_percent_and_saves_a_raw_pixel_model(tmp_path):
    proc = run(["digits"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "divided by 16" in out
    assert re.search(r"^epoch +1/\d+ +loss", out, re.M)  # progress is on for the demo
    accuracy = parse_percent(out, "test accuracy")
    assert accuracy >= 0.97
    seconds = float(re.search(r"training took ([0-9.]+) s", out).group(1))
    assert seconds < 15
    # The labelled 10x10 confusion matrix: a header of 0..9 and ten rows summing to the test set.
    lines = out.splitlines()
    head = lines.index("confusion matrix (rows: true label, columns: predicted label):")
    assert lines[head + 2].split() == [str(d) for d in range(10)]
    matrix = np.array([[int(v) for v in line.split()[1:]] for line in lines[head + 3:head + 13]])
    assert matrix.shape == (10, 10)
    n_test = int(re.search(r"(\d+) for testing", out).group(1))
    assert matrix.sum() == n_test and np.trace(matrix) / n_test == pytest.approx(accuracy, abs=1e-4)
    # The saved model takes raw 0..16 pixels: the /16 scaling is folded into its first layer.
    model = mlpcore.load(tmp_path / "digits-model.npz")
    X, y = load_digits()
    test = _digits.digits_split(y, 0)[1]
    assert model.score(X[test], y[test]) == pytest.approx(accuracy, abs=1e-4)


def test_plain_mlpcore_runs_the_digits_job(cli, tmp_path):
    proc = cli("--quiet")  # what `mlpcore` with no command does (CI runs it)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and not re.search(r"^epoch", proc.stdout, re.M)
    assert (tmp_path / "digits-model.npz").exists()


def test_digits_no_save(cli, tmp_path):
    proc = cli("digits", "--no-save", "-q", "--epochs", "2", "--hidden", "8")
    assert proc.returncode == 0, proc.stderr
    assert "not saved" in proc.stdout and not list(tmp_path.iterdir())
    assert not re.search(r"^epoch", proc.stdout, re.M)


# -- train / predict / evaluate -------------------------------------------------------------
def test_csv_train_predict_evaluate(tmp_path, blobs_csv, cli):
    proc = run(["train", "blobs.csv", "--target", "species", "--hidden", "8", "--epochs", "30",
                "--seed", "0", "--validation-split", "0.2", "--output", "m.npz"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "classification, 3 classes" in proc.stdout
    assert "18 rows held out (stratified), training on 72" in proc.stdout
    assert parse_percent(proc.stdout, "validation accuracy") >= 0.9
    assert not re.search(r"^epoch", proc.stdout, re.M)  # not a terminal: no progress lines
    assert (tmp_path / "m.npz").exists()

    proc = run(["predict", "m.npz", "blobs.csv", "--target", "species"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(io.StringIO(proc.stdout)))
    assert rows[0] == ["prediction"] and len(rows) == 91
    truth = [r[3] for r in csv.reader(open(blobs_csv))][1:]
    assert np.mean([p[0] == t for p, t in zip(rows[1:], truth)]) >= 0.9

    proc = run(["evaluate", "m.npz", "blobs.csv", "--target", "species"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert parse_percent(proc.stdout, "accuracy") >= 0.9
    assert "confusion matrix" in proc.stdout and "versicolor" in proc.stdout

    proc = cli("predict", "m.npz", "blobs.csv", "--target", "species", "--proba",
               "--output", "p.csv")
    assert proc.returncode == 0, proc.stderr
    assert "90 predictions written to p.csv" in proc.stderr
    rows = list(csv.reader(open(tmp_path / "p.csv")))
    assert rows[0] == ["prediction", "p_setosa", "p_versicolor", "p_virginica"]
    assert sum(float(v) for v in rows[1][1:]) == pytest.approx(1, abs=1e-4)

    # Without --target the label column is reported, not silently used as a feature.
    proc = cli("predict", "m.npz", "blobs.csv")
    assert_one_line_error(proc, 1, "column 'species': 'setosa' is not a number",
                          "name it with --target")


def test_csv_regression_with_scaling_folded_into_the_model(tmp_path, rng, cli):
    X = rng.normal(size=(200, 2)) * [1, 100] + [0, 1000]
    y = 3 * X[:, 0] + 0.02 * X[:, 1] + 50
    path = tmp_path / "r.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,value", comments="")
    proc = cli("train", "r.csv", "--target", "value", "--epochs", "40", "--seed", "0",
               "--optimizer", "adam", "--learning-rate", "0.01", "--output", "r.npz",
               "--progress")
    assert proc.returncode == 0, proc.stderr
    assert "regression" in proc.stdout and re.search(r"^epoch +1/40", proc.stdout, re.M)
    model = mlpcore.load(tmp_path / "r.npz")
    assert model.score(X, y) > 0.95  # raw features in, raw values out
    # Adam's moments belonged to the scaled parameters: the folded model starts afresh.
    assert model.optimizer.t == 0
    assert len(model.optimizer.state) == 2 and not any(s.any() for s in model.optimizer.state)
    proc = cli("evaluate", "r.npz", "r.csv", "--target", "value")
    assert proc.returncode == 0, proc.stderr
    r2 = float(re.search(r"R\^2 ([-0-9.]+)", proc.stdout).group(1))
    assert r2 == pytest.approx(model.score(X, y), abs=1e-4)
    assert "mean squared error" in proc.stdout
    proc = cli("predict", "r.npz", "r.csv", "--target", "value")
    values = [float(v) for v in proc.stdout.splitlines()[1:]]
    assert np.allclose(values, model.predict(X))


def test_npz_and_idx_files(tmp_path, cli):
    X, y = load_digits()
    keep = np.arange(0, 1797, 6)
    np.savez(tmp_path / "d.npz", X=X[keep], y=y[keep])
    proc = cli("train", "d.npz", "--hidden", "16", "--epochs", "5", "--optimizer", "adam",
               "--learning-rate", "0.01", "--batch-size", "full", "--dtype", "float32",
               "--output", "n.npz")
    assert proc.returncode == 0, proc.stderr
    assert "full batch (gradient descent)" in proc.stdout and "float32" in proc.stdout
    proc = cli("evaluate", "n.npz", "d.npz")
    assert proc.returncode == 0 and "accuracy" in proc.stdout, proc.stderr

    images = (X[keep].reshape(-1, 8, 8) * 15).astype(np.uint8)
    (tmp_path / "images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "labels-idx1-ubyte").write_bytes(idx_bytes(y[keep]))
    proc = run(["train", "images-idx3-ubyte.gz", "--labels", "labels-idx1-ubyte", "--hidden",
                "16", "--epochs", "5", "--output", "i.npz"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(IDX), 300 rows, 64 features" in proc.stdout
    proc = cli("evaluate", "i.npz", "images-idx3-ubyte.gz", "--labels", "labels-idx1-ubyte")
    assert proc.returncode == 0 and "confusion matrix" in proc.stdout, proc.stderr
    proc = cli("predict", "i.npz", "images-idx3-ubyte.gz")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 301


# -- compare-methods ------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")
def test_compare_methods_draws_a_png(tmp_path):
    proc = run(["compare-methods", "--epochs", "2", "--points-per-epoch", "2",
                "--output", "c.png", "--table"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC
    assert "picture written to c.png" in proc.stdout
    for name in ("gradient descent", "stochastic GD", "mini-batch GD"):
        assert name in proc.stdout


def test_compare_methods_without_matplotlib_prints_a_table(tmp_path):
    # A package named matplotlib that fails to import, first on the path: what the command
    # sees when matplotlib is not installed.
    blocker = tmp_path / "block" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        "raise ImportError(\"No module named 'matplotlib' (blocked by the test)\")\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "block"),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = run(["compare-methods", "--epochs", "2", "--points-per-epoch", "2"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'mlpcore[plot]'" in proc.stdout
    assert not (tmp_path / "convergence.png").exists()
    table = proc.stdout.split("The numbers:")[1].splitlines()
    assert "gradient descent" in table[1] and "seconds" in table[2]
    epochs = [int(line.split()[0]) for line in table[3:]]
    assert epochs == [0, 1, 2]
    J = [[float(v) for v in line.split()[1::2]] for line in table[3:]]
    assert len(set(J[0])) == 1  # the same starting weights: the same initial cost


# -- errors ---------------------------------------------------------------------------------
def test_error_paths_are_one_line_without_traceback(tmp_path, blobs_csv):
    assert_one_line_error(run(["train", "missing.csv", "--target", "y"], tmp_path), 1,
                          "no such file: missing.csv")
    (tmp_path / "bad.csv").write_text("a,b,y\n1,2,0\n1,x,1\n")
    assert_one_line_error(run(["train", "bad.csv", "--target", "y"], tmp_path), 1,
                          "line 3", "column 'b'", "'x' is not a number")
    assert_one_line_error(run(["train", "blobs.csv", "--target", "species", "--epochs", "x"],
                              tmp_path), 2, "--epochs", "expected a positive integer",
                          "mlpcore train --help")


@pytest.fixture
def files(tmp_path, blobs_csv):
    X, y = load_digits()
    with open(tmp_path / "digits.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"p{i}" for i in range(64)] + ["digit"])
        w.writerows([[*map(int, row), label] for row, label in zip(X[:60], y[:60])])
    (tmp_path / "bad-idx").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    (tmp_path / "floats-idx").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd")
    (tmp_path / "ragged.csv").write_text("a,b,y\n1,2,0\n1,2\n")
    np.savez(tmp_path / "nolabels.npz", X=X[:5])
    assert _cli.main(["train", "digits.csv", "--target", "digit", "--hidden", "4",
                      "--epochs", "1", "--output", "digits-m.npz", "-q"]) == 0
    return tmp_path


@pytest.mark.parametrize("args, status, fragments", [
    (["train", "blobs.csv", "--target", "colour"], 1, ["no column named 'colour'", "'species'"]),
    (["train", "blobs.csv"], 1, ["name the target column with --target", "'species'"]),
    (["train", "ragged.csv", "--target", "y"], 1, ["line 3: 2 fields, but the header has 3"]),
    (["train", "bad-idx", "--labels", "bad-idx"], 1, ["truncated"]),
    (["train", "floats-idx", "--labels", "bad-idx"], 1, ["element type 0x0d", "unsigned byte"]),
    (["train", "bad-idx"], 1, ["--labels"]),
    (["train", "nolabels.npz"], 1, ["no array named 'y'"]),
    (["train", "blobs.csv", "--target", "species", "--labels", "bad-idx"], 1,
     ["--labels is for IDX"]),
    (["train", "digits.csv", "--target", "digit", "--labels", "missing"], 1,
     ["no such file: missing"]),
    (["train", ".", "--target", "y"], 1, ["is a directory"]),
    (["evaluate", "nomodel.npz", "blobs.csv", "--target", "species"], 1,
     ["no such model file"]),
    (["predict", "blobs.csv", "blobs.csv"], 1, ["not a readable mlpcore model file"]),
    (["predict", "digits-m.npz", "digits.csv"], 1,
     ["65 feature columns but the model takes 64", "--target"]),
    (["predict", "digits-m.npz", "blobs.csv", "--target", "species"], 1,
     ["3 feature columns but the model takes 64"]),
    (["evaluate", "digits-m.npz", "digits.csv"], 1, ["name the target column with --target"]),
    (["predict", "digits-m.npz", "digits.csv", "--output", "no/such/dir/p.csv", "--target",
      "digit"], 1, ["cannot write no/such/dir/p.csv"]),
    (["train", "digits.csv", "--target", "digit", "--output", "no/such/dir/m.npz",
      "--epochs", "1", "-q"], 1, ["cannot write the model to no/such/dir/m.npz"]),
    (["train", "blobs.csv", "--target", "species", "--scale", "none", "--learning-rate", "1e6",
      "--hidden", "4", "--epochs", "50", "--activation", "identity", "--seed", "0"], 1,
     ["training diverged", "No model was saved"]),
    (["train", "blobs.csv", "--target", "species", "--hidden", "8,a"], 2, ["--hidden", "128,64"]),
    (["train", "blobs.csv", "--target", "species", "--batch-size", "0"], 2, ["--batch-size"]),
    (["train", "blobs.csv", "--target", "species", "--validation-split", "1.5"], 2,
     ["--validation-split", "between 0 and 1"]),
    (["train", "blobs.csv", "--target", "species", "--optimizer", "rmsprop"], 2,
     ["invalid choice: 'rmsprop'"]),
    (["train", "blobs.csv", "--target", "species", "--patience", "3"], 2, ["--patience"]),
    (["train"], 2, ["the following arguments are required: DATA"]),
    (["frobnicate"], 2, ["invalid choice"]),
    (["--no-such-option"], 2, ["unrecognized arguments"]),
])
def test_error_messages(cli, files, args, status, fragments):
    assert_one_line_error(cli(*args), status, *fragments)


@pytest.mark.parametrize("command", [[], ["digits"], ["train"], ["predict"], ["evaluate"],
                                     ["compare-methods"]])
def test_every_command_has_help_with_examples(cli, command):
    proc = cli(*command, "--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout
    assert "usage: mlpcore" in proc.stdout


def test_version(tmp_path):
    proc = run(["--version"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"mlpcore {mlpcore.__version__}"


# -- the fit keywords that are landing on main ------------------------------------------------
def test_choices_and_defaults_come_from_the_library():
    """The command line reads its lists and defaults from the library's registries."""
    import argparse

    from mlpcore._base import HIDDEN_ACTIVATIONS
    from mlpcore._cli._arguments import add_fit_options
    from mlpcore._cli._fitting import resolve_learning_rate
    from mlpcore._cli._train import TRAIN_DEFAULTS
    from mlpcore._optimizers import OPTIMIZERS, default_learning_rate

    parser = argparse.ArgumentParser()
    add_fit_options(parser, TRAIN_DEFAULTS)
    actions = {a.dest: a for a in parser._actions}
    assert list(actions["activation"].choices) == list(HIDDEN_ACTIVATIONS)
    assert list(actions["optimizer"].choices) == list(OPTIMIZERS)
    assert "0.1, or 0.001 for adam; not used by lbfgs" in actions["learning_rate"].help
    for name in OPTIMIZERS:
        opts = argparse.Namespace(optimizer=name, learning_rate=None)
        resolve_learning_rate(opts)
        assert opts.learning_rate == default_learning_rate(name)
        assert opts.learning_rate == getattr(mlpcore.MLP(optimizer=name).optimizer,
                                             "learning_rate")


def test_live_progress_validation_and_early_stopping(cli, blobs_csv, tmp_path):
    proc = cli("train", blobs_csv, "--target", "species", "--hidden", "8", "--epochs", "400",
               "--optimizer", "adam", "--learning-rate", "0.01", "--validation-split", "0.2",
               "--early-stopping", "--tol", "1e-3", "--patience", "3", "--seed", "0", "--progress",
               "--output", tmp_path / "m.npz")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^epoch +1/400  loss [0-9.]+  val loss [0-9.]+  val acc [0-9.]+ +[0-9.]+ s$",
                     proc.stdout, re.M), proc.stdout
    assert re.search(r"stopped early after \d+ of 400 epochs", proc.stdout)
    assert "printed after training" not in proc.stdout


def test_checkpointed_training_is_the_same_as_one_run():
    """compare-methods' chunked runs: bit-for-bit one uninterrupted epoch over the same order,
    and its J is model.loss."""
    import argparse

    X, y = load_digits()
    X, Y = X[:300] / 16, np.eye(10)[y[:300]]
    opts = argparse.Namespace(hidden=(8,), learning_rate=3.0, epochs=1, points_per_epoch=4,
                              seed=0)
    init = _compare_methods.initial_weights(X, Y, opts.hidden, 0)
    J0 = _compare_methods.initial_cost(X, Y, init, opts)
    for batch in (1, 32, None):
        points = _compare_methods.checkpointed_costs(X, Y, init, batch, J0, opts)
        assert points[0, 1] == J0 and points[-1, 0] == 1.0
        assert len(points) == (2 if batch is None else 5)
        order = np.random.default_rng(1).permutation(300) if batch else np.arange(300)
        whole = _compare_methods.plain_fit(X[order], Y[order], init, batch, opts)
        assert points[-1, 1] == whole.loss(X, Y)
        tutorial_J = 0.5 * np.mean(np.sum((whole.forward(X) - Y) ** 2, axis=1))
        assert tutorial_J == pytest.approx(whole.loss(X, Y), rel=1e-12)
