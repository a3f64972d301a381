"""``mlpcore.fit``: check the inputs, build the model, and drive the compiled epoch loop.

The Python layer decides the batching plan (gradient descent, SGD or mini-batches; the
visiting order of each epoch) and keeps the history; each epoch runs as one call into the
engine (``_engine.train_epoch``), which does every forward pass, backpropagation and update
of that epoch without the GIL and without allocating.
"""

import math
import warnings

import numpy as np

from mlpcore import _engine
from mlpcore._base import (
    HIDDEN_ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS, check_output_loss, resolve_name,
)
from mlpcore._initializers import from_arrays, glorot_uniform
from mlpcore._model import MLP
from mlpcore._optimizers import make_optimizer
from mlpcore._targets import Targets
from mlpcore._threads import blas_threads
from mlpcore._validation import (
    check_hidden, check_int, check_positive_float, check_sample_weight, check_X, working_dtype,
)


DEFAULT_BATCH_SIZE = 32


class TrainingDivergedWarning(RuntimeWarning):
    """The loss became NaN or infinite; training stopped and the last finite parameters kept."""


class Trainer:
    """Runs epochs of one model: batching plan, shuffling, divergence guard, history.

    Parameters
    ----------
    model : MLP
    optimizer : mlpcore._optimizers.Optimizer
    batch_size : int or None
        None: all samples per step (gradient descent); 1: SGD; k: mini-batches of k.
    shuffle : bool
        Visit the samples in a new random order every epoch.
    rng : numpy.random.Generator
    n_threads : int or None
        BLAS threads; None chooses by batch size (see :func:`mlpcore._threads.blas_threads`).
    """

    def __init__(self, model, optimizer, batch_size, shuffle, rng, n_threads=None):
        self.model = model
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rng = rng
        self.n_threads = n_threads
        self._workspace = None

    def _workspace_for(self, rows):
        ws = self._workspace
        if ws is None or ws.rows < rows or ws.dtype != self.model.dtype:
            ws = self._workspace = _engine.Workspace(self.model._network, rows, self.model.dtype)
        return ws

    def run(self, X, Y, sample_weight, epochs):
        """Train for ``epochs`` epochs on the checked arrays X (N x D) and Y (N x K).

        Returns the number of epochs completed.
        """
        model, opt = self.model, self.optimizer
        n = X.shape[0]
        batch = n if self.batch_size is None else min(self.batch_size, n)
        workspace = self._workspace_for(min(batch, _engine.CHUNK_ROWS))
        opt.init_state(model.n_params, model.dtype)
        history = model.history
        with blas_threads(self.n_threads, batch):
            for epoch in range(epochs):
                # A full batch sums the same gradients in any order: no need to shuffle it.
                order = self.rng.permutation(n) if self.shuffle and batch < n else None
                saved = (model._theta.copy(), [s.copy() for s in opt.state], opt.t)
                loss_sum, weight_sum, updates, status = _engine.train_epoch(
                    model._network, workspace, model._theta, X, Y, sample_weight, order,
                    batch, alpha=model.alpha, **opt.engine_args(opt.learning_rate))
                opt.record_updates(updates)
                loss = loss_sum / weight_sum if weight_sum > 0 else float("nan")
                if model.alpha:
                    # The L2 term alpha/2 ||W||^2 / (batch weight), taken at the epoch's start:
                    # exact for gradient descent, the average over batches otherwise.
                    loss += 0.5 * model.alpha * _engine.penalty(model._network, saved[0]) / (
                        weight_sum / max(updates, 1))
                if status != _engine.EPOCH_DONE or not math.isfinite(loss) or not np.isfinite(
                        model._theta).all():
                    model._theta[:] = saved[0]
                    for s, old in zip(opt.state, saved[1]):
                        s[:] = old
                    opt.t = saved[2]
                    warnings.warn(
                        f"training diverged in epoch {len(history['loss']) + 1}: the loss became "
                        f"NaN or infinite (learning rate {opt.learning_rate:g} is probably too "
                        "large; try a smaller one). Training stopped; the model keeps the "
                        "parameters from before that epoch.",
                        TrainingDivergedWarning, stacklevel=3)
                    return epoch
                history["loss"].append(loss)
        return epochs


def _resolve_output_loss(targets_task, output, loss):
    if output is None:
        output = "softmax" if targets_task == "classification" else "identity"
    if loss is None:
        loss = "cross_entropy" if targets_task == "classification" and output != "identity" else "mse"
    return output, loss


