"""The epoch driver: batching plan, shuffling, validation, stopping, progress, divergence guard.

The Python layer decides what each epoch does (the visiting order, the learning rate) and
what happens between epochs (validation, stopping, callbacks); each epoch itself runs as one
call into the engine (``_engine.train_epoch``), which does every forward pass,
backpropagation and update without the GIL and without allocating.
"""

import math
import time
import warnings

import numpy as np

from mlpcore import _engine
from mlpcore._stopping import PlateauMonitor
from mlpcore._threads import blas_threads

# Used for the adaptive schedule when tol is not given (scikit-learn's default tol).
_DEFAULT_TOL = 1e-4


class TrainingDivergedWarning(RuntimeWarning):
    """The loss became NaN or infinite; training stopped and the last finite parameters kept."""


class TrainingInterruptedWarning(UserWarning):
    """Training was interrupted (Ctrl-C); the model keeps the last complete batch's state."""


class TrainingResult:
    """What one call to fit, fit_more or partial_fit did.

    Attributes
    ----------
    epochs : int
        Epochs completed (L-BFGS: iterations).
    stop_reason : str or None
        None when all requested epochs ran; else 'plateau', 'callback', 'interrupted',
        'diverged' or 'converged' (L-BFGS).
    best_loss, best_validation : float or None
        Best training loss, and best monitored validation value (early stopping).
    """

    def __init__(self):
        self.epochs = 0
        self.stop_reason = None
        self.best_loss = None
        self.best_validation = None
        self.message = ""

    def __repr__(self):
        return f"TrainingResult(epochs={self.epochs}, stop_reason={self.stop_reason!r})"


