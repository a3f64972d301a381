"""Learning-rate schedules: the step size of each epoch.

Following scikit-learn's MLP (``learning_rate=`` there):

* ``"constant"``: lr stays at the optimizer's base rate lr0.
* ``"invscaling"``: after each epoch, lr = lr0 / (t + 1) ** power_t with t the number of
  samples seen so far (so the first epoch runs at lr0).
* ``"adaptive"``: lr stays at lr0 while training improves; each time the monitored loss (or
  validation metric) has not improved by ``tol`` for more than ``n_iter_no_change`` epochs,
  lr is divided by 5, and training stops once lr would go below 1e-6.
* a callable ``schedule(epoch) -> lr``: the rate of epoch ``epoch`` (0 for the model's first
  epoch, counting across ``fit_more`` and ``partial_fit`` calls).
"""

import math
import numbers

SCHEDULES = ("constant", "invscaling", "adaptive")


class Schedule:
    """A learning-rate schedule with its state (the current rate).

    Parameters
    ----------
    kind : str or callable
        One of ``SCHEDULES`` or a function ``epoch -> learning rate``.
    base_rate : float
        lr0, the optimizer's learning rate.
    power_t : float
        Exponent of ``"invscaling"``.
    """

    def __init__(self, kind, base_rate, power_t=0.5):
        if not callable(kind) and kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}; valid values are {list(SCHEDULES)} "
                             "or a callable epoch -> learning rate")
        self.kind = kind
        self.base_rate = base_rate
        self.power_t = power_t
        self.current = base_rate

    def rate(self, epoch):
        """The learning rate for epoch number ``epoch`` (0-based, over the model's life)."""
        if callable(self.kind):
            lr = self.kind(epoch)
            # Any real number: Python's or NumPy's (np.float32(0.01), np.int64(1)), not bool.
            if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (
                    math.isfinite(lr) and lr > 0):
                raise ValueError(f"schedule({epoch}) returned {lr!r}; it must return a "
                                 "positive finite learning rate")
            self.current = float(lr)
        return self.current

    def epoch_ended(self, samples_seen):
        """Update the rate after an epoch; ``samples_seen`` counts the model's whole life."""
        if self.kind == "invscaling":
            try:
                rate = self.base_rate / (samples_seen + 1) ** self.power_t
            except OverflowError:  # (samples + 1) ** power_t beyond a float: a rate of 0
                rate = 0.0
            if not rate > 0:
                raise ValueError(f"schedule='invscaling' with power_t={self.power_t:g} takes the "
                                 f"learning rate to 0 after {samples_seen} samples; use a "
                                 "smaller power_t (scikit-learn's default is 0.5)")
            self.current = rate

    def plateau(self):
        """The monitored quantity stopped improving. Returns True if training should stop.

        Only ``"adaptive"`` continues, with the rate divided by 5, until it reaches 1e-6.
        """
        if self.kind != "adaptive" or self.current <= 1e-6:
            return True
        self.current /= 5.0
        return False

    def get_state(self):
        return {"current": self.current}

    def set_state(self, state):
        self.current = float(state["current"])
