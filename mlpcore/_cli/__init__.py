"""The ``mlpcore`` command line: train, predict, evaluate, and the tutorial's comparison.

Run ``mlpcore --help`` or ``mlpcore COMMAND --help``. :func:`main` returns the exit status:
0 on success, 1 when a file or the data is wrong (missing file, malformed CSV/NPZ/IDX/svmlight, bad
column name, a model file that cannot be read), 2 for a usage error (unknown option, bad
value, options that do not go together or do not fit the data), 141 when the reader of
stdout went away (``mlpcore digits | head -1``: the status of a program stopped by SIGPIPE,
with nothing printed). Errors are one line on stderr, ``mlpcore: error: ...``, never a
traceback (set ``MLPCORE_DEBUG=1`` to get one for unexpected errors).

One module per command (``_digits``, ``_train``, ``_predict``, ``_evaluate``,
``_compare_methods``), each with its ``add_parser`` and ``run``; ``_arguments`` holds the
option parsing they share, ``_fitting`` the :func:`mlpcore.fit` call of digits and train,
``_scaling``, ``_reports``, ``_files`` (with ``_sparse_files``, the sparse .npz and
svmlight/libsvm readers) and ``_output`` the rest, and ``_errors`` the error type and exit
statuses.
"""

import os
import sys
import textwrap
import warnings

import mlpcore
from mlpcore._cli import _compare_methods, _digits, _evaluate, _export, _predict, _train
from mlpcore._cli._arguments import Formatter, Parser
from mlpcore._cli._errors import (EXIT_BROKEN_PIPE, EXIT_USAGE, PROG, CLIError,
                                  report_error, show_warning)

__all__ = ["build_parser", "main"]


def build_parser():
    """The argparse parser of the ``mlpcore`` command (subcommands and their options).

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = Parser(
        prog=PROG, formatter_class=Formatter,
        description="mlpcore: train multilayer perceptrons on the CPU (typed Cython over BLAS).",
        epilog=textwrap.dedent("""\
            commands:
              digits            the demo: train on the built-in 8x8 digits, report test
                                accuracy and a confusion matrix (also run by plain 'mlpcore')
              train             train on a CSV, NPZ, MNIST IDX, sparse NPZ or svmlight file
                                and save the model (with a held-out score, and --plot for
                                the training curves)
              predict           write a saved model's predictions as CSV
              evaluate          accuracy and confusion matrix, or R^2 and MSE, on labelled data
              compare-methods   gradient descent vs SGD vs mini-batches: the convergence plot
              export            write a saved model as an ONNX graph (pip install 'mlpcore[onnx]')

            examples:
              mlpcore digits
              mlpcore train iris.csv --target species --hidden 16 --output iris.npz
              mlpcore predict iris.npz new.csv > predictions.csv
              mlpcore evaluate iris.npz test.csv --target species
              mlpcore compare-methods --output convergence.png
              mlpcore export iris.npz iris.onnx

            exit status: 0 success, 1 a file or data error, 2 a usage error.
            'mlpcore COMMAND --help' shows each command's options."""))
    parser.add_argument("--version", action="version", version=f"mlpcore {mlpcore.__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", default=False,
                        help="no per-epoch progress lines")
    parser.add_argument("--progress", action="store_true", default=False,
                        help="per-epoch progress lines even when stdout is not a terminal")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in (_digits, _train, _predict, _evaluate, _compare_methods, _export):
        command.add_parser(subparsers)
    return parser


def main(argv=None):
    """Run the ``mlpcore`` command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``). No command runs ``digits``.

    Returns
    -------
    int
        The exit status: 0 success, 1 file or data error, 2 usage error, 141 broken pipe.
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
    warnings.showwarning = show_warning
    try:
        with warnings.catch_warnings():
            # The commands match a CSV's columns to the model by header name themselves
            # (_files.check_features) and take other files by position, as they say.
            warnings.simplefilter("ignore", mlpcore.FeatureNamesWarning)
            return args.func(args)
    except CLIError as exc:
        return report_error(exc, exc.status)
    except FileNotFoundError as exc:
        return report_error(f"no such file: {exc.filename}" if exc.filename else exc)
    except IsADirectoryError as exc:
        return report_error(f"{exc.filename} is a directory, not a file")
    except BrokenPipeError:
        # The reader went away (e.g. `mlpcore predict ... | head`): stop quietly, and point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return report_error(f"{where}{exc.strerror or exc}")
    except (ValueError, TypeError) as exc:
        return report_error(exc)
    except MemoryError:
        return report_error("out of memory (try --dtype float32 or a smaller network)")
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, unless debugging
        if os.environ.get("MLPCORE_DEBUG"):
            raise
        return report_error(f"internal error: {type(exc).__name__}: {exc} (set MLPCORE_DEBUG=1 "
                            "to see the traceback, and please report it)")
    finally:
        warnings.showwarning = saved_showwarning
