# The compiled training engine of mlpcore.
#
# A network with L layers maps X (n x D) through Z_l = A_{l-1} W_l + b_l, A_l = g_l(Z_l), with
# A_0 = X. All parameters live in one flat vector theta, layer by layer: W_1 (row-major,
# fan_in x fan_out), b_1, W_2, b_2, ... so optimizers and L-BFGS see one array, and the weight
# matrices the user sees are views into it.
#
# Everything here works on raw pointers into buffers that the Python-facing functions at the
# bottom of this file check once (dtype, shape, contiguity) and that are allocated once per
# call: a fit allocates its Workspace once, and a whole epoch runs in one nogil call.
from cython cimport floating
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy
from libc.math cimport isfinite, sqrt, pow
from cpython.exc cimport PyErr_CheckSignals

import numpy as np

from _blas cimport gemm
from _activations cimport (
    IDENTITY, SIGMOID, TANH, RELU, SOFTMAX, bias_activation, mul_derivative,
)
from _losses cimport MSE, CROSS_ENTROPY, output_delta, sample_loss
from _updates cimport SGD, MOMENTUM, NESTEROV, ADAM, sgd_step, momentum_step, adam_step

# The codes the Python layer uses to name activations, losses and update rules.
HIDDEN_ACTIVATIONS = {"identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU}
OUTPUT_ACTIVATIONS = {"identity": IDENTITY, "sigmoid": SIGMOID, "softmax": SOFTMAX}
LOSSES = {"mse": MSE, "cross_entropy": CROSS_ENTROPY}
UPDATE_RULES = {"sgd": SGD, "momentum": MOMENTUM, "nesterov": NESTEROV, "adam": ADAM}

# Rows processed per forward/backward pass. A batch larger than this (full-batch gradient
# descent) is processed in chunks whose gradients are summed, which bounds the work buffers
# by CHUNK_ROWS x widest layer while keeping every gemm large enough to run at full speed.
CHUNK_ROWS = 4096
# Samples processed between two checks for Ctrl-C (each check takes the GIL briefly).
SIGNAL_CHECK_SAMPLES = 4096

# Status codes returned by train_epoch.
cdef enum EpochStatus:
    DONE = 0
    DIVERGED = 1
    INTERRUPTED = 2
EPOCH_DONE = DONE
EPOCH_DIVERGED = DIVERGED
EPOCH_INTERRUPTED = INTERRUPTED


cdef struct Net:
    Py_ssize_t n_layers
    Py_ssize_t* sizes   # n_layers + 1 widths: D, M_1, ..., K
    Py_ssize_t* w_off   # offset of W_l in theta
    Py_ssize_t* b_off   # offset of b_l in theta
    int hidden          # activation code of the hidden layers
    int output          # activation code of the output layer
    int loss            # loss code


cdef struct UpdateRule:
    int kind
    double lr
    double alpha        # L2 penalty: J += alpha / 2 * sum ||W_l||^2 / sum_i w_i
    double momentum
    double beta1
    double beta2
    double epsilon
    long long t         # Adam: updates taken so far


cdef class Network:
    """Shape and kind of a multilayer perceptron, as the engine needs them.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``(D, M_1, ..., M_{L-1}, K)``; at least two entries, all positive.
    hidden, output, loss : int
        Codes from ``HIDDEN_ACTIVATIONS``, ``OUTPUT_ACTIVATIONS`` and ``LOSSES``.
    """
    cdef Net net
    cdef readonly tuple sizes
    cdef readonly Py_ssize_t n_params

    def __cinit__(self, sizes, int hidden, int output, int loss):
        cdef Py_ssize_t i, off = 0
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must hold at least two positive widths, got {sizes}")
        if hidden not in HIDDEN_ACTIVATIONS.values():
            raise ValueError(f"unknown hidden activation code {hidden}")
        if output not in OUTPUT_ACTIVATIONS.values():
            raise ValueError(f"unknown output activation code {output}")
        if loss not in LOSSES.values():
            raise ValueError(f"unknown loss code {loss}")
        if loss == CROSS_ENTROPY and output == IDENTITY:
            raise ValueError("cross_entropy needs a 'sigmoid' or 'softmax' output")
        self.sizes = sizes
        self.net.n_layers = len(sizes) - 1
        self.net.sizes = <Py_ssize_t*> malloc(len(sizes) * sizeof(Py_ssize_t))
        self.net.w_off = <Py_ssize_t*> malloc(len(sizes) * sizeof(Py_ssize_t))
        self.net.b_off = <Py_ssize_t*> malloc(len(sizes) * sizeof(Py_ssize_t))
        if not (self.net.sizes and self.net.w_off and self.net.b_off):
            raise MemoryError()
        for i in range(len(sizes)):
            self.net.sizes[i] = sizes[i]
        for i in range(self.net.n_layers):
            self.net.w_off[i] = off
            off += sizes[i] * sizes[i + 1]
            self.net.b_off[i] = off
            off += sizes[i + 1]
        self.n_params = off
        self.net.hidden = hidden
        self.net.output = output
        self.net.loss = loss

    def __dealloc__(self):
        free(self.net.sizes)
        free(self.net.w_off)
        free(self.net.b_off)

    def layer_slices(self):
        """``[(weight_slice, bias_slice), ...]``: where each layer's W and b sit in theta."""
        return [
            (slice(self.net.w_off[l], self.net.b_off[l]),
             slice(self.net.b_off[l], self.net.b_off[l] + self.net.sizes[l + 1]))
            for l in range(self.net.n_layers)
        ]

    def weight_mask(self):
        """Boolean vector over theta: True on weights, False on biases (L2 applies to weights)."""
        mask = np.zeros(self.n_params, dtype=bool)
        for w, _ in self.layer_slices():
            mask[w] = True
        return mask

    def __reduce__(self):
        return (Network, (self.sizes, self.net.hidden, self.net.output, self.net.loss))


cdef class Workspace:
    """Work buffers for training one network: allocated once, reused by every batch.

    Holds, for ``rows`` samples at a time, the activations and deltas of every layer, a buffer
    the shuffled samples are gathered into, and one gradient vector.
    """
    cdef readonly Py_ssize_t rows
    cdef readonly object dtype
    cdef Py_ssize_t n_layers
    cdef void** acts
    cdef void** deltas
    cdef void* x_buf
    cdef void* y_buf
    cdef void* sw_buf
    cdef void* grad

    def __cinit__(self, Network network, Py_ssize_t rows, dtype):
        cdef Py_ssize_t l, itemsize, n_layers = network.net.n_layers
        cdef Py_ssize_t* sizes = network.net.sizes
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"Workspace dtype must be float32 or float64, got {self.dtype}")
        if rows < 1:
            raise ValueError("Workspace needs at least one row")
        itemsize = self.dtype.itemsize
        self.rows = rows
        self.n_layers = n_layers
        self.acts = <void**> _calloc(n_layers * sizeof(void*))
        self.deltas = <void**> _calloc(n_layers * sizeof(void*))
        for l in range(n_layers):
            self.acts[l] = _calloc(rows * sizes[l + 1] * itemsize)
            self.deltas[l] = _calloc(rows * sizes[l + 1] * itemsize)
        self.x_buf = _calloc(rows * sizes[0] * itemsize)
        self.y_buf = _calloc(rows * sizes[n_layers] * itemsize)
        self.sw_buf = _calloc(rows * itemsize)
        self.grad = _calloc(network.n_params * itemsize)

    def __dealloc__(self):
        cdef Py_ssize_t l
        if self.acts != NULL:
            for l in range(self.n_layers):
                free(self.acts[l])
        if self.deltas != NULL:
            for l in range(self.n_layers):
                free(self.deltas[l])
        free(self.acts)
        free(self.deltas)
        free(self.x_buf)
        free(self.y_buf)
        free(self.sw_buf)
        free(self.grad)


