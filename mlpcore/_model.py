"""The model: its settings, its parameters and training state, and everything one can ask of it.

The model owns its state. :meth:`MLP.get_state` returns all of it (settings, parameters,
optimizer state, schedule, random stream, history, target encoding) as plain arrays and
JSON-able metadata, and :meth:`MLP.from_state` rebuilds a model from that; ``save``/``load``
(through :mod:`mlpcore._persistence`), pickling and :func:`copy.deepcopy` all go through
that pair, so a copy resumes training bit-identically.
"""

import math
import numbers

import numpy as np

import mlpcore._engine as _engine
from mlpcore import _persistence
from mlpcore._base import (
    HIDDEN_ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS, batch_rows, check_output_loss,
    check_targets, choose_output_loss, resolve_name,
)
from mlpcore._initializers import from_arrays, glorot_uniform
from mlpcore._lbfgs import LBFGSIterations
from mlpcore._optimizers import OPTIMIZERS, make_optimizer
from mlpcore._results import FeatureNamesWarning, FeatureScaleWarning, NotFittedError, warn
from mlpcore._scaling import SCALINGS, SPREAD_WARNING, Scaling, scale_spread
from mlpcore._schedules import Schedule
from mlpcore._splitting import validation_split
from mlpcore._targets import TASKS, Targets
from mlpcore._threads import MAX_THREADS, blas_threads
from mlpcore._training import CompiledEpochs, train
from mlpcore._validation import (
    check_bool, check_hidden, check_int, check_positive_float, check_sample_weight, check_X,
    mean_one,
    working_dtype,
)

__all__ = ["MLP", "NotFittedError", "load"]


