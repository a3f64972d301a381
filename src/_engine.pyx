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
from cpython.pyport cimport PY_SSIZE_T_MAX

import numpy as np

from _blas cimport gemm, sumsq
from _activations cimport (
    IDENTITY, SIGMOID, TANH, RELU, SOFTMAX, EXP, activate, bias_activation, derivative,
    mul_derivative,
)
from _losses cimport MSE, CROSS_ENTROPY, POISSON, output_delta, sample_delta, sample_loss
from _updates cimport (
    SGD, MOMENTUM, NESTEROV, ADAM, adam_step, momentum_step, sgd_step, update_row,
)

# The codes the Python layer uses to name activations, losses and update rules.
HIDDEN_ACTIVATIONS = {"identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU}
OUTPUT_ACTIVATIONS = {"identity": IDENTITY, "sigmoid": SIGMOID, "softmax": SOFTMAX, "exp": EXP}
LOSSES = {"mse": MSE, "cross_entropy": CROSS_ENTROPY, "poisson": POISSON}
UPDATE_RULES = {"sgd": SGD, "momentum": MOMENTUM, "nesterov": NESTEROV, "adam": ADAM}

# Rows processed per forward/backward pass. A batch larger than this (full-batch gradient
# descent) is processed in chunks whose gradients are summed, which bounds the work buffers
# by CHUNK_ROWS x widest layer while keeping every gemm large enough to run at full speed.
CHUNK_ROWS = 4096
# Per-sample SGD on a first layer with at least GRAM_MIN_WEIGHTS weights runs in blocks of
# GRAM_BLOCK samples with level-3 BLAS (see run_samples_blocked); smaller layers stay in L1/L2
# cache, where plain loops win.
GRAM_BLOCK = 32
GRAM_MIN_WEIGHTS = 16384
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
    double penalty_sum  # sum over batches of the L2 term alpha/2 sum ||W||^2 in their loss


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
        # Offsets are Py_ssize_t: refuse (in Python integers, before any C arithmetic) a
        # network whose parameter count, or the byte size of theta, could overflow them.
        total = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
        if total * 8 > PY_SSIZE_T_MAX:
            raise ValueError(f"layer widths {sizes} give {total} parameters, more than can "
                             "be addressed")
        if hidden not in HIDDEN_ACTIVATIONS.values():
            raise ValueError(f"unknown hidden activation code {hidden}")
        if output not in OUTPUT_ACTIVATIONS.values():
            raise ValueError(f"unknown output activation code {output}")
        if loss not in LOSSES.values():
            raise ValueError(f"unknown loss code {loss}")
        if loss == CROSS_ENTROPY and output not in (SIGMOID, SOFTMAX):
            raise ValueError("cross_entropy needs a 'sigmoid' or 'softmax' output")
        if (loss == POISSON) != (output == EXP):
            raise ValueError("the poisson loss goes with the 'exp' output, and only with it")
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
            if sizes[i] * sizes[i + 1] >= 2 ** 31:  # BLAS takes 32-bit sizes
                raise ValueError(f"layer {i + 1} would have {sizes[i] * sizes[i + 1]} weights; "
                                 "mlpcore supports fewer than 2**31 per layer")
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
    cdef readonly tuple sizes   # the layer widths of the network the buffers are sized for
    cdef Py_ssize_t n_layers
    cdef void** acts
    cdef void** deltas
    cdef void* x_buf
    cdef void* y_buf
    cdef void* sw_buf
    cdef void* grad
    cdef readonly Py_ssize_t gram_block
    cdef void* gram_z     # gram_block x M_1: X_blk W_1 at the block's start
    cdef void* gram_g     # gram_block x gram_block: X_blk X_blk^T
    cdef void* gram_u     # gram_block x M_1: the scaled first-layer deltas

    def __cinit__(self, Network network, Py_ssize_t rows, dtype):
        cdef Py_ssize_t l, itemsize, n_layers = network.net.n_layers
        cdef Py_ssize_t* sizes = network.net.sizes
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"Workspace dtype must be float32 or float64, got {self.dtype}")
        if rows < 1:
            raise ValueError("Workspace needs at least one row")
        if int(max(rows, GRAM_BLOCK)) * max(network.sizes) * 8 > PY_SSIZE_T_MAX:
            raise ValueError(f"a Workspace of {rows} rows is too large to address")
        itemsize = self.dtype.itemsize
        self.rows = rows
        self.sizes = network.sizes
        self.n_layers = n_layers
        self.acts = <void**> _calloc(n_layers * sizeof(void*))
        self.deltas = <void**> _calloc(n_layers * sizeof(void*))
        for l in range(n_layers):
            self.acts[l] = _calloc(rows * sizes[l + 1] * itemsize)
            self.deltas[l] = _calloc(rows * sizes[l + 1] * itemsize)
        # Per-sample training of a large first layer also needs the blocked-SGD buffers.
        self.gram_block = GRAM_BLOCK if (rows == 1 and sizes[0] * sizes[1] >= GRAM_MIN_WEIGHTS) else 0
        if self.gram_block:
            self.gram_z = _calloc(self.gram_block * sizes[1] * itemsize)
            self.gram_u = _calloc(self.gram_block * sizes[1] * itemsize)
            self.gram_g = _calloc(self.gram_block * self.gram_block * itemsize)
        self.x_buf = _calloc(max(rows, self.gram_block) * sizes[0] * itemsize)
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
        free(self.gram_z)
        free(self.gram_u)
        free(self.gram_g)


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