def fit(X, Y, hidden=(100,), *, activation="sigmoid", output=None, loss=None, batch_size="auto",
        epochs=100, learning_rate=0.1, shuffle=True, seed=None, dtype=None, init=None,
        optimizer="sgd", alpha=0.0, sample_weight=None, n_threads=None):
    """Train a multilayer perceptron on (X, Y) and return the model.

    The network is the tutorial's, generalised: ``Z_l = A_{l-1} W_l + b_l``,
    ``A_l = g(Z_l)``, trained by backpropagation and ``W <- W - learning_rate * dJ/dW``.

    Parameters
    ----------
    X : array-like of shape (N, D)
        Inputs. Copied only if not already a C-contiguous array of the working dtype.
    Y : array-like of shape (N,) or (N, K)
        Targets. 1-D integers, booleans or strings: classification (classes are the sorted
        unique labels; default output 'softmax', loss 'cross_entropy'). 2-D one-hot rows:
        classification over the K columns. Anything else: regression (default output
        'identity', loss 'mse').
    hidden : int or tuple of int, default (100,)
        Widths of the hidden layers, e.g. ``(128, 64)``; ``()`` for none.
    activation : {'sigmoid', 'tanh', 'relu', 'identity'}, default 'sigmoid'
        Activation g of the hidden layers (the tutorial's sigmoid by default).
    output : {'softmax', 'sigmoid', 'identity'}, optional
        Output activation; given explicitly it always wins. With two classes and 'sigmoid'
        the network has one output unit, P(classes[1]).
    loss : {'cross_entropy', 'mse'}, optional
        ``mse`` is J = 1/(2N) sum (a_L - Y)^2; the tutorial's exact setup is
        ``fit(X, Y, output="sigmoid", loss="mse")``.
    batch_size : int, None or 'auto', default 'auto'
        ``None``: gradient descent over all samples per step. ``1``: stochastic gradient
        descent, one sample per update (online learning). ``k``: mini-batch gradient descent,
        the last short batch included; must be in [1, N]. ``'auto'``: min(32, N).
    epochs : int, default 100
        Passes over the data.
    learning_rate : float, default 0.1
        Step size (> 0) of the update rule.
    shuffle : bool, default True
        Reshuffle the samples every epoch (from ``seed``); False visits them in order.
    seed : int or None
        Seed of the initial weights and of the shuffling. The same seed, data and options
        give bit-identical weights on the same machine.
    dtype : {None, numpy.float32, numpy.float64}
        None keeps float32 X in float32 and trains anything else in float64.
    init : (weights, biases), optional
        Starting parameters (lists of arrays shaped like the model's); copied.
        Default: Glorot-uniform draws from ``seed``.
    optimizer : str or Optimizer, default 'sgd'
        Update rule: 'sgd', 'momentum', 'nesterov' or 'adam', or an optimizer object.
    alpha : float, default 0
        L2 penalty alpha/2 sum ||W||^2 / N added to J (biases excluded).
    sample_weight : array-like of shape (N,), optional
        Per-sample weights w_i in the loss and gradients.
    n_threads : int, optional
        BLAS threads while training; by default 1 for batches under 64 rows (where a second
        thread only adds synchronisation) and BLAS's own default otherwise.

    Returns
    -------
    MLP
        The trained model; ``model.history["loss"]`` holds the loss of every epoch (the
        weighted mean of the batch losses, each taken before its update).

    Examples
    --------
    >>> import numpy as np, mlpcore
    >>> X = np.array([[0., 0.], [0., 1.], [1., 0.], [1., 1.]]); y = np.array([0, 1, 1, 0])
    >>> model = mlpcore.fit(X, y, hidden=(8,), batch_size=None, epochs=3000,
    ...                     learning_rate=2.0, seed=0)
    >>> model.predict(X).tolist()
    [0, 1, 1, 0]
    """
    hidden = check_hidden(hidden)
    activation = resolve_name(activation, HIDDEN_ACTIVATIONS, "activation")
    if output is not None:
        output = resolve_name(output, OUTPUT_ACTIVATIONS, "output")
    if loss is not None:
        loss = resolve_name(loss, LOSSES, "loss")
    epochs = check_int(epochs, "epochs", minimum=1)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
    opt = make_optimizer(optimizer, None if not isinstance(optimizer, str) else
                         check_positive_float(learning_rate, "learning_rate"))
    alpha = check_positive_float(alpha, "alpha", allow_zero=True)
    if n_threads is not None:
        n_threads = check_int(n_threads, "n_threads", minimum=1)

    work_dtype = working_dtype(X, dtype)
    X = check_X(X, work_dtype)
    n = X.shape[0]
    if isinstance(batch_size, str) and batch_size == "auto":
        batch_size = min(DEFAULT_BATCH_SIZE, n)
    elif batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", minimum=1, maximum=n)
    targets = Targets.from_y(Y, output)
    output, loss = _resolve_output_loss(targets.task, output, loss)
    check_output_loss(output, loss)
    Ym = targets.encode(Y, work_dtype, n)
    sw = check_sample_weight(sample_weight, n, work_dtype)

    rng = np.random.default_rng(seed)
    model = MLP((X.shape[1], *hidden, targets.n_outputs), activation=activation, output=output,
                loss=loss, dtype=work_dtype, targets=targets, alpha=alpha)
    if init is None:
        glorot_uniform(model._network, model._theta, activation, rng)
    else:
        from_arrays(model._network, model._theta, init)
    model.optimizer = opt
    model._trainer = Trainer(model, opt, batch_size, bool(shuffle), rng, n_threads)
    model._trainer.run(X, Ym, sw, epochs)
    return model
