"""The ways of training over a Dask cluster, each a *method* of the shared epoch driver
(:func:`mlpcore._training.train`, see its module docstring for the protocol).

Why partition sums give the full-data J and gradient
----------------------------------------------------
The engine's cost over rows I with weights w_i (1 without sample weights) is

    J(theta) = ( sum_{i in I} w_i l_i(theta) + alpha/2 sum_l ||W_l||^2 ) / W,   W = sum_i w_i,

with the weights scaled to mean 1 over the N rows trained on (mlpcore's rule), so W = N: the
client computes J = (S N / W + alpha/2 sum_l ||W_l||^2) / N from the raw partition sums.

The rows are split into disjoint partitions I_1, ..., I_P. Each partition p computes, with the
compiled engine at the broadcast parameters and with ``alpha = 0``,

    J_p = S_p / W_p,  g_p = G_p / W_p,  with S_p = sum_{i in I_p} w_i l_i,
    G_p = sum_{i in I_p} w_i grad l_i,  W_p = sum_{i in I_p} w_i,

and returns the *sums* (W_p J_p, W_p g_p, W_p) = (S_p, G_p, W_p), not the means. Summing
over partitions in a fixed order (by partition index, in a fixed tree) gives S, G and W of
the whole data, and the client adds the penalty once:

    J = (S N / W + alpha/2 sum_l ||W_l||^2) / N,  grad J = G / W + (alpha / N) [W_l; 0 for biases].

Up to floating-point rounding (the order of the sums) this is what ``_engine.loss_gradient``
computes on the gathered data; and it is the same whatever the number of workers and
whichever worker computed which partition, since each partition's sums depend only on its
rows and the parameters, and the reduction order depends only on the partition count.

A partition whose weights sum to zero contributes (0, 0, 0).

Exact ways
----------
:class:`DistributedGD` (full-batch gradient descent, any update rule): each iteration one
reduction, then the update rule on the client, a NumPy transcription of the engine's
(``src/_updates.pxd``, ``src/_vupdate.h``; the same IEEE operations in the same order, so
it rounds as the engine does). :class:`DistributedLBFGS`: scipy's L-BFGS-B on the client
(the single-machine :class:`mlpcore._lbfgs.LBFGSIterations`, one iteration per step in a
helper thread), its function being the distributed loss and gradient.

Stochastic way
--------------
:class:`ModelAveraging`: every partition trains with the compiled engine
(``_engine.train_epoch``) from the same parameters and optimizer state for ``sync_every``
epochs (or a fraction of one), then the parameters theta, the optimizer state arrays
(velocity, Adam's moments) and the step count are averaged, weighted by the partitions'
sample weight sums: theta <- sum_p (W_p / W) theta_p. Each partition trains with its weights
times N / W (mean 1 over the whole training set, mlpcore's rule). With one partition the
weight is 1 and the result is the single-machine training (exactly without sample weights).
"""

import contextlib
import math
import time

import numpy as np

import mlpcore._engine as _engine
from mlpcore._lbfgs import LBFGSIterations
from mlpcore._threads import blas_threads
from mlpcore._training import Step

# Partition results reduced per task of the tree (a fixed tree: the same for any worker
# count).
FAN_IN = 8


_WORKSPACES = {}  # per worker process: engine work buffers by (layer sizes, dtype)


def _workspace(network, rows, dtype):
    """Work buffers for ``rows`` rows, kept between the tasks a worker runs."""
    rows = min(max(rows, 1), _engine.CHUNK_ROWS)
    key = (network.sizes, np.dtype(dtype).name, rows == 1)  # one row: the blocked SGD buffers
    ws = _WORKSPACES.get(key)
    if ws is None or ws.rows < rows:
        if len(_WORKSPACES) > 8:
            _WORKSPACES.clear()
        ws = _WORKSPACES[key] = _engine.Workspace(network, rows, dtype)
    return ws


def _limit(n_threads, rows, sizes):
    return blas_threads(n_threads or 1, min(max(rows, 1), _engine.CHUNK_ROWS), sizes)


# -- tasks run on the workers -----------------------------------------------------------------
def _identity(value):
    """The task holding a value shared by a round's tasks (:meth:`Cluster.share`)."""
    return value


