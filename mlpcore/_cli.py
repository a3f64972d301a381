"""The ``mlpcore`` command line: train, predict, evaluate, and the tutorial's comparison.

Run ``mlpcore --help`` or ``mlpcore COMMAND --help``. ``main`` returns the exit status:
0 on success, 1 when a file or the data is wrong (missing file, malformed CSV/NPZ/IDX, bad
column name, a model file that cannot be read), 2 for a usage error (unknown option, bad
value). Errors are one line on stderr, ``mlpcore: error: ...``, never a traceback (set
``MLPCORE_DEBUG=1`` to get one for unexpected errors).

The fit keywords ``callback``, ``validation_data``, ``early_stopping``, ``n_iter_no_change``
and ``tol`` are used when :func:`mlpcore.fit` has them (checked with ``inspect.signature``
at run time); without ``callback`` the per-epoch losses are printed from ``model.history``
after training instead of live.
"""

import argparse
import inspect
import math
import os
import sys
import textwrap
import time
import warnings

import numpy as np

import mlpcore

PROG = "mlpcore"
EXIT_DATA = 1
EXIT_USAGE = 2

ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam") + (
    ("lbfgs",) if hasattr(mlpcore, "LBFGS") else ())
SCHEDULES = ("constant", "invscaling", "adaptive")

# The digits job's settings, chosen for >= 97% test accuracy in about a second on 2 cores
# (see docs/cli.md): a wide ReLU layer trained by Adam on mini-batches, a little L2, float32
# (same accuracy as float64 here, about 1.5x faster).
DIGITS_DEFAULTS = dict(hidden=(512,), activation="relu", optimizer="adam", batch_size=32,
                       epochs=40, learning_rate=None, alpha=0.01, seed=0, dtype="float32")
# `mlpcore train`'s defaults: mlpcore.fit's own.
TRAIN_DEFAULTS = dict(hidden=(100,), activation="sigmoid", optimizer="sgd", batch_size="auto",
                      epochs=100, learning_rate=None, alpha=0.0, seed=None, dtype=None)
# compare-methods: the tutorial's network (sigmoid units, J = 1/(2N) sum (a - y)^2).
COMPARE_DEFAULTS = dict(hidden=(30,), epochs=100, learning_rate=3.0, batch_size=32,
                        points_per_epoch=10, seed=0)


class CLIError(Exception):
    """An error reported as one line, ``mlpcore: error: <message>``, with an exit status."""

    def __init__(self, message, status=EXIT_DATA):
        super().__init__(message)
        self.status = status


# -- argument parsing ---------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``mlpcore: error: ... (see 'mlpcore X --help')``."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=30)


def _text(text, width=80):
    """Dedent ``text`` and re-fill its paragraphs (indented blocks are kept as they are)."""
    out = []
    for para in textwrap.dedent(text).strip("\n").split("\n\n"):
        lines = para.splitlines()
        if any(line.startswith(" ") for line in lines):
            out.append(para)
        else:
            out.append(textwrap.fill(" ".join(line.strip() for line in lines), width))
    return "\n\n".join(out)


def _hidden(text):
    """'128,64' -> (128, 64); '' or 'none' -> () (no hidden layer)."""
    text = text.strip()
    if text.lower() in ("", "none", "()"):
        return ()
    try:
        sizes = tuple(int(part) for part in text.replace(" ", "").strip("()").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths like 128,64, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be >= 1, got {text!r}")
    return sizes


def _batch_size(text):
    """An int >= 1, 'full' (gradient descent: None) or 'auto'."""
    low = text.strip().lower()
    if low in ("full", "none", "all"):
        return None
    if low == "auto":
        return "auto"
    try:
        value = int(low)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, 'full' or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text!r}")
    return value


def _show_hidden(hidden):
    return ",".join(map(str, hidden)) if hidden else "none"


def _show_batch(batch):
    return "full" if batch is None else str(batch)


def _add_output_options(p):
    """--quiet / --progress on a subcommand, without overriding the top-level ones."""
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no per-epoch progress lines")
    p.add_argument("--progress", action="store_true", default=argparse.SUPPRESS,
                   help="per-epoch progress lines even when stdout is not a terminal")


def _add_fit_options(p, defaults):
    g = p.add_argument_group("training options (mlpcore.fit keywords)")
    g.add_argument("--hidden", type=_hidden, default=defaults["hidden"], metavar="SIZES",
                   help="hidden layer widths, comma-separated, e.g. 128,64; 'none' for no "
                        f"hidden layer (default {_show_hidden(defaults['hidden'])})")
    g.add_argument("--activation", choices=ACTIVATIONS, default=defaults["activation"],
                   help=f"hidden units' activation (default {defaults['activation']})")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults["optimizer"],
                   help=f"update rule (default {defaults['optimizer']})")
    g.add_argument("--batch-size", type=_batch_size, default=defaults["batch_size"],
                   metavar="N|full|auto",
                   help="samples per update: 1 is SGD, 'full' gradient descent on all samples, "
                        f"'auto' min(32, N) (default {_show_batch(defaults['batch_size'])})")
    g.add_argument("--epochs", type=_positive_int, default=defaults["epochs"], metavar="N",
                   help=f"passes over the training data (default {defaults['epochs']})")
    g.add_argument("--learning-rate", "--lr", type=_positive_float,
                   default=defaults["learning_rate"], metavar="RATE",
                   help="step size (default " + (
                       "0.1, or 0.001 for adam; not used by lbfgs)"
                       if defaults["learning_rate"] is None else
                       f"{defaults['learning_rate']:g})"))
    g.add_argument("--alpha", type=_nonnegative_float, default=defaults["alpha"], metavar="A",
                   help=f"L2 penalty on the weights (default {defaults['alpha']:g})")
    g.add_argument("--seed", type=int, default=defaults["seed"], metavar="N",
                   help="seed of the initial weights, the shuffling and the validation split "
                        + ("(default: none, a different run each time)" if defaults["seed"]
                           is None else f"(default {defaults['seed']})"))
    g.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="BLAS threads while training (default: mlpcore's choice, 1 for batches "
                        "under 64 rows); 1 is often faster on a busy machine")
    g.add_argument("--dtype", choices=("float32", "float64"), default=defaults["dtype"],
                   help="floating-point precision of training "
                        + ("(default: float32 if the data is float32, else float64)"
                           if defaults["dtype"] is None else f"(default {defaults['dtype']})"))
    return g


