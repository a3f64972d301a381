"""Argument parsing: the parser classes, option value parsers and the shared option groups."""

import argparse
import math
import textwrap

from mlpcore._base import DEFAULT_BATCH_SIZE, HIDDEN_ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS
from mlpcore._cli._errors import EXIT_USAGE, PROG
from mlpcore._optimizers import OPTIMIZERS, Momentum, default_learning_rate
from mlpcore._threads import DEFAULT_THREADS_HELP, MAX_THREADS


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``mlpcore: error: ... (see 'mlpcore X --help')``."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Help kept as written (descriptions and epilogs), with wider room for option names."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=30)


def paragraphs(text, width=80):
    """Dedent ``text`` and re-fill its paragraphs (indented blocks are kept as they are).

    Lets a command's description be written as an indented triple-quoted string with
    f-string fields and still print as evenly filled paragraphs.
    """
    out = []
    for para in textwrap.dedent(text).strip("\n").split("\n\n"):
        lines = para.splitlines()
        if any(line.startswith(" ") for line in lines):
            out.append(para)
        else:
            out.append(textwrap.fill(" ".join(line.strip() for line in lines), width))
    return "\n\n".join(out)


# -- option values ----------------------------------------------------------------------------
def _checked(convert, expected, is_valid, requirement):
    """An argparse ``type``: ``convert(text)``, then ``is_valid(value)``.

    Parameters
    ----------
    convert : callable
        ``int`` or ``float``.
    expected : str
        What the text should look like: "expected <expected>, got 'text'".
    is_valid : callable
        Whether a converted value is allowed.
    requirement : str
        What an allowed value is: "must be <requirement>, got ...".

    Returns
    -------
    callable
        ``parse(text)``, raising :class:`argparse.ArgumentTypeError` with those messages.
    """
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not is_valid(value):
            # An integer is echoed as read; a float as typed (float('1e999') would say inf).
            shown = value if convert is int else repr(text)
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {shown}")
        return value

    return parse


positive_int = _checked(int, "a positive integer", lambda v: v >= 1, ">= 1")
positive_float = _checked(float, "a number", lambda v: math.isfinite(v) and v > 0,
                          "a finite number > 0")
nonnegative_float = _checked(float, "a number", lambda v: math.isfinite(v) and v >= 0,
                             "a finite number >= 0")
fraction = _checked(float, "a fraction like 0.1", lambda v: 0 < v < 1,
                    "between 0 and 1 (exclusive)")
_batch_count = _checked(int, "a positive integer, 'full' or 'auto'", lambda v: v >= 1, ">= 1")
thread_count = _checked(int, "a positive integer", lambda v: 1 <= v <= MAX_THREADS,
                        f"between 1 and {MAX_THREADS} (BLAS takes a C int)")
momentum_coefficient = _checked(float, "a number like 0.9", lambda v: 0 <= v < 1,
                                "in [0, 1)")
_split_fraction = _checked(float, "a fraction like 0.1, 'auto' or 'none'", lambda v: 0 < v < 1,
                           "between 0 and 1 (exclusive)")


def validation_fraction(text):
    """A fraction in (0, 1), 'auto' (the command's default rule) or 'none'/'0' (no hold-out)."""
    word = text.strip().lower()
    if word == "auto":
        return "auto"
    if word in ("none", "0", "0.0", "no"):
        return None
    return _split_fraction(text)


def batch_size(text):
    """An int >= 1, 'full' (gradient descent: None) or 'auto'."""
    word = text.strip().lower()
    if word in ("full", "none", "all"):
        return None
    if word == "auto":
        return "auto"
    return _batch_count(text)


def hidden_sizes(text):
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


def show_hidden(hidden):
    """Hidden layer widths as the --hidden option takes them: '128,64', or 'none'."""
    return ",".join(map(str, hidden)) if hidden else "none"


def show_batch(batch):
    """A batch size as the --batch-size option takes it: a number, 'full' or 'auto'."""
    return "full" if batch is None else str(batch)


# -- option groups ------------------------------------------------------------------------------
def add_output_options(parser):
    """--quiet / --progress on a subcommand, without overriding the top-level ones.

    ``default=SUPPRESS`` leaves the attribute unset unless given after the command, so
    ``mlpcore -q digits`` keeps the top-level value.
    """
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no per-epoch progress lines")
    parser.add_argument("--progress", action="store_true", default=argparse.SUPPRESS,
                        help="per-epoch progress lines even when stdout is not a terminal")


