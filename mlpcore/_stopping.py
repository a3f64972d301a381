"""When training stops improving: scikit-learn's patience rule.

An epoch counts as "no improvement" when the monitored value is not better than the best
so far by more than ``tol``; training reacts (stops, or for the adaptive schedule lowers the
learning rate) once more than ``n_iter_no_change`` such epochs follow one another.
"""

import math


class PlateauMonitor:
    """Track the best value of a monitored quantity and the epochs without improvement.

    Parameters
    ----------
    tol : float
        Minimum improvement that resets the count.
    patience : int or float
        ``n_iter_no_change``: the count must exceed it to signal a plateau (``math.inf``
        never signals).
    mode : {'min', 'max'}
        'min' for losses, 'max' for scores.
    """

    def __init__(self, tol, patience, mode="min"):
        self.tol = tol
        self.patience = patience
        self.sign = 1.0 if mode == "min" else -1.0
        self.best = math.inf
        self.count = 0

    def update(self, value):
        """Record this epoch's value. Returns True if it is the best so far."""
        v = self.sign * value
        if not v < self.best - self.tol:  # NaN counts as no improvement
            self.count += 1
        else:
            self.count = 0
        if v < self.best:
            self.best = v
            return True
        return False

    @property
    def best_value(self):
        return self.sign * self.best

    @property
    def exhausted(self):
        """More than ``patience`` epochs in a row without improvement."""
        return self.count > self.patience

    def reset_count(self):
        self.count = 0
