# Sparse input: training and prediction at the cost of X's nonzeros.
#
# X is a CSR matrix (values, column indices, row pointers; Data.indptr != NULL). Only the
# first layer touches X:
#
#   forward    Z_1[i, :] = sum_{(j, v) in row i} v W_1[j, :] + b_1       (nnz(row) x M_1)
#   gradient   dJ/dW_1[j, :] = sum_i sum_{(j, v) in row i} v delta_1[i, :]
#
# so a batch reads and writes only the rows of W_1 that its features select: about
# nnz x M_1 operations instead of D x M_1. Every later layer is dense and goes through the
# kernels of _batch.pxd unchanged. Duplicate entries of a row add up (as in scipy), explicit
# zeros cost their multiply and change nothing, unsorted indices are fine.
#
# Plain SGD writes its step straight into theta (no gradient buffer). Its L2 term, which
# shrinks every weight at every step, W_1 <- (1 - lr alpha / n_b) W_1, is kept as a scale
# factor: W_1 = s V, the shrink is s <- s (1 - lr alpha / n_b) and the gradient step
# V[j, :] -= (lr / n_b / s) v delta_1[i, :] touches only the selected rows (the trick of
# scikit-learn's SGDClassifier, sklearn/linear_model/_sgd_fast.pyx). ||W_1||^2 = s^2 ||V||^2
# for the loss is kept up to date from the rows changed. V is folded back (W_1 = s V, s = 1)
# before Python sees theta, and whenever s falls below SCALE_FOLD_BELOW.
#
# Momentum, Nesterov and Adam, and full batches larger than a chunk, form the gradient in
# the workspace's gradient buffer (rows of W_1 not selected are zero) and apply the rule to
# every parameter: their state decays every weight at every step, so the update is dense.
from cython cimport floating
from libc.math cimport isfinite
from libc.string cimport memset

from _blas cimport gemm, sumsq
from _activations cimport bias_activation
from _losses cimport output_delta
from _updates cimport SGD, UpdateCoefficients, UpdateRule, apply_step, next_step
from _network cimport Net, Data, Buffers, Progress, DONE, DIVERGED, gather_rows, l2_penalty
from _batch cimport forward_pass, backprop, column_sums, add_weight_decay

cdef extern from *:
    # The empty asm statement marks the prefetch as a side effect. Without it GCC (12, -O1 and
    # up) classifies prefetch_row, whose only effect is __builtin_prefetch, as a "looping
    # pure" function returning nothing and deletes every call to it (-fdump-tree-all shows
    # the calls gone after inlining): the binary had no prefetch instruction at all.
    """
    #if defined(__GNUC__)
    #define mlpcore_prefetch(p) do { __builtin_prefetch((const void*) (p)); \
                                     __asm__ __volatile__("" : : "r"(p)); } while (0)
    #else
    #define mlpcore_prefetch(p) ((void) (p))
    #endif
    """
    void prefetch "mlpcore_prefetch" (const void* p) noexcept nogil

# The rows of W_1 a batch selects are scattered over memory (a 50,000 x 128 W_1 is 51 MB), so
# each is a run of cache misses: the kernels ask for row e + PREFETCH_AHEAD while working on
# row e, so that several rows are in flight at once.
DEF PREFETCH_AHEAD = 4
# Bytes per cache line (x86-64, ARM64).
DEF LINE = 64

ctypedef fused csr_index:
    int
    Py_ssize_t

# A step that would take s outside (SCALE_FOLD_BELOW, 1 / SCALE_FOLD_BELOW) folds it into V
# first (a dense pass over W_1, once per ln(1e6) / (lr alpha / n_b) steps), so V = W_1 / s
# stays within a factor 1e6 of W_1.
DEF SCALE_FOLD_BELOW = 1e-6


cdef struct ScaledFirstLayer:
    # W_1 = scale * V while plain SGD with L2 trains on sparse rows; V is what theta holds.
    double scale
    double v_sumsq      # ||V||^2, kept up to date (meaningful only when tracked)
    bint track          # keep v_sumsq (the L2 term is reported: alpha != 0)


cdef inline void csr_row(const Data* data, Py_ssize_t r, Py_ssize_t* lo,
                         Py_ssize_t* hi) noexcept nogil:
    """The entries of CSR row r: lo..hi into indices and values."""
    if data.index64:
        lo[0] = (<const Py_ssize_t*> data.indptr)[r]
        hi[0] = (<const Py_ssize_t*> data.indptr)[r + 1]
    else:
        lo[0] = (<const int*> data.indptr)[r]
        hi[0] = (<const int*> data.indptr)[r + 1]