def _default_rates():
    """'0.1, or 0.001 for adam; not used by lbfgs)': the optimizers' own defaults."""
    rates = {name: default_learning_rate(name) for name in OPTIMIZERS}
    common = rates["sgd"]
    others = [f"{r:g} for {n}" for n, r in rates.items() if r is not None and r != common]
    unused = [n for n, r in rates.items() if r is None]
    return (f"{common:g}" + "".join(f", or {o}" for o in others)
            + (f"; not used by {', '.join(unused)})" if unused else ")"))


def _threads_help():
    """--threads' help: fit's docstring's sentence (``_threads.DEFAULT_THREADS_HELP``)."""
    return DEFAULT_THREADS_HELP.replace("%", "%%")


def add_fit_options(parser, defaults):
    """The options that become :func:`mlpcore.fit` keywords, with a command's defaults.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    defaults : dict
        hidden, activation, optimizer, batch_size, epochs, learning_rate, alpha, seed and
        dtype; ``None`` for learning_rate, seed or dtype means fit's own choice. The output
        activation, loss, momentum and Nesterov options default to fit's choice.

    Returns
    -------
    argparse._ArgumentGroup
    """
    g = parser.add_argument_group("training options (mlpcore.fit keywords)")
    g.add_argument("--hidden", type=hidden_sizes, default=defaults["hidden"], metavar="SIZES",
                   help="hidden layer widths, comma-separated, e.g. 128,64; 'none' for no "
                        f"hidden layer (default {show_hidden(defaults['hidden'])})")
    g.add_argument("--activation", choices=list(HIDDEN_ACTIVATIONS), default=defaults["activation"],
                   help=f"hidden units' activation (default {defaults['activation']})")
    g.add_argument("--output-activation", choices=list(OUTPUT_ACTIVATIONS), default=None,
                   help="output units' activation (default: softmax for classification, "
                        "identity for regression)")
    g.add_argument("--loss", choices=list(LOSSES), default=None,
                   help="cost to minimise (default: cross_entropy for softmax or sigmoid "
                        "outputs on labels, poisson for exp, else mse); the tutorial's network "
                        "is --output-activation sigmoid --loss mse")
    g.add_argument("--optimizer", choices=list(OPTIMIZERS), default=defaults["optimizer"],
                   help=f"update rule (default {defaults['optimizer']})")
    g.add_argument("--momentum", type=momentum_coefficient, default=None, metavar="MU",
                   help="momentum coefficient mu in [0, 1) for --optimizer momentum or "
                        f"nesterov (default {Momentum().momentum:g}); with --optimizer sgd it "
                        "switches to momentum, as SGD(momentum=MU) does in Keras and PyTorch")
    g.add_argument("--nesterov", action="store_true",
                   help="Nesterov's momentum: the same as --optimizer nesterov (with sgd or "
                        "momentum)")
    g.add_argument("--batch-size", type=batch_size, default=defaults["batch_size"],
                   metavar="N|full|auto",
                   help="samples per update: 1 is SGD, 'full' gradient descent on all samples, "
                        f"'auto' min({DEFAULT_BATCH_SIZE}, N) "
                        f"(default {show_batch(defaults['batch_size'])})")
    g.add_argument("--epochs", type=positive_int, default=defaults["epochs"], metavar="N",
                   help=f"passes over the training data (default {defaults['epochs']})")
    g.add_argument("--learning-rate", "--lr", type=positive_float,
                   default=defaults["learning_rate"], metavar="RATE",
                   help="step size (default " + (
                       _default_rates() if defaults["learning_rate"] is None else
                       f"{defaults['learning_rate']:g})"))
    g.add_argument("--alpha", type=nonnegative_float, default=defaults["alpha"], metavar="A",
                   help=f"L2 penalty on the weights (default {defaults['alpha']:g})")
    g.add_argument("--seed", type=int, default=defaults["seed"], metavar="N",
                   help="seed of the initial weights, the shuffling and the validation split "
                        + ("(default: none, a different run each time)" if defaults["seed"]
                           is None else f"(default {defaults['seed']})"))
    g.add_argument("--threads", type=thread_count, default=None, metavar="N",
                   help=_threads_help())
    g.add_argument("--dtype", choices=("float32", "float64"), default=defaults["dtype"],
                   help="floating-point precision of training "
                        + ("(default: float32 if the data is float32, else float64)"
                           if defaults["dtype"] is None else f"(default {defaults['dtype']})"))
    return g
