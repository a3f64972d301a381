"""The command line, end to end: ``python -m mlpcore ...`` in a subprocess.

Every run uses few epochs except the digits accuracy test, so the file stays well under
30 seconds on a 2-core machine.
"""

import csv
import gzip
import importlib.util
import io
import os
import pathlib
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


# -- digits ---------------------------------------------------------------------------------
def test_digits_job_reaches_97_percent_and_saves_a_raw_pixel_model(tmp_path):
    proc = run(["digits", "--output", "digits-model.npz"], tmp_path)
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
    assert "model saved to digits-model.npz" in out
    model = mlpcore.load(tmp_path / "digits-model.npz")
    X, y = load_digits()
    test = _digits.digits_split(y, 0)[1]
    assert model.score(X[test], y[test]) == pytest.approx(accuracy, abs=1e-4)


def test_plain_mlpcore_runs_the_digits_job_and_writes_nothing(cli, tmp_path):
    proc = cli("--quiet")  # what `mlpcore` with no command does (CI runs it)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and not re.search(r"^epoch", proc.stdout, re.M)
    # The demo saves its model only when asked (--output), and says so.
    assert "model not saved (pass --output PATH to save it)" in proc.stdout
    assert not list(tmp_path.iterdir())


def test_digits_model_is_ignored_by_git():
    root = pathlib.Path(__file__).resolve().parents[1]
    assert "digits-model.npz" in (root / ".gitignore").read_text().split()


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
    (tmp_path / "bad3-idx").write_bytes(idx_bytes(np.zeros((2, 2, 2)))[:-3])
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
    (["train", "bad3-idx", "--labels", "bad-idx"], 1, ["truncated"]),
    (["train", "bad-idx", "--labels", "bad-idx"], 1, ["bad-idx: an IDX images file has 3",
                                                      "is it a labels file?"]),
    (["train", "floats-idx", "--labels", "bad-idx"], 1, ["element type 0x0d", "unsigned byte"]),
    (["train", "bad-idx"], 1, ["--labels"]),
    (["train", "nolabels.npz"], 1, ["no array named 'y'"]),
    (["train", "blobs.csv", "--target", "species", "--labels", "bad-idx"], 2,
     ["--labels applies to IDX image files", "--target"]),
    (["train", "bad3-idx", "--labels", "missing"], 1, ["no such file: missing"]),
    (["train", "digits.csv", "--target", "digit", "--labels", "missing"], 2,
     ["--labels applies to IDX image files"]),
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
     ["training diverged", "No model was saved", "(--scale standard) may help"]),
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
        assert opts.learning_rate == mlpcore.MLP(optimizer=name).optimizer.learning_rate


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


# -- the details users hit (issue 13): options, held-out scores, hints, usage errors --------------
@pytest.fixture
def rows120(tmp_path, rng):
    """120 rows, 3 features, a two-class target 't' (the 'batch 1000 on 120 rows' data)."""
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "t"])
        w.writerows([[*r, label] for r, label in zip(X, y)])
    return path


def test_the_tutorials_sigmoid_mse_network_runs_from_the_command_line(cli, tmp_path):
    X, y = load_digits()
    np.savez(tmp_path / "d.npz", X=X[:400], y=y[:400])
    proc = cli("train", "d.npz", "--hidden", "30", "--output-activation", "sigmoid", "--loss",
               "mse", "--batch-size", "full", "--learning-rate", "3", "--epochs", "5",
               "--seed", "0", "--output", "t.npz")
    assert proc.returncode == 0, proc.stderr
    assert "sigmoid hidden units, sigmoid output, mse loss" in proc.stdout
    model = mlpcore.load(tmp_path / "t.npz")
    assert (model.output, model.loss_name, model.n_outputs) == ("sigmoid", "mse", 10)


def test_a_sigmoid_regression_trains_on_raw_targets(cli, tmp_path, rng):
    X = rng.normal(size=(150, 2))
    y = 1 / (1 + np.exp(-(X[:, 0] - X[:, 1])))  # in (0, 1): a sigmoid output can fit it
    np.savez(tmp_path / "r.npz", X=X, y=y)
    proc = cli("train", "r.npz", "--output-activation", "sigmoid", "--epochs", "30",
               "--optimizer", "adam", "--learning-rate", "0.01", "--seed", "0", "--output", "r.m")
    assert proc.returncode == 0, proc.stderr
    assert "identity output" not in proc.stdout and "sigmoid output, mse loss" in proc.stdout
    # Standardised targets would leave (0, 1): only an identity output has them scaled.
    assert "targets: standardised" not in proc.stdout
    model = mlpcore.load(tmp_path / "r.m")
    pred = model.predict(X)
    assert model.output == "sigmoid" and ((pred > 0) & (pred < 1)).all()
    assert model.score(X, y) > 0.5


@pytest.mark.parametrize("args, fragments", [
    (["--output-activation", "identity", "--loss", "cross_entropy"],
     ["--output-activation identity --loss cross_entropy", "--loss cross_entropy needs "
      "--output-activation softmax"]),
    (["--loss", "poisson"], ["--loss poisson", "--output-activation exp"]),
    (["--optimizer", "adam", "--momentum", "0.5"], ["--momentum applies to --optimizer sgd"]),
    (["--optimizer", "lbfgs", "--nesterov"], ["--nesterov applies to", "not lbfgs"]),
    (["--momentum", "1"], ["--momentum", "in [0, 1)"]),
    (["--threads", str(10**20)], ["--threads", "between 1 and 2147483647"]),
    (["--batch-size", "1000"], ["--batch-size 1000 is larger than the 108 rows",
                                "--batch-size full"]),
    (["--validation-split", "0.99"], ["--validation-split 0.99"]),
])
def test_usage_errors_exit_2_in_command_line_terms(cli, rows120, args, fragments):
    proc = cli("train", rows120, "--target", "t", "--epochs", "1", *args)
    assert_one_line_error(proc, 2, *fragments)
    assert "batch_size" not in proc.stderr and "n_threads" not in proc.stderr
    assert not (rows120.parent / "model.npz").exists()


