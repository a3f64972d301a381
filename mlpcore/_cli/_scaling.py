"""Scaling features and targets for training, then folding it into the model's weights.

The saved model then takes raw data: the scaling is exact under the first layer's (and an
identity output's) linearity, so nothing but the weights has to be stored.
"""

import numpy as np

from mlpcore._scaling import Scaling

__all__ = ["Scaling", "fold_into_inputs", "fold_into_outputs"]


def fold_into_inputs(model, scaling):
    """Make a model trained on ``scaling.apply(X)`` take raw X: exact, by linearity.

    Z1 = ((X - shift) / scale) W1 + b1 = X (W1 / scale[:, None]) + (b1 - (shift / scale) W1).
    The optimizer state is reset: Adam's second moments have no exact counterpart for the
    folded parameters, and velocities for the old ones would push the new ones wrongly, so a
    resumed fit (``fit_more``) starts its optimizer afresh.
    """
    model.weights[0][...], model.biases[0][...] = scaling.fold(model.weights[0],
                                                               model.biases[0])
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