cdef inline void prefetch_row(const floating* W, Py_ssize_t m, const csr_index* idx,
                              Py_ssize_t e, Py_ssize_t nnz) noexcept nogil:
    """Ask for row idx[e] of W (m columns) to be brought into cache, if e < nnz."""
    cdef Py_ssize_t b
    cdef const char* row
    if e < nnz:
        row = <const char*> (W + idx[e] * m)
        for b in range(0, m * sizeof(floating), LINE):
            prefetch(row + b)


cdef inline void add_selected_rows(floating* z, const floating* W, Py_ssize_t m,
                                   const csr_index* idx, const floating* val,
                                   Py_ssize_t nnz) noexcept nogil:
    """z <- z + sum_e val[e] W[idx[e], :] (W row-major with m columns)."""
    cdef Py_ssize_t e, j
    cdef const floating* w
    cdef floating v
    for e in range(min(PREFETCH_AHEAD, nnz)):
        prefetch_row(W, m, idx, e, nnz)
    for e in range(nnz):
        prefetch_row(W, m, idx, e + PREFETCH_AHEAD, nnz)
        v = val[e]
        w = W + idx[e] * m
        for j in range(m):
            z[j] = z[j] + v * w[j]


cdef inline void scatter_selected_rows(floating* G, const floating* d, Py_ssize_t m,
                                       const csr_index* idx, const floating* val,
                                       Py_ssize_t nnz, floating c,
                                       ScaledFirstLayer* sc) noexcept nogil:
    """G[idx[e], :] += c val[e] d for every entry e; with sc.track, ||G||^2 follows."""
    cdef Py_ssize_t e, j
    cdef floating* g
    cdef floating a, gj, dot
    cdef double dd = 0
    cdef bint track = sc != NULL and sc.track
    if track:
        for j in range(m):
            dd += <double> d[j] * d[j]
    for e in range(min(PREFETCH_AHEAD, nnz)):
        prefetch_row(G, m, idx, e, nnz)
    for e in range(nnz):
        prefetch_row(G, m, idx, e + PREFETCH_AHEAD, nnz)
        a = c * val[e]
        g = G + idx[e] * m
        if track:
            # ||g + a d||^2 - ||g||^2 = 2 a <g, d> + a^2 ||d||^2, <g, d> from the row before
            # the step, read in the same pass that writes it
            dot = 0
            for j in range(m):
                gj = g[j]
                dot = dot + gj * d[j]
                g[j] = gj + a * d[j]
            sc.v_sumsq += 2 * a * <double> dot + <double> a * a * dd
        else:
            for j in range(m):
                g[j] = g[j] + a * d[j]


cdef inline Py_ssize_t visited_row(const Data* data, Py_ssize_t position) noexcept nogil:
    return data.order[position] if data.order != NULL else position


cdef inline void sparse_first_layer(const Net* net, const floating* theta, floating scale,
                                    const Data* data, Py_ssize_t first, Py_ssize_t n,
                                    floating* z) noexcept nogil:
    """A_1 (n x M_1) of the rows at positions first..first+n of the visiting order:
    g_1(scale X_r V + b_1), with V the first layer's weights as theta holds them."""
    cdef Py_ssize_t i, j, lo, hi, r, m = net.sizes[1]
    cdef const floating* W = theta + net.w_off[0]
    cdef const floating* val = <const floating*> data.X
    cdef floating* row
    memset(z, 0, n * m * sizeof(floating))
    for i in range(n):
        r = visited_row(data, first + i)
        csr_row(data, r, &lo, &hi)
        row = z + i * m
        if data.index64:
            add_selected_rows(row, W, m, <const Py_ssize_t*> data.indices + lo, val + lo, hi - lo)
        else:
            add_selected_rows(row, W, m, <const int*> data.indices + lo, val + lo, hi - lo)
        if scale != 1:
            for j in range(m):
                row[j] = scale * row[j]
    bias_activation(z, theta + net.b_off[0], n, m,
                    net.output if net.n_layers == 1 else net.hidden)


cdef inline void sparse_forward(const Net* net, const floating* theta, floating scale,
                                const Data* data, Py_ssize_t first, Py_ssize_t n,
                                floating** acts) noexcept nogil:
    """Every layer's activations for the rows at positions first..first+n."""
    sparse_first_layer(net, theta, scale, data, first, n, acts[0])
    if net.n_layers > 1:
        forward_pass(net, theta, acts[0], n, acts, 0, True, 1)


