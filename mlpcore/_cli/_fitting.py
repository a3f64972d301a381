"""Training from the command-line options: the :func:`mlpcore.fit` call of digits and train.

The choices and defaults come from the library itself (the registries in
:mod:`mlpcore._base`, :mod:`mlpcore._optimizers` and :mod:`mlpcore._schedules`), so the
command line and :func:`mlpcore.fit` cannot drift apart.
"""

import contextlib
import re
import time
import warnings

import numpy as np

import mlpcore
from mlpcore._base import batch_rows, check_output_loss, choose_output_loss
from mlpcore._cli._errors import EXIT_USAGE, CLIError, one_line
from mlpcore._cli._output import EpochPrinter
from mlpcore._optimizers import OPTIMIZERS, Momentum, default_learning_rate

_MOMENTUM_RULES = ("momentum", "nesterov")

# fit's keywords and the command-line flags that set them, for messages in command-line terms.
FLAGS = {"batch_size": "--batch-size", "n_threads": "--threads", "learning_rate": "--learning-rate",
         "momentum": "--momentum", "epochs": "--epochs", "alpha": "--alpha", "tol": "--tol",
         "n_iter_no_change": "--patience", "validation_fraction": "--validation-split",
         "seed": "--seed", "output": "--output-activation", "loss": "--loss",
         "hidden layer width": "--hidden", "hidden": "--hidden", "activation": "--activation",
         "optimizer": "--optimizer", "schedule": "--schedule", "dtype": "--dtype"}
_KEYWORD = re.compile(r"\b(" + "|".join(sorted(map(re.escape, FLAGS), key=len, reverse=True))
                      + r")(=| must )('?)([^\s',;)]*)\3")


def in_flag_terms(message):
    """``message`` with fit's ``keyword=value`` spelled as the flags: ``--batch-size 1000``.

    Returns
    -------
    (str, bool)
        The message, and whether it named a keyword (then it is a usage error).
    """
    found = False

    def flag(m):
        nonlocal found
        found = True
        value = m.group(4)
        if m.group(1) == "batch_size" and value == "None":
            value = "full"
        sep = " " if m.group(2) == "=" else m.group(2)
        return f"{FLAGS[m.group(1)]}{sep}{value}" if sep == " " else \
            f"{FLAGS[m.group(1)]}{sep}{m.group(3)}{value}{m.group(3)}"

    return _KEYWORD.sub(flag, str(message)), found


def resolve_optimizer(opts):
    """Settle the update rule from --optimizer, --momentum and --nesterov.

    ``opts.optimizer`` becomes the rule that will run (``--optimizer sgd --momentum 0.9``
    is momentum, ``--nesterov`` makes sgd or momentum nesterov) and ``opts.momentum`` its
    coefficient (None for rules without one).

    Raises
    ------
    CLIError
        A usage error for --momentum or --nesterov with adam or lbfgs.
    """
    momentum = getattr(opts, "momentum", None)
    nesterov = getattr(opts, "nesterov", False)
    rule = opts.optimizer
    if nesterov:
        if rule not in ("sgd", *_MOMENTUM_RULES):
            raise CLIError(f"--nesterov applies to --optimizer sgd, momentum or nesterov, not "
                           f"{rule}", EXIT_USAGE)
        rule = "nesterov"
    if momentum is not None:
        if rule not in ("sgd", *_MOMENTUM_RULES):
            raise CLIError(f"--momentum applies to --optimizer sgd, momentum or nesterov, not "
                           f"{rule}", EXIT_USAGE)
        if rule == "sgd":
            rule = "momentum"
    opts.optimizer = rule
    opts.momentum = (Momentum().momentum if momentum is None else momentum) \
        if rule in _MOMENTUM_RULES else None


