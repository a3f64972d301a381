"""``mlpcore train``: train on a CSV, NPZ, IDX, sparse, Parquet or Zarr DATA and save the
model."""

import textwrap

import numpy as np
import scipy.sparse

from mlpcore._cli._arguments import (Formatter, add_fit_options, add_output_options,
                                     nonnegative_float, paragraphs, positive_int,
                                     validation_fraction)
from mlpcore._cli._errors import EXIT_USAGE, CLIError
from mlpcore._cli._files import (add_data_format_options, add_index_column_option,
                                 is_sparse_data, load_data, save_model)
from mlpcore._cli._fitting import (check_output_and_loss, dask_client, describe_network,
                                   fit_with_options, n_workers, resolve_learning_rate,
                                   stopping_keywords, uses_cluster)
from mlpcore._cli._output import format_number, out, show_progress
from mlpcore._cli._scaling import Scaling, fold_into_inputs, fold_into_outputs
from mlpcore._cli._stores import (FORMATS, check_options, features_dtype, load_store,
                                  open_lazily, store_format)
from mlpcore._scaling import SCALINGS
from mlpcore._schedules import SCHEDULES
from mlpcore._splitting import validation_split
from mlpcore._targets import Targets

# `mlpcore train`'s defaults: mlpcore.fit's own.
TRAIN_DEFAULTS = dict(hidden=(100,), activation="sigmoid", optimizer="sgd", batch_size="auto",
                      epochs=100, learning_rate=None, alpha=0.0, seed=None, dtype=None)
# --validation-split auto: hold out this fraction when the data has at least this many rows,
# so the score printed at the end is measured on rows the model did not train on.
AUTO_VALIDATION_FRACTION = 0.1
AUTO_VALIDATION_MIN_ROWS = 100
# --scale's default: standardise dense features; sparse ones take the shift-free scaling that
# keeps their zeros (standard and minmax would make them dense).
DEFAULT_SCALE, DEFAULT_SPARSE_SCALE = "standard", "maxabs"
_SCALE_LABELS = {"standard": "standardised (mean 0, standard deviation 1 on the training rows)",
                 "minmax": "scaled to 0..1 (min-max on the training rows)",
                 "maxabs": "divided by each column's largest absolute value on the training "
                           "rows (max-abs: zeros stay zeros)"}