def part_loss_gradient(part, theta, network, n_threads):
    """(S_p, G_p, W_p, seconds, seconds): the partition's weighted loss and gradient sums
    at theta, and its compute time (summed, and the slowest, by :func:`add`).

    G_p is float64 (the engine's gradient in theta's dtype, times W_p).
    """
    started = time.perf_counter()
    X, Y, sw = part
    W = float(len(X) if sw is None else np.sum(sw, dtype=np.float64))
    if len(X) == 0 or not W > 0:
        elapsed = time.perf_counter() - started
        return 0.0, np.zeros(len(theta)), 0.0, elapsed, elapsed
    grad = np.empty_like(theta)
    with _limit(n_threads, len(X), network.sizes):
        J = _engine.loss_gradient(network, theta, X, Y, sw, 0.0, grad,
                                  _workspace(network, len(X), theta.dtype))
    elapsed = time.perf_counter() - started
    return J * W, grad.astype(np.float64) * W, W, elapsed, elapsed


def part_loss(part, theta, network, n_threads):
    """(S_p, W_p): the partition's weighted loss sum at theta (one forward pass)."""
    X, Y, sw = part
    W = float(len(X) if sw is None else np.sum(sw, dtype=np.float64))
    if len(X) == 0 or not W > 0:
        return 0.0, 0.0
    out = np.empty((len(X), Y.shape[1]), dtype=theta.dtype)
    with _limit(n_threads, len(X), network.sizes):
        J = _engine.evaluate(network, theta, X, Y, sw, 0.0, out)
    return J * W, W


def add(*results):
    """Element-wise sum of result tuples, in the order given."""
    total = list(results[0])
    for r in results[1:]:
        for k, v in enumerate(r):
            total[k] = total[k] + v if k < 4 else max(total[k], v)  # the slowest partition
    return tuple(total)


def add_losses(*results):
    return sum(r[0] for r in results), sum(r[1] for r in results)


class Cluster:
    """The prepared partitions on the cluster, and how to run a function over them.

    Parameters
    ----------
    client : distributed.Client
    parts : list
        Futures of the prepared partitions (``persist=True``), or delayed objects that
        recompute them from their source at every pass (``persist=False``).
    persist : bool
    rows, weights : list
        Rows and weight sums W_p per partition.
    """

    def __init__(self, client, parts, persist, rows, weights):
        self.client, self.parts, self.persist = client, parts, persist
        self.rows, self.weights = rows, weights
        self.theta_bytes = 0     # the parameters of the last reduction, sent once per worker
        self.bytes_reduced = 0   # partition results moved by the reduction tree
        self.compute_seconds = 0.0  # partition compute of the last reduction, summed
        self.slowest_seconds = 0.0  # and that of its slowest partition
        self.wall_seconds = 0.0
        self._running = []

    def begin_round(self):
        """Forget the previous round's futures (what :meth:`cancel` would cancel)."""
        self._running = []

    def share(self, value):
        """One future holding ``value`` for every task of a round, instead of a copy inside
        each partition's task.

        ``value`` goes to the scheduler once, inside a task returning it (so Dask recomputes
        it, like any other result, if the worker holding it is lost), and each worker that
        runs partitions fetches it once from the worker that ran that task: per round one
        copy per worker instead of one per partition.
        """
        future = self.client.submit(_identity, value, pure=False)
        self._running.append(future)
        return future

    def map(self, fn, *args, parts=None):
        """Futures of ``fn(part, *args)`` for each partition, in partition order (``args``
        may hold futures, e.g. from :meth:`share`: each task then depends on them)."""
        parts = self.parts if parts is None else parts
        if self.persist or not hasattr(parts[0], "dask"):
            futures = [self.client.submit(fn, p, *args, pure=False) for p in parts]
        else:
            import dask

            futures = self.client.compute([dask.delayed(fn)(p, *args) for p in parts])
        self._running.extend(futures)
        return futures

    def map_each(self, fn, per_part, *args):
        """Futures of ``fn(part_p, per_part[p], *args)`` for each partition p, in order."""
        if self.persist or not hasattr(self.parts[0], "dask"):
            futures = [self.client.submit(fn, p, a, *args, pure=False)
                       for p, a in zip(self.parts, per_part)]
        else:
            import dask

            futures = self.client.compute([dask.delayed(fn)(p, a, *args)
                                           for p, a in zip(self.parts, per_part)])
        self._running.extend(futures)
        return futures

    def tree(self, fn, futures):
        """Reduce futures with ``fn`` in a fixed tree (groups of FAN_IN, partition order)."""
        while len(futures) > FAN_IN:
            futures = [self.client.submit(fn, *futures[i:i + FAN_IN], pure=False)
                       for i in range(0, len(futures), FAN_IN)]
            self._running.extend(futures)
        return futures

    def gather(self, futures):
        """Results of futures, in order; on Ctrl-C the running tasks are cancelled."""
        try:
            return self.client.gather(futures)
        except KeyboardInterrupt:
            self.cancel()
            raise

    def cancel(self):
        if self._running:
            self.client.cancel(self._running)
            self._running = []

    def loss_gradient(self, theta, network, n_threads):
        """(S, G, W) over all partitions: see the module docstring. theta travels once per
        round (:meth:`share`)."""
        started = time.perf_counter()
        self.begin_round()
        shared = self.share(theta)
        futures = self.tree(add, self.map(part_loss_gradient, shared, network, n_threads))
        results = self.gather(futures)
        S, G, W, seconds, slowest = add(*results) if len(results) > 1 else results[0]
        self._running = []
        self.theta_bytes = theta.nbytes
        self.bytes_reduced = len(self.parts) * G.nbytes
        self.compute_seconds, self.slowest_seconds = seconds, slowest
        self.wall_seconds = time.perf_counter() - started
        return S, G, W

    def loss(self, theta, network, n_threads):
        """(S, W): the weighted loss sum over all partitions."""
        self.begin_round()
        shared = self.share(theta)
        futures = self.tree(add_losses, self.map(part_loss, shared, network, n_threads))
        results = self.gather(futures)
        self._running = []
        return add_losses(*results)

    def bytes_sent(self, workers):
        """Parameter bytes moved by the last reduction: theta once to the scheduler (in the
        task that holds it) and once to each of the workers running partitions."""
        return self.theta_bytes * (1 + min(workers, len(self.parts)))

    def describe(self):
        """One line on the last reduction: wall time; partition compute summed and the
        slowest; the rest of the wall time beyond compute spread over the workers
        (communication, scheduling, waiting); bytes of parameters sent and of partition
        results reduced."""
        workers = max(len(self.client.scheduler_info(n_workers=-1)["workers"]), 1)
        rest = max(self.wall_seconds - self.compute_seconds / workers, 0)
        sent = self.bytes_sent(workers)
        return (f"wall {self.wall_seconds:.3f}s: partition compute {self.compute_seconds:.3f}s "
                f"(slowest {self.slowest_seconds:.3f}s) on {workers} worker"
                f"{'s' if workers > 1 else ''}, communication and scheduling about "
                f"{rest:.3f}s; {sent / 1e6:.4f} MB sent (the parameters, once to the "
                f"scheduler and once to each worker), "
                f"{self.bytes_reduced / 1e6:.2f} MB reduced")


