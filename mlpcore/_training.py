"""The epoch driver, and the compiled epoch it drives for the stochastic update rules.

Training is split in two. A *method* knows how to move the parameters one epoch (or one
iteration) on from where they are: :class:`CompiledEpochs` runs one call of the engine over
batches or samples (``_engine.train_epoch``, every forward pass, backpropagation and update
without the GIL); :class:`mlpcore._lbfgs.LBFGSIterations` takes one iteration of scipy's
L-BFGS-B. :func:`train` does everything around those steps, the same way for every method:
the learning-rate schedule, history, validation, progress lines, the plateau rule and early
stopping with the best weights restored, callbacks, Ctrl-C and the divergence guard.

A method is any object with:

``scheduled`` : bool
    Whether it takes the schedule's learning rate (False: ``history["lr"]`` records NaN).
``plateau_rule`` : bool
    Whether ``tol``/``n_iter_no_change``/``early_stopping`` apply between its steps.
``step(learning_rate) -> Step``
    Advance the model's parameters (and optimizer state) by one epoch or iteration.
``loss() -> float``
    The training loss at the model's current parameters.
``threads()``
    A context manager for the BLAS thread policy of its products.
``close(completed)``
    Release what it holds; ``completed`` is False when the driver stopped early.
``converged``, ``message``
    After closing: whether it stopped by its own convergence test, and why it stopped.
"""

import math
import time

import numpy as np

import mlpcore._engine as _engine
from mlpcore._results import (
    TrainingDivergedWarning, TrainingInterruptedWarning, TrainingResult, warn,
)
from mlpcore._stopping import PlateauMonitor
from mlpcore._threads import blas_threads

# Used for the adaptive schedule when tol is not given (scikit-learn's default tol).
_DEFAULT_TOL = 1e-4


class Step:
    """What one epoch or iteration of a method did.

    Attributes
    ----------
    status : {'done', 'interrupted', 'diverged', 'finished'}
        'done': a complete step; 'interrupted': Ctrl-C inside it (the parameters are those
        of its last complete update); 'diverged': the method saw non-finite numbers;
        'finished': the method had no further step to take (L-BFGS converged or gave up).
    loss : float
        The training loss the step reports (mean batch loss, or J at the new iterate).
    samples : int
        Samples the step visited (counted into ``model.samples_seen``).
    message : str
        For 'interrupted' and 'finished': what happened, in a phrase.
    """

    __slots__ = ("status", "loss", "samples", "message")

    def __init__(self, status, loss=math.nan, samples=0, message=""):
        self.status, self.loss, self.samples, self.message = status, loss, samples, message


class CompiledEpochs:
    """One epoch of mini-batch, per-sample or full-batch training per step, in the engine.

    Parameters
    ----------
    model : MLP
        A built model; its parameters, optimizer state and random stream advance in place.
    X, Y, sw : ndarray
        Checked training arrays (N x D, N x K, N or None).
    batch : int
        Rows per update (N for gradient descent).
    workspace : _engine.Workspace
        Work buffers for at least ``min(batch, CHUNK_ROWS)`` rows.
    """

    scheduled = True
    plateau_rule = True
    converged = False
    message = ""

    def __init__(self, model, X, Y, sw, batch, workspace):
        self.model, self.X, self.Y, self.sw, self.batch = model, X, Y, sw, batch
        self.workspace = workspace
        model.optimizer.init_state(model.n_params, model.dtype)

    def threads(self):
        m = self.model
        return blas_threads(m.n_threads, min(self.batch, _engine.CHUNK_ROWS), m.sizes)

    def step(self, learning_rate):
        m, opt, n = self.model, self.model.optimizer, self.X.shape[0]
        # A full batch sums the same gradients in any order: no need to shuffle it.
        order = m._rng.permutation(n) if m.shuffle and self.batch < n else None
        loss_sum, weight_sum, updates, status = _engine.train_epoch(
            m._network, self.workspace, m._theta, self.X, self.Y, self.sw, order, self.batch,
            alpha=m.alpha, **opt.engine_args(learning_rate))
        opt.record_updates(updates)
        if status == _engine.EPOCH_INTERRUPTED:
            return Step("interrupted", message="the model keeps the parameters of the last "
                                               "complete batch")
        if status == _engine.EPOCH_DIVERGED:
            return Step("diverged")
        return Step("done", loss_sum / weight_sum if weight_sum > 0 else math.nan, n)

    def loss(self):
        return self.model._evaluate(self.X, self.Y, self.sw)[0]

    def close(self, completed):
        pass


class _PlateauRule:
    """scikit-learn's patience rule on the training loss, or on the validation loss with
    early stopping (whose best weights are kept to be restored at the end)."""

    def __init__(self, model):
        self.model = model
        tol = model.tol if model.tol is not None else (0.0 if model.early_stopping
                                                        else _DEFAULT_TOL)
        self.loss = PlateauMonitor(tol, model.n_iter_no_change)
        self.validation = (PlateauMonitor(tol, model.n_iter_no_change)
                           if model.early_stopping else None)
        self.best_theta = None

    def after_epoch(self, logs, result):
        """Record an epoch's values. Returns True to stop."""
        model = self.model
        self.loss.update(logs["loss"])
        result.best_loss = self.loss.best_value
        watched = self.loss
        if self.validation is not None and "val_loss" in logs:
            if self.validation.update(logs["val_loss"]):
                self.best_theta = model._theta.copy()
            result.best_validation = self.validation.best_value
            watched = self.validation
        if not (watched.exhausted and (model.early_stopping or model.tol is not None
                                       or model.schedule == "adaptive")):
            return False
        if model._schedule.plateau():
            what = "validation loss" if watched is self.validation else "training loss"
            result.stop_reason = "plateau"
            result.message = (f"{what} did not improve by more than tol={watched.tol} for "
                              f"{model.n_iter_no_change} consecutive epochs")
            return True
        watched.reset_count()
        return False