cdef void* _calloc(size_t nbytes) except NULL:
    # Zero-filled, so no uninitialised memory is ever read.
    cdef void* p = calloc(nbytes if nbytes > 0 else 1, 1)
    if p == NULL:
        raise MemoryError(f"could not allocate {nbytes} bytes of work buffers")
    return p


# ---------------------------------------------------------------------------------------------
# Kernels: forward pass, backpropagation, batch gathering. All nogil, all on raw pointers.
# ---------------------------------------------------------------------------------------------

cdef void forward_pass(const Net* net, const floating* theta, const floating* x, Py_ssize_t n,
                       floating** acts) noexcept nogil:
    """A_l = g_l(A_{l-1} W_l + b_l) for l = 1..L into acts[l-1]; x is A_0 (n x D)."""
    cdef Py_ssize_t l, fan_in, fan_out
    cdef const floating* prev = x
    cdef int act
    for l in range(net.n_layers):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        act = net.output if l == net.n_layers - 1 else net.hidden
        gemm(False, False, n, fan_out, fan_in, 1, prev, fan_in,
             theta + net.w_off[l], fan_out, 0, acts[l], fan_out)
        bias_activation(acts[l], theta + net.b_off[l], n, fan_out, act)
        prev = acts[l]


cdef void column_sums(floating* out, const floating* d, Py_ssize_t n, Py_ssize_t m,
                      floating scale, floating beta) noexcept nogil:
    """out = scale * (sum of the n rows of d) + beta * out."""
    cdef Py_ssize_t i, j
    cdef const floating* row
    if beta == 0:
        for j in range(m):
            out[j] = 0
    elif beta != 1:
        for j in range(m):
            out[j] = beta * out[j]
    for i in range(n):
        row = d + i * m
        for j in range(m):
            out[j] = out[j] + scale * row[j]


