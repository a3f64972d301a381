"""mlpcore: a multilayer-perceptron trainer for the CPU whose hot path is compiled.

>>> import mlpcore
>>> model = mlpcore.fit(X, y)            # doctest: +SKIP
>>> model.predict(X_test)                # doctest: +SKIP

The forward pass, backpropagation and weight updates run in typed Cython over BLAS
(``mlpcore._engine``); this package adds input checking, batching, shuffling and the model.
"""

from mlpcore._fit import fit
from mlpcore._model import MLP, load
from mlpcore._optimizers import LBFGS, SGD, Adam, Momentum, Nesterov, Optimizer, Solver
from mlpcore._results import (
    FeatureNamesWarning, FeatureScaleWarning, NotFittedError, TrainingDivergedWarning,
    TrainingFailedWarning, TrainingInterruptedWarning, TrainingResult,
)

__version__ = "0.1.0"

__all__ = [
    "LBFGS",
    "MLP",
    "SGD",
    "Adam",
    "FeatureNamesWarning",
    "FeatureScaleWarning",
    "Momentum",
    "Nesterov",
    "NotFittedError",
    "Optimizer",
    "Solver",
    "TrainingDivergedWarning",
    "TrainingFailedWarning",
    "TrainingInterruptedWarning",
    "TrainingResult",
    "fit",
    "load",
]