@pytest.mark.parametrize("args, rule, mu", [
    (["--momentum", "0.5"], "momentum", 0.5),
    (["--nesterov"], "nesterov", 0.9),
    (["--momentum", "0.7", "--nesterov"], "nesterov", 0.7),
    (["--optimizer", "nesterov", "--momentum", "0.3"], "nesterov", 0.3),
])
def test_momentum_and_nesterov(cli, rows120, tmp_path, args, rule, mu):
    proc = cli("train", rows120, "--target", "t", "--epochs", "2", "--seed", "0",
               "--output", "m.npz", *args)
    assert proc.returncode == 0, proc.stderr
    assert f"{rule} (momentum {mu:g}), learning rate 0.1" in proc.stdout
    optimizer = mlpcore.load(tmp_path / "m.npz").optimizer
    assert (optimizer.rule, optimizer.momentum) == (rule, mu)


def test_train_reports_a_held_out_score_by_default(cli, rows120, tmp_path):
    proc = cli("train", rows120, "--target", "t", "--epochs", "3", "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    assert "validation: 12 rows held out (stratified; the default" in proc.stdout
    assert re.search(r"^validation accuracy [0-9.]+% on 12 held-out rows$", proc.stdout, re.M)
    assert "training accuracy" not in proc.stdout
    # The saved model trained on the other 108 rows only.
    assert mlpcore.load(tmp_path / "model.npz").samples_seen == 3 * 108


def test_default_hold_out_of_multi_label_targets_is_not_stratified(cli, tmp_path, rng):
    X = rng.normal(size=(150, 3))
    Y = (rng.random((150, 4)) < 0.4).astype(int)
    Y[0] = [1, 1, 0, 0]  # a row with two labels: multi-label, not one-hot
    np.savez(tmp_path / "ml.npz", X=X, y=Y)
    proc = cli("train", "ml.npz", "--epochs", "2", "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    assert "validation: 15 rows held out (the default" in proc.stdout
    assert re.search(r"^validation accuracy [0-9.]+% on 15 held-out rows$", proc.stdout, re.M)


def test_train_says_when_the_score_is_on_the_training_rows(cli, rows120, blobs_csv):
    for args, why in ((["--validation-split", "none"], "(--validation-split none)"),
                      ([], "(fewer than 100 rows")):
        data = rows120 if args else blobs_csv
        target = "t" if args else "species"
        proc = cli("train", data, "--target", target, "--epochs", "2", *args)
        assert proc.returncode == 0, proc.stderr
        n = 120 if args else 90
        assert why in proc.stdout
        assert ("training accuracy" in proc.stdout and f"on the {n} rows it was trained on "
                "(not held-out data: an optimistic figure)" in proc.stdout), proc.stdout
        assert "validation accuracy" not in proc.stdout


def test_hint_for_a_decimal_comma_file(cli, tmp_path):
    (tmp_path / "eu.csv").write_text("a;b;t\n5,8;1,2;0\n4,1;3,3;1\n")
    assert_one_line_error(cli("train", "eu.csv", "--target", "t"), 1, "column 'a'",
                          "'5,8' is not a number; is the decimal separator a comma?")
    (tmp_path / "eu-r.csv").write_text("a;t\n5;0,5\n4;1,5\n")
    assert_one_line_error(cli("train", "eu-r.csv", "--target", "t", "--task", "regression"), 1,
                          "target '0,5' is not a number; is the decimal separator a comma?")
    (tmp_path / "words.csv").write_text("a,t\nred,0\nblue,1\n")  # no hint for plain words
    proc = cli("train", "words.csv", "--target", "t")
    assert_one_line_error(proc, 1, "'red' is not a number")
    assert "decimal" not in proc.stderr


def test_an_index_column_is_named_and_index_column_drops_it(cli, tmp_path, rng):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(rng.normal(size=(40, 2)), columns=["a", "b"])
    df["t"] = (df["a"] > 0).astype(int)
    df.to_csv(tmp_path / "pd.csv")  # pandas writes the index as a nameless first column
    assert_one_line_error(cli("train", "pd.csv", "--target", "t"), 1,
                          "column 1 of the header has no name: an index column",
                          "pass --index-column")
    proc = cli("train", "pd.csv", "--target", "t", "--index-column", "--epochs", "2",
               "--output", "pd.npz")
    assert proc.returncode == 0, proc.stderr
    assert "40 rows, 2 features" in proc.stdout
    proc = cli("predict", "pd.npz", "pd.csv", "--target", "t", "--index-column")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 41, proc.stderr
    proc = cli("evaluate", "pd.npz", "pd.csv", "--target", "t", "--index-column")
    assert proc.returncode == 0 and "accuracy" in proc.stdout, proc.stderr
    np.savez(tmp_path / "d.npz", X=df[["a", "b"]].to_numpy(), y=df["t"].to_numpy())
    assert_one_line_error(cli("train", "d.npz", "--index-column"), 2,
                          "--index-column applies to CSV files")


def test_labels_given_with_a_csv_points_at_target(cli, rows120):
    # The user took --labels for the label column: the file 't' does not even exist.
    assert_one_line_error(cli("train", rows120, "--labels", "t"), 2,
                          "--labels applies to IDX image files", "--target COLUMN")


def test_npz_with_nan_in_y_names_the_file_and_row_before_training(cli, tmp_path, rng):
    X = rng.normal(size=(120, 3))
    y = X[:, 0].copy()
    y[37] = np.nan
    np.savez(tmp_path / "nan.npz", X=X, y=y)
    proc = cli("train", "nan.npz")
    assert_one_line_error(proc, 1, "nan.npz: y holds NaN or infinity in row 37")
    assert "network" not in proc.stdout  # refused before training
    X[5, 1] = np.inf
    np.savez(tmp_path / "nan.npz", X=X, y=np.zeros(120))
    assert_one_line_error(cli("train", "nan.npz"), 1, "nan.npz: X holds NaN or infinity in row 5")


@pytest.mark.parametrize("header, fragments", [
    (b"\x00\x00\x08\x07", ["an IDX images file has 3 dimensions", "magic number 0x00000803",
                           "this one has 7 (magic number 0x00000807)"]),
    (b"\x12\x34\x08\x03", ["is not an IDX file: its magic number is 0x12340803",
                           "starts with 0x00000803"]),
])
def test_idx_file_with_a_wrong_magic_number(cli, tmp_path, header, fragments):
    (tmp_path / "images").write_bytes(header + b"\x00" * 40)
    (tmp_path / "labels").write_bytes(idx_bytes(np.zeros(3)))
    assert_one_line_error(cli("train", "images", "--labels", "labels"), 1, "images", *fragments)


def test_idx_file_with_zero_images(cli, tmp_path):
    (tmp_path / "images").write_bytes(idx_bytes(np.zeros((0, 28, 28))))
    (tmp_path / "labels").write_bytes(idx_bytes(np.zeros(0)))
    assert_one_line_error(cli("train", "images", "--labels", "labels"), 1,
                          "images: the header announces 0 images (0x28x28)")
    assert_one_line_error(cli("predict", "nomodel", "images"), 1, "no such model file")


def test_a_npy_file_given_as_data(cli, tmp_path, rng):
    np.save(tmp_path / "x.npy", rng.normal(size=(10, 3)))
    assert_one_line_error(cli("train", "x.npy"), 1, "x.npy is a single NumPy array (.npy)",
                          "numpy.savez")


def test_n_threads_too_large_is_a_clear_error_in_the_library_and_the_command():
    X = np.random.default_rng(0).normal(size=(20, 2))
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(ValueError, match=r"n_threads must be at most 2147483647.*got 10{20}"):
        mlpcore.fit(X, y, n_threads=10**20, epochs=1)
    model = mlpcore.fit(X, y, n_threads=1, epochs=1)
    model.n_threads = 10**20  # as from a doctored setting: prediction says so too
    with pytest.raises(ValueError, match="n_threads must be at most"):
        model.predict(X)


def test_threads_help_agrees_with_fit_docstring(cli):
    from mlpcore import _engine
    from mlpcore._threads import DEFAULT_THREADS_HELP

    help_text = " ".join(cli("train", "--help").stdout.split())
    phrase = " ".join(DEFAULT_THREADS_HELP.split())
    assert phrase in help_text
    assert phrase in " ".join(mlpcore.fit.__doc__.split())
    assert f"about {_engine.PARALLEL_MIN_MACS:,} multiply-adds per pass" in phrase
    assert "BLAS's own default" not in help_text and "64 rows" not in help_text


def test_digits_divergence_does_not_suggest_scale(cli):
    proc = cli("digits", "-q", "--optimizer", "sgd", "--learning-rate", "1e6", "--activation",
               "identity", "--hidden", "4", "--epochs", "3")
    assert_one_line_error(proc, 1, "training diverged", "No model was saved")
    assert "--scale" not in proc.stderr


def test_digits_piped_into_head_ends_quietly(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLPCORE_DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "mlpcore", "digits", "--epochs", "40"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does after its line
    err = proc.stderr.read()
    status = proc.wait(timeout=120)
    proc.stderr.close()
    assert first.startswith(b"mlpcore ")
    assert err == b"", err
    assert status == 141
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")
def test_train_plot_draws_the_training_curves(cli, rows120, tmp_path):
    from matplotlib.image import imread

    proc = cli("train", rows120, "--target", "t", "--epochs", "15", "--seed", "0",
               "--plot", "curve.png")
    assert proc.returncode == 0, proc.stderr
    assert "training curves drawn in curve.png" in proc.stdout
    image = imread(tmp_path / "curve.png")
    # Two panels (the default hold-out gives a validation score): 10 x 4 inches at 100 dpi.
    assert image.shape[:2] == (400, 1000)
    rgb = image[..., :3]
    not_white = (rgb < 0.95).any(axis=-1)
    assert 0.01 < not_white.mean() < 0.5
    # The curves are drawn in colour, not just black axes and text.
    colourful = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.3
    assert colourful[:, :500].sum() > 200  # the losses
    assert colourful[:, 500:].sum() > 200  # the validation accuracy


def test_train_plot_without_matplotlib_fails_before_training(cli, rows120, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    proc = cli("train", rows120, "--target", "t", "--plot", "curve.png")
    assert_one_line_error(proc, 1, "--plot curve.png", 'pip install "mlpcore[plot]"')
    assert "network" not in proc.stdout
    assert not (rows120.parent / "curve.png").exists()
    assert not (rows120.parent / "model.npz").exists()


# -- the same rules as the library: names, one-hot rows, the task ------------------------------

def test_csv_columns_are_matched_by_header_name(cli, blobs_csv, tmp_path):
    proc = cli("train", blobs_csv, "--target", "species", "--hidden", "8", "--epochs", "60",
               "--seed", "0", "--validation-split", "none", "--output", tmp_path / "m.npz")
    assert proc.returncode == 0, proc.stderr
    model = mlpcore.load(tmp_path / "m.npz")
    assert model.feature_names == ["x", "y", "noise"]
    in_order = cli("evaluate", tmp_path / "m.npz", blobs_csv, "--target", "species")
    with open(blobs_csv) as f:
        rows = list(csv.reader(f))
    reordered = tmp_path / "reordered.csv"
    with open(reordered, "w", newline="") as f:
        csv.writer(f).writerows([[r[3], r[2], r[1], r[0]] for r in rows])
    shuffled = cli("evaluate", tmp_path / "m.npz", reordered, "--target", "species")
    assert shuffled.returncode == 0, shuffled.stderr
    accuracy = parse_percent(in_order.stdout, "accuracy")
    assert accuracy > 0.9 and parse_percent(shuffled.stdout, "accuracy") == accuracy
    assert "Warning" not in shuffled.stderr
    missing = tmp_path / "missing.csv"
    with open(missing, "w", newline="") as f:
        csv.writer(f).writerows([[r[0], r[1], r[3]] for r in rows])
    proc = cli("evaluate", tmp_path / "m.npz", missing, "--target", "species")
    assert proc.returncode == 1 and "no column 'noise'" in proc.stderr
    renamed = tmp_path / "renamed.csv"
    with open(renamed, "w", newline="") as f:
        csv.writer(f).writerows([["x", "y", "other", "species"]] + rows[1:])
    proc = cli("evaluate", tmp_path / "m.npz", renamed, "--target", "species")
    assert proc.returncode == 1
    assert "no column 'noise'" in proc.stderr and "unknown column 'other'" in proc.stderr


def test_a_one_hot_npz_trains_and_evaluates(cli, tmp_path, rng):
    X = rng.normal(size=(150, 4))
    y = np.argmax(X[:, :3], axis=1)
    np.savez(tmp_path / "onehot.npz", X=X, y=np.eye(3)[y])
    proc = cli("train", tmp_path / "onehot.npz", "--hidden", "8", "--epochs", "30",
               "--seed", "0", "-o", tmp_path / "oh.npz")
    assert proc.returncode == 0, proc.stderr
    proc = cli("evaluate", tmp_path / "oh.npz", tmp_path / "onehot.npz")
    assert proc.returncode == 0, proc.stderr
    assert parse_percent(proc.stdout, "accuracy") > 0.5


def test_task_classification_classifies_numeric_labels(cli, tmp_path, rng):
    X = rng.normal(size=(150, 3))
    y = (X[:, 0] > 0).astype(float) + (X[:, 1] > 0)  # 0.0, 1.0, 2.0
    np.savez(tmp_path / "float_labels.npz", X=X, y=y)
    proc = cli("train", tmp_path / "float_labels.npz", "--task", "classification",
               "--hidden", "8", "--epochs", "30", "--seed", "0", "-o", tmp_path / "c.npz")
    assert proc.returncode == 0, proc.stderr
    model = mlpcore.load(tmp_path / "c.npz")
    assert model.classes.tolist() == [0.0, 1.0, 2.0] and model.task == "classification"


def test_train_on_a_local_dask_cluster_gives_the_one_process_model(cli, blobs_csv, tmp_path):
    pytest.importorskip("distributed", reason="mlpcore[dask] is in the test extra")
    common = ["train", blobs_csv, "--target", "species", "--hidden", "6", "--epochs", "15",
              "--batch-size", "full", "--learning-rate", "0.5", "--seed", "0",
              "--validation-split", "none"]
    alone = cli(*common, "--output", tmp_path / "alone.npz")
    assert alone.returncode == 0, alone.stderr
    clustered = cli(*common, "--workers", "2", "--output", tmp_path / "cluster.npz")
    assert clustered.returncode == 0, clustered.stderr
    a, b = mlpcore.load(tmp_path / "alone.npz"), mlpcore.load(tmp_path / "cluster.npz")
    for wa, wb in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_allclose(wb, wa, rtol=1e-10, atol=1e-12)
    assert a.history["loss"] == pytest.approx(b.history["loss"], rel=1e-10)
    proc = cli("train", blobs_csv, "--target", "species", "--workers", "2", "--scheduler",
               "tcp://127.0.0.1:1")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


# -- sparse data files (issue 16): scipy.sparse .npz and svmlight/libsvm text -----------------
def _svmlight_texts(rng, n_rows, n_features, *, zero_based, float_labels):
    """svmlight text with what real files have: comments (whole-line and trailing), blank
    lines, label-only rows, unsorted indices, explicit zeros, several number spellings,
    tabs and CRLF line ends; and the same text with each line's indices sorted (which
    scikit-learn's reader requires)."""
    return tuple(_svmlight_text(np.random.default_rng(rng), n_rows, n_features,
                                zero_based=zero_based, float_labels=float_labels, sort=sort)
                 for sort in (False, True))


def _svmlight_text(rng, n_rows, n_features, *, zero_based, float_labels, sort):
    first = 0 if zero_based else 1
    lines = ["# written by the test", ""]
    for i in range(n_rows):
        label = (f"{rng.normal():.6g}" if float_labels else
                 rng.choice(["+1", "-1", "1", "0", "2"]))
        k = int(rng.integers(0, 6)) if i % 7 else 0  # every 7th row is empty
        cols = rng.choice(n_features, size=k, replace=False) + first
        values = [rng.choice([f"{rng.normal():.17g}", f"{rng.normal():.3e}",
                              str(int(rng.integers(-5, 6))), "0", f"{rng.uniform():.2f}"])
                  for _ in cols]
        pairs = sorted(zip(cols, values)) if sort else list(zip(cols, values))
        fields = [label, *(f"{c}:{v}" for c, v in pairs)]
        line = rng.choice([" ", "\t", "  "]).join(fields)
        if i % 5 == 1:
            line += "  # a comment: 3:4 stays out"
        if i % 11 == 3:
            lines.append("   ")
        lines.append(line + ("\r" if i % 9 == 4 else ""))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(6))
def test_svmlight_reader_matches_scikit_learns(tmp_path, seed):
    from sklearn.datasets import load_svmlight_file

    from mlpcore._cli._sparse_files import load_svmlight

    zero_based, float_labels = bool(seed % 2), seed >= 3
    text, sorted_text = _svmlight_texts(seed, 60, 25, zero_based=zero_based,
                                        float_labels=float_labels)
    assert text != sorted_text  # some lines have their indices out of order
    path, sorted_path = tmp_path / "r.svm", tmp_path / "sorted.svm"
    path.write_text(text, newline="")
    sorted_path.write_text(sorted_text, newline="")
    X, y = load_svmlight(path, zero_based=zero_based)
    X_sk, y_sk = load_svmlight_file(str(sorted_path), zero_based=zero_based)
    assert X.format == "csr" and X.has_sorted_indices and X.dtype == np.float64
    assert X.shape == X_sk.shape and X.shape[0] == 60
    np.testing.assert_array_equal(X.toarray(), X_sk.toarray())
    np.testing.assert_array_equal(y, y_sk)
    assert (X.getnnz(axis=1)[::7] == 0).all()  # the label-only rows are there, empty
    # gzipped, and padded to a wider model
    gz = tmp_path / "r.svm.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    X_gz, _ = load_svmlight(gz, zero_based=zero_based, n_features=40)
    assert X_gz.shape == (60, 40)
    np.testing.assert_array_equal(X_gz[:, :X.shape[1]].toarray(), X.toarray())


def test_svmlight_reader_sums_repeated_indices_and_reads_a_million_nonzeros_fast(tmp_path):
    import time

    import scipy.sparse
    from sklearn.datasets import dump_svmlight_file, load_svmlight_file

    from mlpcore._cli._sparse_files import load_svmlight

    (tmp_path / "dup.svm").write_text("1 3:1 1:2 3:4\n")
    X, _ = load_svmlight(tmp_path / "dup.svm")
    assert X.toarray().tolist() == [[2.0, 0.0, 5.0]] and X.nnz == 2

    X = scipy.sparse.random(10_000, 20_000, density=5e-3, format="csr", random_state=0)
    y = np.random.default_rng(0).integers(0, 5, size=10_000)
    path = tmp_path / "big.svm"
    dump_svmlight_file(X, y, str(path), zero_based=False)  # values with 16 digits
    start = time.process_time()
    X_read, y_read = load_svmlight(path, n_features=20_000)
    seconds = time.process_time() - start
    start = time.process_time()
    X_sk, y_sk = load_svmlight_file(str(path), zero_based=False, n_features=20_000)
    reference = time.process_time() - start
    assert X_read.nnz == 1_000_000 and (X_read != X_sk).nnz == 0
    assert np.array_equal(y_read, y) and np.array_equal(y_sk, y)
    # About 0.5 s on a 2-core machine, no slower than scikit-learn's compiled reader.
    assert seconds < max(1.5, 2 * reference), (seconds, reference)


@pytest.mark.parametrize("text, line, fragment", [
    ("1 1:2\n-1 x:3\n", 2, "the index is not a whole number"),
    ("1 1:2\n-1 1.5:3\n", 2, "the index is not a whole number"),
    ("1 1:2\n\n# comment\n0 3:abc\n", 4, "the value is not a number"),
    ("1 1:1.2.3\n", 1, "the value is not a number"),
    ("1 1:2 3\n", 1, "'3' is not index:value"),
    ("1 1:2:3\n", 1, "is not index:value"),
    ("1 1:2:3 4\n", 1, "is not index:value"),
    ("1 :2\n", 1, "is not index:value"),
    ("1 2:\n", 1, "is not index:value"),
    ("2 1:1\nyes 1:2\n", 2, "the label 'yes' is not a number"),
    ("1:2 3:4\n", 1, "not a label"),
    ("1,2 1:2\n", 1, "multi-label lines are not supported"),
    ("3 qid:1 1:2\n", 1, "query id"),
    ("1 1:2\n1 0:2\n", 2, "feature index 0, but libsvm indices count from 1"),
    ("1 1:2\n1 3:nan\n", 2, "is not a finite number"),
    ("1 1:2\n1 3:inf\n1 x:1\n", 2, "is not a finite number"),
    ("1 1:2\n1 3:-inf\n", 2, "is not a finite number"),
    ("1 1:2\n1 0:1\nnan 3:nan\n", 2, "feature index 0"),  # the first line with a problem
    ("1 1:2\n1 1:1\nnan 0:nan\n", 3, "the label is not a finite number"),
    ("inf 1:2\n", 1, "the label is not a finite number"),
    ("1 99999999999:1\n", 1, "is beyond"),
])
def test_svmlight_reader_names_the_file_and_line_of_a_bad_line(tmp_path, text, line, fragment):
    from mlpcore._cli._sparse_files import load_svmlight

    path = tmp_path / "bad.svm"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_svmlight(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line {line}: ") and fragment in message, message


def test_svmlight_reader_refuses_a_file_without_data_lines(tmp_path):
    from mlpcore._cli._sparse_files import load_svmlight

    (tmp_path / "empty.svm").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="empty.svm: no data lines"):
        load_svmlight(tmp_path / "empty.svm")


@pytest.fixture
def sparse_files(tmp_path, rng):
    """The same data three ways: dense CSV, scipy.sparse .npz (+ a labels file), svmlight
    text (1-based, as libsvm writes it); with a classification target c (d.csv, c.txt,
    c.svm) and a regression target r of floats (dr.csv, r.npy, r.svm)."""
    import scipy.sparse
    from sklearn.datasets import dump_svmlight_file

    X = scipy.sparse.random(160, 12, density=0.25, format="csr", random_state=3)
    X.data = np.round(X.data * 10 - 3, 3)  # short decimals (all files hold them exactly)
    X.eliminate_zeros()
    dense = X.toarray()
    assert (dense[:, -1] != 0).any()  # the svmlight files have all 12 columns
    c = (dense[:, 0] + dense[:, 1] - dense[:, 2] > 0).astype(int)
    r = np.round(dense[:, 0] * 2 - dense[:, 3] + 0.5, 6)
    names = [f"f{j}" for j in range(12)]
    for name, target in (("d.csv", c.tolist()), ("dr.csv", list(map(repr, r.tolist())))):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([*names, "c" if name == "d.csv" else "r"])
            w.writerows([[*map(repr, row), t] for row, t in zip(dense.tolist(), target)])
    scipy.sparse.save_npz(tmp_path / "s.npz", X)
    # The first 9 columns only: an svmlight file of 9 columns (its largest index) and the
    # same rows as 12 columns of CSV, for predicting with a 12-input model.
    narrow = dense * (np.arange(12) < 9)
    dump_svmlight_file(narrow[:, :9], c, str(tmp_path / "narrow.svm"), zero_based=False)
    with open(tmp_path / "narrow.csv", "w", newline="") as f:
        csv.writer(f).writerows([names, *(list(map(repr, row)) for row in narrow.tolist())])
    np.savetxt(tmp_path / "c.txt", c, fmt="%d")
    np.save(tmp_path / "r.npy", r)
    dump_svmlight_file(X, c, str(tmp_path / "c.svm"), zero_based=False)
    dump_svmlight_file(X, r, str(tmp_path / "r.svm"), zero_based=False)
    return tmp_path, X, c, r


def _assert_same_model(paths, rtol=0, atol=1e-12):
    first = mlpcore.load(paths[0])
    for path in paths[1:]:
        other = mlpcore.load(path)
        assert other.sizes == first.sizes
        for a, b in zip(first.weights + first.biases, other.weights + other.biases):
            np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)


@pytest.fixture
def no_densifying(monkeypatch):
    """Make turning a sparse matrix of more than one row and column dense an error."""
    import scipy.sparse

    classes = {base for kind in (scipy.sparse.csr_matrix, scipy.sparse.csr_array,
                                 scipy.sparse.csc_matrix, scipy.sparse.coo_matrix,
                                 scipy.sparse.coo_array) for base in kind.__mro__}
    for cls in classes:
        for name in ("toarray", "todense"):
            original = cls.__dict__.get(name)
            if original is None:
                continue

            def refuse(self, *args, _original=original, **kwargs):
                if min(self.shape) > 1:
                    raise AssertionError("a sparse matrix was made dense")
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(cls, name, refuse)


def test_sparse_files_train_predict_and_evaluate_as_the_dense_csv_does(cli, sparse_files,
                                                                      no_densifying):
    tmp_path, X, c, r = sparse_files
    common = ["--hidden", "7", "--epochs", "6", "--seed", "1", "--batch-size", "16"]
    runs = {"csv": cli("train", "d.csv", "--target", "c", "--scale", "maxabs", *common,
                       "-o", "m_csv.npz"),
            "npz": cli("train", "s.npz", "--labels", "c.txt", *common, "-o", "m_npz.npz"),
            "svm": cli("train", "c.svm", *common, "-o", "m_svm.npz")}
    for name, proc in runs.items():
        assert proc.returncode == 0, (name, proc.stderr)
        assert "max-abs" in proc.stdout and "classification, 2 classes" in proc.stdout
    assert f"(SPARSE NPZ, {X.nnz} nonzeros), 160 rows, 12 features" in runs["npz"].stdout
    assert f"(SVMLIGHT, {X.nnz} nonzeros), 160 rows, 12 features" in runs["svm"].stdout
    # Everything the run reports (loss, validation accuracy) is the same, rounded as printed.
    def report(proc):
        return [line for line in proc.stdout.splitlines()
                if line.startswith(("final training loss", "validation accuracy"))]
    assert report(runs["npz"]) == report(runs["csv"]) == report(runs["svm"])
    assert len(report(runs["csv"])) == 2
    _assert_same_model(["m_csv.npz", "m_npz.npz", "m_svm.npz"])

    # predict: the same CSV text from every file and every model.
    outputs = set()
    for model in ("m_csv.npz", "m_npz.npz", "m_svm.npz"):
        for data in (["d.csv", "--target", "c"], ["s.npz"], ["c.svm"], ["r.svm"]):
            proc = cli("predict", model, *data, "--proba")
            assert proc.returncode == 0, (model, data, proc.stderr)
            outputs.add(proc.stdout)
    assert len(outputs) == 1
    rows = list(csv.reader(io.StringIO(outputs.pop())))
    assert rows[0] == ["prediction", "p_0", "p_1"] and len(rows) == 161
    # An svmlight file whose largest index is 9 is padded to the model's 12 columns.
    narrow = {cli("predict", "m_svm.npz", *data, "--proba").stdout
              for data in (["narrow.svm"], ["narrow.csv"])}
    assert len(narrow) == 1 and len(narrow.pop().splitlines()) == 161

    # evaluate: the same report, exactly as printed.
    reports = set()
    for model in ("m_csv.npz", "m_npz.npz", "m_svm.npz"):
        for data in (["d.csv", "--target", "c"], ["s.npz", "--labels", "c.txt"], ["c.svm"]):
            proc = cli("evaluate", model, *data)
            assert proc.returncode == 0, (model, data, proc.stderr)
            reports.add("\n".join(proc.stdout.splitlines()[2:]))  # after model: and data:
    assert len(reports) == 1 and "confusion matrix" in reports.pop()


def test_sparse_regression_with_float_labels_matches_the_dense_csv(cli, sparse_files,
                                                                  no_densifying):
    tmp_path, X, c, r = sparse_files
    common = ["--hidden", "5", "--epochs", "5", "--seed", "2", "--optimizer", "adam",
              "--learning-rate", "0.01", "--validation-split", "none"]
    for args in (["dr.csv", "--target", "r", "--scale", "maxabs", "-o", "a.npz"],
                 ["s.npz", "--labels", "r.npy", "-o", "b.npz"],
                 ["r.svm", "--format", "svmlight", "-o", "c.npz"]):
        proc = cli("train", *args, *common)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "regression" in proc.stdout and "max-abs" in proc.stdout
    _assert_same_model(["a.npz", "b.npz", "c.npz"])
    preds = []
    for model, data in (("a.npz", ["dr.csv", "--target", "r"]), ("b.npz", ["s.npz"]),
                        ("c.npz", ["r.svm"]), ("a.npz", ["r.svm"])):
        proc = cli("predict", model, *data)
        assert proc.returncode == 0, proc.stderr
        preds.append(np.array([float(v) for v in proc.stdout.splitlines()[1:]]))
    for p in preds[1:]:
        np.testing.assert_allclose(p, preds[0], rtol=1e-12, atol=1e-12)
    proc = cli("evaluate", "b.npz", "r.svm")
    dense = cli("evaluate", "a.npz", "dr.csv", "--target", "r")
    assert proc.returncode == dense.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2:] == dense.stdout.splitlines()[2:]
    assert "R^2" in proc.stdout


def test_sparse_data_scale_rules(cli, sparse_files):
    tmp_path, *_ = sparse_files
    short = ["--hidden", "3", "--epochs", "1", "-q"]
    for scale in ("standard", "minmax"):
        for data in (["c.svm"], ["s.npz", "--labels", "c.txt"]):
            assert_one_line_error(cli("train", *data, "--scale", scale, *short), 2,
                                  f"--scale {scale} would shift the zeros of the sparse",
                                  "--scale maxabs")
    proc = cli("train", "c.svm", "--scale", "none", *short, "-o", "none.npz")
    assert proc.returncode == 0 and "features:" not in proc.stdout, proc.stderr
    proc = cli("train", "c.svm", "--scale", "maxabs", *short, "-o", "m.npz")
    assert proc.returncode == 0 and "max-abs" in proc.stdout, proc.stderr
    # Dense data keeps the standard default, and can ask for maxabs.
    proc = cli("train", "d.csv", "--target", "c", *short, "-o", "d.npz")
    assert proc.returncode == 0 and "features: standardised" in proc.stdout, proc.stderr
    # A diverging sparse run suggests the scaling sparse data takes.
    proc = cli("train", "c.svm", "--scale", "none", "--learning-rate", "1e6", "--hidden", "4",
               "--epochs", "50", "--activation", "identity", "--seed", "0", "-q")
    assert_one_line_error(proc, 1, "No model was saved", "(--scale maxabs) may help")
    assert_one_line_error(cli("train", "c.svm", "--workers", "2", *short), 2,
                          "--workers trains on dense Dask arrays")
    help_text = " ".join(cli("train", "--help").stdout.split())
    assert "default standard, or maxabs for sparse DATA" in help_text


def test_sparse_npz_formats_and_dtypes(cli, sparse_files):
    import scipy.sparse

    tmp_path, X, c, r = sparse_files
    common = ["--hidden", "4", "--epochs", "3", "--seed", "0", "--validation-split", "none"]
    scipy.sparse.save_npz(tmp_path / "coo.npz", X.tocoo())
    scipy.sparse.save_npz(tmp_path / "csc_array.npz", scipy.sparse.csc_array(X))
    proc = cli("train", "s.npz", "--labels", "c.txt", *common, "-o", "csr.npz")
    assert proc.returncode == 0, proc.stderr
    for name in ("coo", "csc_array"):
        proc = cli("train", f"{name}.npz", "--labels", "c.txt", *common, "-o", f"m_{name}.npz")
        assert proc.returncode == 0, (name, proc.stderr)
        _assert_same_model(["csr.npz", f"m_{name}.npz"], atol=0)
    scipy.sparse.save_npz(tmp_path / "f32.npz", X.astype(np.float32))
    proc = cli("train", "f32.npz", "--labels", "c.txt", *common, "-o", "f32m.npz")
    assert proc.returncode == 0 and "float32" in proc.stdout, proc.stderr


def test_sparse_files_with_more_columns_than_the_model_are_refused(cli, sparse_files):
    import scipy.sparse

    tmp_path, X, c, r = sparse_files
    assert cli("train", "narrow.svm", "--hidden", "3", "--epochs", "1", "-q",
               "-o", "m9.npz").returncode == 0
    # s.npz has 12 columns, the model trained on narrow.svm 9 (its largest index).
    assert_one_line_error(cli("predict", "m9.npz", "s.npz"), 1,
                          "s.npz has 12 feature columns but the model takes 9")
    assert_one_line_error(cli("evaluate", "m9.npz", "c.svm"), 1,
                          "c.svm, line ", "is beyond the model's 9")
    wide = tmp_path / "wide.svm"
    wide.write_text("0 1:1\n1 2:1 10:3\n")
    assert_one_line_error(cli("evaluate", "m9.npz", "wide.svm"), 1,
                          "wide.svm, line 2: feature index 10 is beyond the model's 9")
    scipy.sparse.save_npz(tmp_path / "five.npz", X[:, :5])
    proc = cli("predict", "m9.npz", "five.npz")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 161, proc.stderr


@pytest.fixture
def bad_sparse_files(sparse_files):
    import scipy.sparse

    tmp_path, X, c, r = sparse_files
    (tmp_path / "bad.svm").write_text("1 1:0.5 3:1\n0 2:0,5\n")
    (tmp_path / "zero.svm").write_text("1 0:0.5 3:1\n0 2:1\n")
    (tmp_path / "rank.libsvm").write_text("2 qid:1 1:0.5\n")
    (tmp_path / "svm.txt").write_text("1 1:0.5 3:1\n0 2:1\n")
    np.savetxt(tmp_path / "short.txt", c[:-1], fmt="%d")
    (tmp_path / "header.txt").write_text("label\n" + "\n".join(map(str, c)) + "\n")
    (tmp_path / "two.csv").write_text("\n".join(f"{v},{v}" for v in c) + "\n")
    np.savez(tmp_path / "badindex.npz", format=np.array("csr"), shape=np.array([2, 3]),
             data=np.ones(2), indices=np.array([0, 7]), indptr=np.array([0, 1, 2]))
    nan = X.copy()
    nan.data[5] = np.nan
    scipy.sparse.save_npz(tmp_path / "nan.npz", nan)
    assert _cli.main(["train", "c.svm", "--hidden", "3", "--epochs", "1", "-q",
                      "-o", "m.npz"]) == 0
    return tmp_path


@pytest.mark.parametrize("args, status, fragments", [
    (["train", "bad.svm"], 1, ["bad.svm, line 2: in '2:0,5', the value is not a number"]),
    (["train", "zero.svm"], 1, ["zero.svm, line 1: feature index 0", "--zero-based"]),
    # A usage error comes before the file is read.
    (["train", "bad.svm", "--scale", "minmax"], 2, ["--scale minmax would shift the zeros"]),
    (["train", "rank.libsvm"], 1, ["rank.libsvm, line 1", "query id", "remove the qid"]),
    (["train", "svm.txt"], 1, ["name the target column with --target"]),
    (["train", "s.npz"], 1, ["sparse NPZ file", "--labels FILE"]),
    (["train", "s.npz", "--labels", "short.txt"], 1,
     ["short.txt holds 159 labels but s.npz has 160 rows"]),
    (["train", "s.npz", "--labels", "header.txt"], 1, ["161 labels", "a header?"]),
    (["train", "s.npz", "--labels", "two.csv"], 1, ["two.csv, line 1: more than one field"]),
    (["train", "s.npz", "--labels", "missing.txt"], 1, ["no such file: missing.txt"]),
    (["train", "s.npz", "--labels", "s.npz"], 1, ["the labels of a sparse .npz are a .npy"]),
    (["train", "badindex.npz", "--labels", "c.txt"], 1,
     ["badindex.npz: not a readable sparse .npz archive"]),
    (["train", "nan.npz", "--labels", "c.txt"], 1, ["nan.npz: the sparse matrix holds NaN"]),
    (["train", "c.svm", "--labels", "c.txt"], 2,
     ["--labels applies to IDX image files, Zarr arrays and sparse .npz archives",
      "its labels are each line's first field"]),
    (["train", "c.svm", "--target", "c"], 2, ["--target applies to CSV files"]),
    (["train", "s.npz", "--labels", "c.txt", "--index-column"], 2,
     ["--index-column applies to CSV files", "sparse NPZ"]),
    (["train", "s.npz", "--labels", "c.txt", "--zero-based"], 2,
     ["--zero-based applies to svmlight/libsvm files", "--format svmlight"]),
    (["train", "svm.txt", "--format", "svmlight", "--format", "csv"], 2, ["invalid choice"]),
    (["predict", "m.npz", "zero.svm"], 1, ["zero.svm, line 1: feature index 0"]),
    (["evaluate", "m.npz", "s.npz"], 1, ["--labels FILE"]),
    (["evaluate", "m.npz", "bad.svm"], 1, ["bad.svm, line 2"]),
])
def test_sparse_file_errors(cli, bad_sparse_files, args, status, fragments):
    assert_one_line_error(cli(*args), status, *fragments)


def test_svmlight_format_option_and_zero_based_files(cli, bad_sparse_files):
    # svm.txt is svmlight text under a name the format is not guessed from.
    proc = cli("train", "svm.txt", "--format", "svmlight", "--hidden", "2", "--epochs", "1",
               "--validation-split", "none", "-q", "-o", "t.npz")
    assert proc.returncode == 0 and "(SVMLIGHT, 3 nonzeros), 2 rows, 3 features" in proc.stdout
    proc = cli("train", "zero.svm", "--zero-based", "--hidden", "2", "--epochs", "1",
               "--validation-split", "none", "-q", "-o", "z.npz")
    assert proc.returncode == 0 and "2 rows, 4 features" in proc.stdout, proc.stderr
    proc = cli("predict", "z.npz", "zero.svm", "--zero-based")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3, proc.stderr