cdef void backprop(const Net* net, const floating* theta, const floating* x, Py_ssize_t n,
                   floating** acts, floating** deltas, floating* out, floating scale,
                   floating w_beta, floating b_beta) noexcept nogil:
    """Backpropagate deltas[L-1] (delta_L, already filled) and accumulate gradient terms.

    For l = L..1:  delta_{l-1} = (delta_l W_l^T) * g'(A_{l-1})
                   out_W_l     = scale * A_{l-1}^T delta_l  + w_beta * out_W_l
                   out_b_l     = scale * colsum(delta_l)    + b_beta * out_b_l
    ``out`` is laid out like theta. With out = grad, scale = 1/n, betas = 0 it is the mean
    gradient; with out = theta, scale = -lr/n, w_beta = 1 - lr*alpha/n, b_beta = 1 it is a
    complete SGD step (L2 included) with no gradient buffer. delta_{l-1} is formed before
    W_l is written, so out may alias theta.
    """
    cdef Py_ssize_t l, fan_in, fan_out
    cdef const floating* a_prev
    for l in range(net.n_layers - 1, -1, -1):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        a_prev = x if l == 0 else acts[l - 1]
        if l > 0:
            gemm(False, True, n, fan_in, fan_out, 1, deltas[l], fan_out,
                 theta + net.w_off[l], fan_out, 0, deltas[l - 1], fan_in)
            mul_derivative(deltas[l - 1], acts[l - 1], n * fan_in, net.hidden)
        gemm(True, False, fan_in, fan_out, n, scale, a_prev, fan_in, deltas[l], fan_out,
             w_beta, out + net.w_off[l], fan_out)
        column_sums(out + net.b_off[l], deltas[l], n, fan_out, scale, b_beta)


cdef void gather_rows(floating* dst, const floating* src, const Py_ssize_t* rows, Py_ssize_t n,
                      Py_ssize_t width) noexcept nogil:
    """dst[i, :] = src[rows[i], :] for i < n (row-major, width columns)."""
    cdef Py_ssize_t i
    for i in range(n):
        memcpy(dst + i * width, src + rows[i] * width, width * sizeof(floating))


