"""Training with L-BFGS: scipy's L-BFGS-B fed by the compiled full-data loss and gradient.

For small problems a quasi-Newton method on the whole data set beats stochastic updates.
Each loss-and-gradient evaluation is one chunked pass of the engine over all samples
(``_engine.loss_gradient``); scipy keeps the parameter vector in float64, so a float32 model
is evaluated in float32 and its gradient handed to scipy as float64.
"""

import math
import time
import warnings

import numpy as np

from mlpcore import _engine
from mlpcore._stopping import PlateauMonitor
from mlpcore._threads import blas_threads


def run_lbfgs(trainer, X, Y, sw, max_iter, validation):
    """Minimise J over all of (X, Y) for at most ``max_iter`` iterations.

    Every iteration is recorded in ``history`` like an epoch (loss, validation metrics) and
    reported to ``verbose``/``callback``; a callback returning False stops the run.

    Returns
    -------
    TrainingResult
    """
    from scipy.optimize import minimize

    from mlpcore._training import (
        TrainingDivergedWarning, TrainingInterruptedWarning, TrainingResult,
    )

    model = trainer.model
    opt = model.optimizer
    theta = model._theta
    grad = np.empty_like(theta)
    workspace = trainer._workspace_for(min(X.shape[0], _engine.CHUNK_ROWS))
    result = TrainingResult()
    never = (PlateauMonitor(0.0, math.inf), None)
    started = time.perf_counter()

    def loss_and_gradient(x):
        theta[:] = x
        value = _engine.loss_gradient(model._network, theta, X, Y, sw, model.alpha, grad,
                                      workspace)
        return value, grad.astype(np.float64)

    def after_iteration(intermediate_result):
        theta[:] = intermediate_result.x
        logs = {"loss": float(intermediate_result.fun), "lr": math.nan}
        if validation is not None:
            logs.update(trainer.validation_logs(validation))
        if trainer.end_epoch(logs, started, never, result, [None], False):
            raise StopIteration

    x0 = theta.astype(np.float64)
    threads = blas_threads(model.n_threads, min(X.shape[0], _engine.CHUNK_ROWS), model.sizes)
    try:
        with threads:
            res = minimize(loss_and_gradient, x0, jac=True, method="L-BFGS-B",
                           callback=after_iteration,
                           options={"maxiter": max_iter, "maxfun": opt.max_fun,
                                    "gtol": 1e-5 if model.tol is None else model.tol,
                                    "maxcor": opt.history_size, "ftol": opt.ftol})
    except KeyboardInterrupt:
        result.stop_reason = "interrupted"
        warnings.warn("training interrupted by the user", TrainingInterruptedWarning,
                      stacklevel=4)
        if not np.isfinite(theta).all():
            theta[:] = x0
        return result
    if not np.isfinite(res.x).all():
        theta[:] = x0
        result.stop_reason = "diverged"
        warnings.warn("L-BFGS produced non-finite parameters; the starting parameters are "
                      "kept", TrainingDivergedWarning, stacklevel=4)
        return result
    theta[:] = res.x
    opt.t += int(res.nit)
    result.message = str(res.message)
    if result.stop_reason is None and res.nit < max_iter and res.success:
        result.stop_reason = "converged"
    return result
