"""Update rules: their settings and state, run by the compiled engine inside the epoch loop.

Each optimizer holds its hyperparameters and its state arrays (velocities, Adam moments, the
step count); the per-parameter arithmetic is compiled (``src/_updates.pxd``). The formulas
are scikit-learn's (``sklearn/neural_network/_stochastic_optimizers.py``), so a step of
either library from the same weights gives the same result:

* ``SGD``:       theta <- theta - lr g
* ``Momentum``:  v <- mu v - lr g;  theta <- theta + v
* ``Nesterov``:  v <- mu v - lr g;  theta <- theta + mu v - lr g
* ``Adam``:      m <- b1 m + (1 - b1) g;  s <- b2 s + (1 - b2) g^2;
                 theta <- theta - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(s) + eps)

``LBFGS`` is different: no batches and no learning rate; scipy's L-BFGS-B minimises the
full-data loss, fed by the compiled loss-and-gradient (see ``mlpcore._lbfgs``).
"""

import numbers

import numpy as np

from mlpcore._validation import check_int, check_positive_float


def _unit_interval(value, name):
    """``value`` as a float in [0, 1); strings, bools and other types are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


class Solver:
    """What every way of minimising J has: a name, settings, state arrays and a step count.

    The model keeps one solver (``model.optimizer``) and saves, copies and restores it
    through :meth:`get_config` (the settings) and :meth:`get_state`/:meth:`set_state`.
    """

    rule = None
    n_state = 0
    stochastic = True
    learning_rate = None

    def __init__(self):
        self.state = []
        self.t = 0

    def init_state(self, n_params, dtype):
        """Allocate zeroed state arrays for a parameter vector of n_params entries."""
        if len(self.state) != self.n_state or any(
            s.shape != (n_params,) or s.dtype != dtype for s in self.state
        ):
            self.state = [np.zeros(n_params, dtype=dtype) for _ in range(self.n_state)]
            self.t = 0

    def reset_state(self):
        """Zero the state (velocities, Adam moments) and the step count, keeping the settings.

        For parameters that were changed from outside, e.g. rescaled: state gathered for the
        old parameters would steer the new ones wrongly.
        """
        self.state = [np.zeros_like(s) for s in self.state]
        self.t = 0

    def get_state(self):
        """The training state: ``(t, arrays)``, the step count and the state vectors."""
        return self.t, list(self.state)

    def set_state(self, t, arrays, n_params, dtype):
        """Restore a state from :meth:`get_state` (copied), checked against the parameters.

        Raises
        ------
        ValueError
            A step count that is not a non-negative integer, or state arrays of the wrong
            number, shape or dtype.
        """
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < 2**62:
            raise ValueError(f"optimizer step count must be a non-negative integer, got {t!r}")
        if len(arrays) != self.n_state or any(
                a.shape != (n_params,) or a.dtype != dtype for a in arrays):
            raise ValueError("optimizer state does not match the parameters")
        self.state = [np.array(a, copy=True) for a in arrays]
        self.t = int(t)

    def get_config(self):
        """The settings (not the state) as a dict of plain values."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Optimizer(Solver):
    """Base class of the update rules the engine runs: a learning rate and optional state.

    Parameters
    ----------
    learning_rate : float
        Base step size lr (> 0).
    """

    def __init__(self, learning_rate=0.1):
        super().__init__()
        self.learning_rate = check_positive_float(learning_rate, "learning_rate")

    def engine_args(self, learning_rate):
        """Keyword arguments for ``_engine.train_epoch`` at the given (scheduled) rate."""
        state = self.state + [None] * (2 - len(self.state))
        return dict(rule=self.rule, learning_rate=learning_rate, state1=state[0],
                    state2=state[1], t=self.t, **self._constants())

    def _constants(self):
        return {}

    def record_updates(self, n_updates):
        """Advance the step count by the updates an epoch applied."""
        self.t += int(n_updates)

    def get_config(self):
        return {"learning_rate": self.learning_rate}


class SGD(Optimizer):
    """Plain (stochastic) gradient descent, the tutorial's W <- W - alpha dJ/dW."""

    rule = "sgd"