cdef double l2_penalty(const Net* net, const floating* theta) noexcept nogil:
    """sum_l ||W_l||^2 (biases excluded), accumulated in double."""
    cdef Py_ssize_t l, i
    cdef double total = 0
    for l in range(net.n_layers):
        for i in range(net.w_off[l], net.b_off[l]):
            total += <double> theta[i] * theta[i]
    return total


cdef void add_weight_decay(const Net* net, floating* grad, const floating* theta,
                           floating coef) noexcept nogil:
    """grad_W += coef * W on the weights only (the gradient of coef/2 ||W||^2)."""
    cdef Py_ssize_t l, i
    if coef == 0:
        return
    for l in range(net.n_layers):
        for i in range(net.w_off[l], net.b_off[l]):
            grad[i] = grad[i] + coef * theta[i]


cdef void apply_update(UpdateRule* rule, floating* theta, const floating* grad, floating* s1,
                       floating* s2, Py_ssize_t n_params) noexcept nogil:
    """theta <- update(theta, grad) with the rule's state s1 (velocity or m) and s2 (Adam's s)."""
    cdef double lr_t
    if rule.kind == SGD:
        sgd_step(theta, grad, n_params, <floating> rule.lr)
    elif rule.kind == MOMENTUM or rule.kind == NESTEROV:
        momentum_step(theta, grad, s1, n_params, <floating> rule.lr,
                      <floating> rule.momentum, rule.kind == NESTEROV)
    else:
        rule.t += 1
        lr_t = (rule.lr * sqrt(1 - pow(rule.beta2, <double> rule.t))
                / (1 - pow(rule.beta1, <double> rule.t)))
        adam_step(theta, grad, s1, s2, n_params, <floating> lr_t, <floating> rule.beta1,
                  <floating> rule.beta2, <floating> rule.epsilon)


cdef double chunk_gradient(const Net* net, const floating* theta, const floating* x,
                           const floating* y, const floating* sw, Py_ssize_t n,
                           floating** acts, floating** deltas, floating* grad,
                           floating scale, bint accumulate, double eps,
                           double* weight_sum) noexcept nogil:
    """Forward, output delta and backprop for n rows; grad (+)= scale * sum of per-sample grads.

    Returns sum_i w_i l_i; weight_sum receives sum_i w_i.
    """
    cdef Py_ssize_t k = net.sizes[net.n_layers]
    cdef double loss_sum
    cdef floating beta = 1 if accumulate else 0
    forward_pass(net, theta, x, n, acts)
    loss_sum = output_delta(deltas[net.n_layers - 1], acts[net.n_layers - 1], y, sw, n, k,
                            net.output, net.loss, eps, weight_sum)
    backprop(net, theta, x, n, acts, deltas, grad, scale, beta, beta)
    return loss_sum


