"""``mlpcore predict``: a saved model's predictions for the rows of a data file, as CSV."""

import csv
import sys
import textwrap

import numpy as np

from mlpcore._cli._arguments import Formatter, paragraphs
from mlpcore._cli._errors import EXIT_USAGE, CLIError, cannot_write
from mlpcore._cli._files import (add_data_format_options, add_index_column_option,
                                 check_features, load_data, load_model)


def add_parser(subparsers):
    """Add the ``predict`` command to the ``mlpcore`` subparsers."""
    p = subparsers.add_parser(
        "predict", formatter_class=Formatter, help="write a model's predictions as CSV",
        description=paragraphs("""\
            Write the predictions of a saved model for the rows of DATA as CSV (a header row,
            then one row per sample): column 'prediction' (a label or a value; regression
            with several outputs gives prediction_0, prediction_1, ...), and with --proba one
            probability column per class. DATA is a CSV (all columns are features, except the
            --target column, which is ignored if given), an .npz (array X; y is ignored), an
            IDX images file, or a sparse file, which stays sparse: a scipy.sparse.save_npz
            archive or svmlight/libsvm text (its labels are ignored; a file with fewer columns
            than the model, as an svmlight file whose largest index is below the model's
            width, is padded with zero columns)."""),
        epilog=textwrap.dedent("""\
            examples:
              mlpcore predict digits-model.npz digits.csv > predictions.csv
              mlpcore predict iris.npz iris.csv --target species --proba --output out.csv
              mlpcore predict mnist.npz t10k-images-idx3-ubyte.gz
              mlpcore predict news-model.npz news-test.svm --output predictions.csv"""))
    p.add_argument("model", metavar="MODEL", help="a model file written by mlpcore")
    p.add_argument("data", metavar="DATA",
                   help="CSV, NPZ, IDX images, sparse NPZ or svmlight/libsvm file")
    p.add_argument("--target", metavar="COLUMN",
                   help="CSV: a target column to leave out of the features")
    add_index_column_option(p)
    add_data_format_options(p)
    p.add_argument("--proba", action="store_true",
                   help="also write class probabilities (classification)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=run)


def _format_value(v):
    """A prediction as CSV text: floats in full (repr) precision, labels as they are."""
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def _prediction_columns(model, X, proba):
    """``(header, columns)``: the predictions, then with ``proba`` one column per class."""
    pred = model.predict(X)
    header, columns = [], []
    if pred.ndim == 2:
        for k in range(pred.shape[1]):
            header.append(f"prediction_{k}")
            columns.append([_format_value(v) for v in pred[:, k]])
    else:
        header.append("prediction")
        columns.append([_format_value(v) for v in pred.tolist()])
    if proba:
        if model.classes is None:
            raise CLIError("--proba needs a classification model; this one does regression",
                           EXIT_USAGE)
        P = model.predict_proba(X)
        for k, label in enumerate(model.classes.tolist()):
            header.append(f"p_{label}")
            columns.append([f"{p:.6g}" for p in P[:, k]])
    return header, columns


def _write_csv(f, header, columns):
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(*columns))


def run(args):
    """``mlpcore predict``: predictions as CSV, on stdout or to --output."""
    model = load_model(args.model)
    try:
        X, _, info = load_data(args.data, target=args.target, require_target=False,
                               index_column=args.index_column, fmt=args.format,
                               zero_based=args.zero_based, n_features=model.n_features)
    except ValueError as exc:
        if args.target is None and "feature columns must be numeric" in str(exc):
            raise CLIError(f"{exc}; if that is the target column, name it with --target "
                           "to leave it out") from None
        raise
    X = check_features(model, X, args.data, info, args.target)
    header, columns = _prediction_columns(model, X, args.proba)
    if args.output:
        try:
            f = open(args.output, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise cannot_write(args.output, exc) from None
        with f:
            _write_csv(f, header, columns)
        print(f"{X.shape[0]} predictions written to {args.output}", file=sys.stderr)
    else:
        _write_csv(sys.stdout, header, columns)
        sys.stdout.flush()
    return 0