class MLP:
    """A multilayer perceptron: settings, parameters, training state and history.

    The network maps X (N x D) through hidden layers to K outputs:
    ``Z_l = A_{l-1} W_l + b_l``, ``A_l = g(Z_l)`` with ``A_0 = X``, and the output activation
    on the last layer. It is trained by backpropagation and the chosen update rule; the
    epoch loop runs compiled (``mlpcore._engine``). All parameters live in one flat vector;
    ``weights`` and ``biases`` are views into it.

    :func:`mlpcore.fit` is the one-call form: ``mlpcore.fit(X, y, **settings)`` is
    ``MLP(**settings).fit(X, y)``. The settings are described there.

    Attributes
    ----------
    weights : list of ndarray
        ``weights[l]`` has shape (sizes[l], sizes[l+1]); W1 is D x M1, the last is M x K.
    biases : list of ndarray
        ``biases[l]`` has shape (sizes[l+1],).
    history : dict of lists
        Per epoch: ``"loss"`` (training loss, the mean of the batch losses each taken
        before its update, L2 term included), ``"lr"`` (the learning rate used), and with
        validation data ``"val_loss"`` and ``"val_score"`` (accuracy or R^2).
    classes : ndarray or None
        Class labels (classification) or None (regression).
    optimizer : Optimizer or LBFGS
        The update rule with its state (velocities, Adam moments, step count ``t``).
    feature_names : list of str or None
        The column names of the DataFrame the model was built on; later DataFrames are
        matched to them by name.
    scaling : Scaling or None
        With ``scale=``: the (shift, scale) applied to every input.
    samples_seen : int
        Samples visited by the updates applied so far, over the model's life.
    training_result : TrainingResult
        What the last fit, fit_more or partial_fit did (epochs, why it stopped).
    """

    def __init__(self, hidden=(100,), *, activation="sigmoid", output=None, loss=None,
                 optimizer="sgd", learning_rate=None, batch_size="auto", epochs=100,
                 shuffle=True, seed=None, dtype=None, init=None, alpha=0.0,
                 schedule="constant", power_t=0.5, tol=None, n_iter_no_change=10,
                 early_stopping=False, validation_fraction=None, class_weight=None,
                 verbose=False, callback=None, n_threads=None, task=None, scale=None):
        self.hidden = check_hidden(hidden)
        if scale is not None and scale not in SCALINGS:
            raise ValueError(f"scale must be one of {', '.join(map(repr, SCALINGS))} or None, "
                             f"got {scale!r}")
        self.scale = scale
        if task is not None and task not in TASKS:
            raise ValueError(f"task must be 'classification', 'regression' or None (inferred "
                             f"from Y), got {task!r}")
        self.task = task
        self.activation = resolve_name(activation, HIDDEN_ACTIVATIONS, "activation")
        self._requested_output = (None if output is None else
                                  resolve_name(output, OUTPUT_ACTIVATIONS, "output"))
        self._requested_loss = None if loss is None else resolve_name(loss, LOSSES, "loss")
        if self._requested_output and self._requested_loss:
            check_output_loss(self._requested_output, self._requested_loss)
        if learning_rate is not None:
            learning_rate = check_positive_float(learning_rate, "learning_rate")
        self.optimizer = make_optimizer(optimizer, learning_rate)
        if not (isinstance(batch_size, str) and batch_size == "auto") and batch_size is not None:
            check_int(batch_size, "batch_size", minimum=1)
        self.batch_size = batch_size
        self.epochs = check_int(epochs, "epochs", minimum=1)
        self.shuffle = check_bool(shuffle, "shuffle")
        if isinstance(seed, bool) or (seed is not None and not isinstance(
                seed, (numbers.Integral, np.random.SeedSequence))):
            raise TypeError(f"seed must be an integer or None, got {seed!r}")
        if isinstance(seed, numbers.Integral) and seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.seed = seed
        self._requested_dtype = None if dtype is None else working_dtype(None, dtype)
        self.init = init
        self.alpha = check_positive_float(alpha, "alpha", allow_zero=True)
        if not callable(schedule):
            schedule = Schedule(schedule, 1.0).kind  # validates the name
        self.schedule = schedule
        self.power_t = check_positive_float(power_t, "power_t", allow_zero=True)
        self.tol = None if tol is None else check_positive_float(tol, "tol", allow_zero=True)
        if n_iter_no_change != math.inf:
            check_int(n_iter_no_change, "n_iter_no_change", minimum=1)
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = check_bool(early_stopping, "early_stopping")
        if validation_fraction is not None:
            validation_fraction = check_positive_float(validation_fraction, "validation_fraction")
            if validation_fraction >= 1:
                raise ValueError(
                    f"validation_fraction must be in (0, 1), got {validation_fraction}")
        self.validation_fraction = validation_fraction
        if not (class_weight is None or (isinstance(class_weight, str)
                                          and class_weight == "balanced")
                or isinstance(class_weight, dict)):
            raise ValueError(
                f"class_weight must be None, 'balanced' or a dict, got {class_weight!r}")
        if isinstance(class_weight, dict):
            for label, weight in class_weight.items():
                if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
                    raise TypeError(f"class_weight[{label!r}] must be a number, got {weight!r}")
                if not (math.isfinite(weight) and weight >= 0):
                    raise ValueError(f"class_weight[{label!r}] must be a finite number >= 0, "
                                     f"got {weight!r}")
        self.class_weight = class_weight
        self.verbose = check_bool(verbose, "verbose")
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable as callback(epoch, model, logs)")
        self.callback = callback
        if n_threads is not None and check_int(n_threads, "n_threads") > MAX_THREADS:
            raise ValueError(f"n_threads must be at most {MAX_THREADS} (BLAS takes the thread "
                             f"count as a C int), got {n_threads}")
        self.n_threads = n_threads
        self._network = None
        self._workspace = None  # engine work buffers, kept between calls (not state)

    # -- building ------------------------------------------------------------------------------
    def build(self, X, Y, classes=None):
        """Create the network for data like (X, Y) and initialise its parameters; no training.

        Decides the dtype, the task (classification or regression) and the layer widths
        from the data, and draws the initial parameters (``init``, else Glorot-uniform from
        ``seed``). :meth:`fit` calls it; call it directly to inspect a network before
        training, e.g. ``MLP(init=...).build(X, y).gradients(X, y)``.

        Returns
        -------
        self
        """
        self._build(X, Y, classes)
        return self

    def _build(self, X, Y, classes=None):
        """:meth:`build`, returning X checked and converted to the working dtype."""
        names = _column_names(X)
        dtype = working_dtype(X, self._requested_dtype)
        X = check_X(X, dtype)
        targets = Targets.from_y(Y, self._requested_output, self._requested_loss, self.task,
                                 classes=classes)
        output, loss = choose_output_loss(targets.task, self._requested_output,
                                          self._requested_loss, targets.multilabel)
        if output == "softmax" and targets.n_outputs < 2:
            raise ValueError("output='softmax' needs at least two outputs (a distribution over "
                             "classes); with one output use 'sigmoid' or 'identity'")
        self._assemble(X.shape[1], dtype, targets, output, loss)
        self.feature_names = names
        if self.scale is not None:
            self.scaling = Scaling.from_data(X, self.scale)
        elif (spread := scale_spread(X)) > SPREAD_WARNING:
            warn(f"the features' scales differ by a factor of {spread:.3g} (standard "
                 "deviations); gradient descent on them may crawl or fail. Pass "
                 + ("scale='maxabs'" if _engine.is_sparse_rows(X) else
                    "scale='standard' (or 'minmax')") + " to have the model scale its inputs.",
                 FeatureScaleWarning)
        if self.init is None:
            glorot_uniform(self._network, self._theta, self.activation, self._rng)
        else:
            from_arrays(self._network, self._theta, self.init)
        return X

    def _assemble(self, n_features, dtype, targets, output, loss):
        """The one constructor of a built model's parts, used by :meth:`build` and
        :meth:`from_state`: the network, zero parameters, fresh optimizer state, schedule,
        random stream and history."""
        self.dtype, self.targets, self.output, self.loss_name = dtype, targets, output, loss
        self.scaling = None
        self._network = _engine.Network(
            (n_features, *self.hidden, targets.n_outputs),
            HIDDEN_ACTIVATIONS[self.activation], OUTPUT_ACTIVATIONS[output], LOSSES[loss])
        self._theta = np.zeros(self._network.n_params, dtype=dtype)
        self._rng = np.random.default_rng(self.seed)
        self.optimizer = make_optimizer(self.optimizer)
        self.optimizer.init_state(self.n_params, dtype)
        self._schedule = Schedule(self.schedule, self.optimizer.learning_rate or 1.0,
                                  self.power_t)
        for name, (initial, _, _) in _PLAIN_STATE.items():
            setattr(self, name, initial())
        self._workspace = None

    def __getattr__(self, name):
        # Called for attributes not set, and when a property raised AttributeError (as
        # NotFittedError is): what a built model has is refused clearly.
        if name in _BUILT_ATTRIBUTES or hasattr(type(self), name):
            raise NotFittedError(f"{name} is not available: this model has not been trained "
                                 "yet; call fit() first")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _require_built(self):
        if self._network is None:
            raise NotFittedError("this model has not been trained yet; call fit() first")

    def _workspace_for(self, rows, X):
        """Engine work buffers for ``rows`` rows of X, allocated once and reused across calls
        (a workspace made for sparse X has no room to gather dense rows)."""
        ws = self._workspace
        sparse = _engine.is_sparse_rows(X)
        if ws is None or ws.rows < rows or ws.dtype != self.dtype or (ws.sparse and not sparse):
            ws = self._workspace = _engine.Workspace(self._network, rows, self.dtype, sparse)
        return ws

    # -- training ------------------------------------------------------------------------------
    def _encode(self, Y, n_samples, name="Y"):
        """Y as the engine's target matrix, refused if the output or loss cannot take it."""
        Ym = self.targets.encode(Y, self.dtype, n_samples, name)
        if self.targets.task == "regression" or self.targets.multilabel:
            # Values used as given (labels and one-hot rows are valid by construction).
            check_targets(Ym, self.output, self.loss_name, name)
        return Ym

    def _inputs(self, X, name="X", matched=False):
        """X as the engine takes it: columns matched by name (DataFrames), checked, in the
        model's dtype, and scaled if the model scales its inputs (``scale=``). The one place
        inputs are prepared."""
        if not matched:  # (matched: X comes from _build, which read its names)
            X = self._match_columns(X, name)
        X = check_X(X, self.dtype, n_features=self.n_features, name=name)
        return X if self.scaling is None else self.scaling.apply(X, self.dtype)

    def _match_columns(self, X, name):
        """A DataFrame's columns in the order of ``feature_names``, matched by name.

        Raises ValueError naming missing and unknown columns; warns when names are on one
        side only (then columns are taken by position, as scikit-learn does).
        """
        names = _column_names(X)
        if self.feature_names is None:
            if names is not None:
                warn(f"{name} has feature names, but the model was trained without them; its "
                     "columns are taken by position", FeatureNamesWarning)
            return X
        if names is None:
            warn(f"{name} has no feature names, but the model was trained with "
                 f"{len(self.feature_names)} named features; its columns are taken by "
                 "position. Pass a DataFrame to have them matched by name.",
                 FeatureNamesWarning)
            return X
        if names == self.feature_names:
            return X
        missing = [n for n in self.feature_names if n not in set(names)]
        unknown = [n for n in names if n not in set(self.feature_names)]
        if missing or unknown:
            raise ValueError(f"{name}'s columns do not match the model's features: "
                             + "; ".join(part for part in (
                                 f"missing {missing[:10]}" if missing else "",
                                 f"unknown {unknown[:10]}" if unknown else "") if part))
        return X[list(self.feature_names)]

    def _training_arrays(self, X, Y, sample_weight, matched=False):
        X = self._inputs(X, matched=matched)
        Ym = self._encode(Y, X.shape[0])
        sw = check_sample_weight(sample_weight, X.shape[0], self.dtype, scale=True)
        if self.class_weight is not None:
            sw = mean_one(self.targets.apply_class_weight(self.class_weight, Ym, sw,
                                                          np.float64), self.dtype)
        return X, Ym, sw

    def _validation_arrays(self, validation_data):
        if not isinstance(validation_data, (tuple, list)):
            raise TypeError("validation_data must be a tuple (X_val, Y_val) or (X_val, Y_val, "
                            f"weights), got {type(validation_data).__name__}")
        if len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (X_val, Y_val) or (X_val, Y_val, weights)")
        Xv = self._inputs(validation_data[0], "validation X")
        Yv = self._encode(validation_data[1], Xv.shape[0], "validation Y")
        swv = None
        if len(validation_data) == 3:
            swv = check_sample_weight(validation_data[2], Xv.shape[0], self.dtype)
        return Xv, Yv, swv

    def _train(self, X, Y, sample_weight, validation_data, epochs, matched=False):
        X, Ym, sw = self._training_arrays(X, Y, sample_weight, matched)
        validation = None
        if validation_data is not None:
            validation = self._validation_arrays(validation_data)
        elif self.validation_fraction is not None or self.early_stopping:
            fraction = self.validation_fraction or 0.1
            labels = self.targets.labels_for_stratification(Ym)
            train_rows, val_rows = validation_split(X.shape[0], fraction, self._rng, labels)
            # Each part's weights are scaled to mean 1 over its rows: the training loss's
            # rule (see fit), and val_loss is then defined as the training loss is.
            validation = (X[val_rows], Ym[val_rows],
                          None if sw is None else mean_one(sw[val_rows], self.dtype))
            X, Ym = X[train_rows], Ym[train_rows]
            sw = None if sw is None else mean_one(sw[train_rows], self.dtype)
        epochs = self.epochs if epochs is None else check_int(epochs, "epochs", minimum=1)
        return train(self, self._method(X, Ym, sw, batch_rows(self.batch_size, X.shape[0]),
                                        epochs),
                     epochs, validation)

    def _method(self, X, Ym, sw, batch, epochs):
        """The way of training this model's optimizer asks for (see :mod:`mlpcore._training`)."""
        if self.optimizer.stochastic:
            return CompiledEpochs(self, X, Ym, sw, batch,
                                  self._workspace_for(min(batch, _engine.CHUNK_ROWS), X))
        return LBFGSIterations(self, X, Ym, sw, epochs,
                               self._workspace_for(min(X.shape[0], _engine.CHUNK_ROWS), X))

    def fit(self, X, Y, *, sample_weight=None, validation_data=None, epochs=None):
        """Train from freshly initialised parameters (see :func:`mlpcore.fit`).

        Parameters
        ----------
        X : array-like of shape (N, D)
        Y : array-like of shape (N,) or (N, K)
        sample_weight : array-like of shape (N,), optional
            Scaled to mean 1 over the rows trained on; a batch of B rows has the loss
            sum_i w_i l_i / B (+ the L2 term over B). See :func:`mlpcore.fit`.
        validation_data : (X_val, Y_val) or (X_val, Y_val, sample_weight_val), optional
            Evaluated after every epoch into ``history["val_loss"]`` and
            ``history["val_score"]``; with ``early_stopping`` it is what is monitored.
        epochs : int, optional
            Overrides the ``epochs`` setting for this call.

        Returns
        -------
        self
        """
        X = self._build(X, Y)
        self.training_result = self._train(X, Y, sample_weight, validation_data, epochs,
                                           matched=True)
        return self

    def fit_more(self, X, Y, *, epochs=None, sample_weight=None, validation_data=None):
        """Continue training: same parameters, optimizer state, schedule and random stream.

        ``m.fit(X, Y, epochs=5); m.fit_more(X, Y, epochs=5)`` gives the same weights as
        ``m.fit(X, Y, epochs=10)`` (without stopping criteria or validation splits).
        """
        self._require_built()
        self.training_result = self._train(X, Y, sample_weight, validation_data, epochs)
        return self

    def partial_fit(self, X, Y, *, classes=None, sample_weight=None):
        """One pass over the given samples, continuing from the current state (online learning).

        The first call on an untrained model builds it from this data; for classification
        pass ``classes`` (all labels that will ever occur) unless this first Y holds them all.
        Samples are visited in batches of ``batch_size`` (shuffled if ``shuffle``), so feeding
        the data in chunks with ``shuffle=False`` gives the same weights as one epoch of
        :meth:`fit` when the chunks end on batch boundaries. ``sample_weight`` is scaled to
        mean 1 over each call's samples (with weights, the chunks then match one epoch of
        :meth:`fit` when their weights have the same mean).
        """
        if not self.optimizer.stochastic:
            raise ValueError("partial_fit needs a stochastic optimizer (sgd, momentum, "
                             f"nesterov, adam), not {self.optimizer.rule!r}")
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        matched = self._network is None
        if matched:
            X = self._build(X, Y, classes=classes)
        elif classes is not None and self.targets.classes is not None and not np.array_equal(
                np.unique(np.asarray(classes)), self.targets.classes):
            raise ValueError(f"classes={classes!r} differ from the classes of the first call "
                             f"{self.targets.classes.tolist()}")
        X, Ym, sw = self._training_arrays(X, Y, sample_weight, matched)
        batch = batch_rows(self.batch_size, X.shape[0], chunk=True)
        self.training_result = train(self, self._method(X, Ym, sw, batch, 1), 1,
                                     incremental=True)
        return self

    # -- architecture and parameters ------------------------------------------------------
    @property
    def sizes(self):
        """Layer widths ``(D, M_1, ..., K)``."""
        self._require_built()
        return self._network.sizes

    @property
    def n_features(self):
        return self.sizes[0]

    @property
    def n_outputs(self):
        return self.sizes[-1]

    @property
    def n_params(self):
        self._require_built()
        return self._network.n_params

    @property
    def classes(self):
        self._require_built()
        return self.targets.classes

    @property
    def weights(self):
        """Weight matrices, views into the parameter vector (writing to them changes the model)."""
        return self._layers(self._theta)[0]

    @property
    def biases(self):
        """Bias vectors, views into the parameter vector."""
        return self._layers(self._theta)[1]

    def _layers(self, flat):
        """``(weights, biases)``: per-layer views into a vector laid out like the parameters
        (W_1 row-major, b_1, W_2, ...)."""
        self._require_built()
        sizes, slices = self.sizes, self._network.layer_slices()
        return ([flat[w].reshape(fi, fo) for (w, _), fi, fo in
                 zip(slices, sizes[:-1], sizes[1:])], [flat[b] for _, b in slices])

    def __repr__(self):
        if self._network is None:
            return f"MLP(hidden={self.hidden}, activation={self.activation!r}, untrained)"
        return (f"MLP(sizes={self.sizes}, activation={self.activation!r}, "
                f"output={self.output!r}, loss={self.loss_name!r}, dtype={self.dtype.name})")

    # -- inference ---------------------------------------------------------------------------
    def _check_X(self, X):
        self._require_built()
        return self._inputs(X)

    def forward(self, X):
        """Output activations a_L for the rows of X.

        Parameters
        ----------
        X : array-like of shape (N, D)

        Returns
        -------
        ndarray of shape (N, K), in the model's dtype.
        """
        return self._forward(self._check_X(X))

    def _forward(self, X):
        """Output activations for prepared inputs (see :meth:`_inputs`)."""
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        with blas_threads(self.n_threads, min(X.shape[0], _engine.CHUNK_ROWS), self.sizes,
                          inference=True):
            _engine.forward(self._network, self._theta, X, out)
        return out

    def predict(self, X):
        """Class labels (classification) or predicted values (regression) for X."""
        out = self.forward(X)  # first: it refuses an untrained model with NotFittedError
        return self.targets.decode(out, self.output)

    def predict_proba(self, X):
        """Class probabilities, shape (N, n_classes), rows summing to 1 (classification only)."""
        self._require_built()
        if self.targets.task != "classification":
            raise AttributeError("predict_proba is only available for classification models")
        return self.targets.probabilities(self.forward(X), self.output)

    # -- loss, gradients, score -----------------------------------------------------------------
    def _prepare(self, X, Y, sample_weight):
        X = self._check_X(X)
        Ym = self._encode(Y, X.shape[0])
        sw = check_sample_weight(sample_weight, X.shape[0], self.dtype)
        return X, Ym, sw

    def _evaluate(self, X, Ym, sw):
        """(J, output activations) on checked arrays: one forward pass."""
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        value = _engine.evaluate(self._network, self._theta, X, Ym, sw, self.alpha, out)
        return value, out

    def loss(self, X, Y, sample_weight=None):
        """The cost J at the current parameters.

        J = sum_i w_i l_i / sum_i w_i + alpha/2 sum_l ||W_l||^2 / sum_i w_i, with l_i the
        per-sample loss (see :mod:`mlpcore._base`) and w_i = 1 without sample weights; for
        the tutorial's network (sigmoid output, mse) this is J = 1/(2N) sum (a2 - Y)^2.
        """
        return self._evaluate(*self._prepare(X, Y, sample_weight))[0]

    def gradients(self, X, Y, sample_weight=None):
        """dJ/dW_l and dJ/db_l at the current parameters, by backpropagation.

        delta_L = dJ/dZ_L (e.g. (a_L - Y) a_L (1 - a_L) for sigmoid + mse),
        delta_l = (delta_{l+1} W_{l+1}^T) * g'(Z_l), dW_l = A_{l-1}^T delta_l / N,
        db_l = sum over rows of delta_l / N (plus alpha W_l / N for L2).

        Returns
        -------
        grad_weights : list of ndarray, shaped like ``weights``
        grad_biases : list of ndarray, shaped like ``biases``
        """
        X, Ym, sw = self._prepare(X, Y, sample_weight)
        grad = np.empty_like(self._theta)
        _engine.loss_gradient(self._network, self._theta, X, Ym, sw, self.alpha, grad)
        return self._layers(grad)

    def score(self, X, Y, sample_weight=None):
        """Accuracy (classification) or the coefficient of determination R^2 (regression).

        R^2 is averaged uniformly over outputs, as scikit-learn's ``r2_score`` does.
        """
        X, Ym, sw = self._prepare(X, Y, sample_weight)
        return self.targets.score(self._forward(X), Ym, sw)

    # -- seeing training ---------------------------------------------------------------------
    def summary(self, print_fn=print):
        """Print a table of the layers, the loss, the optimizer and the training so far.

        Per layer: width, activation, weight and bias shapes, parameter count; then the
        total, the loss and L2 alpha, the optimizer's settings, step count and state arrays,
        and the epochs, samples seen, last values and why the last call stopped.

        Parameters
        ----------
        print_fn : callable or None, default print
            Called with each line (like Keras' ``print_fn``). None: print nothing and
            return the text instead.

        Returns
        -------
        str or None
            The text (lines joined by newlines) when ``print_fn`` is None, else None.
        """
        from mlpcore._summary import summary_text

        text = summary_text(self)
        if print_fn is None:
            return text
        for line in text.splitlines():
            print_fn(line)
        return None

    def plot_history(self, path=None):
        """Plot the loss (and validation loss and score, when recorded) against epochs.

        Needs matplotlib (``pip install "mlpcore[plot]"``); see
        :func:`mlpcore._plotting.plot_history`.

        Parameters
        ----------
        path : str or os.PathLike, optional
            Also save the picture there (format from the extension, e.g. ``.png``).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from mlpcore._plotting import plot_history

        return plot_history(self, path)

    # -- state: save, load, pickle, copy ---------------------------------------------------
    def get_config(self):
        """The settings as plain JSON values (callables and ``init`` arrays are left out)."""
        return {
            "hidden": list(self.hidden), "activation": self.activation,
            "output": self._requested_output, "loss": self._requested_loss,
            "optimizer": {"name": self.optimizer.rule, "config": self.optimizer.get_config()},
            "batch_size": self.batch_size, "epochs": self.epochs, "shuffle": self.shuffle,
            "seed": int(self.seed) if isinstance(self.seed, numbers.Integral) else None,
            "dtype": None if self._requested_dtype is None else self._requested_dtype.name,
            "alpha": self.alpha, "schedule": None if callable(self.schedule) else self.schedule,
            "power_t": self.power_t, "tol": self.tol,
            "n_iter_no_change": (None if self.n_iter_no_change == math.inf
                                 else self.n_iter_no_change),
            "early_stopping": self.early_stopping, "validation_fraction": self.validation_fraction,
            "class_weight": (list(self.class_weight.items()) if isinstance(self.class_weight, dict)
                             else self.class_weight),
            "verbose": self.verbose, "n_threads": self.n_threads, "task": self.task,
            "scale": self.scale,
        }

    @staticmethod
    def _settings_from_config(config):
        """:meth:`get_config`'s values back as ``MLP(**settings)`` keywords."""
        settings = dict(config)
        settings.pop("monitor", None)  # written by older versions; always 'val_loss'
        opt = settings.pop("optimizer")
        settings["optimizer"] = OPTIMIZERS[opt["name"]](**opt["config"])
        if isinstance(settings.get("class_weight"), list):
            settings["class_weight"] = {k: v for k, v in settings["class_weight"]}
        if settings.get("n_iter_no_change") is None:
            settings["n_iter_no_change"] = math.inf
        if settings.get("schedule") is None:
            settings["schedule"] = "constant"
        return settings

    def _unsaveable_settings(self):
        """Settings a model file cannot hold but a pickle or a copy keeps."""
        extra = {"callback": self.callback, "init": self.init}
        if callable(self.schedule):
            extra["schedule"] = self.schedule
        if not isinstance(self.seed, (numbers.Integral, type(None))):
            extra["seed"] = self.seed
        return extra

    def get_state(self):
        """The complete state of the model: ``(meta, arrays)``.

        ``meta`` holds JSON-able values: ``config`` (the settings, :meth:`get_config`) and,
        once built, ``sizes``, ``output``, ``loss``, ``dtype``, ``targets``,
        ``optimizer_t``, ``schedule_state``, ``rng_state`` and the entries of
        ``_PLAIN_STATE`` (``history``, ``samples_seen``). ``arrays`` holds ``theta`` (the
        parameter vector), ``classes`` (classification), ``optimizer_state_<i>`` and, for a
        model that scales its inputs, ``input_shift`` and ``input_scale``. The arrays are
        the model's own (not copies). :meth:`from_state` is the inverse.
        """
        meta = {"config": self.get_config()}
        if self._network is None:
            return meta, {}
        t, optimizer_state = self.optimizer.get_state()
        meta.update({
            "sizes": list(self.sizes), "output": self.output, "loss": self.loss_name,
            "dtype": self.dtype.name, "targets": self.targets.to_dict(), "optimizer_t": t,
            "schedule_state": self._schedule.get_state(),
            "rng_state": self._rng.bit_generator.state,
            **{name: getattr(self, name) for name in _PLAIN_STATE},
        })
        arrays = {"theta": self._theta}
        if self.targets.classes is not None:
            arrays["classes"] = np.asarray(self.targets.classes)
        arrays.update({f"optimizer_state_{i}": a for i, a in enumerate(optimizer_state)})
        if self.scaling is not None:
            arrays["input_shift"], arrays["input_scale"] = self.scaling
        return meta, arrays

    @classmethod
    def from_state(cls, meta, arrays, settings=None):
        """Rebuild a model from :meth:`get_state`'s ``(meta, arrays)``; arrays are copied.

        Everything is checked before use (a model file is untrusted): the parameter vector
        must have the length the layer sizes imply (checked before anything is sized by
        them), the model's dtype and finite values; classes must be sorted and unique and
        fit the output width; the optimizer state must match the parameters.

        Parameters
        ----------
        meta : dict
        arrays : dict of str to ndarray
        settings : dict, optional
            Settings overriding ``meta["config"]`` (a pickle's callback, say).

        Raises
        ------
        ValueError, TypeError, KeyError
            Inconsistent or malformed state.
        """
        model = cls(**{**cls._settings_from_config(meta["config"]), **(settings or {})})
        if not arrays:  # an untrained model: its settings are all there is
            return model
        # Sizes and the parameter vector first: nothing below may be sized by unchecked claims.
        sizes = meta["sizes"]
        if (not isinstance(sizes, list) or len(sizes) < 2
                or not all(_is_int(s) and s >= 1 for s in sizes)):
            raise ValueError(f"sizes must be a list of at least two positive integers, got "
                             f"{sizes!r}")
        n_params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
        theta = arrays["theta"]
        if theta.shape != (n_params,):
            raise ValueError(f"theta has shape {theta.shape}, but layer sizes {sizes} need "
                             f"({n_params},)")
        if meta["dtype"] not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {meta['dtype']!r}")
        dtype = np.dtype(meta["dtype"])
        if theta.dtype != dtype:
            raise ValueError(f"theta has dtype {theta.dtype}, the model {dtype}")
        if not np.isfinite(theta).all():
            raise ValueError("parameters contain NaN or infinity")
        if tuple(sizes[1:-1]) != model.hidden:
            raise ValueError("layer sizes do not match the settings")
        targets = Targets.from_dict(meta["targets"], arrays.get("classes"),
                                    numeric_labels=model.task == "classification")
        if targets.n_outputs != sizes[-1]:
            raise ValueError("output width does not match the targets")
        output, loss = meta["output"], meta["loss"]
        if output not in OUTPUT_ACTIVATIONS or loss not in LOSSES:
            raise ValueError(f"unknown output {output!r} or loss {loss!r}")
        check_output_loss(output, loss)

        model._assemble(sizes[0], dtype, targets, output, loss)
        model._theta[:] = theta
        n_state = model.optimizer.n_state
        model.optimizer.set_state(meta["optimizer_t"],
                                  [arrays[f"optimizer_state_{i}"] for i in range(n_state)],
                                  model.n_params, dtype)
        model._schedule.set_state(meta["schedule_state"])
        if not (math.isfinite(model._schedule.current) and model._schedule.current > 0):
            raise ValueError(f"schedule state {meta['schedule_state']!r} is not a positive rate")
        model._rng.bit_generator.state = meta["rng_state"]
        if model.scale is not None:
            model.scaling = Scaling.from_arrays(arrays["input_shift"], arrays["input_scale"],
                                                sizes[0])
        for name, (_, check, required) in _PLAIN_STATE.items():
            if name in meta or required:
                setattr(model, name, check(meta[name]))
        if model.feature_names is not None and len(model.feature_names) != sizes[0]:
            raise ValueError(f"{len(model.feature_names)} feature names for {sizes[0]} inputs")
        return model

    def __reduce__(self):
        # Pickle and copy.deepcopy go through the state pair, callables and init included.
        meta, arrays = self.get_state()
        return _from_pickled_state, (type(self), meta, arrays, self._unsaveable_settings())

    def save(self, path):
        """Write the model to ``path`` (an .npz archive; see :func:`mlpcore.load`).

        ``path`` is a path or a binary file object (``io.BytesIO``). A file is written
        atomically (a temporary file beside it, renamed over it), through a symbolic link to
        its target; a read-only or hard-linked file is refused, a FIFO or device written in
        place: the rules are in :mod:`mlpcore._persistence`.
        """
        self._require_built()
        _persistence.save_state(*self.get_state(), path)

    @classmethod
    def load(cls, path):
        """A model from a file written by :meth:`save` (see :func:`mlpcore.load`)."""
        return _persistence.load_state(path, cls.from_state)

    def to_onnx(self, path=None, *, dtype=np.float32, opset=None):
        """The model as an ONNX graph computing ``predict`` (and ``predict_proba``).

        Needs ``pip install "mlpcore[onnx]"``; :mod:`mlpcore._onnx` describes the graph.

        Parameters
        ----------
        path : str or os.PathLike, optional
            Also write the graph there (atomically).
        dtype : {np.float32, np.float64}, default np.float32
            Type of the input ``X``, the weights and the outputs.
        opset : int, optional
            ONNX operator set, 13 or newer (default 17).

        Returns
        -------
        onnx.ModelProto
            Outputs ``label`` and ``probabilities`` (classification) or ``predictions``.
        """
        from mlpcore._onnx import to_onnx

        return to_onnx(self, path, dtype=dtype, opset=opset)