cdef inline void sparse_first_gradient(floating* G, const floating* delta, Py_ssize_t m,
                                       const Data* data, Py_ssize_t first, Py_ssize_t n,
                                       floating c, ScaledFirstLayer* sc) noexcept nogil:
    """G += c X_b^T delta_1 over the rows at positions first..first+n; G is laid out as W_1.

    Only the rows of G that the batch's features select are written."""
    cdef Py_ssize_t i, lo, hi
    cdef const floating* val = <const floating*> data.X
    for i in range(n):
        csr_row(data, visited_row(data, first + i), &lo, &hi)
        if data.index64:
            scatter_selected_rows(G, delta + i * m, m, <const Py_ssize_t*> data.indices + lo,
                                  val + lo, hi - lo, c, sc)
        else:
            scatter_selected_rows(G, delta + i * m, m, <const int*> data.indices + lo,
                                  val + lo, hi - lo, c, sc)


cdef inline double sparse_chunk_gradient(const Net* net, const floating* theta,
                                         const Data* data, const floating* y,
                                         const floating* sw, Py_ssize_t first, Py_ssize_t n,
                                         floating** acts, floating** deltas, floating* grad,
                                         floating scale, bint accumulate, double eps,
                                         double* weight_sum) noexcept nogil:
    """grad (+)= scale * the summed gradient of the rows at positions first..first+n
    (y, sw: their targets and weights, gathered); returns sum_i w_i l_i.

    When not accumulating, the first layer's weight gradient is cleared whole first."""
    cdef Py_ssize_t m = net.sizes[1], k = net.sizes[net.n_layers]
    cdef floating beta = 1 if accumulate else 0
    cdef double loss_sum
    sparse_forward(net, theta, 1, data, first, n, acts)
    loss_sum = output_delta(deltas[net.n_layers - 1], acts[net.n_layers - 1], y, sw, n, k,
                            net.output, net.loss, eps, weight_sum)
    backprop(net, theta, NULL, n, acts, deltas, grad, scale, beta, beta, 1)
    if not accumulate:
        memset(grad + net.w_off[0], 0, net.sizes[0] * m * sizeof(floating))
    sparse_first_gradient(grad + net.w_off[0], deltas[0], m, data, first, n, scale, NULL)
    column_sums(grad + net.b_off[0], deltas[0], n, m, scale, beta)
    return loss_sum


cdef inline void scale_rows(floating* W, Py_ssize_t n, floating s) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        W[i] = s * W[i]


cdef inline void fold_scale(const Net* net, floating* theta, ScaledFirstLayer* sc) noexcept nogil:
    """W_1 <- s V, s <- 1 (and ||V||^2 recomputed exactly, so rounding never accumulates)."""
    if sc.scale != 1:
        scale_rows(theta + net.w_off[0], net.b_off[0] - net.w_off[0], <floating> sc.scale)
        sc.scale = 1
    if sc.track:
        sc.v_sumsq = l2_penalty(net, theta, 0) - l2_penalty(net, theta, 1)