def _weight_mask(network):
    mask = np.zeros(network.n_params, dtype=bool)
    for w, _ in network.layer_slices():
        mask[w] = True
    return mask


def full_loss(model, S, W, N):
    """J = (S N / W + alpha/2 sum ||W_l||^2) / N at the model's parameters: the single
    machine's J with the weights scaled to mean 1 over the N rows trained on (sum_i w_i =
    W becomes N; without weights W = N and this is (S + penalty) / N)."""
    penalty = 0.5 * model.alpha * _engine.penalty(model._network, model._theta) \
        if model.alpha != 0 else 0.0
    return (S * (N / W) + penalty) / N


def full_gradient(model, G, W, N, mask):
    """grad J = G / W + (alpha / N) W_l on the weights, in the model's dtype, as the engine
    forms it (``add_weight_decay``: grad + (alpha / N) theta, rounded to the dtype)."""
    dtype = model.dtype.type
    grad = (G * (1 / W)).astype(model.dtype)
    if model.alpha != 0:
        grad[mask] = grad[mask] + dtype(model.alpha / N) * model._theta[mask]
    return grad


class _Distributed:
    """What the distributed methods share: the cluster, the model, verbose timing lines."""

    def __init__(self, model, cluster):
        self.model, self.cluster = model, cluster
        self.n_samples = int(sum(cluster.rows))
        self.weight = float(sum(cluster.weights))

    def threads(self):
        return contextlib.nullcontext()  # the client does no large products

    def loss(self):
        S, W = self.cluster.loss(self.model._theta, self.model._network, self.model.n_threads)
        return full_loss(self.model, S, W, self.n_samples)

    def _report(self):
        if self.model.verbose:
            print(f"  cluster: {self.cluster.describe()}", flush=True)