def load(path):
    """Load a model written by :meth:`MLP.save`.

    Nothing in the file is ever unpickled or executed; every part is checked (see
    :mod:`mlpcore._persistence` and :meth:`MLP.from_state`).

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        A file, or a file object such as ``io.BytesIO`` holding the archive up to its end.

    Returns
    -------
    MLP
        A model giving the same predictions as the one saved, ready to train on.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not an mlpcore model, is truncated or corrupted, or comes from a newer
        format version than this mlpcore reads; the message names the file.
    """
    return MLP.load(path)


def _from_pickled_state(cls, meta, arrays, settings):
    return cls.from_state(meta, arrays, settings)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value):
    if not _is_int(value) or not 0 <= value <= 2**62:
        raise ValueError(f"a count must be an integer in [0, 2**62], got {value!r}")
    return value


def _column_names(X):
    """The column names of a DataFrame-like X when they are all strings, else None."""
    columns = getattr(X, "columns", None)
    if columns is None or getattr(X, "ndim", 2) != 2:
        return None
    names = list(columns)
    if not names or not all(isinstance(n, str) for n in names):
        return None
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"X has repeated column names: {repeated[:10]}")
    return names


def _feature_names(value):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise TypeError(f"feature_names must be a list of strings, got {value!r}"[:200])
    if len(set(value)) != len(value):
        raise ValueError("feature_names holds repeated names")
    return list(value)


def _history(value):
    if not isinstance(value, dict):
        raise TypeError(f"history must be a mapping, got {type(value).__name__}")
    return {str(k): [float(v) for v in vals] for k, vals in value.items()}


# Trained state kept as plain JSON values, saved, pickled and copied with the model:
# attribute -> (its value in a newly built model, the check that turns a stored value back
# into the attribute, whether every file has it). A new piece of such state is one entry
# here, not required: files written before it existed get the initial value.
_PLAIN_STATE = {
    "history": (lambda: {"loss": [], "lr": []}, _history, True),
    "samples_seen": (lambda: 0, _count, True),
    "feature_names": (lambda: None, _feature_names, False),
}

# What only a built (trained) model has: asking an untrained one raises NotFittedError.
_BUILT_ATTRIBUTES = frozenset({"dtype", "targets", "output", "loss_name", "training_result",
                               "scaling", *_PLAIN_STATE})