cdef inline int run_sparse_batches(const Net* net, floating* theta, const Data* data,
                                   const Buffers* buf, UpdateRule* rule,
                                   Py_ssize_t batch_size, Py_ssize_t n_params,
                                   Progress* prog, ScaledFirstLayer* sc) noexcept nogil:
    """run_batches (_batch.pxd) for CSR rows: the same batches, losses and updates.

    A batch of B rows minimises J_b = (sum_i w_i l_i + alpha/2 sum ||W||^2) / n_b at its
    starting parameters (n_b = B, or sum_i w_i with prog.by_weight; a batch with n_b = 0 is
    skipped). Plain SGD on a batch of at most one chunk applies
        W_l <- (1 - lr alpha / n_b) W_l - (lr / n_b) A_{l-1}^T delta_l,
        b_l <- b_l - (lr / n_b) colsum(delta_l)
    straight to theta, the first layer through its scale factor (see the top of this file);
    every other case forms the gradient and applies the rule to all parameters. Batch size 1
    (per-sample SGD) is the same loop with one row per batch.
    """
    cdef Py_ssize_t k = net.sizes[net.n_layers], m = net.sizes[1], chunk = buf.rows
    cdef Py_ssize_t start = prog.position, stop, nb, cs, ce, nc, i, done = 0
    cdef const floating* Y = <const floating*> data.Y
    cdef const floating* sw = <const floating*> data.sw
    cdef const Py_ssize_t* order = data.order
    cdef floating** acts = <floating**> buf.acts
    cdef floating** deltas = <floating**> buf.deltas
    cdef floating* grad = <floating*> buf.grad
    cdef floating* W1 = theta + net.w_off[0]
    cdef const floating* yb
    cdef const floating* wb
    cdef double loss_b, w_b, w_c, per_row, decay, scale_next
    cdef floating lr = <floating> rule.lr
    cdef bint fused, last
    cdef UpdateCoefficients step

    while start < data.n and done < prog.budget:
        stop = min(start + batch_size, data.n)
        nb = stop - start
        w_b = nb
        if sw != NULL and prog.by_weight:
            w_b = 0
            for i in range(start, stop):
                w_b += sw[order[i] if order != NULL else i]
        if w_b != 0:
            per_row = nb / w_b
            fused = rule.kind == SGD and nb <= chunk
            if not fused and sc.scale != 1:
                fold_scale(net, theta, sc)
            loss_b = 0
            if rule.alpha != 0:
                if fused and sc.track:
                    loss_b = 0.5 * rule.alpha * (sc.scale * sc.scale * max(sc.v_sumsq, 0.0)
                                                 + l2_penalty(net, theta, 1))
                else:
                    loss_b = 0.5 * rule.alpha * l2_penalty(net, theta)
            rule.penalty_sum += loss_b * per_row
            cs = start
            while cs < stop:
                ce = min(cs + chunk, stop)
                nc = ce - cs
                last = ce == stop
                if order == NULL:
                    yb = Y + cs * k
                    wb = sw + cs if sw != NULL else NULL
                else:
                    gather_rows(<floating*> buf.y_buf, Y, order + cs, nc, k)
                    if sw != NULL:
                        gather_rows(<floating*> buf.sw_buf, sw, order + cs, nc, 1)
                    yb = <floating*> buf.y_buf
                    wb = <floating*> buf.sw_buf if sw != NULL else NULL
                if fused:
                    sparse_forward(net, theta, <floating> sc.scale, data, cs, nc, acts)
                    loss_b += output_delta(deltas[net.n_layers - 1], acts[net.n_layers - 1],
                                           yb, wb, nc, k, net.output, net.loss, prog.eps, &w_c)
                    if not isfinite(loss_b):
                        return DIVERGED
                    decay = 1 - lr * rule.alpha / w_b
                    # Layers 2..L: the dense fused step (delta_1 is formed before W_2 moves).
                    backprop(net, theta, NULL, nc, acts, deltas, theta, <floating> (-lr / w_b),
                             <floating> decay, 1, 1)
                    if not SCALE_FOLD_BELOW < decay * sc.scale < 1 / SCALE_FOLD_BELOW:
                        # A shrink to (about) zero or below, or a growth (negative weights
                        # with scikit-learn's rule): applied to W_1 densely.
                        fold_scale(net, theta, sc)
                        scale_rows(W1, net.b_off[0] - net.w_off[0], <floating> decay)
                        sc.v_sumsq = sc.v_sumsq * decay * decay
                        decay = 1
                    # Layer 1: s <- s decay, V[j, :] -= (lr / n_b / s) v delta_1[i, :].
                    scale_next = sc.scale * decay
                    sparse_first_gradient(W1, deltas[0], m, data, cs, nc,
                                          <floating> (-lr / w_b / scale_next), sc)
                    column_sums(theta + net.b_off[0], deltas[0], nc, m, <floating> (-lr / w_b),
                                1)
                    sc.scale = scale_next
                else:
                    loss_b += sparse_chunk_gradient(net, theta, data, yb, wb, cs, nc, acts,
                                                    deltas, grad, <floating> (1 / w_b),
                                                    cs > start, prog.eps, &w_c)
                    if last:
                        if not isfinite(loss_b):
                            return DIVERGED
                        add_weight_decay(net, grad, theta, <floating> (rule.alpha / w_b))
                        step = next_step(rule)
                        apply_step(theta, grad, <floating*> rule.s1, <floating*> rule.s2,
                                   n_params, &step)
                cs = ce
            prog.updates += 1
            prog.loss_sum += loss_b * per_row
            prog.weight_sum += nb
        done += nb
        start = stop
        prog.position = start
    return DONE