class Trainer:
    """Runs training epochs for one model and keeps its work buffers between calls."""

    def __init__(self, model):
        self.model = model
        self._workspace = None

    def _workspace_for(self, rows):
        ws = self._workspace
        if ws is None or ws.rows < rows or ws.dtype != self.model.dtype:
            ws = self._workspace = _engine.Workspace(self.model._network, rows, self.model.dtype)
        return ws

    def validation_logs(self, validation):
        """{'val_loss', 'val_score'} of the model on checked validation arrays."""
        Xv, Yv, swv = validation
        val_loss, out = self.model._evaluate(Xv, Yv, swv)
        return {"val_loss": val_loss, "val_score": self.model.targets.score(out, Yv, swv)}

    def end_epoch(self, logs, started, monitors, result, best_theta, incremental):
        """Record an epoch, report it, and decide whether to stop. Returns True to stop."""
        model = self.model
        history = model.history
        logs["time"] = time.perf_counter() - started
        epoch = len(history["loss"]) + 1
        for key, value in logs.items():
            if key != "time":
                history.setdefault(key, []).append(value)
        result.epochs += 1
        if model.verbose:
            print(format_progress(epoch, logs), flush=True)
        if incremental:
            return False
        stop = False
        loss_monitor, val_monitor = monitors
        improved = loss_monitor.update(logs["loss"])
        result.best_loss = loss_monitor.best_value
        watched = loss_monitor
        if val_monitor is not None and "val_loss" in logs:
            improved = val_monitor.update(logs[model.monitor])
            result.best_validation = val_monitor.best_value
            watched = val_monitor
            if improved:
                best_theta[0] = model._theta.copy()
        if watched.exhausted and (model.early_stopping or model.tol is not None or
                                  model.schedule == "adaptive"):
            what = "validation " + model.monitor[4:] if watched is val_monitor else "training loss"
            if model._schedule.plateau():
                result.stop_reason = "plateau"
                result.message = (f"{what} did not improve by more than tol={watched.tol} for "
                                  f"{model.n_iter_no_change} consecutive epochs")
                stop = True
            else:
                watched.reset_count()
        if model.callback is not None and model.callback(epoch, model, logs) is False:
            result.stop_reason = "callback"
            stop = True
        return stop

    def run(self, X, Y, sw, epochs, batch, validation=None, incremental=False):
        """Train on checked arrays X (N x D), Y (N x K) for up to ``epochs`` epochs.

        Parameters
        ----------
        batch : int
            Rows per update (N for gradient descent).
        validation : (Xv, Yv, swv) or None
            Checked validation arrays, evaluated after every epoch.
        incremental : bool
            partial_fit: one epoch, no stopping criteria.

        Returns
        -------
        TrainingResult
        """
        model = self.model
        if not model.optimizer.stochastic:
            from mlpcore._lbfgs import run_lbfgs

            return run_lbfgs(self, X, Y, sw, epochs, validation)
        workspace = self._workspace_for(min(batch, _engine.CHUNK_ROWS))
        model.optimizer.init_state(model.n_params, model.dtype)
        tol = model.tol if model.tol is not None else (0.0 if model.early_stopping
                                                        else _DEFAULT_TOL)
        monitors = (PlateauMonitor(tol, model.n_iter_no_change, "min"),
                    PlateauMonitor(tol, model.n_iter_no_change,
                                   "max" if model.monitor == "val_score" else "min")
                    if model.early_stopping else None)
        result = TrainingResult()
        best_theta = [None]
        started = time.perf_counter()
        with blas_threads(model.n_threads, min(batch, _engine.CHUNK_ROWS), model.sizes):
            try:
                self._epochs(X, Y, sw, epochs, batch, validation, incremental, workspace,
                             monitors, result, best_theta, started)
            except KeyboardInterrupt:
                # Ctrl-C outside the engine (between epochs): every epoch so far is complete.
                result.stop_reason = "interrupted"
                warnings.warn("training interrupted by the user between epochs",
                              TrainingInterruptedWarning, stacklevel=3)
        if model.early_stopping and best_theta[0] is not None:
            model._theta[:] = best_theta[0]  # restore the best validation weights
        return result

    def _snapshot(self):
        opt = self.model.optimizer
        return self.model._theta.copy(), [s.copy() for s in opt.state], opt.t

    def _restore_finite(self, snapshots, X, Y, sw):
        """Go back to the newest snapshot whose loss on (X, Y) is finite.

        An epoch's updates can leave finite parameters whose loss overflows (in float32
        especially), so the start of the diverging epoch is not always good enough.
        """
        model, opt = self.model, self.model.optimizer
        for theta, state, t in reversed(snapshots):
            model._theta[:] = theta
            for s, old in zip(opt.state, state):
                s[:] = old
            opt.t = t
            if math.isfinite(model._evaluate(X, Y, sw)[0]):
                return

    def _epochs(self, X, Y, sw, epochs, batch, validation, incremental, workspace, monitors,
                result, best_theta, started):
        model = self.model
        opt = model.optimizer
        n = X.shape[0]
        # States to fall back to if the loss blows up, newest last: the start of this call
        # and the starts of the last two epochs.
        snapshots = []
        for _ in range(epochs):
            lr = model._schedule.rate(len(model.history["loss"]))
            # A full batch sums the same gradients in any order: no need to shuffle it.
            order = model._rng.permutation(n) if model.shuffle and batch < n else None
            snapshots.append(self._snapshot())
            if len(snapshots) > 3:
                del snapshots[1]
            loss_sum, weight_sum, updates, status = _engine.train_epoch(
                model._network, workspace, model._theta, X, Y, sw, order, batch,
                alpha=model.alpha, **opt.engine_args(lr))
            opt.record_updates(updates)
            loss = loss_sum / weight_sum if weight_sum > 0 else math.nan
            if status == _engine.EPOCH_INTERRUPTED:
                result.stop_reason = "interrupted"
                warnings.warn(f"training interrupted by the user during epoch "
                              f"{len(model.history['loss']) + 1}; the model keeps the "
                              "parameters of the last complete batch",
                              TrainingInterruptedWarning, stacklevel=5)
                break
            if status == _engine.EPOCH_DIVERGED or not math.isfinite(loss) or not np.isfinite(
                    model._theta).all():
                self._restore_finite(snapshots, X, Y, sw)
                result.stop_reason = "diverged"
                warnings.warn(
                    f"training diverged in epoch {len(model.history['loss']) + 1}: the loss "
                    f"became NaN or infinite (learning rate {lr:g} is probably too large; "
                    "try a smaller one). Training stopped; the model keeps the last "
                    "parameters whose training loss is finite.", TrainingDivergedWarning,
                    stacklevel=5)
                break
            model.samples_seen += n
            model._schedule.epoch_ended(model.samples_seen)
            logs = {"loss": loss, "lr": lr}
            if validation is not None:
                logs.update(self.validation_logs(validation))
            if self.end_epoch(logs, started, monitors, result, best_theta, incremental):
                break


def format_progress(epoch, logs):
    """One line of progress: epoch, losses, validation score, learning rate, seconds."""
    parts = [f"epoch {epoch:4d}", f"loss {logs['loss']:.6f}"]
    if "val_loss" in logs:
        parts += [f"val_loss {logs['val_loss']:.6f}", f"val_score {logs['val_score']:.4f}"]
    if logs.get("lr") is not None and not math.isnan(logs["lr"]):
        parts.append(f"lr {logs['lr']:.3g}")
    parts.append(f"{logs['time']:.2f}s")
    return "  ".join(parts)