cdef int run_batches(const Net* net, floating* theta, const floating* X, const floating* Y,
                     const floating* sw, const Py_ssize_t* order, Py_ssize_t n_samples,
                     Py_ssize_t batch_size, Py_ssize_t chunk, floating** acts,
                     floating** deltas, floating* x_buf, floating* y_buf, floating* sw_buf,
                     floating* grad, UpdateRule* rule, floating* s1, floating* s2,
                     Py_ssize_t n_params, double eps, Py_ssize_t* position,
                     Py_ssize_t sample_budget, double* loss_sum, double* weight_sum,
                     Py_ssize_t* updates) noexcept nogil:
    """Train on the batches of an epoch from ``position`` on: forward, backprop, update each.

    Batches are consecutive runs of ``order`` (or of the rows themselves when order is NULL)
    starting at sample ``position[0]``; processing stops after the batch that reaches
    ``sample_budget`` samples, or at the end of the epoch, and ``position[0]`` is advanced.
    Each batch adds J_b = sum_i w_i l_i + alpha/2 sum ||W||^2 (at its starting parameters)
    to loss_sum and sum_i w_i to weight_sum. Returns DONE, or DIVERGED as soon as a batch's
    loss is not finite (that batch is not applied).
    """
    cdef Py_ssize_t d = net.sizes[0], k = net.sizes[net.n_layers]
    cdef Py_ssize_t start = position[0], stop, nb, cs, ce, nc, i, done = 0
    cdef const floating* xb
    cdef const floating* yb
    cdef const floating* wb
    cdef double loss_b, w_b, w_c
    cdef floating lr = <floating> rule.lr
    cdef bint fused

    while start < n_samples and done < sample_budget:
        stop = min(start + batch_size, n_samples)
        nb = stop - start
        # The batch's total weight, needed before the first chunk to scale its gradient.
        if sw == NULL:
            w_b = nb
        else:
            w_b = 0
            for i in range(start, stop):
                w_b += sw[order[i] if order != NULL else i]
        if w_b > 0:
            loss_b = 0.5 * rule.alpha * l2_penalty(net, theta) if rule.alpha != 0 else 0
            # Plain SGD on a batch that fits in one chunk writes its step straight into theta.
            fused = rule.kind == SGD and nb <= chunk
            cs = start
            while cs < stop:
                ce = min(cs + chunk, stop)
                nc = ce - cs
                if order == NULL:
                    xb = X + cs * d
                    yb = Y + cs * k
                    wb = sw + cs if sw != NULL else NULL
                else:
                    gather_rows(x_buf, X, order + cs, nc, d)
                    gather_rows(y_buf, Y, order + cs, nc, k)
                    if sw != NULL:
                        gather_rows(sw_buf, sw, order + cs, nc, 1)
                    xb = x_buf
                    yb = y_buf
                    wb = sw_buf if sw != NULL else NULL
                if fused:
                    forward_pass(net, theta, xb, nc, acts)
                    loss_b += output_delta(deltas[net.n_layers - 1], acts[net.n_layers - 1],
                                           yb, wb, nc, k, net.output, net.loss, eps, &w_c)
                    if not isfinite(loss_b):
                        return DIVERGED
                    backprop(net, theta, xb, nc, acts, deltas, theta, <floating> (-lr / w_b),
                             <floating> (1 - lr * rule.alpha / w_b), 1)
                else:
                    loss_b += chunk_gradient(net, theta, xb, yb, wb, nc, acts, deltas, grad,
                                             <floating> (1 / w_b), cs > start, eps, &w_c)
                cs = ce
            if not isfinite(loss_b):
                return DIVERGED
            if not fused:
                add_weight_decay(net, grad, theta, <floating> (rule.alpha / w_b))
                apply_update(rule, theta, grad, s1, s2, n_params)
            updates[0] += 1
            loss_sum[0] += loss_b
            weight_sum[0] += w_b
        done += nb
        start = stop
        position[0] = start
    return DONE


# ---------------------------------------------------------------------------------------------
# Python-facing functions: check every shape once, then run the kernels without the GIL.
# ---------------------------------------------------------------------------------------------

cdef inline double _machine_eps(floating dummy) noexcept nogil:
    if floating is float:
        return 1.1920928955078125e-07
    else:
        return 2.220446049250313e-16


cdef _check_shapes(Network network, Py_ssize_t theta_len, Py_ssize_t n, Py_ssize_t d,
                   Py_ssize_t y_rows, Py_ssize_t y_cols, Py_ssize_t sw_len):
    """Refuse any shape that would make a kernel read or write out of bounds (-1: absent)."""
    cdef Py_ssize_t k = network.net.sizes[network.net.n_layers]
    if theta_len != network.n_params:
        raise ValueError(f"theta has {theta_len} entries, the network {network.n_params}")
    if d != network.net.sizes[0]:
        raise ValueError(f"X has {d} features, the network expects {network.net.sizes[0]}")
    if y_rows != -1 and (y_rows != n or y_cols != k):
        raise ValueError(f"Y has shape ({y_rows}, {y_cols}), expected ({n}, {k})")
    if sw_len != -1 and sw_len != n:
        raise ValueError(f"sample_weight has {sw_len} entries, X {n} rows")


