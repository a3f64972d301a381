"""Scaling features and targets for training, then folding it into the model's weights.

The saved model then takes raw data: the scaling is exact under the first layer's (and an
identity output's) linearity, so nothing but the weights has to be stored.
"""

from typing import NamedTuple

import numpy as np


class Scaling(NamedTuple):
    """Per-column ``(A - shift) / scale``.

    Attributes
    ----------
    shift, scale : ndarray of float64, shape (D,)
    """

    shift: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_data(cls, A, how):
        """The scaling that standardises the columns of A or maps them onto 0..1.

        Parameters
        ----------
        A : ndarray of shape (N, D), or (N,) for one column
        how : {'standard', 'minmax'}
            Mean 0 and standard deviation 1, or minimum 0 and maximum 1. Constant (or
            non-finite) columns get scale 1.

        Returns
        -------
        Scaling
        """
        A = np.asarray(A, dtype=np.float64).reshape(len(A), -1)
        if how == "standard":
            shift, scale = A.mean(axis=0), A.std(axis=0)
        else:
            shift = A.min(axis=0)
            scale = A.max(axis=0) - shift
        scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
        return cls(shift, scale)

    def apply(self, A):
        """``(A - shift) / scale`` in float64, for A of shape (N, D), or (N,) when D is 1."""
        return ((A.reshape(len(A), -1) - self.shift) / self.scale).reshape(A.shape)


def fold_into_inputs(model, scaling):
    """Make a model trained on ``scaling.apply(X)`` take raw X: exact, by linearity.

    Z1 = ((X - shift) / scale) W1 + b1 = X (W1 / scale[:, None]) + (b1 - (shift / scale) W1).
    The optimizer state is reset: Adam's second moments have no exact counterpart for the
    folded parameters, and velocities for the old ones would push the new ones wrongly, so a
    resumed fit (``fit_more``) starts its optimizer afresh.
    """
    shift, scale = scaling
    W = model.weights[0].astype(np.float64)
    b = model.biases[0].astype(np.float64)
    model.biases[0][...] = b - (shift / scale) @ W
    model.weights[0][...] = W / scale[:, None]
    model.optimizer.reset_state()


def fold_into_outputs(model, scaling):
    """Make an identity-output model trained on ``scaling.apply(y)`` predict raw y.

    y = a_L scale + shift = A (W_L scale[None, :]) + (b_L scale + shift).
    """
    shift, scale = scaling
    W = model.weights[-1].astype(np.float64)
    b = model.biases[-1].astype(np.float64)
    model.weights[-1][...] = W * scale[None, :]
    model.biases[-1][...] = b * scale + shift
    model.optimizer.reset_state()  # as in fold_into_inputs