cdef double l2_penalty(const Net* net, const floating* theta,
                       Py_ssize_t first_layer=0) noexcept nogil:
    """sum_l ||W_l||^2 over layers l >= first_layer (biases excluded), accumulated in double."""
    cdef Py_ssize_t l
    cdef double total = 0
    for l in range(first_layer, net.n_layers):
        total += sumsq(theta + net.w_off[l], <int> (net.b_off[l] - net.w_off[l]))
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
            rule.penalty_sum += loss_b
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


cdef void sample_forward(const Net* net, const floating* theta, const floating* x,
                         floating** acts, Py_ssize_t first_layer=0) noexcept nogil:
    """Forward pass of one sample with plain loops: z = b + sum_i a_i W[i, :], a = g(z).

    For one sample a BLAS call costs more than the arithmetic on small layers, and on large
    ones this reads each weight exactly once, as gemv would. Zero inputs are skipped
    (relu units, sparse pixels). Starts at layer ``first_layer``, whose input is x.
    """
    cdef Py_ssize_t l, i, j, fan_in, fan_out
    cdef const floating* prev = x
    cdef const floating* row
    cdef floating* z
    cdef floating ai
    for l in range(first_layer, net.n_layers):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        z = acts[l]
        memcpy(z, theta + net.b_off[l], fan_out * sizeof(floating))
        for i in range(fan_in):
            ai = prev[i]
            if ai != 0:
                row = theta + net.w_off[l] + i * fan_out
                for j in range(fan_out):
                    z[j] = z[j] + ai * row[j]
        activate(z, fan_out, net.output if l == net.n_layers - 1 else net.hidden)
        prev = z