class DistributedGD(_Distributed):
    """Full-batch gradient descent over the partitions, one update per step (epoch).

    Each step: broadcast theta, reduce (S, G, W), then on the client the penalty, the loss
    J at the starting parameters (what ``history["loss"]`` records, as the engine does) and
    one update of the model's rule (``optimizer.rule``: sgd, momentum, nesterov or adam),
    its state arrays and step count advanced in place.
    """

    scheduled = True
    plateau_rule = True
    ended = None
    message = ""

    def __init__(self, model, cluster):
        super().__init__(model, cluster)
        model.optimizer.init_state(model.n_params, model.dtype)
        self.mask = _weight_mask(model._network)

    def step(self, learning_rate):
        m = self.model
        try:
            S, G, W = self.cluster.loss_gradient(m._theta, m._network, m.n_threads)
        except KeyboardInterrupt:
            return Step("interrupted", samples=0,
                        message="the model keeps the parameters of the last complete iteration")
        self._report()
        loss = full_loss(m, S, W, self.n_samples)
        if not math.isfinite(loss):
            return Step("diverged")
        grad = full_gradient(m, G, W, self.n_samples, self.mask)
        apply_rule(m.optimizer, m._theta, grad, learning_rate)
        return Step("done", loss, self.n_samples)

    def close(self, completed):
        self.cluster.cancel()


def apply_rule(opt, theta, g, learning_rate):
    """One update of ``opt``'s rule with gradient g, in place, as the engine computes it.

    sgd: theta <- theta - lr g; momentum: v <- mu v - lr g, theta <- theta + v; nesterov:
    v <- mu v - lr g, theta <- theta + (mu v - lr g); adam (t <- t + 1):
    m <- b1 m + (1 - b1) g, s <- b2 s + (1 - b2) g^2,
    theta <- theta - lr_t m / (sqrt(s) + eps), lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
    (coefficients formed in double and rounded to theta's dtype, as ``next_step`` does).
    """
    T = theta.dtype.type
    rule = opt.rule
    if rule == "sgd":
        theta -= T(learning_rate) * g
    elif rule in ("momentum", "nesterov"):
        lr, mu = T(learning_rate), T(opt.momentum)
        v = opt.state[0]
        v[:] = mu * v - lr * g
        if rule == "nesterov":
            theta += mu * v - lr * g
        else:
            theta += v
    elif rule == "adam":
        t = opt.t + 1
        lr_t = (learning_rate * math.sqrt(1 - math.pow(opt.beta2, t))
                / (1 - math.pow(opt.beta1, t)))
        m, s = opt.state
        m[:] = T(opt.beta1) * m + T(1 - opt.beta1) * g
        s[:] = T(opt.beta2) * s + T(1 - opt.beta2) * (g * g)
        theta -= T(lr_t) * m / (np.sqrt(s) + T(opt.epsilon))
    else:
        raise ValueError(f"unknown update rule {rule!r}")
    opt.record_updates(1)


class DistributedLBFGS(_Distributed, LBFGSIterations):
    """scipy's L-BFGS-B on the client, one iteration per step, fed by the distributed loss
    and gradient (J, grad J) of the module docstring.

    Everything else (the helper thread, Ctrl-C, stopping, the iterate kept) is
    :class:`mlpcore._lbfgs.LBFGSIterations`.
    """

    def __init__(self, model, cluster, max_iter):
        _Distributed.__init__(self, model, cluster)
        LBFGSIterations.__init__(self, model, None, None, None, max_iter, None)
        self.mask = _weight_mask(model._network)

    def _loss_and_gradient(self, x):
        from mlpcore._lbfgs import _Stop

        if self._stop:
            raise _Stop
        m = self.model
        m._theta[:] = x
        S, G, W = self.cluster.loss_gradient(m._theta, m._network, m.n_threads)
        self._report()
        return (full_loss(m, S, W, self.n_samples),
                full_gradient(m, G, W, self.n_samples, self.mask).astype(np.float64))

    def threads(self):
        return contextlib.nullcontext()

    def loss(self):
        return _Distributed.loss(self)

    def close(self, completed):
        """As :meth:`LBFGSIterations.close`, but a stop cancels the evaluation running on
        the cluster instead of waiting for it, so the helper thread may end by itself:
        wait for its report first, resume it only while it waits after an iteration, and
        always go back to the last iterate the driver took."""
        thread = self._thread
        if completed or thread is None:
            return LBFGSIterations.close(self, completed)
        self._stop = True
        self.cluster.cancel()
        with self._turn:  # until the helper waits after an iteration, or has ended
            while self._worker_runs:
                self._turn.wait()
        while self._event is not None and self._event[0] == "iteration":
            self._resume()  # it raises StopIteration in scipy's callback, then ends
        thread.join()
        if self._event is not None and self._event[0] == "finished":
            self.message = str(self._event[1].message)
        self.model._theta[:] = self.recorded
        return None