def add_parser(subparsers):
    """Add the ``train`` command to the ``mlpcore`` subparsers."""
    p = subparsers.add_parser(
        "train", formatter_class=Formatter,
        help="train on a CSV, NPZ, IDX, svmlight, Parquet or Zarr DATA and save the model",
        description=paragraphs("""\
            Train a network on a data file and save the model.

            DATA is a CSV file with a header row (name the label column with --target; every
            other column must be numeric), an .npz archive with arrays X and y, or an MNIST
            IDX images file (plain or gzipped; give the labels file with --labels), a Parquet
            file or folder of Parquet files (name the label column with --target), or a Zarr
            array of features (give the Zarr array of targets with --labels). The format
            is recognised from the content. Integer or text labels mean classification;
            fractional numbers mean regression (override with --task).

            Sparse DATA stays sparse: a scipy.sparse.save_npz archive (give its labels with
            --labels FILE, a .npy array or a text file with one label per line) or a
            svmlight/libsvm text file ("label index:value ...", indices from 1 unless
            --zero-based; named *.svm, *.svmlight or *.libsvm, or read with --format
            svmlight).

            With --workers or --scheduler, training runs on a Dask cluster (mlpcore.dask).
            Parquet and Zarr DATA are then read lazily, partition by partition, on the
            workers (the held-out rows, if any, are gathered for scoring; they are taken at
            random, not stratified); other files are read here and sent to the workers.

            Features are standardised by default (mean 0, standard deviation 1 on the
            training rows), sparse ones divided by each column's largest absolute value
            (--scale maxabs, which keeps their zeros); regression targets are standardised
            too. The scaling is folded into the first (and, for targets, last) layer before
            saving, so the model file works on raw data. The defaults of the training options
            are mlpcore.fit's.

            The score printed at the end is measured on held-out rows: by default
            (--validation-split auto) 10% of the rows, stratified by class, are held out
            when the data has at least 100 rows, and the model is trained on the others.
            With fewer rows, or --validation-split none, it trains on every row and the
            score is on the training rows, which the report says."""),
        epilog=textwrap.dedent("""\
            examples:
              mlpcore train iris.csv --target species
              mlpcore train houses.csv --target price --hidden 64,32 --optimizer adam \\
                  --learning-rate 0.001 --epochs 200 --validation-split 0.1 --output houses.npz
              mlpcore train data.npz --batch-size full --learning-rate 1 --epochs 500
              mlpcore train train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz \\
                  --hidden 256 --optimizer adam --learning-rate 0.001 --epochs 10 \\
                  --dtype float32 --output mnist.npz
              mlpcore train digits.csv --target digit --hidden 30 --output-activation \\
                  sigmoid --loss mse --batch-size full --learning-rate 3 --epochs 300
              mlpcore train data.csv --target y --optimizer sgd --momentum 0.9 --nesterov \\
                  --plot curve.png
              mlpcore train news.svm --hidden 128 --optimizer adam --learning-rate 0.001
              mlpcore train tfidf.npz --labels topics.txt --batch-size 1 --epochs 5
              mlpcore train data/ --target label --optimizer lbfgs --workers 2
              mlpcore train X.zarr --labels y.zarr --optimizer lbfgs \\
                  --scheduler tcp://scheduler:8786"""))
    p.add_argument("data", metavar="DATA",
                   help="CSV, NPZ, IDX images, sparse NPZ or svmlight/libsvm file, Parquet "
                        "file or folder, or Zarr array")
    p.add_argument("--target", metavar="COLUMN",
                   help="CSV or Parquet: the column holding the targets")
    p.add_argument("--labels", metavar="FILE",
                   help="IDX: the labels file; sparse NPZ: a .npy array or a text file with "
                        "one label per line; Zarr: the Zarr array of targets")
    add_index_column_option(p)
    add_data_format_options(p)
    p.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                   help="what the targets are (default auto: from the values)")
    add_fit_options(p, TRAIN_DEFAULTS)
    g = p.add_argument_group("data handling")
    g.add_argument("--scale", choices=(*SCALINGS, "none"), default=None,
                   help="feature scaling, folded into the saved model (default "
                        f"{DEFAULT_SCALE}, or {DEFAULT_SPARSE_SCALE} for sparse DATA, whose "
                        f"zeros a shift would fill in)")
    g.add_argument("--validation-split", type=validation_fraction, default="auto",
                   metavar="FRACTION|auto|none",
                   help="hold out this fraction of the rows (stratified for classification), "
                        "train on the rest and report the validation score; 'none' trains "
                        f"on every row (default auto: {AUTO_VALIDATION_FRACTION:g} with "
                        f"{AUTO_VALIDATION_MIN_ROWS} rows or more, else none)")
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
    c = p.add_argument_group("on a Dask cluster (pip install \"mlpcore[dask]\")")
    c = c.add_mutually_exclusive_group()
    c.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="train with mlpcore.dask on a local cluster of N single-threaded "
                        "worker processes (full batch and lbfgs give the one-process result)")
    c.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="train with mlpcore.dask on the cluster at ADDRESS, e.g. "
                        "tcp://scheduler:8786")
    p.add_argument("-o", "--output", default="model.npz", metavar="PATH",
                   help="where to save the model (default model.npz)")
    p.add_argument("--plot", metavar="PATH",
                   help="draw the loss (and validation loss and score) per epoch into PATH, "
                        "e.g. curve.png (needs matplotlib: pip install \"mlpcore[plot]\")")
    add_output_options(p)
    p.set_defaults(func=run)


def _targets_of(y, data_path, output, loss, task=None):
    """What fit will make of y (task, classes, outputs): mlpcore's own rule, Targets.from_y."""
    try:
        return Targets.from_y(y, output, loss, task)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"{data_path}: unusable targets ({exc})") from None


def _validation_rows(y, targets, fraction, seed):
    """The rows --validation-split holds out: sorted ``(train, val)`` index arrays.

    :func:`mlpcore._splitting.validation_split` from ``seed``, stratified by class for
    classification.
    """
    labels = None
    if targets.task == "classification" and not targets.multilabel:  # multi-label: unstratified
        labels = np.argmax(y, axis=1) if targets.one_hot else y.reshape(len(y))
    try:
        train, val = validation_split(len(y), fraction, np.random.default_rng(seed), labels)
    except ValueError:  # with 0 < fraction < 1 and 2 or more rows: no rows left to train on
        raise CLIError(f"--validation-split {fraction:g} would hold out all {len(y)} rows; "
                       "use a smaller fraction", EXIT_USAGE) from None
    if labels is not None:
        # The model learns only the classes it trains on: it could not score the others.
        lost = np.setdiff1d(labels[val], labels[train])
        if lost.size:
            raise CLIError(f"--validation-split {fraction:g} holds out every row of class "
                           f"{', '.join(map(str, lost.tolist()[:5]))}; use a smaller fraction",
                           EXIT_USAGE)
    return train, val