cdef void sample_backprop_update(const Net* net, floating* theta, const floating* x,
                                 floating** acts, floating** deltas, UpdateRule* rule,
                                 floating* s1, floating* s2, floating decay,
                                 Py_ssize_t first_layer) noexcept nogil:
    """Backpropagate one sample's delta_L and update layers L..first_layer in the same pass.

    Row i of W_l is read once: first delta_{l-1}[i] = <W_l[i, :], delta_l> g'(a_{l-1}[i])
    with the old weights, then the row is updated with the rank-1 gradient a_{l-1}[i] delta_l
    (+ decay W) by the rule. Layers below ``first_layer`` only receive their delta.
    """
    cdef Py_ssize_t l, i, j, fan_in, fan_out, off
    cdef const floating* a_prev
    cdef floating* w
    cdef floating* d
    cdef floating* dprev
    cdef floating dot
    cdef floating lr = <floating> rule.lr
    cdef floating* m1 = NULL
    cdef floating* m2 = NULL
    if rule.kind == ADAM:
        rule.t += 1
        lr = <floating> (rule.lr * sqrt(1 - pow(rule.beta2, <double> rule.t))
                         / (1 - pow(rule.beta1, <double> rule.t)))
    for l in range(net.n_layers - 1, first_layer - 1, -1):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        a_prev = x if l == 0 else acts[l - 1]
        d = deltas[l]
        dprev = deltas[l - 1] if l > 0 else NULL
        for i in range(fan_in):
            off = net.w_off[l] + i * fan_out
            w = theta + off
            if dprev != NULL:
                dot = 0
                for j in range(fan_out):
                    dot = dot + w[j] * d[j]
                dprev[i] = dot * derivative(a_prev[i], net.hidden)
            if s1 != NULL:
                m1 = s1 + off
            if s2 != NULL:
                m2 = s2 + off
            update_row(w, d, a_prev[i], decay, m1, m2, fan_out, rule.kind, lr,
                       <floating> rule.momentum, <floating> rule.beta1,
                       <floating> rule.beta2, <floating> rule.epsilon)
        off = net.b_off[l]
        update_row(theta + off, d, 1, 0, s1 + off if s1 != NULL else NULL,
                   s2 + off if s2 != NULL else NULL, fan_out, rule.kind, lr,
                   <floating> rule.momentum, <floating> rule.beta1, <floating> rule.beta2,
                   <floating> rule.epsilon)


cdef int run_samples(const Net* net, floating* theta, const floating* X, const floating* Y,
                     const floating* sw, const Py_ssize_t* order, Py_ssize_t n_samples,
                     floating** acts, floating** deltas, UpdateRule* rule, floating* s1,
                     floating* s2, double eps, Py_ssize_t* position, Py_ssize_t sample_budget,
                     double* loss_sum, double* weight_sum, Py_ssize_t* updates) noexcept nogil:
    """Per-sample training (batch size 1), the same contract as ``run_batches``.

    With one sample of weight w the batch-normalised gradient is w x delta / w: the weight
    cancels except in the L2 term alpha/w, and a zero-weight sample is skipped.
    """
    cdef Py_ssize_t d = net.sizes[0], k = net.sizes[net.n_layers], start, row
    cdef Py_ssize_t stop = min(position[0] + sample_budget, n_samples)
    cdef floating w
    cdef double loss, penalty
    for start in range(position[0], stop):
        row = order[start] if order != NULL else start
        w = sw[row] if sw != NULL else 1
        if w == 0:
            continue
        sample_forward(net, theta, X + row * d, acts)
        loss = w * sample_loss(acts[net.n_layers - 1], Y + row * k, k, net.output, net.loss,
                               eps)
        if rule.alpha != 0:
            penalty = 0.5 * rule.alpha * l2_penalty(net, theta)
            rule.penalty_sum += penalty
            loss += penalty
        if not isfinite(loss):
            position[0] = start
            return DIVERGED
        sample_delta(deltas[net.n_layers - 1], acts[net.n_layers - 1], Y + row * k, k,
                     net.output, net.loss, <floating> 1)
        sample_backprop_update(net, theta, X + row * d, acts, deltas, rule, s1, s2,
                               <floating> (rule.alpha / w), 0)
        loss_sum[0] += loss
        weight_sum[0] += w
        updates[0] += 1
    position[0] = stop
    return DONE


