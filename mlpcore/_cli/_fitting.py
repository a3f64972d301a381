"""Training from the command-line options: the :func:`mlpcore.fit` call of digits and train.

The choices and defaults come from the library itself (the registries in
:mod:`mlpcore._base`, :mod:`mlpcore._optimizers` and :mod:`mlpcore._schedules`), so the
command line and :func:`mlpcore.fit` cannot drift apart.
"""

import time
import warnings

import numpy as np

import mlpcore
from mlpcore._base import batch_rows, choose_output_loss
from mlpcore._cli._errors import EXIT_USAGE, CLIError, one_line
from mlpcore._cli._output import EpochPrinter
from mlpcore._optimizers import default_learning_rate


def resolve_learning_rate(opts):
    """Fill in ``opts.learning_rate``: as given, else the optimizer's default.

    It stays None for L-BFGS, which takes no step size.

    Raises
    ------
    CLIError
        A usage error if --learning-rate is given with --optimizer lbfgs.
    """
    default = default_learning_rate(opts.optimizer)
    if default is None:
        if opts.learning_rate is not None:
            raise CLIError(f"--learning-rate does not apply to --optimizer {opts.optimizer}",
                           EXIT_USAGE)
        return
    if opts.learning_rate is None:
        opts.learning_rate = default


def stopping_keywords(opts):
    """The fit keywords of the stopping, schedule and weighting flags that were given.

    Raises
    ------
    CLIError
        A usage error for --patience without --early-stopping or --tol.
    """
    early = getattr(opts, "early_stopping", False)
    tol = getattr(opts, "tol", None)
    patience = getattr(opts, "patience", None)
    if patience is not None and not (early or tol is not None):
        raise CLIError("--patience only applies with --early-stopping or --tol", EXIT_USAGE)
    given = {"early_stopping": True if early else None, "tol": tol,
             "n_iter_no_change": patience, "schedule": getattr(opts, "schedule", None),
             "class_weight": getattr(opts, "class_weight", None)}
    return {k: v for k, v in given.items() if v is not None}


def describe_network(sizes, task, opts, n_train, dtype):
    """One line: layer sizes, units, loss, optimizer and the training schedule.

    Parameters
    ----------
    sizes : tuple of int
        Inputs, hidden widths, outputs.
    task : {'classification', 'regression'}
    opts : argparse.Namespace
        The fit options, learning rate resolved.
    n_train : int
        Training rows (what batch size 'auto' depends on).
    dtype : numpy dtype
        The training data's dtype (what --dtype's default depends on).

    Returns
    -------
    str
    """
    output, loss = choose_output_loss(task)
    batch = (None if opts.batch_size is None
             else batch_rows(opts.batch_size, n_train, chunk=True))
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


def fit_with_options(X, y, opts, *, progress, validation=None):
    """Call :func:`mlpcore.fit` with the options.

    Parameters
    ----------
    X, y : ndarray
        The training data, as fit takes it.
    opts : argparse.Namespace
        The fit options (see :func:`mlpcore._cli._arguments.add_fit_options`), learning
        rate resolved.
    progress : bool
        Print a line per epoch, live (through fit's ``callback``).
    validation : tuple (X_val, y_val), optional
        Passed as ``validation_data``.

    Returns
    -------
    model : mlpcore.MLP
    seconds : float
        Wall-clock time of the fit call.

    Raises
    ------
    CLIError
        If training diverged; other warnings are shown as they came.
    """
    kwargs = dict(hidden=opts.hidden, activation=opts.activation, optimizer=opts.optimizer,
                  batch_size=opts.batch_size, epochs=opts.epochs,
                  learning_rate=opts.learning_rate, alpha=opts.alpha, seed=opts.seed,
                  dtype=opts.dtype, n_threads=opts.threads, **stopping_keywords(opts))
    if validation is not None:
        kwargs["validation_data"] = validation
    if progress:
        kwargs["callback"] = EpochPrinter(opts.epochs)
    start = time.perf_counter()
    # Divergence becomes an error (no model is saved); the warnings are caught so that it
    # is not also printed as a warning.
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
    if diverged is not None:
        raise CLIError(f"{one_line(diverged).split(' Training stopped')[0]} No model was "
                       "saved." + ("" if getattr(opts, "scale", "none") != "none" else
                                   " Scaling the features (--scale standard) may help."))
    return model, seconds
