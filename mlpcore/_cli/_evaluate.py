"""``mlpcore evaluate``: score a saved model on labelled data."""

import textwrap

from mlpcore._cli._arguments import Formatter, paragraphs
from mlpcore._cli._errors import CLIError
from mlpcore._cli._files import (add_data_format_options, add_index_column_option,
                                 check_features, load_data, load_model)
from mlpcore._cli._output import out
from mlpcore._cli._reports import classification_report, regression_report


def add_parser(subparsers):
    """Add the ``evaluate`` command to the ``mlpcore`` subparsers."""
    p = subparsers.add_parser(
        "evaluate", formatter_class=Formatter, help="score a model on labelled data",
        description=paragraphs("""\
            Score a saved model on labelled data. Classification: accuracy, the loss and the
            confusion matrix (rows: true label, columns: predicted label). Regression: R^2,
            mean squared error, root mean squared error and mean absolute error. DATA is a CSV
            with the --target column, an .npz with arrays X and y, IDX images with
            --labels, or a sparse file, which stays sparse: a scipy.sparse.save_npz archive
            with --labels (a .npy array or a text file with one label per line) or
            svmlight/libsvm text (a file with fewer columns than the model is padded with
            zero columns)."""),
        epilog=textwrap.dedent("""\
            examples:
              mlpcore evaluate iris.npz test.csv --target species
              mlpcore evaluate model.npz test.npz
              mlpcore evaluate mnist.npz t10k-images-idx3-ubyte.gz \\
                  --labels t10k-labels-idx1-ubyte.gz
              mlpcore evaluate news-model.npz news-test.svm
              mlpcore evaluate tfidf-model.npz tfidf-test.npz --labels test-topics.txt"""))
    p.add_argument("model", metavar="MODEL", help="a model file written by mlpcore")
    p.add_argument("data", metavar="DATA",
                   help="CSV, NPZ, IDX images, sparse NPZ or svmlight/libsvm file")
    p.add_argument("--target", metavar="COLUMN", help="CSV: the column holding the targets")
    p.add_argument("--labels", metavar="FILE",
                   help="IDX: the labels file; sparse NPZ: a .npy array or a text file with "
                        "one label per line")
    add_index_column_option(p)
    add_data_format_options(p)
    p.set_defaults(func=run)


def run(args):
    """``mlpcore evaluate``: the model, the data, then the metrics of the model's task."""
    model = load_model(args.model)
    classifier = model.classes is not None
    # A regressor's targets are read as numbers even when they look like labels.
    X, y, info = load_data(args.data, target=args.target, labels=args.labels,
                           require_target=True, task="auto" if classifier else "regression",
                           index_column=args.index_column, fmt=args.format,
                           zero_based=args.zero_based, n_features=model.n_features)
    X = check_features(model, X, args.data, info, args.target)
    sizes = "-".join(map(str, model.sizes))
    kind = f"classification, {len(model.classes)} classes" if classifier else "regression"
    out(f"model: {args.model} (network {sizes}, {kind})")
    out(f"data: {args.data} ({info['format'].upper()}), {X.shape[0]} rows")
    if classifier:
        lines = classification_report(model, X, y)
    else:
        if y.dtype.kind not in "biuf":
            raise CLIError(f"{args.data}: the targets are not numbers, but the model does "
                           "regression")
        lines = regression_report(model, X, y)
    for line in lines:
        out(line)
    return 0
