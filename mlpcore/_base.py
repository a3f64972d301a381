"""The registries of the network's building blocks, and the rules for choosing among them.

One place for each: the hidden activations, outputs and losses (``HIDDEN_ACTIVATIONS``,
``OUTPUT_ACTIVATIONS``, ``LOSSES``), which output and loss a task gets by default
(:func:`choose_output_loss`), and what ``batch_size="auto"`` means (:func:`batch_rows`).
The optimizers' registry is ``mlpcore._optimizers.OPTIMIZERS`` and the schedules'
``mlpcore._schedules.SCHEDULES``.

The numeric codes come from the compiled engine (``mlpcore._engine``), so the Python layer
and the kernels can never disagree about what a name means. This module only resolves and
checks names; the maths lives in ``src/_activations.pxd`` and ``src/_losses.pxd``:

=============  ===============================  =====================================
name           g(z)                             g'(z) in terms of a = g(z)
=============  ===============================  =====================================
``identity``   z                                1
``sigmoid``    1 / (1 + exp(-z))                a (1 - a)
``tanh``       tanh(z)                          1 - a^2
``relu``       max(z, 0)                        1 if a > 0 else 0
``softmax``    exp(z_k) / sum_j exp(z_j)        (output layer only)
``exp``        exp(z)                           (output layer only, with ``poisson``)
=============  ===============================  =====================================

Losses, per sample i, averaged over the samples (weighted by w_i when given):
``mse`` l_i = 1/2 sum_k (a_ik - y_ik)^2 (the tutorial's J = 1/(2N) sum (a - Y)^2);
``cross_entropy`` l_i = -sum_k y_ik log a_ik with softmax, and the binary form
-sum_k [y_ik log a_ik + (1 - y_ik) log(1 - a_ik)] with sigmoid outputs;
``poisson`` l_i = sum_k [y_ik log(y_ik / a_ik) - y_ik + a_ik] (half the Poisson deviance) with
the ``exp`` output, for counts.
"""

import numpy as np

import mlpcore._engine as _engine

HIDDEN_ACTIVATIONS = dict(_engine.HIDDEN_ACTIVATIONS)
OUTPUT_ACTIVATIONS = dict(_engine.OUTPUT_ACTIVATIONS)
LOSSES = dict(_engine.LOSSES)

# scikit-learn's names, accepted so its users can keep theirs.
_ALIASES = {
    "logistic": "sigmoid",
    "linear": "identity",
    "squared_error": "mse",
    "log_loss": "cross_entropy",
    "categorical_crossentropy": "cross_entropy",
    "binary_crossentropy": "cross_entropy",
}


def resolve_name(value, valid, what):
    """Return the canonical name for ``value`` among ``valid``.

    Parameters
    ----------
    value : str
        A name or one of its aliases (``"logistic"`` for ``"sigmoid"``, ...).
    valid : iterable of str
        The canonical names allowed here.
    what : str
        The argument's name, used in the error message.

    Raises
    ------
    TypeError
        If ``value`` is not a string.
    ValueError
        If ``value`` is not a valid name; the message lists the valid ones.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    name = _ALIASES.get(value.lower(), value.lower())
    if name not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid values are {sorted(valid)}")
    return name


# batch_size="auto" means min(DEFAULT_BATCH_SIZE, N).
DEFAULT_BATCH_SIZE = 32


def batch_rows(batch_size, n_samples, *, chunk=False):
    """Rows per update for the ``batch_size`` setting on ``n_samples`` samples.

    Parameters
    ----------
    batch_size : int, None or 'auto'
        None: all samples (gradient descent); 'auto': min(DEFAULT_BATCH_SIZE, N).
    n_samples : int
    chunk : bool
        partial_fit: a chunk smaller than a batch is one batch (no error).

    Raises
    ------
    ValueError
        An integer batch larger than the samples (unless ``chunk``).
    """
    if batch_size is None:
        return n_samples
    if isinstance(batch_size, str):
        return min(DEFAULT_BATCH_SIZE, n_samples)
    if batch_size > n_samples and not chunk:
        raise ValueError(f"batch_size={batch_size} is larger than the {n_samples} training "
                         "samples; use batch_size=None for gradient descent on all of them")
    return min(batch_size, n_samples)


def choose_output_loss(task, output=None, loss=None, multilabel=False):
    """The output activation and loss of a model: as requested, else the task's defaults.

    Classification gets softmax and cross-entropy (multi-label: sigmoid and cross-entropy),
    regression the identity and mse; the exp output goes with the Poisson loss, and a
    sigmoid classifier with cross-entropy.

    Parameters
    ----------
    task : {'classification', 'regression'}
    output, loss : str or None
        Canonical names the user asked for (None: choose).
    multilabel : bool
        Classification with K independent 0/1 labels.

    Returns
    -------
    (output, loss) : tuple of str
    """
    if output is None:
        output = ("identity" if task == "regression" else
                  "sigmoid" if multilabel else "softmax")
    if loss is None:
        if output == "exp":
            loss = "poisson"
        elif task == "classification" and output in ("softmax", "sigmoid"):
            loss = "cross_entropy"
        else:
            loss = "mse"
    check_output_loss(output, loss)
    return output, loss


def check_targets(Y, output, loss, name="Y"):
    """Refuse targets the output or loss cannot take (Y is the encoded N x K matrix).

    Cross-entropy takes logs of probabilities: its targets must lie in [0, 1] (with targets
    above 1 the sigmoid loss has no minimum). A softmax output is a distribution over K >= 2
    classes, so its targets' rows must sum to 1. Poisson targets are counts: never negative.

    Raises
    ------
    ValueError
        Naming the rule and the first offending row.
    """
    if output == "softmax" and Y.shape[1] < 2:
        raise ValueError("output='softmax' needs at least two outputs (a distribution over "
                         "classes); with one output use 'sigmoid' or 'identity'")
    if loss == "cross_entropy":
        bad = np.flatnonzero(((Y < 0) | (Y > 1)).any(axis=1))
        if bad.size:
            raise ValueError(f"loss='cross_entropy' needs targets in [0, 1]; row {bad[0]} of "
                             f"{name} holds {Y[bad[0]].tolist()[:8]}")
    if output == "softmax":
        tol = 1e-6 if Y.dtype == np.float64 else 1e-4
        bad = np.flatnonzero(np.abs(Y.sum(axis=1, dtype=np.float64) - 1) > tol)
        if bad.size:
            raise ValueError(f"output='softmax' needs target rows that sum to 1 (one-hot rows "
                             f"or class probabilities); row {bad[0]} of {name} sums to "
                             f"{float(Y[bad[0]].sum()):g}")
    if loss == "poisson":
        bad = np.flatnonzero((Y < 0).any(axis=1))
        if bad.size:
            raise ValueError(f"{name} has negative values (row {bad[0]}), which the poisson loss "
                             "does not allow")


def check_output_loss(output, loss):
    """Refuse meaningless pairings: cross-entropy needs probabilities to take logs of, and
    the Poisson loss is defined for the exp output (a positive mean) only."""
    if loss == "cross_entropy" and output not in ("softmax", "sigmoid"):
        raise ValueError(
            "loss='cross_entropy' needs output='softmax' or output='sigmoid'; "
            "use loss='mse' with output='identity'"
        )
    if (loss == "poisson") != (output == "exp"):
        raise ValueError("loss='poisson' goes with output='exp', and output='exp' with "
                         "loss='poisson'")
