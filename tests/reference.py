"""A pure NumPy transcription of the tutorial's formulas: the oracle for the tests and the
baseline for the benchmarks in bench/.

Written for clarity, not speed: every line is one formula.

  Z_l = A_{l-1} W_l + b_l,  A_l = g(Z_l),  A_0 = X
  J   = sum_i w_i l_i / n  (+ alpha/2 sum ||W_l||^2 / n),  n = sum_i w_i
  delta_L = dJ/dZ_L * n
  delta_l = (delta_{l+1} W_{l+1}^T) * g'(Z_l)
  dW_l = A_{l-1}^T delta_l / n,  db_l = sum_rows(delta_l) / n
  W <- W - lr dW

Training (:func:`train_epoch`) follows mlpcore's weight rule: the weights are scaled to mean 1
over the training set (:func:`mean_one`) and a batch of B rows has n = B, so a full batch
gives J above and a step at batch size 1 scales with w_i. ``normalize="weights"`` keeps n =
sum_i w_i for every batch instead: scikit-learn's rule (and mlpcore's before the rule was
changed), which makes the weights cancel at batch size 1.

The update rules (:func:`update`, :func:`optimizer_epochs`) are scikit-learn's
(sklearn/neural_network/_stochastic_optimizers.py): momentum v <- mu v - lr g, W <- W + v
(Nesterov: W <- W + mu v - lr g); Adam with its bias correction folded into the step,
lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t), W <- W - lr_t m / (sqrt(s) + eps).
"""

import numpy as np


def activate(z, name):
    if name == "identity":
        return z
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if name == "exp":
        return np.exp(z)
    raise ValueError(name)


def derivative(a, name):
    """g'(z) written with a = g(z)."""
    if name == "identity":
        return np.ones_like(a)
    if name == "sigmoid":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a ** 2
    if name == "relu":
        return (a > 0).astype(a.dtype)
    raise ValueError(name)


def forward(Ws, bs, X, hidden, output):
    """All activations [A_1, ..., A_L]."""
    acts = []
    a = X
    for l, (W, b) in enumerate(zip(Ws, bs)):
        a = activate(a @ W + b, output if l == len(Ws) - 1 else hidden)
        acts.append(a)
    return acts


def per_sample_loss(a, Y, output, loss):
    eps = np.finfo(a.dtype).eps
    if loss == "mse":
        return 0.5 * ((a - Y) ** 2).sum(axis=1)
    if loss == "poisson":  # y log(y / a) - y + a, with 0 log 0 = 0
        ylogy = Y * np.log(np.where(Y > 0, Y, 1.0) / a)
        return (ylogy - Y + a).sum(axis=1)
    p = np.clip(a, eps, 1 - eps)
    if output == "softmax":
        return -(Y * np.log(p)).sum(axis=1)
    return -(Y * np.log(p) + (1 - Y) * np.log(1 - p)).sum(axis=1)


def mean_one(sw):
    """Weights scaled to mean 1 (in float64, by the maximum first)."""
    w = np.asarray(sw, dtype=np.float64)
    w = w / w.max()
    return w * (len(w) / w.sum())


def loss(Ws, bs, X, Y, hidden, output, loss_name, sw=None, alpha=0.0, n=None):
    """J with the normaliser n (default sum_i w_i)."""
    w = np.ones(len(X)) if sw is None else sw
    n = w.sum() if n is None else n
    a = forward(Ws, bs, X, hidden, output)[-1]
    l2 = 0.5 * alpha * sum((W ** 2).sum() for W in Ws)
    keep = w != 0  # a zero weight removes its sample's loss, even an infinite one
    data = w[keep] @ per_sample_loss(a, Y, output, loss_name)[keep]
    return (data + l2) / n


def output_delta(a, Y, output, loss_name):
    """dl_i/dZ_L for each sample (unweighted)."""
    if loss_name in ("cross_entropy", "poisson") or output == "identity":
        return a - Y  # a canonical link: softmax/sigmoid + cross-entropy, exp + poisson
    if output == "sigmoid":
        return (a - Y) * a * (1 - a)  # the tutorial's delta2
    e = a - Y  # softmax + mse: the softmax Jacobian applied to e
    return a * (e - (e * a).sum(axis=1, keepdims=True))


