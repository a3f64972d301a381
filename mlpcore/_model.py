"""The model: its settings, its parameters and training state, and everything one can ask of it."""

import math
import numbers

import numpy as np

from mlpcore import _engine
from mlpcore._base import (
    HIDDEN_ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS, check_output_loss, resolve_name,
)
from mlpcore._initializers import from_arrays, glorot_uniform
from mlpcore._optimizers import make_optimizer
from mlpcore._schedules import Schedule
from mlpcore._splitting import validation_split
from mlpcore._targets import Targets
from mlpcore._threads import blas_threads
from mlpcore._training import Trainer
from mlpcore._validation import (
    check_hidden, check_int, check_positive_float, check_sample_weight, check_X, working_dtype,
)

# batch_size="auto" means min(DEFAULT_BATCH_SIZE, N).
DEFAULT_BATCH_SIZE = 32


class NotFittedError(ValueError, AttributeError):
    """The model was used before it was trained (or built by ``partial_fit``)."""


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
    optimizer : Optimizer
        The update rule with its state (velocities, Adam moments, step count ``t``).
    """

    def __init__(self, hidden=(100,), *, activation="sigmoid", output=None, loss=None,
                 optimizer="sgd", learning_rate=None, batch_size="auto", epochs=100,
                 shuffle=True, seed=None, dtype=None, init=None, alpha=0.0,
                 schedule="constant", power_t=0.5, tol=None, n_iter_no_change=10,
                 early_stopping=False, validation_fraction=None, class_weight=None,
                 verbose=False, callback=None, n_threads=None):
        self.hidden = check_hidden(hidden)
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
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        self.shuffle = bool(shuffle)
        if seed is not None and not isinstance(seed, (numbers.Integral, np.random.SeedSequence)):
            raise TypeError(f"seed must be an integer or None, got {seed!r}")
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
        self.early_stopping = bool(early_stopping)
        if validation_fraction is not None:
            validation_fraction = check_positive_float(validation_fraction, "validation_fraction")
            if validation_fraction >= 1:
                raise ValueError(
                    f"validation_fraction must be in (0, 1), got {validation_fraction}")
        self.validation_fraction = validation_fraction
        if not (class_weight is None or class_weight == "balanced"
                or isinstance(class_weight, dict)):
            raise ValueError(
                f"class_weight must be None, 'balanced' or a dict, got {class_weight!r}")
        self.class_weight = class_weight
        self.verbose = bool(verbose)
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable as callback(epoch, model, logs)")
        self.callback = callback
        self.n_threads = None if n_threads is None else check_int(n_threads, "n_threads", minimum=1)
        # What early stopping watches: "val_loss" (lowest wins) or "val_score" (highest wins).
        self.monitor = "val_loss"
        self._network = None

    # -- building ------------------------------------------------------------------------------
    def build(self, X, Y, classes=None):
        """Create the network for data like (X, Y) and initialise its parameters; no training.

        Decides the dtype, the task (classification or regression) and the layer widths
        from the data, and draws the initial parameters (``init``, else Glorot-uniform from
        ``seed``). :meth:`fit` calls it; call it directly to inspect a network before
        training, e.g. its ``loss`` and ``gradients`` at given ``init`` weights.

        Returns
        -------
        X : ndarray
            X checked and converted to the working dtype.
        """
        self.dtype = working_dtype(X, self._requested_dtype)
        X = check_X(X, self.dtype)
        self.targets = Targets.from_y(Y, self._requested_output, classes=classes)
        output = self._requested_output or (
            "softmax" if self.targets.task == "classification" else "identity")
        if self._requested_loss:
            loss = self._requested_loss
        elif output == "exp":
            loss = "poisson"
        elif self.targets.task == "classification" and output in ("softmax", "sigmoid"):
            loss = "cross_entropy"
        else:
            loss = "mse"
        check_output_loss(output, loss)
        self.output, self.loss_name = output, loss
        self._network = _engine.Network(
            (X.shape[1], *self.hidden, self.targets.n_outputs),
            HIDDEN_ACTIVATIONS[self.activation], OUTPUT_ACTIVATIONS[output], LOSSES[loss])
        self._theta = np.zeros(self._network.n_params, dtype=self.dtype)
        self._rng = np.random.default_rng(self.seed)
        if self.init is None:
            glorot_uniform(self._network, self._theta, self.activation, self._rng)
        else:
            from_arrays(self._network, self._theta, self.init)
        self.optimizer = make_optimizer(self.optimizer)
        self.optimizer.init_state(self.n_params, self.dtype)
        self._schedule = Schedule(self.schedule, self.optimizer.learning_rate or 1.0,
                                  self.power_t)
        self.history = {"loss": [], "lr": []}
        self.samples_seen = 0
        self._trainer = Trainer(self)
        return X

    @property
    def is_built(self):
        return self._network is not None

    def _require_built(self):
        if self._network is None:
            raise NotFittedError("this model has not been trained yet; call fit() first")

    # -- training ------------------------------------------------------------------------------
    def _batch_rows(self, n):
        if self.batch_size is None:
            return n
        if isinstance(self.batch_size, str):
            return min(DEFAULT_BATCH_SIZE, n)
        if self.batch_size > n:
            raise ValueError(f"batch_size={self.batch_size} is larger than the {n} training "
                             "samples; use batch_size=None for gradient descent on all of them")
        return self.batch_size

    def _training_arrays(self, X, Y, sample_weight):
        X = check_X(X, self.dtype, n_features=self.n_features)
        Ym = self.targets.encode(Y, self.dtype, X.shape[0])
        sw = check_sample_weight(sample_weight, X.shape[0], self.dtype)
        if self.loss_name == "poisson" and (Ym < 0).any():
            raise ValueError("Y has negative values, which the poisson loss does not allow")
        if self.class_weight is not None:
            sw = self.targets.apply_class_weight(self.class_weight, Ym, sw, self.dtype)
        return X, Ym, sw

    def _validation_arrays(self, validation_data):
        if len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (X_val, Y_val) or (X_val, Y_val, weights)")
        Xv = check_X(validation_data[0], self.dtype, self.n_features, name="validation X")
        Yv = self.targets.encode(validation_data[1], self.dtype, Xv.shape[0])
        swv = None
        if len(validation_data) == 3:
            swv = check_sample_weight(validation_data[2], Xv.shape[0], self.dtype)
        return Xv, Yv, swv

    def _train(self, X, Y, sample_weight, validation_data, epochs):
        X, Ym, sw = self._training_arrays(X, Y, sample_weight)
        validation = None
        if validation_data is not None:
            validation = self._validation_arrays(validation_data)
        elif self.validation_fraction is not None or self.early_stopping:
            fraction = self.validation_fraction or 0.1
            labels = self.targets.labels_for_stratification(Ym)
            train, val = validation_split(len(X), fraction, self._rng, labels)
            validation = (X[val], Ym[val], None if sw is None else sw[val])
            X, Ym = X[train], Ym[train]
            sw = None if sw is None else sw[train]
        epochs = self.epochs if epochs is None else check_int(epochs, "epochs", minimum=1)
        return self._trainer.run(X, Ym, sw, epochs, self._batch_rows(len(X)), validation)

    def fit(self, X, Y, *, sample_weight=None, validation_data=None, epochs=None):
        """Train from freshly initialised parameters (see :func:`mlpcore.fit`).

        Parameters
        ----------
        X : array-like of shape (N, D)
        Y : array-like of shape (N,) or (N, K)
        sample_weight : array-like of shape (N,), optional
        validation_data : (X_val, Y_val) or (X_val, Y_val, sample_weight_val), optional
            Evaluated after every epoch into ``history["val_loss"]`` and
            ``history["val_score"]``; with ``early_stopping`` it is what is monitored.
        epochs : int, optional
            Overrides the ``epochs`` setting for this call.

        Returns
        -------
        self
        """
        X = self.build(X, Y)
        self.training_result = self._train(X, Y, sample_weight, validation_data, epochs)
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
        :meth:`fit` when the chunks end on batch boundaries.
        """
        if not self.optimizer.stochastic:
            raise ValueError("partial_fit needs a stochastic optimizer (sgd, momentum, "
                             f"nesterov, adam), not {self.optimizer.rule!r}")
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        if self._network is None:
            X = self.build(X, Y, classes=classes)
        elif classes is not None and self.targets.classes is not None and not np.array_equal(
                np.unique(np.asarray(classes)), self.targets.classes):
            raise ValueError(f"classes={classes!r} differ from the classes of the first call "
                             f"{self.targets.classes.tolist()}")
        X, Ym, sw = self._training_arrays(X, Y, sample_weight)
        n = len(X)
        if self.batch_size is None:
            batch = n
        elif isinstance(self.batch_size, str):
            batch = min(DEFAULT_BATCH_SIZE, n)
        else:  # a chunk smaller than a batch is one batch
            batch = min(self.batch_size, n)
        self.training_result = self._trainer.run(X, Ym, sw, 1, batch, None, incremental=True)
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
        self._require_built()
        return [self._theta[w].reshape(fi, fo) for (w, _), fi, fo in
                zip(self._network.layer_slices(), self.sizes[:-1], self.sizes[1:])]

    @property
    def biases(self):
        """Bias vectors, views into the parameter vector."""
        self._require_built()
        return [self._theta[b] for _, b in self._network.layer_slices()]

    def __repr__(self):
        if self._network is None:
            return f"MLP(hidden={self.hidden}, activation={self.activation!r}, untrained)"
        return (f"MLP(sizes={self.sizes}, activation={self.activation!r}, "
                f"output={self.output!r}, loss={self.loss_name!r}, dtype={self.dtype.name})")

    # -- inference ---------------------------------------------------------------------------
    def _check_X(self, X):
        self._require_built()
        return check_X(X, self.dtype, n_features=self.n_features)

    def forward(self, X):
        """Output activations a_L for the rows of X.

        Parameters
        ----------
        X : array-like of shape (N, D)

        Returns
        -------
        ndarray of shape (N, K), in the model's dtype.
        """
        X = self._check_X(X)
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
        Ym = self.targets.encode(Y, self.dtype, X.shape[0])
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
        gw = [grad[w].reshape(fi, fo) for (w, _), fi, fo in
              zip(self._network.layer_slices(), self.sizes[:-1], self.sizes[1:])]
        gb = [grad[b] for _, b in self._network.layer_slices()]
        return gw, gb

    def score(self, X, Y, sample_weight=None):
        """Accuracy (classification) or the coefficient of determination R^2 (regression).

        R^2 is averaged uniformly over outputs, as scikit-learn's ``r2_score`` does.
        """
        X, Ym, sw = self._prepare(X, Y, sample_weight)
        return self.targets.score(self.forward(X), Ym, sw)

    # -- persistence ---------------------------------------------------------------------------
    def get_config(self):
        """The settings as plain values (callables are left out: they cannot be saved)."""
        return {
            "hidden": list(self.hidden), "activation": self.activation,
            "output": self._requested_output, "loss": self._requested_loss,
            "optimizer": {"name": self.optimizer.rule, "config": self.optimizer.get_config()},
            "batch_size": self.batch_size, "epochs": self.epochs, "shuffle": self.shuffle,
            "seed": self.seed if isinstance(self.seed, (int, type(None))) else None,
            "dtype": None if self._requested_dtype is None else self._requested_dtype.name,
            "alpha": self.alpha, "schedule": None if callable(self.schedule) else self.schedule,
            "power_t": self.power_t, "tol": self.tol,
            "n_iter_no_change": (None if self.n_iter_no_change == math.inf
                                 else self.n_iter_no_change),
            "early_stopping": self.early_stopping, "validation_fraction": self.validation_fraction,
            "class_weight": (list(self.class_weight.items()) if isinstance(self.class_weight, dict)
                             else self.class_weight),
            "verbose": self.verbose, "n_threads": self.n_threads, "monitor": self.monitor,
        }

    def save(self, path):
        """Write the model to ``path`` (an .npz archive; see :func:`mlpcore.load`).

        The write is atomic: the file is written beside the target and renamed over it, so
        a crash mid-save leaves any previous file intact.
        """
        from mlpcore._persistence import save_model

        self._require_built()
        save_model(self, path)