def build_parser():
    """The argparse parser of the ``mlpcore`` command (subcommands and their options).

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = _Parser(
        prog=PROG, formatter_class=_Formatter,
        description="mlpcore: train multilayer perceptrons on the CPU (typed Cython over BLAS).",
        epilog=textwrap.dedent("""\
            commands:
              digits            the demo: train on the built-in 8x8 digits, report test
                                accuracy and a confusion matrix (also run by plain 'mlpcore')
              train             train on a CSV, NPZ or MNIST IDX file and save the model
              predict           write a saved model's predictions as CSV
              evaluate          accuracy and confusion matrix, or R^2 and MSE, on labelled data
              compare-methods   gradient descent vs SGD vs mini-batches: the convergence plot

            examples:
              mlpcore digits
              mlpcore train iris.csv --target species --hidden 16 --output iris.npz
              mlpcore predict iris.npz new.csv > predictions.csv
              mlpcore evaluate iris.npz test.csv --target species
              mlpcore compare-methods --output convergence.png

            exit status: 0 success, 1 a file or data error, 2 a usage error.
            'mlpcore COMMAND --help' shows each command's options."""))
    parser.add_argument("--version", action="version", version=f"mlpcore {mlpcore.__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", default=False,
                        help="no per-epoch progress lines")
    parser.add_argument("--progress", action="store_true", default=False,
                        help="per-epoch progress lines even when stdout is not a terminal")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # digits ------------------------------------------------------------------------------
    d = DIGITS_DEFAULTS
    p = sub.add_parser(
        "digits", formatter_class=_Formatter,
        help="train on the built-in digits and report (the demo)",
        description=_text(f"""\
            Train on the 1,797 built-in 8x8 handwritten digits and report.

            The digits are split 75/25 into training and test sets, stratified by class and
            seeded (--split-seed). Pixels (0..16) are divided by 16 so inputs lie in 0..1;
            the saved model folds that scaling into its first layer, so it takes raw 0..16
            pixels like load_digits() returns them. The default network is
            64-{_show_hidden(d['hidden'])}-10 with {d['activation']} hidden units and a softmax
            output, trained by {d['optimizer']} (learning rate 0.001) on
            mini-batches of {d['batch_size']} for {d['epochs']} epochs with L2 alpha {d['alpha']:g}.
            Prints the loss of every epoch, the test accuracy, the confusion matrix and the
            time taken, and saves the model."""),
        epilog=textwrap.dedent("""\
            examples:
              mlpcore digits                          # train, report, write digits-model.npz
              mlpcore digits --no-save --quiet        # just the results
              mlpcore digits --hidden 64 --epochs 30  # a smaller, faster network
              mlpcore digits --optimizer sgd --learning-rate 0.1 --epochs 100 --output sgd.npz"""))
    _add_fit_options(p, d)
    p.add_argument("--split-seed", type=int, default=0, metavar="N",
                   help="seed of the train/test split (default 0)")
    p.add_argument("-o", "--output", default="digits-model.npz", metavar="PATH",
                   help="where to save the model (default digits-model.npz)")
    p.add_argument("--no-save", action="store_true", help="do not save the model")
    _add_output_options(p)
    p.set_defaults(func=cmd_digits)

    # train -------------------------------------------------------------------------------
    p = sub.add_parser(
        "train", formatter_class=_Formatter,
        help="train on a CSV, NPZ or IDX file and save the model",
        description=_text("""\
            Train a network on a data file and save the model.

            DATA is a CSV file with a header row (name the label column with --target; every
            other column must be numeric), an .npz archive with arrays X and y, or an MNIST
            IDX images file (plain or gzipped; give the labels file with --labels). The format
            is recognised from the content. Integer or text labels mean classification;
            fractional numbers mean regression (override with --task).

            Features are standardised by default (mean 0, standard deviation 1 on the
            training rows); regression targets too. The scaling is folded into the first
            (and, for targets, last) layer before saving, so the model file works on raw
            data. The defaults of the training options are mlpcore.fit's."""),
        epilog=textwrap.dedent("""\
            examples:
              mlpcore train iris.csv --target species
              mlpcore train houses.csv --target price --hidden 64,32 --optimizer adam \\
                  --learning-rate 0.001 --epochs 200 --validation-split 0.1 --output houses.npz
              mlpcore train data.npz --batch-size full --learning-rate 1 --epochs 500
              mlpcore train train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz \\
                  --hidden 256 --optimizer adam --learning-rate 0.001 --epochs 10 \\
                  --dtype float32 --output mnist.npz"""))
    p.add_argument("data", metavar="DATA", help="CSV, NPZ or IDX images file")
    p.add_argument("--target", metavar="COLUMN", help="CSV: the column holding the targets")
    p.add_argument("--labels", metavar="FILE", help="IDX: the labels file")
    p.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                   help="what the targets are (default auto: from the values)")
    _add_fit_options(p, TRAIN_DEFAULTS)
    g = p.add_argument_group("data handling")
    g.add_argument("--scale", choices=("standard", "minmax", "none"), default="standard",
                   help="feature scaling, folded into the saved model (default standard)")
    g.add_argument("--validation-split", type=_fraction, default=None, metavar="FRACTION",
                   help="hold out this fraction of the rows (stratified for classification) "
                        "and report the validation score")
    g.add_argument("--early-stopping", action="store_true",
                   help="stop when the validation loss stops improving and keep the best "
                        "epoch's weights (validation: --validation-split, else fit's own 10%%)")
    g.add_argument("--tol", type=_nonnegative_float, default=None, metavar="T",
                   help="stop when the training loss (the validation loss with "
                        "--early-stopping) has not improved by more than T for --patience "
                        "epochs")
    g.add_argument("--patience", type=_positive_int, default=None, metavar="N",
                   help="epochs without improvement before stopping (fit's default: 10)")
    g.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="learning-rate schedule (fit's default: constant)")
    g.add_argument("--class-weight", choices=("balanced",), default=None,
                   help="weight classes inversely to their frequency")
    p.add_argument("-o", "--output", default="model.npz", metavar="PATH",
                   help="where to save the model (default model.npz)")
    _add_output_options(p)
    p.set_defaults(func=cmd_train)

    # predict -----------------------------------------------------------------------------
    p = sub.add_parser(
        "predict", formatter_class=_Formatter, help="write a model's predictions as CSV",
        description=_text("""\
            Write the predictions of a saved model for the rows of DATA as CSV (a header row,
            then one row per sample): column 'prediction' (a label or a value; regression
            with several outputs gives prediction_0, prediction_1, ...), and with --proba one
            probability column per class. DATA is a CSV (all columns are features, except the
            --target column, which is ignored if given), an .npz (array X; y is ignored) or
            an IDX images file."""),
        epilog=textwrap.dedent("""\
            examples:
              mlpcore predict digits-model.npz digits.csv > predictions.csv
              mlpcore predict iris.npz iris.csv --target species --proba --output out.csv
              mlpcore predict mnist.npz t10k-images-idx3-ubyte.gz"""))
    p.add_argument("model", metavar="MODEL", help="a model file written by mlpcore")
    p.add_argument("data", metavar="DATA", help="CSV, NPZ or IDX images file")
    p.add_argument("--target", metavar="COLUMN",
                   help="CSV: a target column to leave out of the features")
    p.add_argument("--proba", action="store_true",
                   help="also write class probabilities (classification)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=cmd_predict)

    # evaluate ----------------------------------------------------------------------------
    p = sub.add_parser(
        "evaluate", formatter_class=_Formatter, help="score a model on labelled data",
        description=_text("""\
            Score a saved model on labelled data. Classification: accuracy, the loss and the
            confusion matrix (rows: true label, columns: predicted label). Regression: R^2,
            mean squared error, root mean squared error and mean absolute error. DATA is a CSV
            with the --target column, an .npz with arrays X and y, or IDX images with
            --labels."""),
        epilog=textwrap.dedent("""\
            examples:
              mlpcore evaluate iris.npz test.csv --target species
              mlpcore evaluate model.npz test.npz
              mlpcore evaluate mnist.npz t10k-images-idx3-ubyte.gz \\
                  --labels t10k-labels-idx1-ubyte.gz"""))
    p.add_argument("model", metavar="MODEL", help="a model file written by mlpcore")
    p.add_argument("data", metavar="DATA", help="CSV, NPZ or IDX images file")
    p.add_argument("--target", metavar="COLUMN", help="CSV: the column holding the targets")
    p.add_argument("--labels", metavar="FILE", help="IDX: the labels file")
    p.set_defaults(func=cmd_evaluate)

    # compare-methods ---------------------------------------------------------------------
    c = COMPARE_DEFAULTS
    p = sub.add_parser(
        "compare-methods", formatter_class=_Formatter,
        help="gradient descent vs SGD vs mini-batches: the convergence plot",
        description=_text(f"""\
            Train the tutorial's network on the built-in digits (all 1,797, pixels / 16) three
            ways from the same initial weights, with the same learning rate and plain
            gradient-descent updates W <- W - rate * dJ/dW:

              gradient descent     one update per epoch, on all samples (batch 'full')
              stochastic GD        one update per sample (batch 1), reshuffled every epoch
              mini-batch GD        one update per --batch-size samples, reshuffled

            The network is 64-{_show_hidden(c['hidden'])}-10 with sigmoid hidden and output
            units and the cost J = 1/(2N) sum (a - y)^2 against one-hot targets.

            What is plotted: J on the whole training set, measured after every epoch for
            gradient descent and --points-per-epoch times per epoch for the other two. To
            measure inside an epoch, each method runs as consecutive mlpcore.fit calls on
            slices of the epoch's shuffled samples, each continuing from the previous
            weights with init=; with the plain update rule this is exactly the training of
            one uninterrupted run over the same order. Left panel: J against epochs. Right
            panel: the same J against seconds of training, timed on a separate
            uninterrupted fit of each method (one BLAS thread for all three), so neither
            the J measurements nor the per-call overhead of the sliced runs counts. (The
            per-epoch loss in model.history averages the batch losses of an epoch, which
            would hide SGD's noise; hence the measurements.)

            Writes a PNG with two panels. matplotlib is optional: without it (pip install
            'mlpcore[plot]') the numbers are printed as a table instead."""),
        epilog=textwrap.dedent("""\
            examples:
              mlpcore compare-methods                           # writes convergence.png
              mlpcore compare-methods --output docs/convergence.png
              mlpcore compare-methods --epochs 20 --table       # quick, and print the numbers
              mlpcore compare-methods --learning-rate 1 --batch-size 10"""))
    p.add_argument("-o", "--output", default="convergence.png", metavar="PNG",
                   help="the picture to write (default convergence.png)")
    p.add_argument("--epochs", type=_positive_int, default=c["epochs"], metavar="N",
                   help=f"epochs for each method (default {c['epochs']})")
    p.add_argument("--hidden", type=_hidden, default=c["hidden"], metavar="SIZES",
                   help=f"hidden layer widths (default {_show_hidden(c['hidden'])})")
    p.add_argument("--learning-rate", "--lr", type=_positive_float, default=c["learning_rate"],
                   metavar="RATE", help=f"the same for the three (default {c['learning_rate']:g})")
    p.add_argument("--batch-size", type=_positive_int, default=c["batch_size"], metavar="N",
                   help=f"the mini-batch size (default {c['batch_size']})")
    p.add_argument("--points-per-epoch", type=_positive_int, default=c["points_per_epoch"],
                   metavar="N", help="J measurements per epoch for SGD and mini-batches "
                                     f"(default {c['points_per_epoch']})")
    p.add_argument("--seed", type=int, default=c["seed"], metavar="N",
                   help=f"seed of the initial weights and the shuffling (default {c['seed']})")
    p.add_argument("--table", action="store_true",
                   help="also print the numbers when the picture is drawn")
    _add_output_options(p)
    p.set_defaults(func=cmd_compare_methods)
    return parser


# -- helpers ---------------------------------------------------------------------------------
def _out(*args):
    print(*args, flush=True)


def _fit_parameters():
    """Names of the keywords the installed :func:`mlpcore.fit` accepts."""
    try:
        return frozenset(inspect.signature(mlpcore.fit).parameters)
    except (TypeError, ValueError):
        return frozenset()


def _show_progress(args, default_on=False):
    if getattr(args, "quiet", False):
        return False
    if getattr(args, "progress", False) or default_on:
        return True
    return sys.stdout.isatty()


def _stratified_holdout(y, fraction, seed):
    """Boolean mask of a held-out ``fraction`` of the rows, the same fraction of each class.

    Each class contributes floor(count * fraction + 1/2) rows (at least one, and never all of
    its rows when it has two or more), drawn at random from ``seed``.
    """
    rng = np.random.default_rng(seed)
    held = np.zeros(len(y), dtype=bool)
    y = np.asarray(y)
    if y.ndim == 2:  # one-hot rows
        y = np.argmax(y, axis=1)
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        k = int(math.floor(len(idx) * fraction + 0.5))
        k = min(max(k, 1), len(idx) - 1) if len(idx) > 1 else 0
        held[rng.permutation(idx)[:k]] = True
    return held


def _random_holdout(n, fraction, seed):
    rng = np.random.default_rng(seed)
    held = np.zeros(n, dtype=bool)
    k = min(max(int(math.floor(n * fraction + 0.5)), 1), n - 1)
    held[rng.permutation(n)[:k]] = True
    return held


def _task_of(y):
    from mlpcore._targets import Targets

    return Targets.from_y(y, None).task


def _scaling(X, how):
    """(shift, scale) per column so that (X - shift) / scale is standardised or in 0..1."""
    X = np.asarray(X, dtype=np.float64)
    if how == "standard":
        shift, scale = X.mean(axis=0), X.std(axis=0)
    else:
        shift = X.min(axis=0)
        scale = X.max(axis=0) - shift
    scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
    return shift, scale


def _fold_input_scaling(model, shift, scale):
    """Make a model trained on (X - shift) / scale take raw X: exact, by linearity.

    Z1 = ((X - shift) / scale) W1 + b1 = X (W1 / scale[:, None]) + (b1 - (shift / scale) W1).
    """
    W = model.weights[0].astype(np.float64)
    b = model.biases[0].astype(np.float64)
    model.biases[0][...] = b - (shift / scale) @ W
    model.weights[0][...] = W / scale[:, None]


def _fold_output_scaling(model, shift, scale):
    """Make an identity-output model trained on (y - shift) / scale predict raw y."""
    W = model.weights[-1].astype(np.float64)
    b = model.biases[-1].astype(np.float64)
    model.weights[-1][...] = W * scale[None, :]
    model.biases[-1][...] = b * scale + shift


def _num(x):
    """A loss or score for display: 4 decimals, or 4 significant digits when large."""
    if x is None:
        return "n/a"
    return f"{x:.4f}" if abs(x) < 1e4 else f"{x:.4g}"


class _EpochPrinter:
    """Prints one line per epoch; usable as ``fit(callback=...)`` (returns None: go on)."""

    def __init__(self, epochs, score_name="val acc"):
        self.epochs = epochs
        self.count = 0
        self.score_name = score_name
        self.width = len(str(epochs))

    def line(self, loss, val_loss=None, val_score=None, seconds=None):
        self.count += 1
        parts = [f"epoch {self.count:{self.width}d}/{self.epochs}", f"loss {_num(loss)}"]
        if val_loss is not None:
            parts.append(f"val loss {_num(val_loss)}")
        if val_score is not None:
            parts.append(f"{self.score_name} {_num(val_score)}")
        if seconds is not None:
            parts.append(f"{seconds:6.2f} s")
        _out("  ".join(parts))

    def __call__(self, epoch, model, logs):
        logs = logs or {}
        if self.count == 0 and getattr(model, "classes", None) is None:
            self.score_name = "val R2"

        def number(key):
            value = logs.get(key)
            return None if value is None else float(value)

        self.line(number("loss"), number("val_loss"), number("val_score"), number("time"))
        return None


def _resolve_learning_rate(opts):
    """Fill in ``opts.learning_rate``: as given, else fit's defaults (0.1; 0.001 for Adam);
    None for L-BFGS, which takes no step size."""
    if opts.optimizer == "lbfgs":
        if opts.learning_rate is not None:
            raise CLIError("--learning-rate does not apply to --optimizer lbfgs", EXIT_USAGE)
        return
    if opts.learning_rate is None:
        opts.learning_rate = 0.001 if opts.optimizer == "adam" else 0.1


def _describe_network(sizes, task, opts, n_train, dtype):
    """One line: layer sizes, units, loss, optimizer and the training schedule."""
    output, loss = ("softmax", "cross_entropy") if task == "classification" else ("identity", "mse")
    batch = opts.batch_size if opts.batch_size != "auto" else min(32, n_train)
    batch = {None: "full batch (gradient descent)", 1: "batch 1 (SGD)"}.get(
        batch, f"batches of {batch}")
    hidden = f"{opts.activation} hidden units, " if len(sizes) > 2 else ""
    seed = "unseeded" if opts.seed is None else f"seed {opts.seed}"
    dtype = opts.dtype or ("float32" if dtype == np.float32 else "float64")
    if opts.optimizer == "lbfgs":
        rule = f"lbfgs, at most {opts.epochs} iterations"
    else:
        rule = (f"{opts.optimizer}, learning rate {opts.learning_rate:g}, {batch}, "
                f"{opts.epochs} epochs")
    return (f"network {'-'.join(map(str, sizes))}: {hidden}{output} output, {loss} loss; "
            f"{rule}, L2 alpha {opts.alpha:g}, {seed}, {dtype}")


def _optional_fit_keywords(opts, params=None):
    """The keywords of the flags that need a newer mlpcore.fit; usage errors if unsupported."""
    params = _fit_parameters() if params is None else params
    early = getattr(opts, "early_stopping", False)
    tol = getattr(opts, "tol", None)
    optional = (("--early-stopping", "early_stopping", True if early else None),
                ("--tol", "tol", tol),
                ("--patience", "n_iter_no_change", getattr(opts, "patience", None)),
                ("--schedule", "schedule", getattr(opts, "schedule", None)),
                ("--class-weight", "class_weight", getattr(opts, "class_weight", None)))
    kwargs = {}
    for flag, keyword, value in optional:
        if value is None:
            continue
        if keyword not in params:
            raise CLIError(f"{flag} needs mlpcore.fit({keyword}=...), which this version of "
                           "mlpcore does not have", EXIT_USAGE)
        if keyword == "n_iter_no_change" and not (early or tol is not None):
            raise CLIError("--patience only applies with --early-stopping or --tol",
                           EXIT_USAGE)
        kwargs[keyword] = value
    return kwargs


def _fit(X, y, opts, *, progress, validation=None):
    """Call :func:`mlpcore.fit` with the options, using the keywords the installed one has.

    Returns (model, seconds). Per-epoch lines are printed live through ``callback`` when
    fit has it, else from ``model.history`` after training.
    """
    params = _fit_parameters()
    kwargs = dict(hidden=opts.hidden, activation=opts.activation, optimizer=opts.optimizer,
                  batch_size=opts.batch_size, epochs=opts.epochs,
                  learning_rate=opts.learning_rate, alpha=opts.alpha, seed=opts.seed,
                  dtype=opts.dtype, n_threads=opts.threads)
    kwargs.update(_optional_fit_keywords(opts, params))
    if validation is not None and "validation_data" in params:
        kwargs["validation_data"] = validation
    printer = _EpochPrinter(opts.epochs) if progress else None
    live = printer is not None and "callback" in params
    if live:
        kwargs["callback"] = printer
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = mlpcore.fit(X, y, **kwargs)
    seconds = time.perf_counter() - start
    diverged = None
    for w in caught:
        if issubclass(w.category, mlpcore.TrainingDivergedWarning):
            diverged = w.message
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if printer is not None and not live:
        history = model.history
        _out("(per-epoch losses from model.history, printed after training)")
        printer.score_name = "val acc" if model.classes is not None else "val R2"
        for i in range(len(history.get("loss", []))):
            def at(key, i=i):
                values = history.get(key)
                return values[i] if values is not None and i < len(values) else None
            printer.line(history["loss"][i], at("val_loss"), at("val_score"))
    if diverged is not None:
        raise CLIError(f"{_one_line(diverged).split(' Training stopped')[0]} No model was "
                       "saved." + ("" if getattr(opts, "scale", "none") != "none" else
                                   " Scaling the features (--scale standard) may help."))
    return model, seconds


def _confusion(y_true, y_pred, labels):
    index = {label: i for i, label in enumerate(labels)}
    M = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        M[index[t], index[p]] += 1
    return M


def _format_confusion(M, labels, truth="true", pred="predicted"):
    names = [str(label) for label in labels]
    cell = max(max(len(n) for n in names), len(str(int(M.max()) if M.size else 0))) + 1
    cell = max(cell, 4)
    row_head = max(max(len(n) for n in names), len(truth))
    lines = [f"{truth:>{row_head}} \\ {pred}",
             " " * row_head + "  " + "".join(f"{n:>{cell}}" for n in names)]
    for name, row in zip(names, M):
        lines.append(f"{name:>{row_head}}  " + "".join(f"{int(v):>{cell}}" for v in row))
    return "\n".join(lines)


def _as_comparable(values, classes):
    """Labels in a form that compares with the model's classes (text vs numbers)."""
    values = np.asarray(values)
    if classes.dtype.kind in "U" and values.dtype.kind not in "U":
        return values.astype(str)
    if classes.dtype.kind in "iub" and values.dtype.kind == "U":
        try:
            return values.astype(np.int64)
        except ValueError:
            return values
    return values


def _classification_report(model, X, y):
    """Lines: accuracy, loss (if the labels are all known) and the confusion matrix."""
    pred = model.predict(X)
    truth = np.asarray(y)
    if getattr(model.targets, "one_hot", False) and truth.ndim == 2:
        truth = np.argmax(truth, axis=1)
    truth = _as_comparable(truth.reshape(len(pred)), model.classes)
    correct = int(np.sum(pred == truth))
    lines = [f"accuracy {correct / len(pred):.2%} ({correct} of {len(pred)} correct)"]
    known = np.isin(truth, model.classes)
    if known.all():
        lines.append(f"loss ({model.loss_name}) {model.loss(X, truth):.4f}")
    else:
        lines.append(f"{int((~known).sum())} rows have labels the model was not trained on")
    labels = list(model.classes.tolist())
    for label in np.unique(truth).tolist():
        if label not in labels:
            labels.append(label)
    M = _confusion(truth, pred, labels)
    lines.append("confusion matrix (rows: true label, columns: predicted label):")
    lines.append(_format_confusion(M, labels))
    return lines


def _regression_report(model, X, y):
    pred = np.asarray(model.predict(X), dtype=np.float64)
    truth = np.asarray(y, dtype=np.float64).reshape(pred.shape)
    err = pred - truth
    mse = float(np.mean(err ** 2))
    return [f"R^2 {model.score(X, y):.4f}",
            f"mean squared error {mse:.6g}",
            f"root mean squared error {math.sqrt(mse):.6g}",
            f"mean absolute error {float(np.mean(np.abs(err))):.6g}",
            f"({len(pred)} rows)"]


def _load_model(path):
    if not os.path.exists(path):
        raise CLIError(f"no such model file: {path}")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not a model file")
    return mlpcore.load(path)


def _load_data(path, **kwargs):
    from mlpcore.datasets._files import load_dataset

    if not os.path.exists(path):
        raise CLIError(f"no such file: {path}")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not a data file")
    labels = kwargs.get("labels")
    if labels is not None and not os.path.exists(labels):
        raise CLIError(f"no such file: {labels}")
    return load_dataset(path, **kwargs)


def _check_features(model, X, data_path, info, target):
    if X.shape[1] == model.n_features:
        return
    hint = ""
    if info["format"] == "csv" and target is None and X.shape[1] == model.n_features + 1:
        hint = "; if one column is the target, name it with --target"
    raise CLIError(f"{data_path} has {X.shape[1]} feature columns but the model takes "
                   f"{model.n_features}{hint}")


def _save(model, path):
    try:
        model.save(path)
    except OSError as exc:
        raise CLIError(f"cannot write the model to {path}: {exc.strerror or exc}") from None


# -- commands --------------------------------------------------------------------------------
def cmd_digits(args):
    """``mlpcore digits``: the demo on the embedded digits."""
    from mlpcore.datasets import load_digits

    _resolve_learning_rate(args)
    X, y = load_digits()
    test = _stratified_holdout(y, 0.25, args.split_seed)
    scale = 16.0
    Xtr, ytr, Xte, yte = X[~test] / scale, y[~test], X[test], y[test]
    _out(f"mlpcore {mlpcore.__version__}: 8x8 handwritten digits, {len(y)} images, "
         f"{len(np.unique(y))} classes")
    _out(f"split: {len(ytr)} for training, {len(yte)} for testing (stratified 75/25, "
         f"split seed {args.split_seed})")
    _out("inputs: pixels 0..16 divided by 16 to lie in 0..1 (the saved model folds this "
         "into its first layer and takes raw pixels)")
    _out(_describe_network((X.shape[1], *args.hidden, 10), "classification", args, len(ytr),
                           X.dtype))
    model, seconds = _fit(Xtr, ytr, args, progress=_show_progress(args, default_on=True))
    _fold_input_scaling(model, np.zeros(X.shape[1]), np.full(X.shape[1], scale))
    loss = model.history["loss"]
    epochs_run = len(loss)
    if loss:
        _out(f"final training loss {_num(loss[-1])} after {epochs_run} epochs")
    for line in _classification_report(model, Xte, yte):
        _out("test " + line if line.startswith(("accuracy", "loss")) else line)
    _out(f"training took {seconds:.2f} s ({seconds / max(epochs_run, 1) * 1000:.1f} ms per "
         "epoch)")
    if args.no_save:
        _out("model not saved (--no-save)")
    else:
        _save(model, args.output)
        _out(f"model saved to {args.output} (mlpcore.load({args.output!r}) reads it back)")
    return 0


def cmd_train(args):
    """``mlpcore train``: train on a file and save the model."""
    _resolve_learning_rate(args)
    _optional_fit_keywords(args)  # usage errors before any data is read
    X, y, info = _load_data(args.data, target=args.target, labels=args.labels,
                            require_target=True, task=args.task)
    try:
        task = _task_of(y)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"{args.data}: unusable targets ({exc})") from None
    what = f"target {args.target!r}" if args.target else "targets"
    if task == "classification":
        n_classes = len(np.unique(np.argmax(y, axis=1) if y.ndim == 2 else y))
        what += f": classification, {n_classes} classes"
    else:
        what += ": regression" + (f", {y.shape[1]} outputs" if y.ndim == 2 else "")
    _out(f"data: {args.data} ({info['format'].upper()}), {X.shape[0]} rows, {X.shape[1]} "
         f"features, {what}")
    if X.shape[0] < 2:
        raise CLIError(f"{args.data}: need at least 2 rows to train, found {X.shape[0]}")

    held = None
    if args.validation_split is not None:
        held = (_stratified_holdout(y, args.validation_split, args.seed)
                if task == "classification" else
                _random_holdout(len(X), args.validation_split, args.seed))
        _out(f"validation: {int(held.sum())} rows held out"
             f"{' (stratified)' if task == 'classification' else ''}, "
             f"training on {int((~held).sum())}")
        Xtr, ytr, Xva, yva = X[~held], y[~held], X[held], y[held]
    else:
        Xtr, ytr, Xva, yva = X, y, None, None

    in_scale = out_scale = None
    Xtr_fit, ytr_fit, validation = Xtr, ytr, None
    if args.scale != "none":
        in_scale = _scaling(Xtr, args.scale)
        dtype = Xtr.dtype if Xtr.dtype == np.float32 else np.float64
        Xtr_fit = ((Xtr - in_scale[0]) / in_scale[1]).astype(dtype, copy=False)
        label = ("standardised (mean 0, standard deviation 1 on the training rows)"
                 if args.scale == "standard" else "scaled to 0..1 (min-max on the training rows)")
        _out(f"features: {label}; folded into the saved model, which takes raw features")
        if task == "regression":
            out_scale = _scaling(ytr.reshape(len(ytr), -1), "standard")
            if ytr.ndim == 1:
                out_scale = (out_scale[0], out_scale[1])
            ytr_fit = ((ytr.reshape(len(ytr), -1) - out_scale[0]) / out_scale[1]).reshape(
                ytr.shape)
            _out("targets: standardised for training (the loss below is in those units); "
                 "folded into the saved model")
    if Xva is not None:
        Xva_fit = Xva if in_scale is None else ((Xva - in_scale[0]) / in_scale[1]).astype(
            Xtr_fit.dtype, copy=False)
        yva_fit = yva if out_scale is None else (
            (yva.reshape(len(yva), -1) - out_scale[0]) / out_scale[1]).reshape(yva.shape)
        validation = (Xva_fit, yva_fit)

    if task == "classification":
        n_out = y.shape[1] if y.ndim == 2 else n_classes
    else:
        n_out = 1 if y.ndim == 1 else y.shape[1]
    _out(_describe_network((X.shape[1], *args.hidden, n_out), task, args, len(Xtr_fit),
                           Xtr_fit.dtype))
    model, seconds = _fit(Xtr_fit, ytr_fit, args, progress=_show_progress(args),
                          validation=validation)
    if in_scale is not None:
        _fold_input_scaling(model, *in_scale)
    if out_scale is not None:
        _fold_output_scaling(model, *out_scale)
    loss = model.history["loss"]
    if loss:
        _out(f"final training loss {_num(loss[-1])} after {len(loss)} epochs")
    if len(loss) < args.epochs and (args.early_stopping or args.tol is not None):
        kept = " (the best epoch's weights are kept)" if args.early_stopping else ""
        _out(f"stopped early after {len(loss)} of {args.epochs} epochs{kept}")
    if Xva is not None:
        score = model.score(Xva, yva)
        if task == "classification":
            _out(f"validation accuracy {score:.2%} on {len(Xva)} held-out rows")
        else:
            _out(f"validation R^2 {score:.4f} on {len(Xva)} held-out rows")
    else:
        score = model.score(Xtr, ytr)
        _out(f"training {'accuracy' if task == 'classification' else 'R^2'} "
             + (f"{score:.2%}" if task == "classification" else f"{score:.4f}"))
    _out(f"training took {seconds:.2f} s")
    _save(model, args.output)
    _out(f"model saved to {args.output}")
    return 0


