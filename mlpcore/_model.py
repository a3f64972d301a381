"""The trained model: architecture, parameters, and everything one can ask of them."""

import numpy as np

from mlpcore import _engine
from mlpcore._base import HIDDEN_ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS, check_output_loss
from mlpcore._validation import check_sample_weight, check_X


class MLP:
    """A multilayer perceptron with its parameters, as returned by :func:`mlpcore.fit`.

    The network maps X (N x D) through hidden layers to K outputs:
    ``Z_l = A_{l-1} W_l + b_l``, ``A_l = g(Z_l)`` with ``A_0 = X``, and the output activation
    on the last layer. All parameters live in one flat vector; ``weights`` and ``biases`` are
    views into it.

    Parameters
    ----------
    sizes : tuple of int
        ``(D, M_1, ..., K)``: input width, hidden widths, output width.
    activation : str
        Hidden activation: 'sigmoid', 'tanh', 'relu' or 'identity'.
    output : str
        Output activation: 'softmax', 'sigmoid' or 'identity'.
    loss : str
        'cross_entropy' or 'mse'.
    dtype : float32 or float64
        The dtype of the parameters and of every computation.
    targets : mlpcore._targets.Targets
        How outputs map to labels or values.
    alpha : float
        L2 coefficient included in :meth:`loss` and :meth:`gradients`.

    Attributes
    ----------
    weights : list of ndarray
        ``weights[l]`` has shape (sizes[l], sizes[l+1]); W1 is D x M1, the last is M x K.
    biases : list of ndarray
        ``biases[l]`` has shape (sizes[l+1],).
    history : dict of lists
        Per-epoch records of training, at least ``history["loss"]``.
    classes : ndarray or None
        Class labels (classification) or None (regression).
    """

    def __init__(self, sizes, *, activation, output, loss, dtype, targets, alpha=0.0):
        self.activation = activation
        self.output = output
        self.loss_name = loss
        check_output_loss(output, loss)
        self.dtype = np.dtype(dtype)
        self.targets = targets
        self.alpha = float(alpha)
        self._network = _engine.Network(
            sizes, HIDDEN_ACTIVATIONS[activation], OUTPUT_ACTIVATIONS[output], LOSSES[loss]
        )
        self._theta = np.zeros(self._network.n_params, dtype=self.dtype)
        self.history = {"loss": []}
        self.optimizer = None
        self._trainer = None

    # -- architecture and parameters ------------------------------------------------------
    @property
    def sizes(self):
        """Layer widths ``(D, M_1, ..., K)``."""
        return self._network.sizes

    @property
    def n_features(self):
        return self.sizes[0]

    @property
    def n_outputs(self):
        return self.sizes[-1]

    @property
    def classes(self):
        return self.targets.classes

    @property
    def weights(self):
        """Weight matrices, views into the parameter vector (writing to them changes the model)."""
        return [self._theta[w].reshape(fi, fo) for (w, _), fi, fo in
                zip(self._network.layer_slices(), self.sizes[:-1], self.sizes[1:])]

    @property
    def biases(self):
        """Bias vectors, views into the parameter vector."""
        return [self._theta[b] for _, b in self._network.layer_slices()]

    @property
    def n_params(self):
        return self._network.n_params

    def __repr__(self):
        return (f"MLP(sizes={self.sizes}, activation={self.activation!r}, "
                f"output={self.output!r}, loss={self.loss_name!r}, dtype={self.dtype.name})")

    # -- inference ---------------------------------------------------------------------------
    def _check_X(self, X):
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
        _engine.forward(self._network, self._theta, X, out)
        return out

    def predict(self, X):
        """Class labels (classification) or predicted values (regression) for X."""
        return self.targets.decode(self.forward(X), self.output)

    def predict_proba(self, X):
        """Class probabilities, shape (N, n_classes), rows summing to 1 (classification only)."""
        if self.targets.task != "classification":
            raise AttributeError("predict_proba is only available for classification models")
        return self.targets.probabilities(self.forward(X), self.output)

    # -- loss and gradients --------------------------------------------------------------------
    def _prepare(self, X, Y, sample_weight):
        X = self._check_X(X)
        Ym = self.targets.encode(Y, self.dtype, X.shape[0])
        sw = check_sample_weight(sample_weight, X.shape[0], self.dtype)
        return X, Ym, sw

    def _loss_gradient(self, X, Ym, sw):
        grad = np.empty_like(self._theta)
        value = _engine.loss_gradient(self._network, self._theta, X, Ym, sw, self.alpha, grad)
        return value, grad

    def loss(self, X, Y, sample_weight=None):
        """The cost J at the current parameters.

        J = sum_i w_i l_i / sum_i w_i + alpha/2 sum_l ||W_l||^2 / sum_i w_i, with l_i the
        per-sample loss (see :mod:`mlpcore._base`) and w_i = 1 without sample weights; for
        the tutorial's network (sigmoid output, mse) this is J = 1/(2N) sum (a2 - Y)^2.
        """
        return self._loss_gradient(*self._prepare(X, Y, sample_weight))[0]

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
        _, grad = self._loss_gradient(*self._prepare(X, Y, sample_weight))
        gw = [grad[w].reshape(fi, fo) for (w, _), fi, fo in
              zip(self._network.layer_slices(), self.sizes[:-1], self.sizes[1:])]
        gb = [grad[b] for _, b in self._network.layer_slices()]
        return gw, gb

    def score(self, X, Y, sample_weight=None):
        """Accuracy (classification) or the coefficient of determination R^2 (regression).

        R^2 is averaged uniformly over outputs, as scikit-learn's ``r2_score`` does.
        """
        pred = self.predict(X)
        sw = None if sample_weight is None else check_sample_weight(
            sample_weight, len(pred), np.float64)
        if self.targets.task == "classification":
            Y = np.asarray(Y)
            truth = np.argmax(Y, axis=1) if self.targets.one_hot else Y.reshape(len(pred))
            return float(np.average(pred == truth, weights=sw))
        Y = np.asarray(Y, dtype=np.float64).reshape(len(pred), -1)
        pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
        ss_res = np.average((Y - pred) ** 2, axis=0, weights=sw)
        ss_tot = np.average((Y - np.average(Y, axis=0, weights=sw)) ** 2, axis=0, weights=sw)
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                      np.where(ss_res > 0, 0.0, 1.0))
        return float(np.mean(r2))

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path):
        """Write the model to ``path`` (an .npz archive; see :func:`mlpcore.load`).

        The write is atomic: the file is written beside the target and renamed over it, so
        a crash mid-save leaves any previous file intact.
        """
        from mlpcore._persistence import save_model

        save_model(self, path)