class Momentum(Optimizer):
    """Gradient descent with heavy-ball momentum.

    Parameters
    ----------
    learning_rate : float
    momentum : float in [0, 1)
        mu in v <- mu v - lr g.
    """

    rule = "momentum"
    n_state = 1

    def __init__(self, learning_rate=0.1, momentum=0.9):
        super().__init__(learning_rate)
        momentum = _unit_interval(momentum, "momentum")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum

    def _constants(self):
        return {"momentum": self.momentum}

    def get_config(self):
        return {"learning_rate": self.learning_rate, "momentum": self.momentum}


class Nesterov(Momentum):
    """Nesterov's accelerated gradient, in scikit-learn's form."""

    rule = "nesterov"


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction folded into the step size.

    Parameters
    ----------
    learning_rate : float
    beta1, beta2 : float in [0, 1)
        Decay rates of the first and second moment estimates.
    epsilon : float
        Added to sqrt(s) for numerical stability.
    """

    rule = "adam"
    n_state = 2

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8):
        super().__init__(learning_rate)
        self.beta1 = _unit_interval(beta1, "beta1")
        self.beta2 = _unit_interval(beta2, "beta2")
        self.epsilon = check_positive_float(epsilon, "epsilon")

    def _constants(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon}

    def get_config(self):
        return {"learning_rate": self.learning_rate, **self._constants()}


class LBFGS(Solver):
    """Limited-memory BFGS on the full-data loss (scipy.optimize's L-BFGS-B).

    For small data sets: every iteration evaluates the loss and gradient over all samples
    with the compiled engine, and needs no learning rate or batches. One iteration counts
    as one epoch in ``history``; training stops at ``epochs`` iterations, after ``max_fun``
    loss evaluations, or when the largest gradient component falls below ``tol`` (scipy's
    ``gtol``; 1e-5 when ``tol`` is None).

    It is not an update rule the engine runs, so it is a :class:`Solver` but not an
    :class:`Optimizer`: it has no learning rate and no state arrays; ``t`` counts its
    iterations.

    Parameters
    ----------
    max_fun : int
        Maximum number of loss-and-gradient evaluations.
    history_size : int
        Number of correction pairs kept (scipy's ``maxcor``).
    ftol : float
        Stop when the relative decrease of the loss in an iteration falls below ``ftol``
        (scipy's default); 0 disables this test, leaving ``tol`` on the gradient.
    """

    rule = "lbfgs"
    stochastic = False

    def __init__(self, max_fun=15000, history_size=10, ftol=2.220446049250313e-09):
        super().__init__()
        self.max_fun = check_int(max_fun, "max_fun", minimum=1)
        self.history_size = check_int(history_size, "history_size", minimum=1)
        self.ftol = check_positive_float(ftol, "ftol", allow_zero=True)

    def get_config(self):
        return {"max_fun": self.max_fun, "history_size": self.history_size, "ftol": self.ftol}


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adam": Adam,
              "lbfgs": LBFGS}


def default_learning_rate(name):
    """The base rate a named optimizer uses when none is given (None for 'lbfgs')."""
    return make_optimizer(name).learning_rate


def make_optimizer(optimizer, learning_rate=None):
    """A fresh Optimizer from a name or from an Optimizer instance (whose settings are copied).

    Parameters
    ----------
    optimizer : str or Solver
        A name in ``OPTIMIZERS`` or an object such as ``Adam(learning_rate=0.01)``.
    learning_rate : float, optional
        Base rate for a named optimizer (default: the optimizer's own, 0.1 for the SGD
        family, 0.001 for Adam). Passing it with an Optimizer instance is an error: the
        instance carries its own.
    """
    if isinstance(optimizer, Solver):
        if learning_rate is not None:
            raise ValueError("learning_rate is set on the optimizer object; do not pass both")
        return type(optimizer)(**optimizer.get_config())
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name or an Optimizer, got {type(optimizer).__name__}")
    name = optimizer.lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid values are {sorted(OPTIMIZERS)}")
    cls = OPTIMIZERS[name]
    if cls is LBFGS and learning_rate is not None:
        raise ValueError("optimizer='lbfgs' takes no learning_rate")
    return cls() if learning_rate is None else cls(learning_rate=learning_rate)