# -- model averaging --------------------------------------------------------------------------
def part_train(part, start, spec, common=None):
    """Train one partition from ``start`` for one segment (an epoch, or a fraction of one).

    ``start``: dict(theta, state, t, rng, segment, order) -- this partition's previous
    result, or, after an averaging, only its own (rng, segment, order) with the averaged
    (theta, state, t) in ``common``, shared by all partitions (:meth:`Cluster.share`).
    Returns the new local state with the segment's ``loss_sum``, ``weight_sum``, ``status``.
    """
    if common is not None:
        start = {**common, **start}
    X, Y, sw = part
    theta = np.array(start["theta"], copy=True)
    state = [np.array(s, copy=True) for s in start["state"]]
    t = start["t"]
    rng = np.random.default_rng()
    rng.bit_generator.state = start["rng"]
    n = len(X)
    out = {"theta": theta, "state": state, "t": t, "rng": None, "loss_sum": 0.0,
           "weight_sum": 0.0, "status": _engine.EPOCH_DONE, "segment": start["segment"],
           "order": start.get("order"), "share": 0.0}
    if n == 0:
        out["rng"] = rng.bit_generator.state
        out["segment"] = (start["segment"] + 1) % spec["segments"]
        return out
    segments, segment = spec["segments"], start["segment"]
    batch = min(spec["batch"], n)
    order = start.get("order")
    if segment == 0:
        order = rng.permutation(n) if spec["shuffle"] and batch < n else None
    if segments > 1:
        idx = np.arange(n) if order is None else order
        lo, hi = segment * n // segments, (segment + 1) * n // segments
        rows = idx[lo:hi]
        Xs, Ys = np.ascontiguousarray(X[rows]), np.ascontiguousarray(Y[rows])
        sws = None if sw is None else np.ascontiguousarray(sw[rows])
        seg_order = None
    else:
        Xs, Ys, sws, seg_order = X, Y, sw, order
    if len(Xs) == 0 or (sws is not None and not sws.sum() > 0):
        out.update(rng=rng.bit_generator.state, order=order,
                   segment=(segment + 1) % segments)
        return out
    share = float(len(Xs) if sws is None else np.sum(sws, dtype=np.float64))
    if sws is not None:  # mean 1 over the whole training set, as on one machine
        sws = np.ascontiguousarray(sws * spec["weight_scale"], dtype=sws.dtype)
    batch = min(batch, len(Xs))
    network = spec["network"]
    ws = _workspace(network, batch, theta.dtype)
    states = state + [None] * (2 - len(state))
    with _limit(spec["n_threads"], batch, network.sizes):
        loss_sum, weight_sum, updates, status = _engine.train_epoch(
            network, ws, theta, Xs, Ys, sws, seg_order, batch, rule=spec["rule"],
            learning_rate=spec["lr"], alpha=spec["alpha"], state1=states[0],
            state2=states[1], t=t, **spec["constants"])
    out.update(theta=theta, state=state, t=t + int(updates), rng=rng.bit_generator.state,
               loss_sum=loss_sum, weight_sum=weight_sum, status=status, order=order,
               segment=(segment + 1) % segments, share=share)
    return out


def losses_of(local):
    return local["loss_sum"], local["weight_sum"], local["status"]