def _split(y, targets, args):
    """The --validation-split rows: ``(train, val, note)``, ``val`` None for no hold-out.

    ``auto`` holds out ``AUTO_VALIDATION_FRACTION`` from ``AUTO_VALIDATION_MIN_ROWS`` rows on,
    unless that would take every row of a class; ``note`` then says why nothing was held out.
    """
    fraction = args.validation_split
    if fraction is None:
        return None, None, "--validation-split none"
    if fraction != "auto":
        return (*_validation_rows(y, targets, fraction, args.seed), "")
    if len(y) < AUTO_VALIDATION_MIN_ROWS:
        return None, None, (f"fewer than {AUTO_VALIDATION_MIN_ROWS} rows, so none were held "
                            "out; --validation-split FRACTION holds some out")
    try:
        return (*_validation_rows(y, targets, AUTO_VALIDATION_FRACTION, args.seed),
                f"the default for {AUTO_VALIDATION_MIN_ROWS} rows or more; "
                "--validation-split none trains on every row")
    except CLIError as exc:
        return None, None, f"none held out by default: {exc}"


def _check_plot(path):
    """Refuse --plot before training when matplotlib is missing."""
    if path is None:
        return
    from mlpcore._plotting import import_matplotlib_figure

    try:
        import_matplotlib_figure()
    except ImportError as exc:
        raise CLIError(f"--plot {path}: {exc}") from None


def _resolve_scale(args, sparse):
    """Settle ``args.scale`` for the data: the default by density, and no shift for sparse X.

    Raises
    ------
    CLIError
        A usage error for --scale standard or minmax with sparse DATA, or for --workers or
        --scheduler with sparse DATA (mlpcore.dask trains on dense Dask arrays).
    """
    args.data_scale = DEFAULT_SPARSE_SCALE if sparse else DEFAULT_SCALE  # a divergence hint's
    if args.scale is None:
        args.scale = args.data_scale
    elif sparse and args.scale not in (DEFAULT_SPARSE_SCALE, "none"):
        raise CLIError(f"--scale {args.scale} would shift the zeros of the sparse {args.data} "
                       f"and make it dense; use --scale {DEFAULT_SPARSE_SCALE} (the default for "
                       "sparse data: each column divided by its largest absolute value) or "
                       "--scale none", EXIT_USAGE)
    for flag, given in (("--workers", args.workers), ("--scheduler", args.scheduler)):
        if sparse and given is not None:
            raise CLIError(f"{flag} trains on dense Dask arrays, and {args.data} is sparse; "
                           "train it in one process (leave out --workers and --scheduler)",
                           EXIT_USAGE)


def _describe_targets(args, targets, y_ndim):
    what = f"target {args.target!r}" if args.target else "targets"
    if targets.task == "classification":
        return what + f": classification, {len(targets.classes)} classes"
    return what + ": regression" + (f", {targets.n_outputs} outputs" if y_ndim == 2 else "")