def _format_value(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def cmd_predict(args):
    """``mlpcore predict``: predictions as CSV."""
    import csv

    model = _load_model(args.model)
    try:
        X, _, info = _load_data(args.data, target=args.target, require_target=False)
    except ValueError as exc:
        if args.target is None and "feature columns must be numeric" in str(exc):
            raise CLIError(f"{exc}; if that is the target column, name it with --target "
                           "to leave it out") from None
        raise
    _check_features(model, X, args.data, info, args.target)
    pred = model.predict(X)
    header, columns = [], []
    if pred.ndim == 2:
        for k in range(pred.shape[1]):
            header.append(f"prediction_{k}")
            columns.append([_format_value(v) for v in pred[:, k]])
    else:
        header.append("prediction")
        columns.append([_format_value(v) for v in pred.tolist()])
    if args.proba:
        if model.classes is None:
            raise CLIError("--proba needs a classification model; this one does regression",
                           EXIT_USAGE)
        P = model.predict_proba(X)
        for k, label in enumerate(model.classes.tolist()):
            header.append(f"p_{label}")
            columns.append([f"{p:.6g}" for p in P[:, k]])
    rows = zip(*columns)
    if args.output:
        try:
            f = open(args.output, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise CLIError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        with f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        print(f"{len(pred)} predictions written to {args.output}", file=sys.stderr)
    else:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        sys.stdout.flush()
    return 0


def cmd_evaluate(args):
    """``mlpcore evaluate``: metrics on labelled data."""
    model = _load_model(args.model)
    task = "classification" if model.classes is not None else "regression"
    X, y, info = _load_data(args.data, target=args.target, labels=args.labels,
                            require_target=True,
                            task="regression" if task == "regression" else "auto")
    _check_features(model, X, args.data, info, args.target)
    sizes = "-".join(map(str, model.sizes))
    kind = f"classification, {len(model.classes)} classes" if task == "classification" \
        else "regression"
    _out(f"model: {args.model} (network {sizes}, {kind})")
    _out(f"data: {args.data} ({info['format'].upper()}), {X.shape[0]} rows")
    if task == "classification":
        lines = _classification_report(model, X, y)
    else:
        if y.dtype.kind not in "biuf":
            raise CLIError(f"{args.data}: the targets are not numbers, but the model does "
                           "regression")
        lines = _regression_report(model, X, y)
    for line in lines:
        _out(line)
    return 0


# -- compare-methods -------------------------------------------------------------------------
def _glorot_sigmoid(sizes, rng):
    """Initial (weights, biases) for sigmoid units: U(-r, r), r = sqrt(2 / (fan_in + fan_out)),
    the same rule mlpcore.fit uses by default (Glorot & Bengio, 2010)."""
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        r = math.sqrt(2.0 / (fan_in + fan_out))
        weights.append(rng.uniform(-r, r, (fan_in, fan_out)))
        biases.append(rng.uniform(-r, r, fan_out))
    return weights, biases


def _compare_fit(X, Y, init, batch, opts, epochs=1, shuffle=False, **extra):
    """Plain gradient-descent epochs (W <- W - rate dJ/dW) on the rows of X, from ``init``."""
    return mlpcore.fit(
        X, Y, hidden=opts.hidden, activation="sigmoid", output="sigmoid", loss="mse",
        batch_size=None if batch is None else min(batch, len(X)), epochs=epochs,
        learning_rate=opts.learning_rate, shuffle=shuffle, init=init, optimizer="sgd",
        dtype=np.float64, n_threads=1, **extra)


def _cost(model, X, Y):
    """The tutorial's cost J = 1/(2N) sum_i sum_k (a_ik - y_ik)^2 on all of X.

    The same value as ``model.loss(X, Y)`` (mse, no L2), computed from one forward pass
    without the gradient ``loss`` also computes, since it is measured thousands of times.
    """
    A = model.forward(X)
    return 0.5 * float(np.mean(np.sum((A - Y) ** 2, axis=1)))


def _checkpointed_costs(X, Y, init, batch, J0, opts):
    """J on all of X at the start and after every chunk of updates, for ``opts.epochs`` epochs.

    Each epoch visits the samples in a fresh random order (gradient descent: in order, which
    makes no difference to a full-batch step), split into chunks of whole batches, about
    ``opts.points_per_epoch`` per epoch; each chunk is one ``mlpcore.fit(..., epochs=1,
    shuffle=False, init=<current weights>)``. The plain update rule has no state, so this is
    the same training as one uninterrupted run over the same order.

    Returns
    -------
    ndarray of shape (M, 2)
        Rows (epochs so far, J).
    """
    n = len(X)
    if batch is None:
        chunk_rows = n
    else:
        n_batches = -(-n // batch)
        chunk_rows = -(-n_batches // min(opts.points_per_epoch, n_batches)) * batch
    rng = np.random.default_rng(opts.seed + 1)
    weights, biases = init
    points = [(0.0, J0)]
    for epoch in range(opts.epochs):
        if batch is None:
            Xe, Ye = X, Y
        else:
            order = rng.permutation(n)
            Xe, Ye = X[order], Y[order]
        for start in range(0, n, chunk_rows):
            model = _compare_fit(Xe[start:start + chunk_rows], Ye[start:start + chunk_rows],
                                 (weights, biases), batch, opts)
            if not model.history["loss"]:
                raise CLIError("training diverged (the cost became NaN or infinite); try a "
                               "smaller --learning-rate")
            weights, biases = model.weights, model.biases
            points.append((epoch + min(start + chunk_rows, n) / n, _cost(model, X, Y)))
    return np.array(points)


def _timed_run(X, Y, init, batch, opts):
    """Seconds at the end of each epoch of one uninterrupted fit: (epochs + 1,) from 0.

    Uses the per-epoch ``logs["time"]`` of ``fit(callback=...)`` when fit has it; otherwise
    the total time spread evenly over the epochs (every epoch does the same work).
    """
    times = [0.0]
    extra = {}
    if "callback" in _fit_parameters():
        def record(epoch, model, logs):
            times.append(float(logs["time"]))
        extra["callback"] = record
    start = time.perf_counter()
    _compare_fit(X, Y, init, batch, opts, epochs=opts.epochs, shuffle=batch is not None,
                 seed=opts.seed + 1, **extra)
    total = time.perf_counter() - start
    if len(times) != opts.epochs + 1:
        times = list(np.linspace(0.0, total, opts.epochs + 1))
    return np.array(times)


def _initial_cost(X, Y, init, opts):
    """J at the initial weights: the loss a full-batch epoch records before its update."""
    return _compare_fit(X, Y, init, None, opts).history["loss"][0]


def _run_method(X, Y, init, batch, J0, opts):
    """(epoch, seconds, J) rows for one method: J from the checkpointed run, seconds from an
    uninterrupted run of the same method (so neither the J measurements nor the per-call
    overhead of the checkpoints count as training time)."""
    pts = _checkpointed_costs(X, Y, init, batch, J0, opts)
    epoch_times = _timed_run(X, Y, init, batch, opts)
    seconds = np.interp(pts[:, 0], np.arange(opts.epochs + 1), epoch_times)
    return np.column_stack([pts[:, 0], seconds, pts[:, 1]])


def _draw(results, labels, opts, n, path):
    """Two panels, J against epochs and against seconds; False if matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax_epoch, ax_time = fig.subplots(1, 2, sharey=True)
    colors = {"gd": "tab:blue", "sgd": "tab:orange", "minibatch": "tab:green"}
    for key, pts in results.items():
        style = dict(color=colors[key], label=labels[key], linewidth=1.1)
        ax_epoch.plot(pts[:, 0], pts[:, 2], **style)
        ax_time.plot(pts[:, 1], pts[:, 2], **style)
    ax_epoch.set_yscale("log")
    ax_epoch.set_ylabel("cost J on the whole training set (log scale)")
    for ax in (ax_epoch, ax_time):
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlim(left=0)
    ax_epoch.set_xlabel("epochs (passes over the training set)")
    ax_epoch.set_title("cost against epochs")
    ax_time.set_xlabel("seconds of training (one BLAS thread)")
    ax_time.set_title("cost against wall-clock time")
    fig.legend(*ax_epoch.get_legend_handles_labels(), loc="outside lower center", ncols=3,
               frameon=False)
    sizes = "-".join(map(str, (64, *opts.hidden, 10)))
    fig.suptitle(f"{n} digits, {sizes} sigmoid network, J = 1/(2N) \u03a3 (a \u2212 y)\u00b2, "
                 f"learning rate {opts.learning_rate:g} for all three, same initial weights")
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
    return True


def _print_table(results, labels, epochs):
    """J and seconds at whole epochs (at most about 25 rows)."""
    keys = list(results)
    step = max(1, epochs // 25)
    wanted = sorted({0, *range(step, epochs + 1, step), epochs})
    _out(f"{'epoch':>6}" + "".join(f"{labels[k].split(' (')[0]:>24}" for k in keys))
    _out(f"{'':>6}" + "".join(f"{'J':>13}{'seconds':>11}" for _ in keys))
    rows = {k: {int(round(e)): (sec, J) for e, sec, J in results[k]
                if abs(e - round(e)) < 1e-9} for k in keys}
    for e in wanted:
        _out(f"{e:>6}" + "".join(f"{rows[k][e][1]:>13.5f}{rows[k][e][0]:>11.3f}" for k in keys))


def cmd_compare_methods(args):
    """``mlpcore compare-methods``: the tutorial's convergence picture."""
    from mlpcore.datasets import load_digits

    X, y = load_digits()
    X = X / 16.0
    Y = np.eye(10)[y]
    sizes = (X.shape[1], *args.hidden, Y.shape[1])
    init = _glorot_sigmoid(sizes, np.random.default_rng(args.seed))
    methods = {"gd": None, "sgd": 1, "minibatch": args.batch_size}
    labels = {"gd": f"gradient descent (batch = all {len(X)})",
              "sgd": "stochastic GD (batch = 1)",
              "minibatch": f"mini-batch GD (batch = {args.batch_size})"}
    progress = _show_progress(args, default_on=True)
    _out(f"digits: {len(X)} images, pixels / 16; network {'-'.join(map(str, sizes))}, sigmoid "
         f"units, J = 1/(2N) sum (a - y)^2; learning rate {args.learning_rate:g}, "
         f"{args.epochs} epochs each, same initial weights (seed {args.seed})")
    # One BLAS thread throughout: fit is told so for each method alike, and the thousands
    # of J measurements (forward passes on all samples) run several times faster that way
    # on a shared machine than with BLAS threads spinning against other processes.
    from threadpoolctl import threadpool_limits

    results = {}
    with threadpool_limits(limits=1, user_api="blas"):
        J0 = _initial_cost(X, Y, init, args)
        for key, batch in methods.items():
            results[key] = _run_method(X, Y, init, batch, J0, args)
    for key, batch in methods.items():
        pts = results[key]
        if progress:
            updates = args.epochs * (1 if batch is None else -(-len(X) // batch))
            _out(f"{labels[key]:<36} {updates:>7} updates in {pts[-1, 1]:5.2f} s, "
                 f"J {pts[0, 2]:.4f} -> {pts[-1, 2]:.4f}")
    drawn = _draw(results, labels, args, len(X), args.output)
    if drawn:
        _out(f"picture written to {args.output}")
    else:
        _out("matplotlib is not installed, so no picture was drawn; install it with "
             "pip install 'mlpcore[plot]' (or pip install matplotlib). The numbers:")
    if not drawn or args.table:
        _print_table(results, labels, args.epochs)
    return 0


# -- entry point -----------------------------------------------------------------------------
def _one_line(message):
    return " ".join(str(message).split())


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr, flush=True)


def main(argv=None):
    """Run the ``mlpcore`` command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``). No command runs ``digits``.

    Returns
    -------
    int
        The exit status: 0 success, 1 file or data error, 2 usage error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args([*argv, "digits"])
    except SystemExit as exc:  # --help, --version, usage errors (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    saved_showwarning = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except CLIError as exc:
        return _fail(exc, exc.status)
    except FileNotFoundError as exc:
        return _fail(f"no such file: {exc.filename}" if exc.filename else exc)
    except IsADirectoryError as exc:
        return _fail(f"{exc.filename} is a directory, not a file")
    except BrokenPipeError:
        # The reader went away (e.g. `mlpcore predict ... | head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_DATA
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")
    except (ValueError, TypeError) as exc:
        return _fail(exc)
    except MemoryError:
        return _fail("out of memory (try --dtype float32 or a smaller network)")
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, unless debugging
        if os.environ.get("MLPCORE_DEBUG"):
            raise
        return _fail(f"internal error: {type(exc).__name__}: {exc} (set MLPCORE_DEBUG=1 to "
                     "see the traceback, and please report it)")
    finally:
        warnings.showwarning = saved_showwarning


def _fail(message, status=EXIT_DATA):
    sys.stdout.flush()
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr, flush=True)
    return status
