"""mlpcore: a multilayer-perceptron trainer for the CPU whose hot path is compiled.

>>> import mlpcore
>>> model = mlpcore.fit(X, y)            # doctest: +SKIP
>>> model.predict(X_test)                # doctest: +SKIP

The forward pass, backpropagation and weight updates run in typed Cython over BLAS
(``mlpcore._engine``); this package adds input checking, batching, shuffling and the model.
"""

from mlpcore._model import MLP
from mlpcore._optimizers import SGD, Adam, Momentum, Nesterov, Optimizer
from mlpcore._persistence import load
from mlpcore._training import TrainingDivergedWarning, fit

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "SGD",
    "Adam",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "TrainingDivergedWarning",
    "fit",
    "load",
]