def forward(Network network, const floating[::1] theta, const floating[:, ::1] X,
            floating[:, ::1] out):
    """Output activations a_L of the network for every row of X, written into ``out``.

    Parameters
    ----------
    network : Network
    theta : ndarray of shape (n_params,)
        Flat parameters.
    X : ndarray of shape (n, D), C-contiguous, same dtype as theta.
    out : ndarray of shape (n, K), C-contiguous, same dtype; receives a_L.

    Notes
    -----
    Thread-safe: the hidden activations live in buffers private to this call (CHUNK_ROWS
    rows at a time), and the GIL is released while they are computed.
    """
    cdef const Net* net = &network.net
    cdef Py_ssize_t n = X.shape[0], rows, start, nc, l, L = network.net.n_layers
    cdef Py_ssize_t k = network.net.sizes[L]
    cdef floating** acts
    _check_shapes(network, theta.shape[0], X.shape[0], X.shape[1], -1, -1, -1)
    if out.shape[0] != n or out.shape[1] != k:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({n}, {k})")
    if n == 0:
        return
    rows = min(n, CHUNK_ROWS)
    acts = <floating**> _calloc(L * sizeof(floating*))
    try:
        for l in range(L - 1):
            acts[l] = <floating*> _calloc(rows * net.sizes[l + 1] * sizeof(floating))
        with nogil:
            start = 0
            while start < n:
                nc = min(rows, n - start)
                acts[L - 1] = &out[start, 0]  # the last layer writes straight into out
                forward_pass(net, &theta[0], &X[start, 0], nc, acts)
                start += nc
    finally:
        for l in range(L - 1):
            free(acts[l])
        free(acts)


def loss_gradient(Network network, const floating[::1] theta, const floating[:, ::1] X,
                  const floating[:, ::1] Y, const floating[::1] sample_weight,
                  double alpha, floating[::1] grad, Workspace workspace=None):
    """Loss J and its gradient over all rows of (X, Y), at parameters theta.

    J = sum_i w_i l_i / sum_i w_i + alpha/2 * sum_l ||W_l||^2 / sum_i w_i, with w_i = 1 when
    ``sample_weight`` is None; ``grad`` (laid out like theta) receives dJ/dtheta. The rows are
    processed CHUNK_ROWS at a time and their gradients summed, so memory stays bounded.

    Returns
    -------
    loss : float
    """
    cdef const Net* net = &network.net
    cdef Py_ssize_t n = X.shape[0], start, nc, rows
    cdef double total = 0, w_total, w_c, loss_c
    cdef floating dummy = 0
    cdef double eps = _machine_eps(dummy)
    cdef const floating* wp = NULL
    cdef bint weighted = sample_weight is not None
    _check_shapes(network, theta.shape[0], X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                  -1 if sample_weight is None else sample_weight.shape[0])
    if grad.shape[0] != network.n_params:
        raise ValueError(f"grad has {grad.shape[0]} entries, the network {network.n_params}")
    w_total = n if sample_weight is None else float(np.sum(sample_weight, dtype=np.float64))
    if n == 0 or not w_total > 0:
        raise ValueError("the loss needs at least one sample with a positive weight")
    rows = min(n, CHUNK_ROWS)
    if workspace is None:
        workspace = Workspace(network, rows, np.float32 if floating is float else np.float64)
    elif workspace.rows < rows or workspace.dtype.itemsize != sizeof(floating):
        raise ValueError("workspace is too small or has the wrong dtype")
    cdef floating** acts = <floating**> workspace.acts
    cdef floating** deltas = <floating**> workspace.deltas
    with nogil:
        start = 0
        while start < n:
            nc = min(rows, n - start)
            wp = &sample_weight[start] if weighted else NULL
            total += chunk_gradient(net, &theta[0], &X[start, 0], &Y[start, 0], wp, nc,
                                    acts, deltas, &grad[0], <floating> (1 / w_total),
                                    start > 0, eps, &w_c)
            start += nc
        add_weight_decay(net, &grad[0], &theta[0], <floating> (alpha / w_total))
        total = (total + 0.5 * alpha * l2_penalty(net, &theta[0])) / w_total
    return total


