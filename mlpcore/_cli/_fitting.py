"""Training from the command-line options: the :func:`mlpcore.fit` call of digits and train.

The fit keywords ``callback``, ``validation_data``, ``early_stopping``, ``n_iter_no_change``,
``tol``, ``schedule`` and ``class_weight`` are used when :func:`mlpcore.fit` has them
(checked with ``inspect.signature`` at run time); without ``callback`` the per-epoch losses
are printed from ``model.history`` after training instead of live.
"""

import inspect
import time
import warnings

import numpy as np

import mlpcore
from mlpcore._cli._errors import EXIT_USAGE, CLIError, one_line
from mlpcore._cli._output import EpochPrinter, out


def fit_parameters():
    """Names of the keywords the installed :func:`mlpcore.fit` accepts."""
    try:
        return frozenset(inspect.signature(mlpcore.fit).parameters)
    except (TypeError, ValueError):
        return frozenset()


def resolve_learning_rate(opts):
    """Fill in ``opts.learning_rate``: as given, else fit's defaults (0.1; 0.001 for Adam).

    It stays None for L-BFGS, which takes no step size.

    Raises
    ------
    CLIError
        A usage error if --learning-rate is given with --optimizer lbfgs.
    """
    if opts.optimizer == "lbfgs":
        if opts.learning_rate is not None:
            raise CLIError("--learning-rate does not apply to --optimizer lbfgs", EXIT_USAGE)
        return
    if opts.learning_rate is None:
        opts.learning_rate = 0.001 if opts.optimizer == "adam" else 0.1


def optional_fit_keywords(opts, params=None):
    """The fit keywords of the flags that need a newer :func:`mlpcore.fit`.

    Parameters
    ----------
    opts : argparse.Namespace
    params : frozenset of str, optional
        The keywords fit accepts (default: :func:`fit_parameters`).

    Returns
    -------
    dict
        Only the flags that were given.

    Raises
    ------
    CLIError
        A usage error for a flag fit cannot take, or --patience without --early-stopping
        or --tol.
    """
    params = fit_parameters() if params is None else params
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


def fit_with_options(X, y, opts, *, progress, validation=None):
    """Call :func:`mlpcore.fit` with the options, using the keywords the installed one has.

    Parameters
    ----------
    X, y : ndarray
        The training data, as fit takes it.
    opts : argparse.Namespace
        The fit options (see :func:`mlpcore._cli._arguments.add_fit_options`), learning
        rate resolved.
    progress : bool
        Print a line per epoch: live through ``callback`` when fit has it, else from
        ``model.history`` after training.
    validation : tuple (X_val, y_val), optional
        Passed as ``validation_data`` when fit has it.

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
    params = fit_parameters()
    kwargs = dict(hidden=opts.hidden, activation=opts.activation, optimizer=opts.optimizer,
                  batch_size=opts.batch_size, epochs=opts.epochs,
                  learning_rate=opts.learning_rate, alpha=opts.alpha, seed=opts.seed,
                  dtype=opts.dtype, n_threads=opts.threads)
    kwargs.update(optional_fit_keywords(opts, params))
    if validation is not None and "validation_data" in params:
        kwargs["validation_data"] = validation
    printer = EpochPrinter(opts.epochs) if progress else None
    live = printer is not None and "callback" in params
    if live:
        kwargs["callback"] = printer
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
    if printer is not None and not live:
        out("(per-epoch losses from model.history, printed after training)")
        printer.score_name = "val acc" if model.classes is not None else "val R2"
        printer.replay(model.history)
    if diverged is not None:
        raise CLIError(f"{one_line(diverged).split(' Training stopped')[0]} No model was "
                       "saved." + ("" if getattr(opts, "scale", "none") != "none" else
                                   " Scaling the features (--scale standard) may help."))
    return model, seconds