def gradients(Ws, bs, X, Y, hidden, output, loss_name, sw=None, alpha=0.0, n=None):
    """(dW list, db list) of J (normaliser n, default sum_i w_i) by backpropagation."""
    w = np.ones(len(X), dtype=X.dtype) if sw is None else sw
    acts = forward(Ws, bs, X, hidden, output)
    delta = output_delta(acts[-1], Y, output, loss_name) * w[:, None]
    n = w.sum() if n is None else n
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        a_prev = X if l == 0 else acts[l - 1]
        dWs[l] = (a_prev.T @ delta + alpha * Ws[l]) / n
        dbs[l] = delta.sum(axis=0) / n
        if l > 0:
            delta = (delta @ Ws[l].T) * derivative(acts[l - 1], hidden)
    return dWs, dbs


def train_epoch(Ws, bs, X, Y, hidden, output, loss_name, batch_size, lr, order=None,
                sw=None, alpha=0.0, return_loss=False, normalize="rows"):
    """One epoch of plain mini-batch gradient descent; returns new (Ws, bs).

    ``normalize="rows"`` (mlpcore's rule): ``sw`` is scaled to mean 1 over X, and a batch of
    B rows has the loss J_b = (sum_i w_i l_i + alpha/2 sum ||W||^2) / B; every batch is a
    step. ``normalize="weights"`` (scikit-learn's rule): J_b divides by the batch's total
    weight instead (any sign); a batch of total weight 0 is skipped.

    With ``return_loss`` also the epoch's loss: the batch losses J_b, each at the batch's
    starting parameters, averaged with the batches' row counts (scikit-learn's ``loss_``).
    """
    Ws = [W.copy() for W in Ws]
    bs = [b.copy() for b in bs]
    n = len(X)
    order = np.arange(n) if order is None else order
    if sw is not None and normalize == "rows":
        sw = mean_one(sw).astype(X.dtype)
    total = rows = 0.0
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        swb = np.ones(len(idx), dtype=X.dtype) if sw is None else sw[idx]
        n_b = len(idx) if normalize == "rows" else swb.sum()
        if n_b == 0:
            continue
        if return_loss:
            total += len(idx) * loss(Ws, bs, X[idx], Y[idx], hidden, output, loss_name, swb,
                                     alpha, n_b)
            rows += len(idx)
        dWs, dbs = gradients(Ws, bs, X[idx], Y[idx], hidden, output, loss_name, swb, alpha,
                             n_b)
        for l in range(len(Ws)):
            Ws[l] -= lr * dWs[l]
            bs[l] -= lr * dbs[l]
    if return_loss:
        return Ws, bs, total / rows
    return Ws, bs


def new_state(params):
    """The update rules' state for these parameters: step count, velocities, Adam moments."""
    return {"t": 0, "v": [np.zeros_like(p) for p in params],
            "m": [np.zeros_like(p) for p in params], "s": [np.zeros_like(p) for p in params]}


def update(rule, params, grads, state, lr, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8):
    """One step of ``rule`` on ``params`` (arrays changed in place) with gradients ``grads``."""
    v, m, s = state["v"], state["m"], state["s"]
    if rule == "sgd":
        for p, g in zip(params, grads):
            p -= lr * g
    elif rule in ("momentum", "nesterov"):
        for i, (p, g) in enumerate(zip(params, grads)):
            v[i] = momentum * v[i] - lr * g
            p += (momentum * v[i] - lr * g) if rule == "nesterov" else v[i]
    elif rule == "adam":
        state["t"] += 1
        t = state["t"]
        lr_t = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        for i, (p, g) in enumerate(zip(params, grads)):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            s[i] = beta2 * s[i] + (1 - beta2) * g ** 2
            p -= lr_t * m[i] / (np.sqrt(s[i]) + eps)
    else:
        raise ValueError(rule)


def optimizer_epochs(rule, Ws, bs, X, Y, hidden, output, loss_name, batch_size, lr, epochs=1,
                     alpha=0.0, sw=None, **settings):
    """``epochs`` epochs of ``rule`` over the rows in order (no shuffling); new (Ws, bs).

    ``sw``: sample weights, under mlpcore's rule (scaled to mean 1 over X, every batch of B
    rows divided by B; see :func:`train_epoch`). ``settings``: ``momentum``, ``beta1``,
    ``beta2``, ``eps`` of :func:`update`.
    """
    Ws = [W.copy() for W in Ws]
    bs = [b.copy() for b in bs]
    params = Ws + bs
    state = new_state(params)
    w = None if sw is None else mean_one(sw).astype(X.dtype)
    for _ in range(epochs):
        for start in range(0, len(X), batch_size):
            rows = slice(start, start + batch_size)
            n_b = len(X[rows]) if w is not None else None
            dWs, dbs = gradients(Ws, bs, X[rows], Y[rows], hidden, output, loss_name,
                                 None if w is None else w[rows], alpha=alpha, n=n_b)
            update(rule, params, dWs + dbs, state, lr, **settings)
    return Ws, bs
