"""What training reports back: the result of a call, its warnings, and the not-fitted error.

This module sits at the bottom of the package's import graph (it imports nothing from
mlpcore), so every layer can raise and warn with the same classes.
"""

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class NotFittedError(ValueError, AttributeError):
    """The model was used before it was trained (or built by ``partial_fit``)."""


class TrainingDivergedWarning(RuntimeWarning):
    """The loss became NaN or infinite; training stopped and the last finite parameters kept."""


class TrainingFailedWarning(RuntimeWarning):
    """The solver stopped without converging (L-BFGS: a line search found no decrease, or
    the evaluation budget ran out); the model keeps its last iterate."""


class TrainingInterruptedWarning(UserWarning):
    """Training was interrupted (Ctrl-C); the model keeps the last complete batch's state."""


class FeatureScaleWarning(UserWarning):
    """The features' scales are far apart: training on them as they are may crawl or fail
    (``scale='standard'`` makes the model scale its inputs)."""


class FeatureNamesWarning(UserWarning):
    """Columns taken by position although one side has names: a plain array given to a
    model trained on a DataFrame, or a DataFrame given to one trained without names."""


class TrainingResult:
    """What one call to fit, fit_more or partial_fit did.

    Attributes
    ----------
    epochs : int
        Epochs completed (L-BFGS: iterations).
    stop_reason : str or None
        None when all requested epochs ran; else 'plateau', 'callback', 'interrupted',
        'diverged', 'converged' (L-BFGS) or 'failed' (L-BFGS stopped without converging).
    best_loss, best_validation : float or None
        Best training loss, and best monitored validation value (early stopping).
    message : str
        A sentence on why training stopped ('' when it ran all its epochs).
    """

    def __init__(self):
        self.epochs = 0
        self.stop_reason = None
        self.best_loss = None
        self.best_validation = None
        self.message = ""

    def __repr__(self):
        return f"TrainingResult(epochs={self.epochs}, stop_reason={self.stop_reason!r})"


def warn(message, category):
    """``warnings.warn`` attributed to the first caller outside the mlpcore package.

    The stack level is counted, not hard-coded, so a warning points at the user's line
    whichever way of training (or the CLI, or the scikit-learn adapter) raised it.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
