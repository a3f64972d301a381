"""``mlpcore train``: train on a CSV, NPZ or IDX file and save the model."""

import textwrap

import numpy as np

from mlpcore._cli._arguments import (Formatter, add_fit_options, add_output_options,
                                     fraction, nonnegative_float, paragraphs, positive_int)
from mlpcore._cli._errors import CLIError
from mlpcore._cli._files import load_data, save_model
from mlpcore._cli._fitting import (describe_network, fit_with_options, stopping_keywords,
                                   resolve_learning_rate)
from mlpcore._cli._output import format_number, out, show_progress
from mlpcore._cli._scaling import Scaling, fold_into_inputs, fold_into_outputs
from mlpcore._schedules import SCHEDULES
from mlpcore._splitting import validation_split
from mlpcore._targets import Targets

# `mlpcore train`'s defaults: mlpcore.fit's own.
TRAIN_DEFAULTS = dict(hidden=(100,), activation="sigmoid", optimizer="sgd", batch_size="auto",
                      epochs=100, learning_rate=None, alpha=0.0, seed=None, dtype=None)


def add_parser(subparsers):
    """Add the ``train`` command to the ``mlpcore`` subparsers."""
    p = subparsers.add_parser(
        "train", formatter_class=Formatter,
        help="train on a CSV, NPZ or IDX file and save the model",
        description=paragraphs("""\
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
    add_fit_options(p, TRAIN_DEFAULTS)
    g = p.add_argument_group("data handling")
    g.add_argument("--scale", choices=("standard", "minmax", "none"), default="standard",
                   help="feature scaling, folded into the saved model (default standard)")
    g.add_argument("--validation-split", type=fraction, default=None, metavar="FRACTION",
                   help="hold out this fraction of the rows (stratified for classification) "
                        "and report the validation score")
    g.add_argument("--early-stopping", action="store_true",
                   help="stop when the validation loss stops improving and keep the best "
                        "epoch's weights (validation: --validation-split, else fit's own 10%%)")
    g.add_argument("--tol", type=nonnegative_float, default=None, metavar="T",
                   help="stop when the training loss (the validation loss with "
                        "--early-stopping) has not improved by more than T for --patience "
                        "epochs")
    g.add_argument("--patience", type=positive_int, default=None, metavar="N",
                   help="epochs without improvement before stopping (fit's default: 10)")
    g.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="learning-rate schedule (fit's default: constant)")
    g.add_argument("--class-weight", choices=("balanced",), default=None,
                   help="weight classes inversely to their frequency")
    p.add_argument("-o", "--output", default="model.npz", metavar="PATH",
                   help="where to save the model (default model.npz)")
    add_output_options(p)
    p.set_defaults(func=run)


def _targets_of(y, data_path):
    """What fit will make of y (task, classes, outputs): mlpcore's own rule, Targets.from_y."""
    try:
        return Targets.from_y(y, None)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"{data_path}: unusable targets ({exc})") from None


def _validation_rows(y, targets, fraction, seed):
    """The rows --validation-split holds out: sorted ``(train, val)`` index arrays.

    :func:`mlpcore._splitting.validation_split` from ``seed``, stratified by class for
    classification.
    """
    labels = None
    if targets.task == "classification":
        labels = np.argmax(y, axis=1) if targets.one_hot else y.reshape(len(y))
    try:
        train, val = validation_split(len(y), fraction, np.random.default_rng(seed), labels)
    except ValueError:  # with 0 < fraction < 1 and 2 or more rows: no rows left to train on
        raise CLIError(f"--validation-split {fraction:g} would hold out all {len(y)} rows; "
                       "use a smaller fraction") from None
    if labels is not None:
        # The model learns only the classes it trains on: it could not score the others.
        lost = np.setdiff1d(labels[val], labels[train])
        if lost.size:
            raise CLIError(f"--validation-split {fraction:g} holds out every row of class "
                           f"{', '.join(map(str, lost.tolist()[:5]))}; use a smaller fraction")
    return train, val


def run(args):
    """``mlpcore train``: train on a file and save the model."""
    resolve_learning_rate(args)
    stopping_keywords(args)  # usage errors before any data is read
    X, y, info = load_data(args.data, target=args.target, labels=args.labels,
                           require_target=True, task=args.task)
    targets = _targets_of(y, args.data)
    task = targets.task
    what = f"target {args.target!r}" if args.target else "targets"
    if task == "classification":
        what += f": classification, {len(targets.classes)} classes"
    else:
        what += ": regression" + (f", {y.shape[1]} outputs" if y.ndim == 2 else "")
    out(f"data: {args.data} ({info['format'].upper()}), {X.shape[0]} rows, {X.shape[1]} "
        f"features, {what}")
    if X.shape[0] < 2:
        raise CLIError(f"{args.data}: need at least 2 rows to train, found {X.shape[0]}")

    if args.validation_split is not None:
        train, val = _validation_rows(y, targets, args.validation_split, args.seed)
        out(f"validation: {len(val)} rows held out"
            f"{' (stratified)' if task == 'classification' else ''}, training on {len(train)}")
        Xtr, ytr, Xva, yva = X[train], y[train], X[val], y[val]
    else:
        Xtr, ytr, Xva, yva = X, y, None, None

    # Train on scaled copies; the scaling is folded into the model afterwards.
    x_scaling = y_scaling = None
    if args.scale != "none":
        x_scaling = Scaling.from_data(Xtr, args.scale)
        label = ("standardised (mean 0, standard deviation 1 on the training rows)"
                 if args.scale == "standard" else "scaled to 0..1 (min-max on the training rows)")
        out(f"features: {label}; folded into the saved model, which takes raw features")
        if task == "regression":
            y_scaling = Scaling.from_data(ytr, "standard")
            out("targets: standardised for training (the loss below is in those units); "
                "folded into the saved model")
    # Scaled float32 features stay float32, so fit trains in float32 as it would on the raw data.
    x_dtype = Xtr.dtype if Xtr.dtype == np.float32 else np.float64

    def for_fit(X_rows, y_rows):
        if x_scaling is not None:
            X_rows = x_scaling.apply(X_rows).astype(x_dtype, copy=False)
        if y_scaling is not None:
            y_rows = y_scaling.apply(y_rows)
        return X_rows, y_rows

    Xtr_fit, ytr_fit = for_fit(Xtr, ytr)
    validation = None if Xva is None else for_fit(Xva, yva)

    out(describe_network((X.shape[1], *args.hidden, targets.n_outputs), task, args,
                         len(Xtr_fit), Xtr_fit.dtype))
    model, seconds = fit_with_options(Xtr_fit, ytr_fit, args, progress=show_progress(args),
                                      validation=validation)
    if x_scaling is not None:
        fold_into_inputs(model, x_scaling)
    if y_scaling is not None:
        fold_into_outputs(model, y_scaling)
    loss = model.history["loss"]
    if loss:
        out(f"final training loss {format_number(loss[-1])} after {len(loss)} epochs")
    if len(loss) < args.epochs and (args.early_stopping or args.tol is not None):
        kept = " (the best epoch's weights are kept)" if args.early_stopping else ""
        out(f"stopped early after {len(loss)} of {args.epochs} epochs{kept}")
    # The model now takes raw features and predicts raw targets: score it on raw rows.
    if Xva is not None:
        scored, score, rows = "validation", model.score(Xva, yva), f" on {len(Xva)} held-out rows"
    else:
        scored, score, rows = "training", model.score(Xtr, ytr), ""
    shown = f"accuracy {score:.2%}" if task == "classification" else f"R^2 {score:.4f}"
    out(f"{scored} {shown}{rows}")
    out(f"training took {seconds:.2f} s")
    save_model(model, args.output)
    out(f"model saved to {args.output}")
    return 0