def evaluate(Network network, const floating[::1] theta, const floating[:, ::1] X,
             const floating[:, ::1] Y, const floating[::1] sample_weight, double alpha,
             floating[:, ::1] out):
    """Loss J over all rows of (X, Y), and the output activations a_L written into ``out``.

    J is defined as in :func:`loss_gradient`; no gradient is formed, so this costs one
    forward pass (used for validation and for ``MLP.loss``).

    Returns
    -------
    loss : float
    """
    cdef const Net* net = &network.net
    cdef Py_ssize_t n = X.shape[0], k = network.net.sizes[network.net.n_layers]
    cdef Py_ssize_t start, nc, i, rows
    cdef double total = 0, w_total, w_c
    cdef floating dummy = 0
    cdef double eps = _machine_eps(dummy)
    cdef bint weighted = sample_weight is not None
    cdef floating w
    _check_shapes(network, theta.shape[0], X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                  -1 if sample_weight is None else sample_weight.shape[0])
    if out.shape[0] != n or out.shape[1] != k:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({n}, {k})")
    w_total = n if sample_weight is None else float(np.sum(sample_weight, dtype=np.float64))
    if n == 0 or not w_total > 0:
        raise ValueError("the loss needs at least one sample with a positive weight")
    forward(network, theta, X, out)
    with nogil:
        for i in range(n):
            w = sample_weight[i] if weighted else 1
            if w != 0:
                total += w * sample_loss(&out[i, 0], &Y[i, 0], k, net.output, net.loss, eps)
        total = (total + 0.5 * alpha * l2_penalty(net, &theta[0])) / w_total
    return total


def penalty(Network network, const floating[::1] theta):
    """sum_l ||W_l||^2 over the weight matrices (biases excluded)."""
    if theta.shape[0] != network.n_params:
        raise ValueError(f"theta has {theta.shape[0]} entries, the network {network.n_params}")
    return l2_penalty(&network.net, &theta[0])