def check_output_and_loss(opts, task=None, multilabel=False):
    """The (output, loss) that fit will use, refusing pairs that do not go together.

    Parameters
    ----------
    opts : argparse.Namespace
        With ``output_activation`` and ``loss`` (None: fit's choice).
    task : {'classification', 'regression'}, optional
        Once known (after reading the data): the defaults are filled in and checked too.
    multilabel : bool
        Classification with K independent 0/1 labels (default output sigmoid).

    Returns
    -------
    (output, loss) : tuple of str or None

    Raises
    ------
    CLIError
        A usage error naming --output-activation and --loss.
    """
    output, loss = getattr(opts, "output_activation", None), getattr(opts, "loss", None)
    try:
        if task is None:
            if output and loss:
                check_output_loss(output, loss)
            return output, loss
        return choose_output_loss(task, output, loss, multilabel)
    except ValueError as exc:
        shown = " ".join(part for part in (
            output and f"--output-activation {output}", loss and f"--loss {loss}") if part)
        chosen = "" if task is None else f" (for {task})"
        raise CLIError(f"{shown} does not work{chosen}: {in_flag_terms(exc)[0]}",
                       EXIT_USAGE) from None


def resolve_learning_rate(opts):
    """Settle the update rule (:func:`resolve_optimizer`), then ``opts.learning_rate``:
    as given, else the optimizer's default.

    It stays None for L-BFGS, which takes no step size. Also checks that --output-activation
    and --loss go together, so every usage error comes before any data is read.

    Raises
    ------
    CLIError
        A usage error if --learning-rate is given with --optimizer lbfgs, or for the cases
        of :func:`resolve_optimizer` and :func:`check_output_and_loss`.
    """
    resolve_optimizer(opts)
    check_output_and_loss(opts)
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


def check_batch_size(opts, n_train):
    """Refuse --batch-size N above the training rows, in command-line terms.

    Raises
    ------
    CLIError
        A usage error naming --batch-size.
    """
    batch = opts.batch_size
    if isinstance(batch, int) and not isinstance(batch, bool) and batch > n_train:
        raise CLIError(f"--batch-size {batch} is larger than the {n_train} rows training uses "
                       "(after any validation hold-out); use a smaller one, or --batch-size "
                       "full for gradient descent on all of them", EXIT_USAGE)


def describe_network(sizes, task, opts, n_train, dtype, *, multilabel=False):
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
    multilabel : bool
        Multi-label classification (K independent 0/1 labels).

    Returns
    -------
    str
    """
    output, loss = check_output_and_loss(opts, task, multilabel)
    check_batch_size(opts, n_train)
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
        mu = getattr(opts, "momentum", None)
        rule = (f"{opts.optimizer}{'' if mu is None else f' (momentum {mu:g})'}, learning rate "
                f"{opts.learning_rate:g}, {batch}, {opts.epochs} epochs")
    return (f"network {'-'.join(map(str, sizes))}: {hidden}{output} output, {loss} loss; "
            f"{rule}, L2 alpha {opts.alpha:g}, {seed}, {dtype}")


def _dask_flag(opts):
    return "--workers" if getattr(opts, "workers", None) is not None else "--scheduler"


def uses_cluster(opts):
    """Whether --workers or --scheduler was given."""
    return getattr(opts, "workers", None) is not None or \
        getattr(opts, "scheduler", None) is not None


@contextlib.contextmanager
def dask_client(opts):
    """The Dask client of --workers N (a local cluster of N single-threaded worker
    processes, started here and closed after) or --scheduler ADDRESS.

    Yields
    ------
    distributed.Client

    Raises
    ------
    CLIError
        A usage error when Dask is not installed ('pip install "mlpcore[dask]"'), a data
        error when the scheduler cannot be reached.
    """
    workers, scheduler = getattr(opts, "workers", None), getattr(opts, "scheduler", None)
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise CLIError(f"{_dask_flag(opts)} needs Dask: pip install \"mlpcore[dask]\"",
                       EXIT_USAGE) from None
    cluster = None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise CLIError(f"--scheduler {scheduler}: cannot connect ({one_line(exc)})") \
                from None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def n_workers(client):
    """The workers the client's scheduler has now (at least 1)."""
    return max(len(client.scheduler_info(n_workers=-1)["workers"]), 1)