class ModelAveraging(_Distributed):
    """Synchronous model averaging: local epochs of the compiled engine on every partition,
    parameters and optimizer state averaged every ``sync_every`` epochs.

    ``sync_every`` >= 1 must be an integer (epochs between averagings); below 1, its
    inverse must be an integer R (R averagings per epoch, each after 1/R of every
    partition's shuffled rows). Rows are shuffled within partitions, every epoch, each
    partition with its own random stream (with one partition: the model's own).

    Between averagings (``sync_every`` > 1) the driver sees the parameters of the last
    averaging (validation, callbacks); the last epoch of a call always averages.
    """

    scheduled = True
    plateau_rule = True
    ended = None
    message = ""

    def __init__(self, model, cluster, batch, sync_every, epochs):
        super().__init__(model, cluster)
        opt = model.optimizer
        opt.init_state(model.n_params, model.dtype)
        if sync_every >= 1:
            if sync_every != int(sync_every):
                raise ValueError(f"sync_every must be an integer number of epochs or 1/R for "
                                 f"an integer R, got {sync_every}")
            self.every, self.segments = int(sync_every), 1
        else:
            inverse = 1 / sync_every
            if abs(inverse - round(inverse)) > 1e-9:
                raise ValueError(f"sync_every below 1 must be 1/R for an integer R (R "
                                 f"averagings per epoch), got {sync_every}")
            self.every, self.segments = 1, int(round(inverse))
        self.epochs = epochs
        self.batch = batch
        P = len(cluster.parts)
        if P == 1:
            self.rngs = [model._rng.bit_generator.state]
        else:
            entropy = int(model._rng.integers(2**63))
            self.rngs = [np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(p,)))
                         .bit_generator.state for p in range(P)]
        self.local = None  # futures of the partitions' states between averagings
        self.taken = 0

    def _start(self):
        """(what all partitions start from: the averaged theta, state and step count; what
        each partition starts from besides: its random stream)."""
        opt = self.model.optimizer
        common = {"theta": self.model._theta, "state": list(opt.state), "t": opt.t}
        return common, [{"rng": r, "segment": 0, "order": None} for r in self.rngs]

    def step(self, learning_rate):
        m, opt = self.model, self.model.optimizer
        spec = {"network": m._network, "segments": self.segments, "batch": self.batch,
                "shuffle": m.shuffle, "rule": opt.rule, "lr": learning_rate, "alpha": m.alpha,
                "constants": {k: v for k, v in opt.engine_args(learning_rate).items()
                              if k in ("momentum", "beta1", "beta2", "epsilon")},
                "n_threads": m.n_threads, "weight_scale": self.n_samples / self.weight}
        self.taken += 1
        sync = self.taken % self.every == 0 or self.taken == self.epochs
        loss_sum = weight_sum = 0.0
        try:
            for _ in range(self.segments):
                self.cluster.begin_round()
                if self.local is not None:  # each partition from its own previous state
                    futures = self.cluster.map_each(part_train, self.local, spec)
                else:  # all from the averaged state, sent once per worker
                    common, own = self._start()
                    futures = self.cluster.map_each(part_train, own, spec,
                                                    self.cluster.share(common))
                if sync or self.segments > 1:
                    results = self.cluster.gather(futures)
                    for r in results:
                        loss_sum += r["loss_sum"]
                        weight_sum += r["weight_sum"]
                    if any(r["status"] == _engine.EPOCH_DIVERGED for r in results):
                        self.local = None
                        return Step("diverged")
                    self._average(results)
                    self.local = None
                else:
                    results = self.cluster.gather(
                        [self.cluster.client.submit(losses_of, f, pure=False)
                         for f in futures])
                    for ls, wsum, status in results:
                        loss_sum += ls
                        weight_sum += wsum
                        if status == _engine.EPOCH_DIVERGED:
                            self.local = None
                            return Step("diverged")
                    self.local = futures
        except KeyboardInterrupt:
            self.local = None
            return Step("interrupted", samples=0,
                        message="the model keeps the parameters of the last averaging")
        loss = loss_sum / weight_sum if weight_sum > 0 else math.nan
        return Step("done", loss, self.n_samples)

    def _average(self, results):
        """theta, state <- sum_p (W_p / W) (theta_p, state_p); t the weighted mean step count.

        Partitions that did not train (no weight) keep their share out of it.
        """
        m, opt = self.model, self.model.optimizer
        weights = np.array([r["share"] for r in results], dtype=np.float64)
        self.rngs = [r["rng"] for r in results]
        total = weights.sum()
        if not total > 0:
            return
        if len(results) == 1:
            r = results[0]
            m._theta[:] = r["theta"]
            for s, new in zip(opt.state, r["state"]):
                s[:] = new
            opt.t = r["t"]
            m._rng.bit_generator.state = r["rng"]
            return
        share = weights / total
        theta = np.zeros(m.n_params)
        states = [np.zeros(m.n_params) for _ in opt.state]
        t = 0.0
        for c, r in zip(share, results):
            if c == 0:
                continue
            theta += c * r["theta"]
            for acc, s in zip(states, r["state"]):
                acc += c * s
            t += c * r["t"]
        m._theta[:] = theta
        for s, new in zip(opt.state, states):
            s[:] = new
        opt.t = int(round(t))

    def _sync_pending(self):
        if self.local is not None:
            results = self.cluster.gather(self.local)
            self._average(results)
            self.local = None

    def loss(self):
        self._sync_pending()
        return super().loss()

    def close(self, completed):
        try:
            self._sync_pending()
        finally:
            self.cluster.cancel()