def train_epoch(Network network, Workspace workspace, floating[::1] theta,
                const floating[:, ::1] X, const floating[:, ::1] Y,
                const floating[::1] sample_weight, const Py_ssize_t[::1] order,
                Py_ssize_t batch_size, str rule, double learning_rate, double alpha=0.0,
                double momentum=0.0, double beta1=0.9, double beta2=0.999,
                double epsilon=1e-8, floating[::1] state1=None, floating[::1] state2=None,
                long long t=0):
    """Train for one epoch in place: every batch is forward, backprop, update, without the GIL.

    Parameters
    ----------
    network, workspace : Network, Workspace
        The workspace must have min(batch_size, CHUNK_ROWS) rows and theta's dtype.
    theta : ndarray of shape (n_params,)
        Parameters, updated in place.
    X, Y : ndarrays of shapes (N, D) and (N, K)
        Inputs and targets (one-hot rows for classification).
    sample_weight : ndarray of shape (N,) or None
    order : ndarray of intp, shape (N,), or None
        Visiting order (a permutation of range(N)); None visits the rows in order.
    batch_size : int
        Rows per update; the last batch may be shorter.
    rule : {'sgd', 'momentum', 'nesterov', 'adam'}
    learning_rate, alpha, momentum, beta1, beta2, epsilon : float
        Step size, L2 coefficient and the rule's constants.
    state1, state2 : ndarrays of shape (n_params,) or None
        Velocity (momentum, nesterov) or first and second moments (adam), updated in place.
    t : int
        Adam updates taken before this epoch.

    Returns
    -------
    loss_sum : float
        sum over the applied batches of J_b = sum_i w_i l_i + alpha/2 sum_l ||W_l||^2, each
        at the batch's starting parameters; loss_sum / weight_sum is the epoch's loss.
    weight_sum : float
        sum_i w_i over those batches' samples.
    updates : int
        Number of updates applied (batches with positive weight).
    status : int
        EPOCH_DONE; EPOCH_DIVERGED if a batch's loss was not finite (it was not applied);
        EPOCH_INTERRUPTED on Ctrl-C (training stopped after a complete batch).
    """
    cdef UpdateRule r
    cdef Py_ssize_t n = X.shape[0], i, n_params = network.n_params
    cdef Py_ssize_t chunk = min(batch_size, CHUNK_ROWS)
    cdef int status
    cdef double loss_sum = 0, weight_sum = 0
    cdef Py_ssize_t updates = 0
    cdef floating dummy = 0
    cdef double eps = _machine_eps(dummy)
    cdef floating* s1 = NULL
    cdef floating* s2 = NULL
    cdef const floating* swp = NULL
    cdef const Py_ssize_t* orderp = NULL
    _check_shapes(network, theta.shape[0], X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                  -1 if sample_weight is None else sample_weight.shape[0])
    if rule not in UPDATE_RULES:
        raise ValueError(f"unknown update rule {rule!r}; valid: {sorted(UPDATE_RULES)}")
    if n == 0:
        raise ValueError("cannot train on zero samples")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workspace.rows < chunk or workspace.dtype.itemsize != sizeof(floating):
        raise ValueError("workspace is too small for this batch size or has the wrong dtype")
    r.kind = UPDATE_RULES[rule]
    r.lr = learning_rate
    r.alpha = alpha
    r.momentum = momentum
    r.beta1 = beta1
    r.beta2 = beta2
    r.epsilon = epsilon
    r.t = t
    if r.kind != SGD:
        if state1 is None or state1.shape[0] != n_params:
            raise ValueError(f"rule {rule!r} needs state1 of shape ({n_params},)")
        s1 = &state1[0]
    if r.kind == ADAM:
        if state2 is None or state2.shape[0] != n_params:
            raise ValueError(f"rule {rule!r} needs state2 of shape ({n_params},)")
        s2 = &state2[0]
    if sample_weight is not None:
        swp = &sample_weight[0]
    if order is not None:
        if order.shape[0] != n:
            raise ValueError(f"order has {order.shape[0]} entries, X {n} rows")
        for i in range(n):  # an index out of range would read outside X: refuse it here
            if order[i] < 0 or order[i] >= n:
                raise ValueError(f"order[{i}] = {order[i]} is not a row of X")
        orderp = &order[0]
    cdef Py_ssize_t position = 0, budget = SIGNAL_CHECK_SAMPLES
    status = DONE
    while position < n and status == DONE:
        with nogil:
            status = run_batches(&network.net, &theta[0], &X[0, 0], &Y[0, 0], swp, orderp, n,
                                 batch_size, chunk, <floating**> workspace.acts,
                                 <floating**> workspace.deltas, <floating*> workspace.x_buf,
                                 <floating*> workspace.y_buf, <floating*> workspace.sw_buf,
                                 <floating*> workspace.grad, &r, s1, s2, n_params, eps,
                                 &position, budget, &loss_sum, &weight_sum, &updates)
        # Between segments the GIL is held: a Ctrl-C stops training after the current batch,
        # with parameters, optimizer state and the counts above all consistent.
        try:
            PyErr_CheckSignals()
        except KeyboardInterrupt:
            status = INTERRUPTED
    return loss_sum, weight_sum, updates, status
