# Mini-batch and full-batch training: forward pass, backpropagation and update of a batch
# of rows with level-3 BLAS, in work buffers allocated once per fit.
from cython cimport floating
from libc.math cimport isfinite

from _blas cimport gemm, gemv
from _activations cimport bias_activation, mul_derivative
from _losses cimport output_delta
from _updates cimport SGD, UpdateCoefficients, apply_step
from _network cimport Net, UpdateRule, DONE, DIVERGED, gather_rows, l2_penalty, next_step


cdef inline void forward_pass(const Net* net, const floating* theta, const floating* x,
                              Py_ssize_t n, floating** acts) noexcept nogil:
    """A_l = g_l(A_{l-1} W_l + b_l) for l = 1..L into acts[l-1]; x is A_0 (n x D)."""
    cdef Py_ssize_t l, fan_in, fan_out
    cdef const floating* prev = x
    cdef int act
    for l in range(net.n_layers):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        act = net.output if l == net.n_layers - 1 else net.hidden
        if n == 1:  # one row: gemv reads W once; gemm would first copy (pack) all of it
            gemv(True, fan_in, fan_out, 1, theta + net.w_off[l], fan_out, prev, 0, acts[l])
        else:
            gemm(False, False, n, fan_out, fan_in, 1, prev, fan_in,
                 theta + net.w_off[l], fan_out, 0, acts[l], fan_out)
        bias_activation(acts[l], theta + net.b_off[l], n, fan_out, act)
        prev = acts[l]


cdef inline void column_sums(floating* out, const floating* d, Py_ssize_t n, Py_ssize_t m,
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


cdef inline void backprop(const Net* net, const floating* theta, const floating* x, Py_ssize_t n,
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


cdef inline void add_weight_decay(const Net* net, floating* grad, const floating* theta,
                                  floating coef) noexcept nogil:
    """grad_W += coef * W on the weights only (the gradient of coef/2 ||W||^2)."""
    cdef Py_ssize_t l, i
    if coef == 0:
        return
    for l in range(net.n_layers):
        for i in range(net.w_off[l], net.b_off[l]):
            grad[i] = grad[i] + coef * theta[i]


cdef inline double chunk_gradient(const Net* net, const floating* theta, const floating* x,
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


cdef inline int run_batches(const Net* net, floating* theta, const floating* X, const floating* Y,
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
    cdef UpdateCoefficients step

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
                step = next_step(rule)
                apply_step(theta, grad, s1, s2, n_params, &step)
            updates[0] += 1
            loss_sum[0] += loss_b
            weight_sum[0] += w_b
        done += nb
        start = stop
        position[0] = start
    return DONE