def run(args):
    """``mlpcore train``: train on a file and save the model."""
    resolve_learning_rate(args)
    stopping_keywords(args)  # usage errors before any data is read
    _check_plot(args.plot)
    fmt = store_format(args.data)
    _resolve_scale(args, fmt is None and is_sparse_data(args.data, args.format))
    if fmt is not None:
        check_options(args.data, fmt, target=args.target, labels=args.labels,
                      index_column=args.index_column)
        if uses_cluster(args):
            return _run_on_cluster(args, fmt)
        X, y, info = load_store(args.data, fmt, target=args.target, labels=args.labels,
                                task=args.task)
    else:
        X, y, info = load_data(args.data, target=args.target, labels=args.labels,
                               require_target=True, task=args.task,
                               index_column=args.index_column, fmt=args.format,
                               zero_based=args.zero_based)
    sparse = scipy.sparse.issparse(X)
    targets = _targets_of(y, args.data, args.output_activation, args.loss,
                          None if args.task == "auto" else args.task)
    task = targets.task
    shown = FORMATS.get(info["format"], info["format"].upper())
    stored = f", {X.nnz} nonzeros" if sparse else ""
    out(f"data: {args.data} ({shown}{stored}), {X.shape[0]} rows, {X.shape[1]} "
        f"features, {_describe_targets(args, targets, y.ndim)}")
    if X.shape[0] < 2:
        raise CLIError(f"{args.data}: need at least 2 rows to train, found {X.shape[0]}")

    output, _ = check_output_and_loss(args, task, targets.multilabel)
    train, val, note = _split(y, targets, args)
    if val is not None:
        stratified = task == "classification" and not targets.multilabel
        how = "; ".join((["stratified"] if stratified else [])
                        + ([note] if note else []))
        out(f"validation: {len(val)} rows held out{f' ({how})' if how else ''}, "
            f"training on {len(train)}")
        Xtr, ytr, Xva, yva = X[train], y[train], X[val], y[val]
    else:
        out(f"validation: none ({note}); the final score is on the training rows")
        Xtr, ytr, Xva, yva = X, y, None, None

    # Train on scaled copies; the scaling is folded into the model afterwards.
    x_scaling = None
    if args.scale != "none":
        x_scaling = Scaling.from_data(Xtr, args.scale)
        _say_scaled(args)
    y_scaling = _target_scaling(task, output, lambda: Scaling.from_data(ytr, "standard"))
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
                         Xtr_fit.shape[0], Xtr_fit.dtype, multilabel=targets.multilabel))
    model, seconds = fit_with_options(Xtr_fit, ytr_fit, args, progress=show_progress(args),
                                      validation=validation)
    if x_scaling is not None:
        fold_into_inputs(model, x_scaling)
    if y_scaling is not None:
        fold_into_outputs(model, y_scaling)
    # A CSV's header names the features: the saved model matches columns by name.
    model.feature_names = info.get("feature_names")
    # The model now takes raw features and predicts raw targets: score it on raw rows.
    if Xva is not None:
        scored = ("validation", model.score(Xva, yva), f" on {Xva.shape[0]} held-out rows")
    else:
        scored = ("training", model.score(Xtr, ytr), f" on the {Xtr.shape[0]} rows it was "
                  "trained on (not held-out data: an optimistic figure)")
    return _finish(args, model, seconds, task, scored)


def _say_scaled(args):
    out(f"features: {_SCALE_LABELS[args.scale]}; folded into the saved model, which takes "
        "raw features")


def _target_scaling(task, output, scaling):
    """The targets' standardisation for regression with an identity output (``scaling()``),
    else None: only an identity output can be unscaled exactly (and a sigmoid or exp output
    needs its targets in its range), so other outputs train on the raw targets."""
    if task != "regression" or output != "identity":
        return None
    y_scaling = scaling()
    out("targets: standardised for training (the loss below is in those units); "
        "folded into the saved model")
    return y_scaling


