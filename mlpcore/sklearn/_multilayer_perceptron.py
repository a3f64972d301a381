"""scikit-learn's MLPClassifier and MLPRegressor with mlpcore's compiled numerics.

Each class subclasses scikit-learn's own and replaces exactly its three numeric methods:

* ``_fit_stochastic``: the epoch loop of the 'sgd' and 'adam' solvers. The loop keeps
  scikit-learn's structure line for line (the same random stream for shuffling and for the
  early-stopping split, the same batches, loss bookkeeping, stopping rules, learning-rate
  schedules and warnings); each epoch's forward passes, backpropagation and updates run in
  one call of the compiled engine (``mlpcore._engine.train_epoch``).
* ``_fit_lbfgs``: scipy's L-BFGS-B fed by the engine's loss and gradient.
* ``_forward_pass_fast``: predictions through the engine.

Everything else (parameter validation, input checks, label encoding, initialisation with the
same random draws, ``partial_fit``, ``warm_start``, attributes, tags, metadata routing, and
the NumPy helpers ``_forward_pass``, ``_backprop`` and ``_loss_grad_lbfgs``) is
scikit-learn's own code, so the classes behave as scikit-learn's do; given the same
``random_state`` they produce the same weights up to floating-point rounding, and every
attribute scikit-learn's ``fit`` sets (``_coef_indptr`` and ``_intercept_indptr`` after
L-BFGS included) is set. scikit-learn's own ``neural_network/tests/test_mlp.py`` passes
against these classes (``tests/test_sklearn_upstream.py``).

Sample weights follow scikit-learn's rule, not mlpcore's: each batch's loss and gradient are
divided by the batch's total sample weight (the engine's ``normalize="weights"``), weights of
any sign are taken as scikit-learn takes them, ``loss_`` averages the batch losses by batch
length, and a batch whose weights sum to zero raises scikit-learn's ``ZeroDivisionError``.

Known differences:

* float32 inputs keep float32 weights with every solver (scikit-learn's L-BFGS returns
  float64 weights).
* A batch whose loss is not finite sets every weight to NaN at once (the engine checks the
  loss; scikit-learn applies the batch, after which its weights are non-finite too); the
  later epochs then record NaN losses and validation scores and ``fit`` raises
  scikit-learn's ``ValueError`` unless early stopping restores the best weights, as in
  scikit-learn.
"""

import warnings

import numpy as np
import scipy.optimize
import scipy.sparse
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
from sklearn.neural_network import MLPRegressor as _SkMLPRegressor
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer
from sklearn.utils import shuffle
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import validate_data

import mlpcore._engine as _engine
from mlpcore._base import HIDDEN_ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS
from mlpcore._threads import blas_threads

# scikit-learn's names for the activations and output functions, in mlpcore's terms.
_HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_OUTPUT_LOSS = {
    "identity": ("identity", "mse"),
    "logistic": ("sigmoid", "cross_entropy"),
    "softmax": ("softmax", "cross_entropy"),
    "exp": ("exp", "poisson"),
}


def _engine_input(X, dtype):
    """X as the engine reads it: a C-contiguous array, or for sparse X a CSR matrix (never
    densified: the engine trains and predicts at the cost of its nonzeros), in ``dtype``."""
    if scipy.sparse.issparse(X):
        X = X.tocsr()
        return X if X.dtype == dtype else X.astype(dtype)
    return np.ascontiguousarray(X, dtype=dtype)


