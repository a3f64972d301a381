"""One benchmark process: one implementation, one BLAS thread count, printing JSON.

    python bench/_worker.py --impl mlpcore --threads 1 --mode quick --tasks epoch \
        --workloads W2 --dtypes float32

``run.py`` starts one of these per implementation (and, in the full run, per workload and
dtype), with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS (and XLA_FLAGS for one
thread) already set in its environment; the worker also pins BLAS with threadpoolctl and
torch with ``torch.set_num_threads``. It prints one JSON document on stdout.

Tasks: ``epoch`` (ms per epoch of each workload), ``micro`` (forward / backprop / update
against NumPy; processes mlpcore and numpy), ``adam`` (per-sample Adam vs SGD in mlpcore),
``check`` (one epoch from the shared start without shuffling, weights saved to --check-out).
"""

import argparse
import functools
import json
import os
import sys
import time
import traceback
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

# Check cases: small, so every implementation runs them in a second; no 2-class case
# (scikit-learn turns two classes into one logistic unit, a different network).
CHECK_CASES = {
    "20-16-5/b1": dict(sizes=(20, 16, 5), N=200, batch=1),
    "20-16-5/b32": dict(sizes=(20, 16, 5), N=200, batch=32),
    "20-16-5/full": dict(sizes=(20, 16, 5), N=200, batch=None),
    "12-10-10-4/b16": dict(sizes=(12, 10, 10, 4), N=120, batch=16),
}


# ---------------------------------------------------------------------------------------------
# Implementations of one epoch. Each prepare_* returns (epoch, weights): epoch() runs one
# epoch in place (visiting the samples in a fresh random order unless shuffle is False or the
# batch is the whole data set); weights() returns ([W_l], [b_l]) as float64 NumPy arrays.
# ---------------------------------------------------------------------------------------------

def _theta_from(net, Ws, bs, dtype):
    import numpy as np

    theta = np.empty(net.n_params, dtype=dtype)
    for (ws, bsl), W, b in zip(net.layer_slices(), Ws, bs):
        theta[ws] = W.ravel()
        theta[bsl] = b
    return theta


def _split_theta(net, theta, sizes):
    Ws, bs = [], []
    for (ws, bsl), fan_in, fan_out in zip(net.layer_slices(), sizes[:-1], sizes[1:]):
        Ws.append(theta[ws].reshape(fan_in, fan_out).astype("float64"))
        bs.append(theta[bsl].astype("float64"))
    return Ws, bs


def _network(sizes):
    from mlpcore import _engine

    return _engine.Network(sizes, _engine.HIDDEN_ACTIVATIONS[C.HIDDEN_ACTIVATION],
                           _engine.OUTPUT_ACTIVATIONS["softmax"], _engine.LOSSES["cross_entropy"])


def prepare_mlpcore(ctx, rule="sgd"):
    """The compiled engine as mlpcore.fit drives it: one train_epoch call per epoch, on
    ``ctx.threads`` engine threads (with more than one, the engine holds BLAS at one thread
    inside its parallel segments, as mlpcore's thread policy does)."""
    import numpy as np
    from mlpcore import _engine

    _engine.set_num_threads(ctx.threads)
    net = _network(ctx.sizes)
    theta = _theta_from(net, ctx.Ws, ctx.bs, ctx.dtype)
    n, b = ctx.n, ctx.batch_rows
    ws = _engine.Workspace(net, min(b, _engine.CHUNK_ROWS), ctx.dtype)
    rng = np.random.default_rng(ctx.seed)
    state = {}
    if rule != "sgd":
        state = dict(state1=np.zeros_like(theta), state2=np.zeros_like(theta), t=0)

    def epoch():
        order = rng.permutation(n) if ctx.shuffle and b < n else None
        res = _engine.train_epoch(net, ws, theta, ctx.X, ctx.Y, None, order, b, rule,
                                  ctx.lr, **state)
        if rule != "sgd":
            state["t"] += res[2]
        if res[3] != _engine.EPOCH_DONE:
            raise RuntimeError("mlpcore epoch diverged")

    return epoch, lambda: _split_theta(net, theta, ctx.sizes)