def _run_on_cluster(args, fmt):
    """``mlpcore train`` of a Parquet or Zarr DATA with --workers/--scheduler: the data read
    lazily on the workers and trained by :func:`mlpcore.dask.fit`.

    As the in-memory path, except that the held-out rows are drawn at random within the
    partitions (not stratified) and gathered here for scoring, and that the features are
    scaled by the model itself (``scale=``, from the training rows), then folded.
    """
    with dask_client(args) as client:
        import dask

        import mlpcore.dask
        from mlpcore.dask import _data as dask_data

        data = open_lazily(args.data, fmt, target=args.target, labels=args.labels,
                           task=args.task, workers=n_workers(client))
        n = data.rows()
        if n < 2:
            raise CLIError(f"{args.data}: need at least 2 rows to train, found {n}")
        fraction, note = args.validation_split, ""
        if fraction is None:
            note = "--validation-split none"
        elif fraction == "auto":
            fraction = AUTO_VALIDATION_FRACTION if n >= AUTO_VALIDATION_MIN_ROWS else None
            note = (f"the default for {AUTO_VALIDATION_MIN_ROWS} rows or more; "
                    "--validation-split none trains on every row" if fraction is not None else
                    f"fewer than {AUTO_VALIDATION_MIN_ROWS} rows, so none were held out; "
                    "--validation-split FRACTION holds some out")
        train, Xva, yva = data, None, None
        if fraction is not None:
            train, held = data.split(fraction, args.seed)
            Xva, yva = held.gather(args.task)
            if len(Xva) == 0:
                train, Xva, yva = data, None, None
                fraction, note = None, "the random hold-out drew no rows"
        task_given = None if args.task == "auto" else args.task
        summaries = client.gather(client.compute([
            dask.delayed(dask_data.target_summary)(b, args.output_activation, args.loss,
                                                   task_given)
            for b in train.target_blocks()]))
        try:
            y_sample, classes, _ = dask_data.combine_summaries(
                summaries, args.output_activation, args.loss, task_given)
        except (TypeError, ValueError) as exc:
            raise CLIError(f"{args.data}: unusable targets ({exc})") from None
        targets = _targets_of(y_sample if classes is None else classes, args.data,
                              args.output_activation, args.loss, task_given)
        task = targets.task
        n_train = sum(s["rows"] for s in summaries)
        out(f"data: {args.data} ({FORMATS[fmt]}, read on the cluster: {data.partitions} "
            f"partitions, {n_workers(client)} workers), {n} rows, {data.n_features} "
            f"features, {_describe_targets(args, targets, summaries[0]['ndim'])}")
        output, _ = check_output_and_loss(args, task, targets.multilabel)
        if Xva is not None:
            out(f"validation: {len(Xva)} rows held out (at random within the partitions, "
                f"not stratified; {note}), training on {n_train}")
        else:
            out(f"validation: none ({note}); the final score is on the training rows")
        extra = {}
        if args.scale != "none":
            extra["scale"] = args.scale
            _say_scaled(args)
        y_scaling = _target_scaling(task, output, lambda: Scaling(*_usable(
            *train.target_moments())))
        validation = None if Xva is None else (
            Xva, yva if y_scaling is None else y_scaling.apply(yva))
        if y_scaling is not None:
            shift, scale = y_scaling
            if fmt == "parquet":
                shift, scale = float(shift[0]), float(scale[0])
            train = train.with_targets(lambda Y: (Y - shift) / scale)
        x_dtype = np.float32 if np.dtype(_lazy_dtype(train)) == np.float32 else np.float64
        out(describe_network((data.n_features, *args.hidden, targets.n_outputs), task, args,
                             n_train, x_dtype, multilabel=targets.multilabel))
        model, seconds = fit_with_options(train.X, train.Y, args, progress=show_progress(args),
                                          validation=validation, client=client,
                                          n_train=n_train, **extra)
        if model.scaling is not None:  # fold the model's own scaling, as the file path does
            x_scaling, model.scaling, model.scale = model.scaling, None, None
            fold_into_inputs(model, x_scaling)
        if y_scaling is not None:
            fold_into_outputs(model, y_scaling)
        if Xva is not None:
            scored = ("validation", model.score(Xva, yva), f" on {len(Xva)} held-out rows")
        else:
            # The frame with its target column's name (two projections of one Parquet
            # source may be partitioned differently).
            scored = ("training", mlpcore.dask.score(model, train.X, train.Y, client=client),
                      f" on the {n_train} rows it was trained on (not held-out data: an "
                      "optimistic figure)")
    return _finish(args, model, seconds, task, scored)


def _usable(shift, scale):
    """A standardisation's (shift, scale) with constant columns given scale 1."""
    return shift, np.where((scale > 0) & np.isfinite(scale), scale, 1.0)


def _lazy_dtype(data):
    """The dtype the features train in (float32 only if they all are)."""
    if data.format == "parquet":
        return features_dtype(list(data.X[data.feature_names].dtypes))
    return data.X.dtype


def _finish(args, model, seconds, task, scored):
    """Report the training and the score ``scored = (what, value, on which rows)``, save the
    model and draw the plot."""
    loss = model.history["loss"]
    if loss:
        out(f"final training loss {format_number(loss[-1])} after {len(loss)} epochs")
    if len(loss) < args.epochs and (args.early_stopping or args.tol is not None):
        kept = " (the best epoch's weights are kept)" if args.early_stopping else ""
        out(f"stopped early after {len(loss)} of {args.epochs} epochs{kept}")
    what, score, rows = scored
    shown = f"accuracy {score:.2%}" if task == "classification" else f"R^2 {score:.4f}"
    out(f"{what} {shown}{rows}")
    out(f"training took {seconds:.2f} s")
    save_model(model, args.output)
    out(f"model saved to {args.output}")
    if args.plot is not None:
        try:
            model.plot_history(args.plot)
        except (OSError, ValueError) as exc:
            raise CLIError(f"cannot write the plot to {args.plot}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
        out(f"training curves drawn in {args.plot}")
    return 0