class _EngineNumerics:
    """The numeric methods of scikit-learn's BaseMultilayerPerceptron, on mlpcore's engine.

    The parameters live in one flat vector (as the engine wants them); ``coefs_`` and
    ``intercepts_`` are views into it after every fit. If the user replaces them, the
    vector is rebuilt from them before the next use.
    """

    # -- parameters ------------------------------------------------------------------------
    def _engine_network(self):
        output, loss = _OUTPUT_LOSS[self.out_activation_]
        sizes = (self.coefs_[0].shape[0], *(c.shape[1] for c in self.coefs_))
        key = (sizes, self.activation, self.out_activation_)
        if getattr(self, "_mlpcore_key", None) != key:
            self._mlpcore_network = _engine.Network(
                sizes, HIDDEN_ACTIVATIONS[_HIDDEN[self.activation]], OUTPUT_ACTIVATIONS[output],
                LOSSES[loss])
            self._mlpcore_key = key
        return self._mlpcore_network

    def _flat(self, arrays, dtype):
        """One flat vector laid out like the engine's theta from per-layer arrays."""
        n = len(self.coefs_)
        out = np.empty(sum(a.size for a in arrays), dtype=dtype)
        offset = 0
        for W, b in zip(arrays[:n], arrays[n:]):
            out[offset:offset + W.size] = W.ravel()
            offset += W.size
            out[offset:offset + b.size] = b
            offset += b.size
        return out

    def _views(self, flat):
        """Per-layer arrays (weights, then biases) viewing a flat vector."""
        net = self._engine_network()
        sizes = net.sizes
        weights = [flat[w].reshape(fi, fo) for (w, _), fi, fo in
                   zip(net.layer_slices(), sizes[:-1], sizes[1:])]
        return weights + [flat[b] for _, b in net.layer_slices()]

    def _theta(self, dtype=None):
        """The flat parameter vector, reused while coefs_/intercepts_ still view it."""
        theta = getattr(self, "_mlpcore_theta", None)
        views = getattr(self, "_mlpcore_views", None)
        current = self.coefs_ + self.intercepts_
        dtype = np.dtype(dtype or self.coefs_[0].dtype)
        if (theta is None or views is None or theta.dtype != dtype or len(views) != len(current)
                or any(a is not b for a, b in zip(current, views))):
            theta = self._flat(current, dtype)
            self._engine_network()
            self._adopt(theta)
        return theta

    def _adopt(self, theta):
        """Make coefs_/intercepts_ views of ``theta``."""
        views = self._views(theta)
        n = len(self.coefs_)
        self.coefs_ = views[:n]
        self.intercepts_ = views[n:]
        self._mlpcore_theta = theta
        self._mlpcore_views = list(views)

    def __getstate__(self):
        state = super().__getstate__()
        # Derived caches: rebuilt from coefs_ and intercepts_ after unpickling.
        for key in ("_mlpcore_theta", "_mlpcore_views", "_mlpcore_network", "_mlpcore_key"):
            state.pop(key, None)
        return state

    # -- prediction ------------------------------------------------------------------------
    def _forward_pass_fast(self, X, check_input=True):
        """Output activations for X, computed by the engine in the parameters' dtype."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        theta = self._theta()
        out = np.empty((X.shape[0], self.n_outputs_), dtype=theta.dtype)
        net = self._engine_network()
        with blas_threads(None, min(X.shape[0], _engine.CHUNK_ROWS), net.sizes, inference=True):
            _engine.forward(net, theta, _engine_input(X, theta.dtype), out)
        return out

    # -- helpers shared by the solvers ------------------------------------------------------
    def _loss_scale(self):
        # scikit-learn's squared_error averages over the outputs as well as the samples
        # (its gradient does not): the data part of the reported loss is divided by K.
        return self.n_outputs_ if self.out_activation_ == "identity" else 1

    def _check_poisson_targets(self, y):
        if self.out_activation_ == "exp" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression.")

    def _engine_arrays(self, X, y, sample_weight):
        """What the engine trains on: X (C-contiguous, or CSR when sparse), Y and weights in
        X's dtype, and the parameter vector packed from coefs_/intercepts_ (which become
        views of it)."""
        dtype = X.dtype
        X = _engine_input(X, dtype)
        Y = np.ascontiguousarray(y, dtype=dtype)
        self._check_poisson_targets(Y)
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=dtype)
        theta = self._flat(self.coefs_ + self.intercepts_, dtype)
        net = self._engine_network()
        self._adopt(theta)
        return X, Y, sw, theta, net

    # -- the stochastic solvers -------------------------------------------------------------
    def _make_optimizer(self):
        params = self.coefs_ + self.intercepts_
        if self.solver == "sgd":
            return SGDOptimizer(params, self.learning_rate_init, self.learning_rate,
                                self.momentum, self.nesterovs_momentum, self.power_t)
        return AdamOptimizer(params, self.learning_rate_init, self.beta_1, self.beta_2,
                             self.epsilon)

    def _optimizer_state(self, dtype):
        """The optimizer's per-layer state as flat vectors, its lists made views of them."""
        opt = self._optimizer
        if isinstance(opt, AdamOptimizer):
            s1, s2 = self._flat(opt.ms, dtype), self._flat(opt.vs, dtype)
            opt.ms, opt.vs = self._views(s1), self._views(s2)
            return "adam", s1, s2
        s1 = self._flat(opt.velocities, dtype)
        opt.velocities = self._views(s1)
        if self.momentum == 0:  # momentum 0 is plain SGD: the engine's fastest path
            return "sgd", s1, None
        return ("nesterov" if self.nesterovs_momentum else "momentum"), s1, None

    def _adam_steps(self, rule, updates):
        """Advance Adam's step count by ``updates`` and its bias-corrected step size."""
        opt = self._optimizer
        if rule == "adam" and updates:
            opt.t += updates
            opt.learning_rate = (self.learning_rate_init * np.sqrt(1 - self.beta_2 ** opt.t)
                                 / (1 - self.beta_1 ** opt.t))

    def _stochastic_epoch(self, net, workspace, theta, X, Y, sw, sample_idx, batch_size, rule,
                          s1, s2, penalty, scale):
        """One epoch in the engine; sets ``loss_`` and returns whether the loss diverged.

        The engine stops at the first batch whose loss is not finite (without applying it).
        scikit-learn applies that batch and its weights and optimizer state become
        non-finite; so do these (they are set to NaN, and Adam's step count still counts
        every batch), which leads to scikit-learn's NaN losses and validation scores in the
        later epochs and to its ``ValueError`` at the end of ``fit``.
        """
        opt = self._optimizer
        if rule == "adam":
            lr, t = self.learning_rate_init, opt.t
        else:
            lr, t = opt.learning_rate, 0
        loss_sum, weight_sum, updates, status = _engine.train_epoch(
            net, workspace, theta, X, Y, sw, sample_idx if self.shuffle else None,
            batch_size, rule, lr, alpha=self.alpha, momentum=self.momentum,
            beta1=self.beta_1, beta2=self.beta_2, epsilon=self.epsilon, state1=s1,
            state2=s2, t=t, penalty_out=penalty, normalize="weights")
        if status == _engine.EPOCH_DIVERGED:
            updates = -(-X.shape[0] // batch_size)  # scikit-learn applies every batch
        self._adam_steps(rule, updates)
        if status == _engine.EPOCH_INTERRUPTED:
            raise KeyboardInterrupt
        if status == _engine.EPOCH_DIVERGED:
            warnings.warn(f"overflow: the loss became NaN or infinite in iteration "
                          f"{self.n_iter_ + 1}; the weights are now non-finite. Try a smaller "
                          "learning_rate_init or scale the input data.", RuntimeWarning,
                          stacklevel=4)
            for array in (theta, s1, s2):
                if array is not None:
                    array[:] = np.nan
            self.loss_ = np.nan
            return True
        # loss_sum is sum_b B_b J_b (J_b divided by the batch's weight), penalty[0] its L2
        # part: scikit-learn's accumulated_loss, before the data part's division by K.
        data_loss = (loss_sum - penalty[0]) / scale + penalty[0]
        self.loss_ = data_loss / X.shape[0]
        return False

    @staticmethod
    def _check_batch_weights(sw, sample_idx, batch_size, shuffle):
        """scikit-learn's ZeroDivisionError (np.average's) for a batch of zero total weight,
        raised before the epoch instead of at that batch."""
        if sw is None:
            return
        rows = sw[sample_idx] if shuffle else sw
        if (np.add.reduceat(rows, np.arange(0, len(rows), batch_size)) == 0).any():
            raise ZeroDivisionError("Weights sum to zero, can't be normalized")

    def _fit_stochastic(self, X, y, sample_weight, activations, deltas, coef_grads,
                        intercept_grads, layer_units, incremental):
        X, Y, sw, theta, net = self._engine_arrays(X, y, sample_weight)
        dtype = X.dtype
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_optimizer()
        rule, s1, s2 = self._optimizer_state(dtype)

        # early_stopping in partial_fit doesn't make sense
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            # don't stratify in multilabel classification
            should_stratify = is_classifier(self) and self.n_outputs_ == 1
            stratify = y if should_stratify else None
            train, val = train_test_split(np.arange(X.shape[0]), random_state=self._random_state,
                                          test_size=self.validation_fraction, stratify=stratify)
            X_val, y_val = X[val], Y[val]
            sample_weight_val = None if sw is None else sw[val]
            X, Y = X[train], Y[train]
            sw = None if sw is None else sw[train]
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_val = y_val = sample_weight_val = None

        n_samples = X.shape[0]
        sample_idx = np.arange(n_samples, dtype=np.intp)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        workspace = _engine.Workspace(net, min(batch_size, _engine.CHUNK_ROWS), dtype,
                                      _engine.is_sparse_rows(X))
        penalty = np.zeros(1)
        scale = self._loss_scale()

        diverged = False
        with blas_threads(None, min(batch_size, _engine.CHUNK_ROWS), net.sizes):
            try:
                self.n_iter_ = 0
                for _ in range(self.max_iter):
                    if self.shuffle:
                        # Only shuffle the sample indices: the engine gathers each batch.
                        sample_idx = shuffle(sample_idx, random_state=self._random_state)
                    if diverged:
                        # scikit-learn goes on training non-finite weights: every later
                        # epoch's loss (and validation score) is NaN.
                        self.loss_ = np.nan
                        self._adam_steps(rule, -(-X.shape[0] // batch_size))
                    else:
                        self._check_batch_weights(sw, sample_idx, batch_size, self.shuffle)
                        diverged = self._stochastic_epoch(
                            net, workspace, theta, X, Y, sw, sample_idx, batch_size, rule,
                            s1, s2, penalty, scale)
                    self.n_iter_ += 1

                    self.t_ += n_samples
                    self.loss_curve_.append(self.loss_)
                    if self.verbose:
                        print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                    # update no_improvement_count based on training loss or
                    # validation score according to early_stopping
                    self._update_no_improvement_count(early_stopping, X_val, y_val,
                                                      sample_weight_val)

                    # for learning rate that needs to be updated at iteration end
                    self._optimizer.iteration_ends(self.t_)

                    if self._no_improvement_count > self.n_iter_no_change:
                        # not better than last `n_iter_no_change` iterations by tol
                        # stop or decrease learning rate
                        if early_stopping:
                            msg = ("Validation score did not improve more than tol=%f for %d "
                                   "consecutive epochs." % (self.tol, self.n_iter_no_change))
                        else:
                            msg = ("Training loss did not improve more than tol=%f for %d "
                                   "consecutive epochs." % (self.tol, self.n_iter_no_change))
                        is_stopping = self._optimizer.trigger_stopping(msg, self.verbose)
                        if is_stopping:
                            break
                        else:
                            self._no_improvement_count = 0

                    if incremental:
                        break

                    if self.n_iter_ == self.max_iter:
                        warnings.warn(
                            "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                            "optimization hasn't converged yet." % self.max_iter,
                            ConvergenceWarning)
            except KeyboardInterrupt:
                warnings.warn("Training interrupted by user.")

        if early_stopping:
            # restore best weights
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    # -- L-BFGS ----------------------------------------------------------------------------
    def _set_packing(self, layer_units):
        """scikit-learn's ``_coef_indptr`` and ``_intercept_indptr``: where each layer's
        weights and biases sit in its packed vector (all weights, then all biases), read by
        its ``_unpack`` and ``_loss_grad_lbfgs``."""
        self._coef_indptr = []
        self._intercept_indptr = []
        start = 0
        for n_fan_in, n_fan_out in zip(layer_units[:-1], layer_units[1:]):
            self._coef_indptr.append((start, start + n_fan_in * n_fan_out,
                                      (n_fan_in, n_fan_out)))
            start += n_fan_in * n_fan_out
        for n_fan_out in layer_units[1:]:
            self._intercept_indptr.append((start, start + n_fan_out))
            start += n_fan_out

    def _fit_lbfgs(self, X, y, sample_weight, activations, deltas, coef_grads,
                   intercept_grads, layer_units):
        self._set_packing(layer_units)
        X, Y, sw, theta, net = self._engine_arrays(X, y, sample_weight)
        grad = np.empty_like(theta)
        workspace = _engine.Workspace(net, min(X.shape[0], _engine.CHUNK_ROWS), X.dtype,
                                      _engine.is_sparse_rows(X))
        scale = self._loss_scale()
        w_total = X.shape[0] if sw is None else float(sw.sum(dtype=np.float64))
        if w_total == 0:  # scikit-learn's (np.average's) error
            raise ZeroDivisionError("Weights sum to zero, can't be normalized")

        def loss_and_gradient(x):
            theta[:] = x
            loss = _engine.loss_gradient(net, theta, X, Y, sw, self.alpha, grad, workspace)
            if scale != 1:
                # scikit-learn minimises its reported loss (data part / K) with the gradient
                # of the unscaled one; doing the same keeps the iterates identical.
                pen = 0.5 * self.alpha * _engine.penalty(net, theta) / w_total
                loss = (loss - pen) / scale + pen
            return loss, grad.astype(np.float64)

        options = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol}
        with blas_threads(None, min(X.shape[0], _engine.CHUNK_ROWS), net.sizes):
            opt_res = scipy.optimize.minimize(loss_and_gradient, theta.astype(np.float64),
                                              method="L-BFGS-B", jac=True, options=options)
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = np.float64(opt_res.fun)  # scikit-learn's loss_ is a NumPy scalar
        theta[:] = opt_res.x


def _engine_docstring(base, what):
    """scikit-learn's docstring of ``base`` under a first line saying what runs it."""
    return (f"Multi-layer perceptron {what}: scikit-learn's ``{base.__name__}`` trained by\n"
            "mlpcore's compiled engine. Same parameters, attributes and behaviour; see\n"
            ":mod:`mlpcore.sklearn` for the few documented differences.\n\n"
            + (base.__doc__ or "").split("\n", 1)[-1])


class MLPClassifier(_EngineNumerics, _SkMLPClassifier):
    __doc__ = _engine_docstring(_SkMLPClassifier, "classifier")


class MLPRegressor(_EngineNumerics, _SkMLPRegressor):
    __doc__ = _engine_docstring(_SkMLPRegressor, "regressor")