def prepare_mlpcore_fit(ctx):
    """The public API: mlpcore.fit(..., epochs=1) from the shared start, every call."""
    import mlpcore

    out = {}
    seeds = iter(range(10**9))

    def epoch():
        out["model"] = mlpcore.fit(
            ctx.X, ctx.Y, hidden=ctx.sizes[1:-1], activation=C.HIDDEN_ACTIVATION,
            batch_size=None if ctx.batch is None else ctx.batch_rows, epochs=1,
            learning_rate=ctx.lr, shuffle=ctx.shuffle,
            seed=ctx.seed + next(seeds), dtype=ctx.dtype, init=(ctx.Ws, ctx.bs),
            optimizer="sgd", n_threads=ctx.threads)

    def weights():
        m = out["model"]
        return ([W.astype("float64") for W in m.weights], [b.astype("float64") for b in m.biases])

    return epoch, weights


def prepare_numpy(ctx):
    """tests/reference.py: train_epoch, the NumPy transcription of the formulas."""
    import numpy as np
    import reference

    n, b = ctx.n, ctx.batch_rows
    rng = np.random.default_rng(ctx.seed)
    params = [ctx.Ws, ctx.bs]
    # Unit weights in X's dtype: without them train_epoch makes float64 ones, which turns
    # the float32 baseline's gradients into float64 ones.
    sw = np.ones(n, dtype=ctx.X.dtype)

    def epoch():
        order = rng.permutation(n) if ctx.shuffle and b < n else None
        params[0], params[1] = reference.train_epoch(
            params[0], params[1], ctx.X, ctx.Y, C.HIDDEN_ACTIVATION, "softmax", "cross_entropy",
            b, ctx.lr, order=order, sw=sw)

    return epoch, lambda: ([W.astype("float64") for W in params[0]],
                           [b_.astype("float64") for b_ in params[1]])