cdef int run_samples_blocked(const Net* net, floating* theta, const floating* X,
                             const floating* Y, const floating* sw, const Py_ssize_t* order,
                             Py_ssize_t n_samples, floating** acts, floating** deltas,
                             floating* xb, floating* zb, floating* gb, floating* ub,
                             Py_ssize_t block, UpdateRule* rule, double eps,
                             Py_ssize_t* position, Py_ssize_t sample_budget,
                             double* loss_sum, double* weight_sum,
                             Py_ssize_t* updates) noexcept nogil:
    """Exact per-sample SGD whose first layer runs at level-3 BLAS speed.

    Per-sample SGD changes W = W_1 by W(t+1) = c_t W(t) - lr x_t^T delta_t, with
    c_t = 1 - lr alpha / w_t the L2 decay. Within a block of k samples this gives
    W(t) = C_t (W(0) - lr sum_{i<t} x_i^T u_i), C_t = c_0 ... c_{t-1}, u_i = delta_i / C_{i+1},
    so the first layer's pre-activation of sample t is

        z_t = x_t W(t) + b = C_t (x_t W(0) - lr sum_{i<t} (x_t . x_i) u_i) + b.

    One gemm gives every x_t W(0), one more the Gram matrix x_t . x_i; the samples are then
    processed in order (the layers above updated directly, per sample, as in run_samples),
    and one last gemm applies the block's update W <- C_k W(0) - lr C_k X^T U. The big matrix
    is read and written once per block instead of once per sample; the arithmetic is
    per-sample SGD, equal up to floating-point reassociation. The L2 term of the reported
    loss tracks ||W(t)||^2 exactly: ||W(t+1)||^2 = c^2 ||W(t)||^2 - 2 c lr (x_t W(t)) . delta_t
    + lr^2 ||x_t||^2 ||delta_t||^2.
    """
    cdef Py_ssize_t d = net.sizes[0], m = net.sizes[1], k = net.sizes[net.n_layers]
    cdef Py_ssize_t start = position[0], stop = min(position[0] + sample_budget, n_samples)
    cdef Py_ssize_t kb, t, i, j, row, done
    cdef floating lr = <floating> rule.lr
    cdef floating* W0 = theta + net.w_off[0]
    cdef floating* b0 = theta + net.b_off[0]
    cdef floating* z = acts[0]
    cdef floating* d0 = deltas[0]
    cdef floating* u
    cdef floating w, c, scale, coef
    cdef double loss, penalty = 0, q, dd
    cdef int status = DONE
    cdef int act0 = net.output if net.n_layers == 1 else net.hidden
    while start < stop:
        kb = min(block, stop - start)
        if order == NULL:
            memcpy(xb, X + start * d, kb * d * sizeof(floating))
        else:
            gather_rows(xb, X, order + start, kb, d)
        gemm(False, False, kb, m, d, 1, xb, d, W0, m, 0, zb, m)    # x_t W(0) for every t
        gemm(False, True, kb, kb, d, 1, xb, d, xb, d, 0, gb, kb)   # x_t . x_i
        scale = 1
        if rule.alpha != 0:
            penalty = l2_penalty(net, theta, 0) - l2_penalty(net, theta, 1)
        done = kb
        for t in range(kb):
            row = order[start + t] if order != NULL else start + t
            w = sw[row] if sw != NULL else 1
            u = ub + t * m
            if w == 0:
                for j in range(m):
                    u[j] = 0
                continue
            c = 1 - lr * <floating> rule.alpha / w
            # u temporarily holds x_t W(t) = C_t (x_t W(0) - lr sum_{i<t} G[t, i] u_i).
            memcpy(u, zb + t * m, m * sizeof(floating))
            for i in range(t):
                coef = -lr * gb[t * kb + i]
                if coef != 0:
                    for j in range(m):
                        u[j] = u[j] + coef * ub[i * m + j]
            for j in range(m):
                u[j] = scale * u[j]
                z[j] = u[j] + b0[j]
            activate(z, m, act0)
            sample_forward(net, theta, z, acts, 1)
            loss = w * sample_loss(acts[net.n_layers - 1], Y + row * k, k, net.output,
                                   net.loss, eps)
            if rule.alpha != 0:
                q = 0.5 * rule.alpha * (penalty + l2_penalty(net, theta, 1))
                rule.penalty_sum += q
                loss += q
            if not isfinite(loss):
                status = DIVERGED
                done = t
                break
            sample_delta(deltas[net.n_layers - 1], acts[net.n_layers - 1], Y + row * k, k,
                         net.output, net.loss, <floating> 1)
            sample_backprop_update(net, theta, z, acts, deltas, rule, NULL, NULL,
                                   <floating> (rule.alpha / w), 1)
            if rule.alpha != 0:
                q = 0
                dd = 0
                for j in range(m):
                    q += <double> u[j] * d0[j]
                    dd += <double> d0[j] * d0[j]
                penalty = (c * c * penalty - 2 * c * lr * q
                           + lr * lr * gb[t * kb + t] * dd)
            for j in range(m):
                b0[j] = b0[j] - lr * d0[j]
            scale = scale * c
            for j in range(m):
                u[j] = d0[j] / scale
            loss_sum[0] += loss
            weight_sum[0] += w
            updates[0] += 1
        if done > 0:
            gemm(True, False, d, m, done, -lr * scale, xb, d, ub, m, scale, W0, m)
        if status != DONE:
            position[0] = start + done
            return status
        start += kb
    position[0] = stop
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
    elif (workspace.rows < rows or workspace.dtype.itemsize != sizeof(floating)
          or workspace.sizes != network.sizes):
        raise ValueError("workspace is too small, has the wrong dtype or another network's "
                         "layer sizes")
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
                long long t=0, double[::1] penalty_out=None):
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
    penalty_out : float64 ndarray of shape (1,), optional
        Receives the part of loss_sum that is the L2 term (for losses reported without it).

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
    if workspace.sizes != network.sizes:
        raise ValueError(f"workspace was made for layer sizes {workspace.sizes}, the network "
                         f"has {network.sizes}")
    r.kind = UPDATE_RULES[rule]
    r.lr = learning_rate
    r.alpha = alpha
    r.momentum = momentum
    r.beta1 = beta1
    r.beta2 = beta2
    r.epsilon = epsilon
    r.t = t
    r.penalty_sum = 0
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
    # Blocked per-sample SGD needs every decay factor 1 - lr alpha / w_i well above 0.
    cdef double min_weight = 1.0
    if sample_weight is not None and alpha != 0:
        positive = np.asarray(sample_weight)[np.asarray(sample_weight) > 0]
        min_weight = float(positive.min()) if positive.size else 1.0
    cdef bint blocked = (batch_size == 1 and r.kind == SGD and workspace.gram_block > 0
                         and learning_rate * alpha / min_weight < 0.5)
    status = DONE
    while position < n and status == DONE:
        with nogil:
            if blocked:
                status = run_samples_blocked(
                    &network.net, &theta[0], &X[0, 0], &Y[0, 0], swp, orderp, n,
                    <floating**> workspace.acts, <floating**> workspace.deltas,
                    <floating*> workspace.x_buf, <floating*> workspace.gram_z,
                    <floating*> workspace.gram_g, <floating*> workspace.gram_u,
                    workspace.gram_block, &r, eps, &position, budget, &loss_sum,
                    &weight_sum, &updates)
            elif batch_size == 1:
                status = run_samples(&network.net, &theta[0], &X[0, 0], &Y[0, 0], swp, orderp,
                                     n, <floating**> workspace.acts,
                                     <floating**> workspace.deltas, &r, s1, s2, eps,
                                     &position, budget, &loss_sum, &weight_sum, &updates)
            else:
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
    if penalty_out is not None:
        penalty_out[0] = r.penalty_sum
    return loss_sum, weight_sum, updates, status
