"""Training with L-BFGS: scipy's L-BFGS-B fed by the compiled full-data loss and gradient.

For small problems a quasi-Newton method on the whole data set beats stochastic updates.
Each loss-and-gradient evaluation is one chunked pass of the engine over all samples
(``_engine.loss_gradient``); scipy keeps the parameter vector in float64, so a float32 model
is evaluated in float32 and its gradient handed to scipy as float64.

scipy's ``minimize`` owns its loop and reports each iteration to a callback, whereas the
epoch driver (:func:`mlpcore._training.train`) asks for one iteration at a time. The two
are joined by running ``minimize`` in a helper thread that pauses in its callback until
the driver asks for the next iteration: exactly one of the two threads runs at any time,
so the iterates are those of a plain ``minimize`` call, and the driver, the user's
callback and Ctrl-C all stay on the calling thread.
"""

import threading

import numpy as np

import mlpcore._engine as _engine
from mlpcore._threads import blas_threads
from mlpcore._training import Step


class _Stop(Exception):
    """Raised inside the helper thread to end ``minimize`` early."""


class LBFGSIterations:
    """One L-BFGS-B iteration over all of (X, Y) per step.

    Parameters
    ----------
    model : MLP
        A built model with an :class:`mlpcore.LBFGS` optimizer; ``model.optimizer.t``
        counts the iterations.
    X, Y, sw : ndarray
        Checked training arrays.
    max_iter : int
        Iterations this call may take (scipy's ``maxiter``).
    workspace : _engine.Workspace
        Work buffers for at least ``min(N, CHUNK_ROWS)`` rows.

    Attributes
    ----------
    ended : {None, 'converged', 'failed'}
        How scipy ended before ``max_iter`` iterations: by its own convergence tests
        (gradient below ``tol``, or ``ftol``), or without converging (a line search that
        found no decrease, too many evaluations); ``message`` says which.
    """

    scheduled = False
    plateau_rule = False

    def __init__(self, model, X, Y, sw, max_iter, workspace):
        self.model, self.X, self.Y, self.sw = model, X, Y, sw
        self.max_iter = max_iter
        self.workspace = workspace
        self.grad = np.empty_like(model._theta)
        self.accepted = model._theta.astype(np.float64)  # scipy's last iterate (x0 at first)
        self.recorded = self.accepted  # the last iterate the driver took (and recorded)
        self.ended = None
        self.message = ""
        self._turn = threading.Condition()
        self._worker_runs = False  # whose turn it is: the helper thread's or the driver's
        self._stop = False
        self._event = None  # what the helper thread last reported
        self._thread = None

    def threads(self):
        m = self.model
        return blas_threads(m.n_threads, min(self.X.shape[0], _engine.CHUNK_ROWS), m.sizes)

    def loss(self):
        return self.model._evaluate(self.X, self.Y, self.sw)[0]

    # -- the helper thread ----------------------------------------------------------------
    def _loss_and_gradient(self, x):
        if self._stop:
            raise _Stop
        m = self.model
        m._theta[:] = x
        value = _engine.loss_gradient(m._network, m._theta, self.X, self.Y, self.sw, m.alpha,
                                      self.grad, self.workspace)
        return value, self.grad.astype(np.float64)

    def _iteration_done(self, intermediate_result):
        self.accepted = intermediate_result.x.copy()
        self._hand_over(("iteration", float(intermediate_result.fun)))
        if self._stop:
            raise StopIteration

    def _hand_over(self, event):
        """Report ``event`` to the driver and wait until it gives the turn back."""
        with self._turn:
            self._event = event
            self._worker_runs = False
            self._turn.notify_all()
            while not self._worker_runs:
                self._turn.wait()

    def _minimize(self):
        from scipy.optimize import minimize

        opt, m = self.model.optimizer, self.model
        try:
            res = minimize(self._loss_and_gradient, self.accepted, jac=True, method="L-BFGS-B",
                           callback=self._iteration_done,
                           options={"maxiter": self.max_iter, "maxfun": opt.max_fun,
                                    "gtol": 1e-5 if m.tol is None else m.tol,
                                    "maxcor": opt.history_size, "ftol": opt.ftol})
            event = ("finished", res)
        except _Stop:
            event = ("stopped", None)
        except BaseException as exc:  # handed to the driver's thread to be raised there
            event = ("error", exc)
        with self._turn:
            self._event = event
            self._worker_runs = False
            self._turn.notify_all()

    # -- what the driver calls -----------------------------------------------------------------
    def _resume(self):
        """Give the helper thread the turn and wait for what it reports."""
        with self._turn:
            self._worker_runs = True
            self._turn.notify_all()
        return self._wait_for_report()

    def _wait_for_report(self):
        with self._turn:
            while self._worker_runs:
                self._turn.wait()
            return self._event

    def step(self, learning_rate):
        m = self.model
        if self._thread is None:
            self._thread = threading.Thread(target=self._minimize, daemon=True,
                                            name="mlpcore-lbfgs")
            with self._turn:
                self._worker_runs = True
            self._thread.start()
            kind, value = self._wait_for_report()
        else:
            kind, value = self._resume()
        if kind == "error":
            raise value
        if kind == "iteration":
            self.recorded = self.accepted
            m._theta[:] = self.recorded
            m.optimizer.t += 1
            return Step("done", value, 0)
        res = value  # "finished": scipy ended by its own tests (or gave up)
        self.message = str(res.message)
        if not np.isfinite(res.x).all():
            return Step("diverged")
        m._theta[:] = res.x
        self.ended = "converged" if res.success else "failed"
        return Step("finished", message=self.message)

    def close(self, completed):
        """End the helper thread if it still waits; the model keeps the last iterate.

        ``completed``: the driver took all ``max_iter`` steps, so scipy ends by itself;
        otherwise it is told to stop (at its next evaluation or callback).
        """
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._stop = not completed
        kind, value = self._resume()
        while kind == "iteration":  # Ctrl-C came while it ran: it stops at its next turn
            kind, value = self._resume()
        thread.join()
        if kind == "finished":
            self.message = str(value.message)
        # A stop can come in a line search, or after an iteration the driver never took:
        # go back to the last iterate it took, which its history and step count describe.
        self.model._theta[:] = self.recorded