def _fit_call(opts, client=None):
    """``mlpcore.fit``, or with --workers/--scheduler the same call on a Dask cluster
    (``mlpcore.dask.fit``; in ``client`` when given, else one opened for the call). NumPy X
    is cut into two row blocks per worker; dask collections are trained as they are."""
    if client is None and not uses_cluster(opts):
        return mlpcore.fit
    try:
        import dask.array as da

        from mlpcore.dask import fit as dask_fit
    except ImportError:
        raise CLIError(f"{_dask_flag(opts)} needs Dask: pip install \"mlpcore[dask]\"",
                       EXIT_USAGE) from None

    def on(client, X, y, kwargs):
        if isinstance(X, np.ndarray):
            rows = -(-len(X) // (2 * n_workers(client)))
            X = da.from_array(X, chunks=(rows, X.shape[1]))
        return dask_fit(X, y, client=client, **kwargs)

    def fit_on_cluster(X, y, **kwargs):
        if client is not None:
            return on(client, X, y, kwargs)
        with dask_client(opts) as own:
            return on(own, X, y, kwargs)

    return fit_on_cluster


def fit_with_options(X, y, opts, *, progress, validation=None, client=None, n_train=None,
                     **extra):
    """Call :func:`mlpcore.fit` with the options (:func:`mlpcore.dask.fit` with
    --workers/--scheduler or a ``client``).

    Parameters
    ----------
    X, y : ndarray, or dask collections with a ``client``
        The training data, as fit takes it.
    opts : argparse.Namespace
        The fit options (see :func:`mlpcore._cli._arguments.add_fit_options`), learning
        rate resolved.
    progress : bool
        Print a line per epoch, live (through fit's ``callback``).
    validation : tuple (X_val, y_val), optional
        Passed as ``validation_data``.
    client : distributed.Client, optional
        Train on this Dask cluster.
    n_train : int, optional
        The training rows (default ``len(X)``), for the --batch-size check.
    **extra
        More keywords for fit (e.g. ``scale``).

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
    optimizer, learning_rate = opts.optimizer, opts.learning_rate
    if getattr(opts, "momentum", None) is not None:
        optimizer = OPTIMIZERS[opts.optimizer](learning_rate=learning_rate,
                                               momentum=opts.momentum)
        learning_rate = None  # the optimizer object carries it
    check_batch_size(opts, X.shape[0] if n_train is None else n_train)
    kwargs = dict(**extra, hidden=opts.hidden, activation=opts.activation, optimizer=optimizer,
                  output=getattr(opts, "output_activation", None),
                  loss=getattr(opts, "loss", None), batch_size=opts.batch_size,
                  epochs=opts.epochs, learning_rate=learning_rate, alpha=opts.alpha,
                  seed=opts.seed, dtype=opts.dtype, n_threads=opts.threads,
                  **stopping_keywords(opts))
    if getattr(opts, "task", "auto") != "auto":
        kwargs["task"] = opts.task
    if validation is not None:
        kwargs["validation_data"] = validation
    if progress:
        kwargs["callback"] = EpochPrinter(opts.epochs)
    start = time.perf_counter()
    # Divergence becomes an error (no model is saved); the warnings are caught so that it
    # is not also printed as a warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = _fit_call(opts, client)(X, y, **kwargs)
        except (ValueError, TypeError) as exc:
            # A refused keyword is a usage error, said with the flag that set it.
            message, named = in_flag_terms(exc)
            if named and str(exc).split(" ", 1)[0].split("=")[0] in FLAGS:
                raise CLIError(message, EXIT_USAGE) from None
            raise
    seconds = time.perf_counter() - start
    diverged = None
    for w in caught:
        if issubclass(w.category, mlpcore.TrainingDivergedWarning):
            diverged = w.message
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if diverged is not None:
        # Only commands that have --scale (train) suggest it; digits scales its pixels itself.
        # Sparse data takes the shift-free scaling (train's data_scale: the one it defaults to).
        hint = (f" Scaling the features (--scale {getattr(opts, 'data_scale', 'standard')}) "
                "may help." if getattr(opts, "scale", None) == "none" else "")
        raise CLIError(f"{one_line(diverged).split(' Training stopped')[0]} No model was "
                       f"saved.{hint}")
    return model, seconds