class _Fallback:
    """Parameter states to go back to when the loss blows up: the start of the call and the
    starts of the last two epochs (an epoch can end on finite parameters whose loss
    overflows, in float32 especially, so the start of the diverging one is not enough)."""

    def __init__(self, model):
        self.model = model
        self.snapshots = []

    def snapshot(self):
        opt = self.model.optimizer
        self.snapshots.append((self.model._theta.copy(), [s.copy() for s in opt.state], opt.t))
        if len(self.snapshots) > 3:
            del self.snapshots[1]

    def restore(self, loss):
        """Go back to the newest snapshot at which ``loss()`` is finite."""
        model, opt = self.model, self.model.optimizer
        for theta, state, t in reversed(self.snapshots):
            model._theta[:] = theta
            for s, old in zip(opt.state, state):
                s[:] = old
            opt.t = t
            if math.isfinite(loss()):
                return


def validation_logs(model, validation):
    """{'val_loss', 'val_score'} of the model on checked validation arrays (Xv, Yv, swv)."""
    Xv, Yv, swv = validation
    val_loss, out = model._evaluate(Xv, Yv, swv)
    return {"val_loss": val_loss, "val_score": model.targets.score(out, Yv, swv)}


def train(model, method, epochs, validation=None, incremental=False):
    """Run up to ``epochs`` steps of ``method`` on ``model``, with everything around them.

    Parameters
    ----------
    model : MLP
        A built model.
    method : CompiledEpochs, LBFGSIterations or another method (see the module docstring)
    epochs : int
        Epochs (or iterations) at most.
    validation : (Xv, Yv, swv) or None
        Checked validation arrays, evaluated after every step.
    incremental : bool
        partial_fit: no stopping criteria and no callback.

    Returns
    -------
    TrainingResult
    """
    result = TrainingResult()
    rule = _PlateauRule(model) if method.plateau_rule and not incremental else None
    fallback = _Fallback(model)
    history = model.history
    started = time.perf_counter()
    completed = False
    with method.threads():
        try:
            for _ in range(epochs):
                epoch = len(history["loss"]) + 1
                lr = model._schedule.rate(epoch - 1) if method.scheduled else math.nan
                fallback.snapshot()
                step = method.step(lr)
                if step.status == "finished":
                    break
                if step.status == "interrupted":
                    result.stop_reason = "interrupted"
                    warn(f"training interrupted by the user during epoch {epoch}; "
                         f"{step.message}", TrainingInterruptedWarning)
                    break
                if (step.status == "diverged" or not math.isfinite(step.loss)
                        or not np.isfinite(model._theta).all()):
                    fallback.restore(method.loss)
                    result.stop_reason = "diverged"
                    hint = (f" (learning rate {lr:g} is probably too large; try a smaller one)"
                            if method.scheduled else "")
                    warn(f"training diverged in epoch {epoch}: the loss became NaN or "
                         f"infinite{hint}. Training stopped; the model keeps the last "
                         "parameters whose training loss is finite.", TrainingDivergedWarning)
                    break
                model.samples_seen += step.samples
                model._schedule.epoch_ended(model.samples_seen)
                logs = {"loss": step.loss, "lr": lr}
                if validation is not None:
                    logs.update(validation_logs(model, validation))
                logs["time"] = time.perf_counter() - started
                for key, value in logs.items():
                    if key != "time":
                        history.setdefault(key, []).append(value)
                result.epochs += 1
                if model.verbose:
                    print(format_progress(epoch, logs), flush=True)
                if incremental:
                    continue
                stop = rule is not None and rule.after_epoch(logs, result)
                if model.callback is not None and model.callback(epoch, model, logs) is False:
                    result.stop_reason = "callback"
                    stop = True
                if stop:
                    break
            else:
                completed = True
        except KeyboardInterrupt:
            # Ctrl-C outside the engine (between epochs): every epoch so far is complete.
            result.stop_reason = "interrupted"
            warn("training interrupted by the user between epochs", TrainingInterruptedWarning)
        finally:
            method.close(completed)
    if result.stop_reason is None and method.converged:
        result.stop_reason = "converged"
    result.message = result.message or method.message
    if rule is not None and rule.best_theta is not None:
        model._theta[:] = rule.best_theta  # restore the best validation weights
    return result


def format_progress(epoch, logs):
    """One line of progress: epoch, losses, validation score, learning rate, seconds."""
    parts = [f"epoch {epoch:4d}", f"loss {logs['loss']:.6f}"]
    if "val_loss" in logs:
        parts += [f"val_loss {logs['val_loss']:.6f}", f"val_score {logs['val_score']:.4f}"]
    if logs.get("lr") is not None and not math.isnan(logs["lr"]):
        parts.append(f"lr {logs['lr']:.3g}")
    parts.append(f"{logs['time']:.2f}s")
    return "  ".join(parts)