def prepare_sklearn(ctx):
    """MLPClassifier(solver='sgd', momentum=0), one partial_fit per epoch from the shared start.

    Its starting weights are set by one partial_fit on a small slice (which builds the
    estimator's state), then overwriting coefs_/intercepts_ and dropping the optimizer (so
    it is rebuilt fresh). With two classes scikit-learn uses one logistic output unit and
    binary log-loss (a different network): the last layer then starts from the difference
    of the two shared output columns, which gives the same starting probabilities.
    """
    import numpy as np
    from sklearn.neural_network import MLPClassifier

    K = ctx.sizes[-1]
    clf = MLPClassifier(
        hidden_layer_sizes=ctx.sizes[1:-1], activation="logistic", solver="sgd", alpha=0.0,
        batch_size=ctx.batch_rows, learning_rate="constant", learning_rate_init=ctx.lr,
        momentum=0.0, nesterovs_momentum=False, max_iter=1, shuffle=ctx.shuffle,
        random_state=ctx.seed, early_stopping=False, tol=0.0)
    k = min(ctx.n, max(K, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(ctx.X[:k], ctx.y[:k], classes=np.arange(K))
    Ws = [W.copy() for W in ctx.Ws]
    bs = [b.copy() for b in ctx.bs]
    if K == 2:
        Ws[-1] = np.ascontiguousarray(Ws[-1][:, 1:2] - Ws[-1][:, 0:1])
        bs[-1] = bs[-1][1:2] - bs[-1][0:1]
    clf.coefs_, clf.intercepts_ = Ws, bs
    del clf._optimizer
    clf.t_, clf.n_iter_, clf.loss_curve_ = 0, 0, []
    for W, W0 in zip(clf.coefs_, Ws):
        assert W is W0 and W.dtype == ctx.X.dtype

    def epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.partial_fit(ctx.X, ctx.y)

    return epoch, lambda: ([W.astype("float64") for W in clf.coefs_],
                           [b.astype("float64") for b in clf.intercepts_])


def prepare_torch(ctx):
    """nn.Sequential(Linear, Sigmoid, ..., Linear) with F.cross_entropy (batch mean).

    The batch loop is Python; the update is p -= lr * p.grad under torch.no_grad().
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    tdtype = torch.float64 if ctx.dtype == "float64" else torch.float32
    layers = []
    for i, (W, b) in enumerate(zip(ctx.Ws, ctx.bs)):
        lin = torch.nn.Linear(W.shape[0], W.shape[1], dtype=tdtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(ctx.Ws) - 1:
            layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers)
    params = list(model.parameters())
    Xt = torch.from_numpy(ctx.X)
    yt = torch.from_numpy(ctx.y.astype(np.int64))
    gen = torch.Generator().manual_seed(ctx.seed)
    n, b, lr = ctx.n, ctx.batch_rows, ctx.lr

    def step(xb, yb):
        loss = F.cross_entropy(model(xb), yb)
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.sub_(p.grad, alpha=lr)

    def epoch():
        if b >= n:
            step(Xt, yt)
            return
        perm = torch.randperm(n, generator=gen) if ctx.shuffle else torch.arange(n)
        for s in range(0, n, b):
            idx = perm[s:s + b]
            step(Xt[idx], yt[idx])

    def weights():
        lins = [m for m in model if isinstance(m, torch.nn.Linear)]
        return ([m.weight.detach().double().numpy().T.copy() for m in lins],
                [m.bias.detach().double().numpy().copy() for m in lins])

    return epoch, weights


def _jax_setup():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _jax_sgd(lr):
    jax = _jax_setup()
    import jax.numpy as jnp

    def loss_fn(params, x, yoh):
        a = x
        for W, b in params[:-1]:
            a = jax.nn.sigmoid(a @ W + b)
        W, b = params[-1]
        z = a @ W + b
        return -jnp.mean(jnp.sum(yoh * jax.nn.log_softmax(z, axis=1), axis=1))

    def sgd(params, x, yoh):
        g = jax.grad(loss_fn)(params, x, yoh)
        return jax.tree_util.tree_map(lambda p, gp: p - lr * gp, params, g)

    return sgd


def _jax_params(ctx):
    import jax.numpy as jnp

    return [(jnp.asarray(W), jnp.asarray(b)) for W, b in zip(ctx.Ws, ctx.bs)]


def _jax_weights(box):
    import numpy as np

    return ([np.asarray(W, dtype="float64") for W, _ in box[0]],
            [np.asarray(b, dtype="float64") for _, b in box[0]])


def _jax_epoch_setup(ctx):
    """What both JAX epochs start from: the modules, the SGD step, the parameters (boxed so
    an epoch can replace them), the data on the device, sizes and the shuffling stream."""
    import numpy as np
    jax = _jax_setup()
    import jax.numpy as jnp
    from jax import lax

    return (jax, jnp, lax, _jax_sgd(ctx.lr), [_jax_params(ctx)], jnp.asarray(ctx.X),
            jnp.asarray(ctx.Y), ctx.n, ctx.batch_rows, np.random.default_rng(ctx.seed))


def prepare_jax_step(ctx):
    """jax.jit of one SGD step (grad of the mean cross-entropy), called per batch from Python.

    The batch is gathered inside the jitted step from the epoch's permutation (one device
    array per epoch) at a dynamic offset; the last short batch has its own compiled step.
    """
    jax, jnp, lax, sgd, box, Xj, Yj, n, b, rng = _jax_epoch_setup(ctx)
    full_step = jax.jit(sgd)

    @functools.lru_cache(maxsize=None)
    def batch_step(size):
        def f(params, X, Y, perm, start):
            idx = lax.dynamic_slice_in_dim(perm, start, size)
            return sgd(params, X[idx], Y[idx])
        return jax.jit(f)

    def epoch():
        params = box[0]
        if b >= n:
            params = full_step(params, Xj, Yj)
        else:
            perm = jnp.asarray(rng.permutation(n) if ctx.shuffle else jnp.arange(n))
            step = batch_step(b)
            nfull = n // b
            for i in range(nfull):
                params = step(params, Xj, Yj, perm, i * b)
            if n % b:
                params = batch_step(n % b)(params, Xj, Yj, perm, nfull * b)
        box[0] = jax.block_until_ready(params)

    return epoch, lambda: _jax_weights(box)


def prepare_jax_scan(ctx):
    """One jitted function per epoch: gather the shuffled, batched arrays (nb, b, D), then
    lax.scan the SGD step over them (the last short batch is one more step)."""
    jax, jnp, lax, sgd, box, Xj, Yj, n, b, rng = _jax_epoch_setup(ctx)
    nb = n // b

    @jax.jit
    def scan_epoch(params, X, Y, perm):
        idx = perm[:nb * b].reshape(nb, b)
        Xb, Yb = X[idx], Y[idx]
        params, _ = lax.scan(lambda p, xy: (sgd(p, *xy), None), params, (Xb, Yb))
        if n % b:
            rest = perm[nb * b:]
            params = sgd(params, X[rest], Y[rest])
        return params

    def epoch():
        perm = jnp.asarray(rng.permutation(n) if ctx.shuffle else jnp.arange(n))
        box[0] = jax.block_until_ready(scan_epoch(box[0], Xj, Yj, perm))

    return epoch, lambda: _jax_weights(box)


PREPARE = {
    "mlpcore": prepare_mlpcore, "mlpcore.fit": prepare_mlpcore_fit, "numpy": prepare_numpy,
    "sklearn": prepare_sklearn, "torch": prepare_torch, "jax-step": prepare_jax_step,
    "jax-scan": prepare_jax_scan,
}


def rows_of(process):
    return [impl for impl in C.EPOCH_IMPLS if C.PROCESS_OF[impl] == process]


def applies(impl, batch):
    """Rows that are not measured: jax-scan with one batch per epoch (that is jax-step)."""
    return not (impl == "jax-scan" and batch is None)


class Ctx:
    """Everything an epoch implementation needs: data, start, settings."""

    def __init__(self, sizes, X, y, Y, Ws, bs, batch, dtype, threads, shuffle=True, seed=0):
        self.sizes, self.X, self.y, self.Y, self.Ws, self.bs = sizes, X, y, Y, Ws, bs
        self.n = X.shape[0]
        self.batch = batch
        self.batch_rows = self.n if batch is None else min(batch, self.n)
        self.dtype, self.threads, self.shuffle, self.seed = dtype, threads, shuffle, seed
        self.lr = C.LEARNING_RATE


# ---------------------------------------------------------------------------------------------
# The GEMM floor: only the matrix products of an epoch, SciPy's BLAS (the one the engine calls)
# ---------------------------------------------------------------------------------------------

def prepare_floor(sizes, n, batch, dtype):
    """Every gemm an epoch needs, per batch: forward A_{l-1} W_l, backward delta_l W_l^T (l > 1)
    and A_{l-1}^T delta_l, on preallocated C-contiguous arrays with scipy.linalg.blas (row-major
    via the transposed column-major call: no copies). Returns (epoch, calls_per_epoch)."""
    import numpy as np
    from scipy.linalg import blas

    gemm = blas.dgemm if dtype == "float64" else blas.sgemm
    gemv = blas.dgemv if dtype == "float64" else blas.sgemv
    ger = blas.dger if dtype == "float64" else blas.sger
    rng = np.random.default_rng(0)
    b = n if batch is None else min(batch, n)

    def arrays(rows):
        A = [rng.random((rows, s)).astype(dtype) for s in sizes]      # A_0 = X, A_1, ..., A_L
        D = [rng.random((rows, s)).astype(dtype) for s in sizes]      # deltas (D[0] unused)
        W = [rng.random((i, o)).astype(dtype) for i, o in zip(sizes[:-1], sizes[1:])]
        G = [np.empty_like(w) for w in W]
        return A, D, W, G

    def batch_calls(A, D, W, G):
        """[(function, args, kwargs)] for one batch."""
        L = len(W)
        calls = []
        if A[0].shape[0] == 1:
            # One row: the level-2 calls (gemv, and ger for the outer product), which read
            # each weight matrix once; OpenBLAS's gemm with one row costs 2-8x more here.
            for l in range(L):
                calls.append((gemv, (1.0, W[l].T, A[l][0], 0.0, A[l + 1][0]),
                              dict(trans=0, overwrite_y=1)))
            for l in range(L - 1, -1, -1):
                if l > 0:
                    calls.append((gemv, (1.0, W[l].T, D[l + 1][0], 0.0, D[l][0]),
                                  dict(trans=1, overwrite_y=1)))
                calls.append((ger, (1.0, D[l + 1][0], A[l][0]), dict(a=G[l].T, overwrite_a=1)))
            return calls
        for l in range(L):      # forward: A_{l+1} = A_l W_l      (C^T = W^T A^T)
            calls.append((gemm, (1.0, W[l].T, A[l].T, 0.0, A[l + 1].T), dict(overwrite_c=1)))
        for l in range(L - 1, -1, -1):
            if l > 0:           # backward: D_l = D_{l+1} W_l^T   (C^T = W D^T)
                calls.append((gemm, (1.0, W[l].T, D[l + 1].T, 0.0, D[l].T),
                              dict(trans_a=1, overwrite_c=1)))
            # gradient: G_l = A_l^T D_{l+1}                       (C^T = D^T A)
            calls.append((gemm, (1.0, D[l + 1].T, A[l].T, 0.0, G[l].T),
                          dict(trans_b=1, overwrite_c=1)))
        return calls

    plan = []
    nfull, rest = divmod(n, b)
    plan.append((batch_calls(*arrays(b)), nfull))
    if rest:
        plan.append((batch_calls(*arrays(rest)), 1))
    # Verify the operand arrangement once: every call must write its output in place (no
    # copy by f2py) and compute the intended product.
    for rows in (1, 3):
        A, D, W, G = arrays(rows)
        calls = batch_calls(A, D, W, G)
        outs = [A[l + 1] for l in range(len(W))]
        for l in range(len(W) - 1, -1, -1):
            outs += ([D[l]] if l > 0 else []) + [G[l]]
        for (fn, fargs, kw), target in zip(calls, outs):
            if fn is ger:
                target[...] = 0
            r = fn(*fargs, **kw)
            assert np.shares_memory(r, target), "BLAS copied its output: wrong operand layout"
        assert np.allclose(A[1], A[0] @ W[0], rtol=1e-4)
        assert np.allclose(G[0], A[0].T @ D[1], rtol=1e-4)
        if len(W) > 1:
            assert np.allclose(D[1], D[2] @ W[1].T, rtol=1e-4)

    def epoch():
        for calls, times in plan:
            for _ in range(times):
                for fn, fargs, kw in calls:
                    fn(*fargs, **kw)

    n_calls = sum(len(calls) * times for calls, times in plan)
    return epoch, n_calls


def gemm_call_overhead(dtype, seconds):
    """Seconds per Python call of a 1x1x1 gemm through scipy.linalg.blas (the loop's tax)."""
    import numpy as np
    from scipy.linalg import blas

    gemm = blas.dgemm if dtype == "float64" else blas.sgemm
    a, b, c = (np.ones((1, 1), dtype=dtype) for _ in range(3))
    return C.per_call_seconds(
        lambda: gemm(1.0, a.T, b.T, 0.0, c.T, trans_a=0, trans_b=0, overwrite_c=1),
        seconds, 5)[0]


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------

def epoch_cases(mode, workloads, dtypes, batches=None):
    for w in workloads:
        for batch in C.WORKLOADS[w]["batches"]:
            if batches is not None and C.batch_label(batch) not in batches:
                continue
            for dtype in dtypes:
                if w == "S" and dtype != "float64":
                    continue
                yield w, batch, dtype


def task_epoch(process, args, out):
    mode = C.MODES[args.mode]
    impls = rows_of(process) if process != "floor" else ["floor"]
    for w, batch, dtype in epoch_cases(args.mode, args.workloads, args.dtypes, args.batches):
        sizes = C.sizes_of(w)
        n_full = C.n_samples(w, args.mode)
        X = y = Y = None
        for impl in impls:
            if impl != "floor" and not applies(impl, batch):
                continue
            n = n_full
            if (impl in C.SLOW_PEERS and batch is not None and batch <= mode["slow_batch"]
                    and n > mode["slow_subset"]):
                n = mode["slow_subset"]
            row = dict(kind="epoch", impl=impl, workload=w, batch=C.batch_label(batch),
                       dtype=dtype, threads=args.threads, n_nominal=C.WORKLOADS[w]["N"],
                       n_timed=n, sizes=list(sizes))
            try:
                if impl == "floor":
                    fn, n_calls = prepare_floor(sizes, n, batch, dtype)
                    overhead = gemm_call_overhead(dtype, mode["micro_seconds"])
                    row.update(gemm_calls=n_calls, call_overhead_us=overhead * 1e6)
                else:
                    if X is None:
                        X, y, Y = C.make_data(w, n_full, dtype)
                        Ws, bs = C.make_init(sizes, dtype)
                    ctx = Ctx(sizes, X[:n], y[:n], Y[:n], Ws, bs, batch, dtype, args.threads,
                              seed=17)
                    fn, _ = PREPARE[impl](ctx)
                walls, cpus = C.timed_runs(fn, mode["repeats"], mode["warmup"])
                if impl == "floor":
                    row["overhead_ms"] = row["gemm_calls"] * overhead * 1e3
                row.update(times_ms=[t * 1e3 for t in walls], cpu_times_ms=[t * 1e3 for t in cpus])
                C.finalize_epoch_row(row)
            except Exception as exc:  # one failing row must not lose the others
                row.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            out["results"].append(row)
            print(f"  {impl:12s} {C.case_id(w, batch, dtype):22s} T={args.threads} "
                  f"{row.get('ms_per_epoch', float('nan')):10.2f} ms", file=sys.stderr, flush=True)


def task_adam(process, args, out):
    """Per-sample Adam vs plain SGD in mlpcore on W3 (batch 1)."""
    mode = C.MODES[args.mode]
    for dtype in args.dtypes:
        n = C.n_samples("W3", args.mode)
        sizes = C.sizes_of("W3")
        X, y, Y = C.make_data("W3", n, dtype)
        Ws, bs = C.make_init(sizes, dtype)
        for rule in ("sgd", "adam", "adam floor"):
            if rule == "adam floor":
                fn = prepare_update_floor(sizes, n, dtype)
            else:
                ctx = Ctx(sizes, X, y, Y, Ws, bs, 1, dtype, args.threads, seed=17)
                fn, _ = prepare_mlpcore(ctx, rule=rule)
            walls, cpus = C.timed_runs(fn, mode["repeats"], mode["warmup"])
            out["results"].append(C.finalize_epoch_row(dict(
                kind="adam", impl="mlpcore", rule=rule, workload="W3", batch="1", dtype=dtype,
                threads=args.threads, n_timed=n, n_nominal=C.WORKLOADS["W3"]["N"],
                times_ms=[t * 1e3 for t in walls], cpu_times_ms=[t * 1e3 for t in cpus])))


def prepare_update_floor(sizes, n, dtype):
    """The Adam update floor: Adam's arithmetic over every weight and bias once per sample
    (the per-sample kernels, rank-1 gradient formed on the fly), n samples, no forward pass
    or backpropagation (``_engine._update_floor``)."""
    import numpy as np
    from mlpcore import _engine

    net = _network(sizes)
    theta = np.zeros(net.n_params, dtype=dtype)
    m, s = np.zeros_like(theta), np.zeros_like(theta)
    return lambda: _engine._update_floor(net, theta, m, s, "adam", n)


MICRO_BATCHES = (1, 32, 256)


def task_micro(process, args, out):
    """Forward, backprop and update at batch 1, 32, 256 on 784-128-10."""
    import numpy as np

    mode = C.MODES[args.mode]
    sizes = C.sizes_of("W3")
    secs, reps = mode["micro_seconds"], mode["micro_repeats"]
    for dtype in args.dtypes:
        Xall, yall, Yall = C.make_data("W3", max(MICRO_BATCHES) * 16, dtype)
        Ws, bs = C.make_init(sizes, dtype)
        for b in MICRO_BATCHES:
            X, Y = Xall[:b], Yall[:b]
            t = {}
            if process == "mlpcore":
                from mlpcore import _engine
                net = _network(sizes)
                theta = _theta_from(net, Ws, bs, dtype)
                theta_step = theta.copy()
                outK = np.empty((b, sizes[-1]), dtype=dtype)
                grad = np.empty_like(theta)
                ws = _engine.Workspace(net, b, dtype)
                s1, s2 = np.zeros_like(theta), np.zeros_like(theta)
                R = max(2, min(64, 4096 // b))  # batches per call of the in-epoch step
                XR, YR = Xall[:R * b], Yall[:R * b]
                lr = C.LEARNING_RATE
                t["forward"] = C.per_call_seconds(
                    lambda: _engine.forward(net, theta, X, outK), secs, reps)[0]
                t["forward+backprop"] = C.per_call_seconds(
                    lambda: _engine.loss_gradient(net, theta, X, Y, None, 0.0, grad, ws),
                    secs, reps)[0]
                t["sgd step"] = C.per_call_seconds(
                    lambda: _engine.train_epoch(net, ws, theta_step, X, Y, None, None, b,
                                                "sgd", lr), secs, reps)[0]
                t["sgd step, in epoch"] = C.per_call_seconds(
                    lambda: _engine.train_epoch(net, ws, theta_step, XR, YR, None, None, b,
                                                "sgd", lr), secs, reps)[0] / R
                t["adam step"] = C.per_call_seconds(
                    lambda: _engine.train_epoch(net, ws, theta_step, X, Y, None, None, b,
                                                "adam", lr, state1=s1, state2=s2, t=1),
                    secs, reps)[0]
                t["update"] = t["sgd step"] - t["forward+backprop"]
                t["adam update"] = t["adam step"] - t["forward+backprop"]
            else:
                import reference
                Wst = [W.copy() for W in Ws]
                bst = [b_.copy() for b_ in bs]
                dWs, dbs = reference.gradients(Wst, bst, X, Y, C.HIDDEN_ACTIVATION, "softmax",
                                               "cross_entropy")
                lr = C.LEARNING_RATE

                def update():
                    for W, dW, bb, db in zip(Wst, dWs, bst, dbs):
                        W -= lr * dW
                        bb -= lr * db

                def step():
                    g = reference.gradients(Wst, bst, X, Y, C.HIDDEN_ACTIVATION, "softmax",
                                            "cross_entropy")
                    for W, dW, bb, db in zip(Wst, g[0], bst, g[1]):
                        W -= lr * dW
                        bb -= lr * db

                t["forward"] = C.per_call_seconds(
                    lambda: reference.forward(Ws, bs, X, C.HIDDEN_ACTIVATION, "softmax"),
                    secs, reps)[0]
                t["forward+backprop"] = C.per_call_seconds(
                    lambda: reference.gradients(Ws, bs, X, Y, C.HIDDEN_ACTIVATION, "softmax",
                                                "cross_entropy"), secs, reps)[0]
                t["update"] = C.per_call_seconds(update, secs, reps)[0]
                t["sgd step"] = C.per_call_seconds(step, secs, reps)[0]
            t["backprop"] = t["forward+backprop"] - t["forward"]
            for op, sec in t.items():
                out["results"].append(dict(kind="micro", impl=process, op=op, batch=b,
                                           dtype=dtype, threads=args.threads, us=sec * 1e6))


def task_check(process, args, out):
    """One epoch, no shuffling, from the shared start; weights saved for run.py to compare."""
    import numpy as np

    saved = {}
    impls = rows_of(process)
    for name, case in CHECK_CASES.items():
        sizes = case["sizes"]
        for dtype in args.dtypes:
            rng = np.random.default_rng([C.DATA_SEED, *sizes])
            X = rng.random((case["N"], sizes[0])).astype(dtype)
            y = np.arange(case["N"]) % sizes[-1]       # every class present
            rng.shuffle(y)
            Y = np.zeros((case["N"], sizes[-1]), dtype=dtype)
            Y[np.arange(case["N"]), y] = 1
            Ws, bs = C.make_init(sizes, dtype)
            for impl in impls:
                if not applies(impl, case["batch"]):
                    continue
                key = f"{impl}|{name}|{dtype}"
                try:
                    ctx = Ctx(sizes, X, y, Y, Ws, bs, case["batch"], dtype, args.threads,
                              shuffle=False)
                    fn, weights = PREPARE[impl](ctx)
                    fn()
                    Wl, bl = weights()
                    for i, (W, b) in enumerate(zip(Wl, bl)):
                        saved[f"{key}|W{i}"] = W
                        saved[f"{key}|b{i}"] = b
                except Exception as exc:
                    out["errors"].append(f"check {key}: {type(exc).__name__}: {exc}")
    np.savez(args.check_out, **saved)
    out["check_file"] = args.check_out


def blas_info():
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads",
            "threading_layer", "filepath")
    return [{k: v for k, v in d.items() if k in keep} for d in threadpool_info()]


def import_process_libs(process):
    """Import what the process measures, so threadpool_info sees every BLAS it loads."""
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401

    versions = {"numpy": numpy.__version__, "scipy": __import__("scipy").__version__}
    if process in ("mlpcore",):
        import mlpcore
        versions["mlpcore"] = getattr(mlpcore, "__version__", "?")
    if process == "sklearn":
        import sklearn
        versions["sklearn"] = sklearn.__version__
    if process == "torch":
        import torch
        versions["torch"] = torch.__version__
    if process.startswith("jax"):
        import jax
        import jaxlib
        versions["jax"] = jax.__version__
        versions["jaxlib"] = jaxlib.__version__
    return versions


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--impl", required=True,
                   choices=sorted(set(C.PROCESS_OF.values())),
                   help="process: mlpcore measures the rows mlpcore and mlpcore.fit")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mode", choices=sorted(C.MODES), default="full")
    p.add_argument("--tasks", default="epoch")
    p.add_argument("--workloads", "--workload", default=",".join(C.EPOCH_WORKLOADS))
    p.add_argument("--dtypes", "--dtype", default="float64,float32")
    p.add_argument("--batches", default=None, help="only these batch labels, e.g. 64,full")
    p.add_argument("--check-out", default=None)
    args = p.parse_args(argv)
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    args.batches = None if args.batches is None else args.batches.split(",")
    tasks = args.tasks.split(",")

    sys.path.insert(0, os.path.join(C.ROOT, "tests"))  # reference.py, the NumPy baseline
    affinity = None
    if hasattr(os, "sched_setaffinity") and args.threads < len(os.sched_getaffinity(0)):
        # Fewer threads than CPUs: pin the process to that many CPUs, before any library
        # starts a thread pool. Thread-count settings alone do not stop every runtime from
        # using another core (XLA runs independent operations concurrently).
        affinity = sorted(os.sched_getaffinity(0))[-args.threads:]
        os.sched_setaffinity(0, affinity)
    from threadpoolctl import threadpool_limits

    out = dict(process=args.impl, threads=args.threads, mode=args.mode, results=[], errors=[],
               loadavg_start=os.getloadavg(), cpu_pressure_start=C.cpu_pressure(),
               pid=os.getpid(), affinity=affinity)
    t0 = time.perf_counter()
    out["versions"] = import_process_libs(args.impl)
    if args.impl == "torch":
        import torch
        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        out["torch_threads"] = torch.get_num_threads()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        out["blas"] = blas_info()
        for task in tasks:
            fn = {"epoch": task_epoch, "micro": task_micro, "adam": task_adam,
                  "check": task_check}[task]
            try:
                fn(args.impl, args, out)
            except Exception as exc:
                out["errors"].append(f"{task}: {type(exc).__name__}: {exc}\n"
                                     f"{traceback.format_exc()}")
    out["env"] = {k: os.environ.get(k) for k in (
        "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS", "XLA_FLAGS")}
    out["loadavg_end"] = os.getloadavg()
    out["cpu_pressure_end"] = C.cpu_pressure()
    out["seconds"] = time.perf_counter() - t0
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
