"""``mlpcore.fit``: one call from data to a trained model."""

import textwrap

from mlpcore._model import MLP
from mlpcore._threads import DEFAULT_THREADS_HELP


def fit(X, Y, hidden=(100,), *, activation="sigmoid", output=None, loss=None,
        batch_size="auto", epochs=100, learning_rate=None, shuffle=True, seed=None, dtype=None,
        init=None, optimizer="sgd", alpha=0.0, sample_weight=None, schedule="constant",
        power_t=0.5, tol=None, n_iter_no_change=10, early_stopping=False,
        validation_fraction=None, validation_data=None, class_weight=None, verbose=False,
        callback=None, n_threads=None, task=None, scale=None):
    """Train a multilayer perceptron on (X, Y) and return the model.

    The network is the tutorial's, generalised: ``Z_l = A_{l-1} W_l + b_l``,
    ``A_l = g(Z_l)``, trained by backpropagation and ``W <- W - learning_rate * dJ/dW``
    (or the chosen optimizer's update).

    Parameters
    ----------
    X : array-like or scipy.sparse matrix of shape (N, D)
        Inputs: finite real numbers. A C-contiguous array of the working dtype (see ``dtype``)
        is used in place and never written to, read-only and memory-mapped arrays included;
        anything else (lists, Fortran-ordered or strided arrays, integer, boolean or float16
        values) is converted once into a C-contiguous copy. A validation split copies the
        rows of each part. Sparse X (``scipy.sparse``, matrix or array) is never densified:
        a CSR matrix of the working dtype is used in place, any other format or dtype is
        converted once to CSR (a copy). It trains at the cost of its nonzeros: a batch reads
        and writes only the rows of W1 its features select, for plain SGD (L2 included, kept
        as a scale factor on W1) and for momentum and Nesterov without L2 (rows not selected
        are caught up in closed form); Adam, and momentum or Nesterov with L2, update every
        weight at every step, a dense update per batch.
    Y : array-like of shape (N,) or (N, K)
        Targets. 1-D integers, booleans or strings: classification (classes are the sorted
        unique labels; default output 'softmax', loss 'cross_entropy'). 2-D one-hot rows:
        classification over the K columns (the model then also takes 1-D labels, the column
        indices). A 2-D 0/1 matrix with rows holding no 1 or several (or any 0/1 matrix with
        ``output='sigmoid'``): multi-label classification (default output 'sigmoid', loss
        'cross_entropy'; ``predict`` gives 0/1 rows, ``predict_proba`` the per-label
        probabilities, ``score`` the subset accuracy). Anything else: regression (default
        output 'identity', loss 'mse'). An explicit ``output='exp'``, ``loss='poisson'`` or
        ``output='identity'`` means regression whatever the values; ``task`` overrides all
        of this. Class labels are encoded once into an (N, K) one-hot copy. Refused: targets
        outside [0, 1] with cross-entropy, softmax targets whose rows do not sum to 1, and
        negative targets with the Poisson loss.
    hidden : int or tuple of int, default (100,)
        Widths of the hidden layers, e.g. ``(128, 64)``; ``()`` for none.
    activation : {'sigmoid', 'tanh', 'relu', 'identity'}, default 'sigmoid'
        Activation g of the hidden layers (the tutorial's sigmoid by default). Names of
        activations, outputs, losses and optimizers are case-insensitive, and scikit-learn's
        and Keras's names are accepted for the same things: 'logistic' (sigmoid), 'linear'
        (identity), 'squared_error' (mse), 'log_loss', 'categorical_crossentropy' and
        'binary_crossentropy' (cross_entropy); ``model.activation`` and the others hold the
        canonical name.
    output : {'softmax', 'sigmoid', 'identity', 'exp'}, optional
        Output activation; given explicitly it always wins. With two classes and 'sigmoid'
        the network has one output unit, P(classes[1]). 'exp' (with loss 'poisson') is for
        counts.
    loss : {'cross_entropy', 'mse', 'poisson'}, optional
        ``mse`` is J = 1/(2N) sum (a_L - Y)^2; the tutorial's exact setup is
        ``fit(X, Y, output="sigmoid", loss="mse")``.
    batch_size : int, None or 'auto', default 'auto'
        ``None``: gradient descent over all samples per step. ``1``: stochastic gradient
        descent, one sample per update (online learning). ``k``: mini-batch gradient descent,
        the last short batch included; must be in [1, N]. ``'auto'``: min(32, N).
    epochs : int, default 100
        Passes over the data (at most, when a stopping rule is set; L-BFGS: iterations).
    learning_rate : float, optional
        Base step size (> 0); default 0.1, or 0.001 for Adam. Not for 'lbfgs'.
    shuffle : bool, default True
        Reshuffle the samples every epoch (from ``seed``); False visits them in order.
    seed : int or None
        Seed of the initial weights, the validation split and the shuffling. The same
        seed, data and options give bit-identical weights on the same machine.
    dtype : {None, numpy.float32, numpy.float64}
        None keeps float32 X in float32 and trains anything else in float64.
    init : (weights, biases), optional
        Starting parameters (lists of arrays shaped like the model's); copied.
        Default: Glorot-uniform draws from ``seed``.
    optimizer : str or Optimizer, default 'sgd'
        'sgd', 'momentum', 'nesterov', 'adam' or 'lbfgs', or an optimizer object carrying
        its settings (``mlpcore.Momentum(learning_rate=0.05, momentum=0.8)``). The formulas
        are scikit-learn's (see :mod:`mlpcore._optimizers`).
    alpha : float, default 0
        L2 penalty alpha/2 sum_l ||W_l||^2 / N added to J (biases excluded).
    sample_weight : array-like of shape (N,), optional
        Per-sample weights w_i >= 0 (``class_weight`` multiplies in). They are scaled to
        mean 1 over the training set (the rows trained on; in float64, by the largest
        first, so any magnitude works), and a batch of B rows has the loss
        J_b = (sum_i w_i l_i + alpha/2 sum_l ||W_l||^2) / B. A full batch thus minimises
        sum_i w_i l_i / sum_i w_i (+ the L2 term over N); at batch size 1 each step scales
        with w_i; a constant factor on every weight changes nothing. ``loss``/``score`` of
        given data use J = (sum_i w_i l_i + alpha/2 sum_l ||W_l||^2) / sum_i w_i, the same
        for mean-1 weights.
    schedule : {'constant', 'invscaling', 'adaptive'} or callable, default 'constant'
        Learning-rate schedule (see :mod:`mlpcore._schedules`); a callable gets the
        0-based epoch number and returns the rate.
    power_t : float, default 0.5
        Exponent of 'invscaling': lr = lr0 / (samples_seen + 1) ** power_t.
    tol : float, optional
        Stop when the training loss (or the validation metric with ``early_stopping``) has
        not improved by more than ``tol`` for more than ``n_iter_no_change`` epochs. None:
        no such stopping (the adaptive schedule then uses 1e-4). L-BFGS: gradient tolerance.
    n_iter_no_change : int, default 10
        Patience of the rule above.
    early_stopping : bool, default False
        Monitor the validation loss, stop when it stops improving, and restore the weights
        of its best epoch. Validation data come from ``validation_data`` or, if not given,
        a stratified ``validation_fraction`` (default 0.1) of the training data.
    validation_fraction : float, optional
        Hold out this fraction (stratified by class) and record ``val_loss`` and
        ``val_score`` in ``history`` after every epoch.
    validation_data : (X_val, Y_val) or (X_val, Y_val, sample_weight_val), optional
        Explicit validation data, used instead of a split.
    class_weight : 'balanced' or dict, optional
        Weights per class (classification), multiplied into the sample weights;
        'balanced' is N / (n_classes * N_c).
    verbose : bool, default False
        Print one line per epoch: loss, validation loss and score, learning rate, seconds.
    callback : callable, optional
        ``callback(epoch, model, logs)`` after every epoch (``epoch`` counts from 1;
        ``logs`` holds 'loss', 'lr', 'time' and, with validation, 'val_loss' and
        'val_score'). Returning False stops training.
    task : {'classification', 'regression'}, optional
        What Y is; None infers it (see ``Y``). ``task='classification'`` classifies numeric
        labels such as 0.0/1.0/2.0; ``task='regression'`` fits integer targets as values.
    scale : {None, 'standard', 'minmax', 'maxabs'}, default None
        Let the model scale its inputs: per feature, (x - mean) / std ('standard'),
        (x - min) / (max - min) ('minmax') or x / max|x| ('maxabs', the one sparse X takes:
        it keeps zeros zero), computed on the X of the first fit (or
        partial_fit) and applied to every X the model is given afterwards, so it takes raw
        data; ``model.scaling`` holds (shift, scale), and ``weights`` act on the scaled
        features (``model.scaling.fold(W1, b1)`` gives the first layer for raw ones).
        None (the tutorial's maths as given) warns when the features' standard deviations
        differ by more than a factor of 1000.
    n_threads : int, optional
{threads}

    Returns
    -------
    MLP
        The trained model. ``model.history`` holds the per-epoch records. Ctrl-C stops
        training cleanly after the current batch, leaving a usable model.

    Examples
    --------
    >>> import numpy as np, mlpcore
    >>> X = np.array([[0., 0.], [0., 1.], [1., 0.], [1., 1.]]); y = np.array([0, 1, 1, 0])
    >>> model = mlpcore.fit(X, y, hidden=(8,), batch_size=None, epochs=3000,
    ...                     learning_rate=2.0, seed=0)
    >>> model.predict(X).tolist()
    [0, 1, 1, 0]
    """
    model = MLP(hidden, activation=activation, output=output, loss=loss, optimizer=optimizer,
                learning_rate=learning_rate, batch_size=batch_size, epochs=epochs,
                shuffle=shuffle, seed=seed, dtype=dtype, init=init, alpha=alpha,
                schedule=schedule, power_t=power_t, tol=tol,
                n_iter_no_change=n_iter_no_change, early_stopping=early_stopping,
                validation_fraction=validation_fraction, class_weight=class_weight,
                verbose=verbose, callback=callback, n_threads=n_threads, task=task,
                scale=scale)
    return model.fit(X, Y, sample_weight=sample_weight, validation_data=validation_data)


# n_threads is described once, in mlpcore._threads (the command line's --threads says the same).
fit.__doc__ = fit.__doc__.replace("{threads}", textwrap.fill(
    f"All of the engine's parallelism: {DEFAULT_THREADS_HELP}. During a fit BLAS is held at "
    "one thread (a process-wide setting: when fits run at the same time in several Python "
    "threads, the first holds it until it ends); pass ``n_threads=1`` to keep concurrent "
    "fits from oversubscribing the cores.", width=88, initial_indent=" " * 8,
    subsequent_indent=" " * 8, break_on_hyphens=False))
