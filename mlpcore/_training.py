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
``ended``, ``message``
    After closing: None, or how it ended by itself before its last step ('converged', or
    'failed' when it could not go on), and a sentence on why it stopped.
"""

import math
import time

import numpy as np

import mlpcore._engine as _engine
from mlpcore._results import (
    TrainingDivergedWarning, TrainingFailedWarning, TrainingInterruptedWarning, TrainingResult,
    warn,
)
from mlpcore._stopping import PlateauMonitor
from mlpcore._threads import blas_threads

# Used for the adaptive schedule when tol is not given (scikit-learn's default tol).
_DEFAULT_TOL = 1e-4
# A training loss growing by more than this factor within one call warns.
GROWTH_WARNING = 1e6


class Step:
    """What one epoch or iteration of a method did.

    Attributes
    ----------
    status : {'done', 'done, then interrupted', 'interrupted', 'diverged', 'finished'}
        'done': a complete step; 'done, then interrupted': a complete step, with Ctrl-C
        pressed after its last update (recorded, then training stops); 'interrupted':
        Ctrl-C inside it (the parameters are those of its last complete update);
        'diverged': the method saw non-finite numbers; 'finished': the method had no
        further step to take (L-BFGS converged or gave up).
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
    ended = None
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
        loss = loss_sum / weight_sum if weight_sum > 0 else math.nan
        if status == _engine.EPOCH_INTERRUPTED:
            visited, complete = self._visited(order, updates)
            if complete:  # Ctrl-C came after the epoch's last batch: the epoch is whole
                return Step("done, then interrupted", loss, n)
            return Step("interrupted", samples=visited,
                        message="the model keeps the parameters of the last complete batch")
        if status == _engine.EPOCH_DIVERGED:
            return Step("diverged")
        return Step("done", loss, n)

    def _visited(self, order, updates):
        """(samples visited by the first ``updates`` updates of an epoch, whether those
        were all of its updates). Every batch is applied (mlpcore's weight rule: a batch's
        loss is divided by its row count, so even a batch of zero weight is one update)."""
        n, batch = self.X.shape[0], self.batch
        if updates >= -(-n // batch):
            return n, True
        return min(n, updates * batch), False

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
        self.best_epoch = None

    def after_epoch(self, logs, result, epoch):
        """Record an epoch's values. Returns True to stop."""
        model = self.model
        self.loss.update(logs["loss"])
        result.best_loss = self.loss.best_value
        watched = self.loss
        if self.validation is not None and "val_loss" in logs:
            if self.validation.update(logs["val_loss"]):
                self.best_theta = model._theta.copy()
                self.best_epoch = epoch
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
    """Training states to go back to when the loss blows up: the start of the call and the
    starts of the last two epochs (an epoch can end on finite parameters whose loss
    overflows, in float32 especially, so the start of the diverging one is not enough).

    A state is the parameters, the optimizer's state and step count, the schedule, the
    samples seen and the length of the history: going back keeps them in agreement.
    """

    def __init__(self, model):
        self.model = model
        self.snapshots = []

    def snapshot(self):
        m, opt = self.model, self.model.optimizer
        lengths = {key: len(values) for key, values in m.history.items()}
        self.snapshots.append((m._theta.copy(), [s.copy() for s in opt.state], opt.t,
                               m._schedule.get_state(), m.samples_seen, lengths))
        if len(self.snapshots) > 3:
            del self.snapshots[1]

    def restore(self, loss, result):
        """Go back to the newest snapshot at which ``loss()`` is finite (or the oldest).

        Returns
        -------
        (int, bool)
            The number of epochs in the history the model keeps, and whether its loss is
            finite (False: no snapshot had a finite loss; the oldest is kept).
        """
        for snapshot in reversed(self.snapshots):
            self._go_back(snapshot, result)
            if math.isfinite(loss()):
                return len(self.model.history["loss"]), True
        return len(self.model.history["loss"]), False

    def restore_newest(self, result):
        """Go back to the newest snapshot (the start of the step being taken)."""
        self._go_back(self.snapshots[-1], result)

    def _go_back(self, snapshot, result):
        m, opt = self.model, self.model.optimizer
        theta, state, t, schedule, seen, lengths = snapshot
        m._theta[:] = theta
        for s, old in zip(opt.state, state):
            s[:] = old
        opt.t = t
        m._schedule.set_state(schedule)
        m.samples_seen = seen
        result.epochs -= len(m.history["loss"]) - lengths["loss"]
        for key in list(m.history):
            if key in lengths:
                del m.history[key][lengths[key]:]
            else:
                del m.history[key]


def validation_logs(model, validation):
    """{'val_loss', 'val_score'} of the model on checked validation arrays (Xv, Yv, swv)."""
    Xv, Yv, swv = validation
    val_loss, out = model._evaluate(Xv, Yv, swv)
    return {"val_loss": val_loss, "val_score": model.targets.score(out, Yv, swv)}


def train(model, method, epochs, validation=None, incremental=False):
    """Run up to ``epochs`` steps of ``method`` on ``model``, with everything around them.

    What it guarantees, whichever method runs:

    * ``history`` holds one entry per completed epoch (iteration), ``optimizer.t`` counts
      every update applied and ``samples_seen`` every sample those updates visited, and
      the parameters are those this record describes, also after Ctrl-C and divergence;
    * the model never ends with non-finite parameters, nor with parameters whose training
      loss is not finite (the last update of a call is checked too): it goes back to the
      newest state whose loss is finite and warns (:class:`TrainingDivergedWarning`);
    * a training loss that grows by more than ``GROWTH_WARNING`` within a call warns.

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
    first = len(history["loss"])
    planned = first + epochs
    started = time.perf_counter()
    completed = False
    pending = None  # a step taken but not yet recorded: (epoch, loss, lr, samples)
    # Ctrl-C inside a method's step, or after it returned and before its outcome was read,
    # may leave the step half accounted for (its parameters in place, its count not, or the
    # reverse): then the step is undone, back to the snapshot taken just before it.
    in_step = False
    undo_step = False

    def record(epoch, loss, lr, samples, with_validation=True):
        logs = {"loss": loss, "lr": lr}
        if validation is not None and with_validation:
            logs.update(validation_logs(model, validation))
        model.samples_seen += samples  # after validation, which a Ctrl-C may interrupt
        model._schedule.epoch_ended(model.samples_seen)
        logs["time"] = time.perf_counter() - started
        for key, value in logs.items():
            if key != "time":
                history.setdefault(key, []).append(value)
        result.epochs += 1
        if model.verbose:
            print(format_progress(epoch, logs, planned), flush=True)
        return logs

    def diverged(lr):
        kept, finite = fallback.restore(method.loss, result)
        result.stop_reason = "diverged"
        if not finite:
            warn("training diverged: the training loss is NaN or infinite even at the starting "
                 "parameters (features or targets too large? scale them). Training stopped; "
                 "the model keeps its starting parameters.", TrainingDivergedWarning)
            return
        hint = (f" (learning rate {lr:g} is probably too large; try a smaller one)"
                if method.scheduled else "")
        warn(f"training diverged in epoch {kept + 1}: the loss became NaN or infinite{hint}. "
             "Training stopped; the model keeps the last parameters whose training loss is "
             "finite.", TrainingDivergedWarning)

    with method.threads():
        try:
            for _ in range(epochs):
                epoch = len(history["loss"]) + 1
                lr = model._schedule.rate(epoch - 1) if method.scheduled else math.nan
                fallback.snapshot()
                in_step = True
                step = method.step(lr)
                if step.status == "finished":
                    break
                if step.status == "interrupted":
                    model.samples_seen += step.samples
                    result.stop_reason = "interrupted"
                    warn(f"training interrupted by the user during epoch {epoch}; "
                         f"{step.message}", TrainingInterruptedWarning)
                    break
                if (step.status == "diverged" or not math.isfinite(step.loss)
                        or not np.isfinite(model._theta).all()):
                    diverged(lr)
                    break
                pending = (epoch, step.loss, lr, step.samples)
                in_step = False
                logs = record(*pending)
                pending = None
                if step.status == "done, then interrupted":
                    result.stop_reason = "interrupted"
                    warn(f"training interrupted by the user at the end of epoch {epoch}",
                         TrainingInterruptedWarning)
                    break
                if incremental:
                    continue
                stop = rule is not None and rule.after_epoch(logs, result, epoch)
                if model.callback is not None and model.callback(epoch, model, logs) is False:
                    result.stop_reason = "callback"
                    stop = True
                if stop:
                    break
            else:
                completed = True
        except KeyboardInterrupt:
            # Ctrl-C in Python between engine calls: a step taken is still recorded.
            if pending is not None:
                record(*pending, with_validation=False)
            else:
                undo_step = in_step
            result.stop_reason = "interrupted"
            warn("training interrupted by the user between epochs", TrainingInterruptedWarning)
        finally:
            method.close(completed)
            if undo_step:  # after close: it may set the parameters (L-BFGS's last iterate)
                fallback.restore_newest(result)
        final = None  # the loss after the call's last update, when it must be looked at
        if result.stop_reason not in ("diverged", "interrupted") and not _outputs_bounded(model):
            final = method.loss()
            if not math.isfinite(final):
                diverged(lr)
    result.message = result.message or method.message
    if result.stop_reason is None and method.ended is not None:
        result.stop_reason = method.ended
        if method.ended == "failed":
            warn(f"training stopped after {result.epochs} iterations without converging: "
                 f"{result.message}", TrainingFailedWarning)
    if rule is not None and rule.best_theta is not None:
        model._theta[:] = rule.best_theta  # restore the best validation weights
    if model.verbose and result.stop_reason == "plateau":
        restored = (f"; restored the weights of epoch {rule.best_epoch}"
                    if rule.best_theta is not None else "")
        print(f"stopped at epoch {len(history['loss'])}: {result.message}{restored}", flush=True)
    losses = history["loss"][first:] + ([final] if final is not None and
                                         math.isfinite(final) else [])
    if (result.stop_reason != "diverged" and len(losses) >= 2 and losses[0] > 0
            and losses[-1] > GROWTH_WARNING * losses[0]):
        ran = len(history["loss"]) - first
        warn(f"the training loss grew from {losses[0]:.4g} to {losses[-1]:.4g} in {ran} "
             f"epoch{'s' if ran != 1 else ''}: training is diverging; try a smaller learning "
             "rate or scaled features", TrainingDivergedWarning)
    return result


def _outputs_bounded(model):
    """Whether finite parameters guarantee finite outputs for any input: bounded hidden units
    (sigmoid, tanh) feeding a squashing output (softmax, sigmoid). Then the final check of
    :func:`train` needs no extra pass over the data."""
    return (len(model.hidden) > 0 and model.activation in ("sigmoid", "tanh")
            and model.output in ("softmax", "sigmoid") and bool(np.isfinite(model._theta).all()))


def format_progress(epoch, logs, planned=None):
    """One line of progress: epoch k/N, losses, validation score, learning rate, seconds."""
    width = len(str(planned or epoch))
    parts = [f"epoch {epoch:{width}d}" + (f"/{planned}" if planned else ""),
             f"loss {logs['loss']:.6f}"]
    if "val_loss" in logs:
        parts += [f"val_loss {logs['val_loss']:.6f}", f"val_score {logs['val_score']:.4f}"]
    if logs.get("lr") is not None and not math.isnan(logs["lr"]):
        parts.append(f"lr {logs['lr']:.3g}")
    parts.append(f"{logs['time']:.2f}s")
    return "  ".join(parts)
