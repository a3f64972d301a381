# Per-sample training (batch size 1): plain loops that touch every weight once per pass,
# and the exact blocked form of per-sample SGD that runs a large first layer at level-3 BLAS
# speed.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite
from libc.string cimport memcpy

from _blas cimport gemm, gram_lower
from _activations cimport activate, derivative
from _losses cimport sample_delta, sample_loss
from _updates cimport SGD, UpdateCoefficients, UpdateRule, next_step, update_row
from _network cimport (Net, Data, Buffers, Progress, Team, DONE, DIVERGED, gather_rows,
                       l2_penalty, split_range, get_fpenv, restore_fpenv, tuner_pick,
                       tuner_record, now_seconds, note_blas_threads)


cdef inline void add_rows(floating* z, const floating* W, const floating* a, Py_ssize_t fan_in,
                          Py_ssize_t fan_out) noexcept nogil:
    """z <- z + sum_i a_i W[i, :] (row-major W, fan_in x fan_out), skipping zero a_i.

    For one sample a BLAS call costs more than the arithmetic on small layers, and on large
    ones this reads each weight exactly once, as gemv would. Zero inputs (relu units,
    sparse pixels) cost nothing.
    """
    cdef Py_ssize_t i, j
    cdef const floating* row
    cdef floating ai
    for i in range(fan_in):
        ai = a[i]
        if ai != 0:
            row = W + i * fan_out
            for j in range(fan_out):
                z[j] = z[j] + ai * row[j]


cdef inline void sample_forward(const Net* net, const floating* theta, const floating* x,
                                floating** acts, Py_ssize_t first_layer=0,
                                bint first_ready=False) noexcept nogil:
    """Forward pass of one sample with plain loops: z = b + sum_i a_i W[i, :], a = g(z).

    Starts at layer ``first_layer``, whose input is x. With ``first_ready`` that layer's
    pre-activation z is already in its activation buffer (see sample_backprop_update).
    """
    cdef Py_ssize_t l, fan_in, fan_out
    cdef const floating* prev = x
    cdef floating* z
    for l in range(first_layer, net.n_layers):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        z = acts[l]
        if not (first_ready and l == first_layer):
            memcpy(z, theta + net.b_off[l], fan_out * sizeof(floating))
            add_rows(z, theta + net.w_off[l], prev, fan_in, fan_out)
        activate(z, fan_out, net.output if l == net.n_layers - 1 else net.hidden)
        prev = z


cdef inline void sample_backprop_update(const Net* net, floating* theta, const floating* x,
                                        floating** acts, floating** deltas, UpdateRule* rule,
                                        floating* s1, floating* s2, floating decay,
                                        Py_ssize_t first_layer,
                                        const floating* x_next=NULL) noexcept nogil:
    """Backpropagate one sample's delta_L and update layers L..first_layer in the same pass.

    Row i of W_l is read once: first delta_{l-1}[i] = <W_l[i, :], delta_l> g'(a_{l-1}[i])
    with the old weights, then the row is updated with the rank-1 gradient a_{l-1}[i] delta_l
    (+ decay W) by the rule. Layers below ``first_layer`` only receive their delta.

    With ``x_next`` (the next sample's input, first_layer = 0), the update of each row of
    W_1 also adds x_next[i] W_1[i, :] to the next sample's pre-activation while the new row
    is in registers, so the next forward pass need not read W_1 again (for Adam and momentum
    it would come from L3). That z is left in acts[0], which this sample no longer needs by
    then. Biases are updated before their rows so that the sum is formed in sample_forward's
    order, bit for bit.
    """
    cdef Py_ssize_t l, i, j, fan_in, fan_out, off
    cdef const floating* a_prev
    cdef floating* w
    cdef floating* d
    cdef floating* dprev
    cdef floating* z_next = NULL
    cdef floating dot, xn
    cdef floating* m1 = NULL
    cdef floating* m2 = NULL
    cdef UpdateCoefficients step = next_step(rule)
    for l in range(net.n_layers - 1, first_layer - 1, -1):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        a_prev = x if l == 0 else acts[l - 1]
        d = deltas[l]
        dprev = deltas[l - 1] if l > 0 else NULL
        off = net.b_off[l]
        update_row(theta + off, d, 1, 0, s1 + off if s1 != NULL else NULL,
                   s2 + off if s2 != NULL else NULL, fan_out, &step)
        if l == 0 and x_next != NULL:
            z_next = acts[0]
            memcpy(z_next, theta + off, fan_out * sizeof(floating))
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
            xn = x_next[i] if z_next != NULL else 0
            update_row(w, d, a_prev[i], decay, m1, m2, fan_out, &step,
                       z_next if xn != 0 else NULL, xn)


cdef inline int run_samples(const Net* net, floating* theta, const Data* data,
                            const Buffers* buf, UpdateRule* rule, Progress* prog) noexcept nogil:
    """Per-sample training (batch size 1), the same contract as ``run_batches``.

    With n_b = B = 1 a sample of weight w steps along w delta + alpha W: the step scales with
    w. With ``prog.by_weight`` (n_b = w) the gradient is w delta / w: the weight cancels
    except in the L2 term alpha/w, and a zero-weight sample is skipped. A zero-weight sample
    is skipped too when its step would be zero (plain SGD without L2); it still counts as an
    update then, as every sample does when normalised by rows.
    """
    cdef Py_ssize_t d = net.sizes[0], k = net.sizes[net.n_layers], start, row
    cdef Py_ssize_t stop = min(prog.position + prog.budget, data.n)
    cdef Py_ssize_t ready_row = -1
    cdef const floating* X = <const floating*> data.X
    cdef const floating* Y = <const floating*> data.Y
    cdef const floating* sw = <const floating*> data.sw
    cdef const Py_ssize_t* order = data.order
    cdef floating** acts = <floating**> buf.acts
    cdef floating** deltas = <floating**> buf.deltas
    cdef floating* s1 = <floating*> rule.s1
    cdef floating* s2 = <floating*> rule.s2
    cdef double eps = prog.eps
    cdef int usable, threads, p
    cdef double t0 = 0
    cdef unsigned int fpenv
    cdef floating w, dw, n_b
    cdef double loss, penalty
    cdef bint noop_zero = prog.by_weight or (rule.alpha == 0 and rule.kind == SGD)
    for start in range(prog.position, stop):
        row = order[start] if order != NULL else start
        w = sw[row] if sw != NULL else 1
        if w == 0 and noop_zero:
            if not prog.by_weight:
                prog.weight_sum += 1
                prog.updates += 1
            continue
        # The sample's normaliser n_b and the weight of its delta: (1, w), or (w, 1).
        n_b = w if prog.by_weight else 1
        dw = 1 if prog.by_weight else w
        sample_forward(net, theta, X + row * d, acts, 0, row == ready_row)
        loss = 0
        if w != 0:  # a zero-weight sample adds nothing, even a NaN from an overflowing loss
            loss = w * sample_loss(acts[net.n_layers - 1], Y + row * k, k, net.output,
                                   net.loss, eps)
        if rule.alpha != 0:
            penalty = 0.5 * rule.alpha * l2_penalty(net, theta)
            rule.penalty_sum += penalty / n_b
            loss += penalty
        loss = loss / n_b
        if not isfinite(loss):
            prog.position = start
            return DIVERGED
        sample_delta(deltas[net.n_layers - 1], acts[net.n_layers - 1], Y + row * k, k,
                     net.output, net.loss, dw)
        # The next sample's first-layer pre-activation is formed during this update.
        ready_row = -1
        if start + 1 < stop:
            ready_row = order[start + 1] if order != NULL else start + 1
        sample_backprop_update(net, theta, X + row * d, acts, deltas, rule, s1, s2,
                               <floating> (rule.alpha / n_b), 0,
                               X + ready_row * d if ready_row >= 0 else NULL)
        prog.loss_sum += loss
        prog.weight_sum += 1
        prog.updates += 1
    prog.position = stop
    return DONE


cdef inline void block_products(const floating* xb, const floating* W0, floating* zb,
                                floating* gb, Py_ssize_t kb, Py_ssize_t d, Py_ssize_t m,
                                int t, int p, const Team* team,
                                unsigned int caller_fpenv) noexcept nogil:
    """Thread p's share of a block's products: rows of Z = X_blk W(0), split by samples at
    multiples of team.align (each row as the unsplit gemm computes it), and, on the last
    thread, the Gram matrix (one syrk, as on one thread)."""
    cdef Py_ssize_t lo, hi
    cdef unsigned int fpenv = get_fpenv()
    restore_fpenv(caller_fpenv)
    note_blas_threads(team, p)
    split_range(kb, t, team.align, p, &lo, &hi)
    if hi > lo:
        gemm(False, False, hi - lo, m, d, 1, xb + lo * d, d, W0, m, 0, zb + lo * m, m)
    if p == t - 1:
        gram_lower(kb, d, xb, d, gb, kb)
    restore_fpenv(fpenv)


cdef inline void block_update(const floating* xb, floating* W0, const floating* ub,
                              Py_ssize_t done, Py_ssize_t d, Py_ssize_t m, floating alpha,
                              floating beta, int t, int p, const Team* team,
                              unsigned int caller_fpenv) noexcept nogil:
    """Thread p's rows of the block's first-layer update W <- beta W + alpha X^T U (rows
    split at multiples of team.align: each entry as the unsplit gemm computes it)."""
    cdef Py_ssize_t i0, i1
    cdef unsigned int fpenv = get_fpenv()
    restore_fpenv(caller_fpenv)
    split_range(d, t, team.align, p, &i0, &i1)
    if i1 > i0:
        gemm(True, False, i1 - i0, m, done, alpha, xb + i0, d, ub, m, beta, W0 + i0 * m, m)
    restore_fpenv(fpenv)


cdef inline int block_threads(const Team* team, Py_ssize_t kb, Py_ssize_t d,
                              Py_ssize_t m) noexcept nogil:
    """Threads worth splitting a block's products among (3 kb d m multiply-adds)."""
    cdef int t = team.n_threads
    cdef double macs = 3.0 * kb * d * m
    while t > 1 and (macs < t * team.min_macs or kb < t * team.align):
        t -= 1
    return t


cdef inline int run_samples_blocked(const Net* net, floating* theta, const Data* data,
                                    const Buffers* buf, UpdateRule* rule, const Team* team,
                                    Progress* prog) noexcept nogil:
    """Exact per-sample SGD whose first layer runs at level-3 BLAS speed.

    Per-sample SGD changes W = W_1 by W(t+1) = c_t W(t) - lr x_t^T delta_t, with
    c_t = 1 - lr alpha / n_t the L2 decay (n_t = 1, or w_t with ``prog.by_weight``; delta_t
    carries the weight w_t, or 1 with ``prog.by_weight``, as in run_samples). Within a block of k samples this gives
    W(t) = C_t (W(0) - lr sum_{i<t} x_i^T u_i), C_t = c_0 ... c_{t-1}, u_i = delta_i / C_{i+1},
    so the first layer's pre-activation of sample t is

        z_t = x_t W(t) + b = C_t (x_t W(0) - lr sum_{i<t} (x_t . x_i) u_i) + b.

    One gemm gives every x_t W(0), one syrk the Gram matrix x_t . x_i; the samples are then
    processed in order (the layers above updated directly, per sample, as in run_samples),
    and one last gemm applies the block's update W <- C_k W(0) - lr C_k X^T U. The big matrix
    is read and written once per block instead of once per sample; the arithmetic is
    per-sample SGD, equal up to floating-point reassociation. The L2 term of the reported
    loss tracks ||W(t)||^2 exactly: ||W(t+1)||^2 = c^2 ||W(t)||^2 - 2 c lr (x_t W(t)) . delta_t
    + lr^2 ||x_t||^2 ||delta_t||^2.
    """
    cdef Py_ssize_t d = net.sizes[0], m = net.sizes[1], k = net.sizes[net.n_layers]
    cdef Py_ssize_t start = prog.position, stop = min(prog.position + prog.budget, data.n)
    cdef Py_ssize_t kb, t, i, j, row, done, block = buf.gram_block
    cdef const floating* X = <const floating*> data.X
    cdef const floating* Y = <const floating*> data.Y
    cdef const floating* sw = <const floating*> data.sw
    cdef const Py_ssize_t* order = data.order
    cdef floating** acts = <floating**> buf.acts
    cdef floating** deltas = <floating**> buf.deltas
    cdef floating* xb = <floating*> buf.x_buf
    cdef floating* zb = <floating*> buf.gram_z
    cdef floating* gb = <floating*> buf.gram_g
    cdef floating* ub = <floating*> buf.gram_u
    cdef double eps = prog.eps
    cdef floating lr = <floating> rule.lr
    cdef floating* W0 = theta + net.w_off[0]
    cdef floating* b0 = theta + net.b_off[0]
    cdef floating* z = acts[0]
    cdef floating* d0 = deltas[0]
    cdef floating* u
    cdef floating w, c, scale, coef, n_t, dw
    cdef bint noop_zero = prog.by_weight or rule.alpha == 0
    cdef double loss, penalty = 0, q, dd
    cdef int status = DONE
    cdef int act0 = net.output if net.n_layers == 1 else net.hidden
    while start < stop:
        kb = min(block, stop - start)
        if order == NULL:
            memcpy(xb, X + start * d, kb * d * sizeof(floating))
        else:
            gather_rows(xb, X, order + start, kb, d)
        # The block's products (its samples' x_t W(0) and Gram entries x_t . x_i, i <= t),
        # and at its end the update of W: on one thread, or split among the team's (the
        # samples themselves always run in order on this thread).
        usable = block_threads(team, kb, d, m)
        threads = tuner_pick(team.tuner, usable)
        if usable > 1:
            t0 = now_seconds()
        if threads > 1:
            fpenv = get_fpenv()
            for p in prange(threads, num_threads=threads, schedule='static', chunksize=1):
                block_products(xb, W0, zb, gb, kb, d, m, threads, p, team, fpenv)
        else:
            gemm(False, False, kb, m, d, 1, xb, d, W0, m, 0, zb, m)    # x_t W(0) for every t
            gram_lower(kb, d, xb, d, gb, kb)                          # x_t . x_i, i <= t
        scale = 1
        if rule.alpha != 0:
            penalty = l2_penalty(net, theta, 0) - l2_penalty(net, theta, 1)
        done = kb
        for t in range(kb):
            row = order[start + t] if order != NULL else start + t
            w = sw[row] if sw != NULL else 1
            u = ub + t * m
            if w == 0 and noop_zero:  # no step (see run_samples)
                for j in range(m):
                    u[j] = 0
                if not prog.by_weight:
                    prog.weight_sum += 1
                    prog.updates += 1
                continue
            n_t = w if prog.by_weight else 1
            dw = 1 if prog.by_weight else w
            c = 1 - lr * <floating> rule.alpha / n_t
            # u temporarily holds x_t W(t) = C_t (x_t W(0) - lr sum_{i<t} G[t, i] u_i).
            memcpy(u, zb + t * m, m * sizeof(floating))
            for i in range(t):
                coef = -lr * gb[t * kb + i]
                if coef != 0:
                    for j in range(m):
                        u[j] = u[j] + coef * ub[i * m + j]
            if scale != 1:
                for j in range(m):
                    u[j] = scale * u[j]
            for j in range(m):
                z[j] = u[j] + b0[j]
            activate(z, m, act0)
            sample_forward(net, theta, z, acts, 1)
            loss = 0
            if w != 0:
                loss = w * sample_loss(acts[net.n_layers - 1], Y + row * k, k, net.output,
                                       net.loss, eps)
            if rule.alpha != 0:
                q = 0.5 * rule.alpha * (penalty + l2_penalty(net, theta, 1))
                rule.penalty_sum += q / n_t
                loss += q
            loss = loss / n_t
            if not isfinite(loss):
                status = DIVERGED
                done = t
                break
            sample_delta(deltas[net.n_layers - 1], acts[net.n_layers - 1], Y + row * k, k,
                         net.output, net.loss, dw)
            sample_backprop_update(net, theta, z, acts, deltas, rule, NULL, NULL,
                                   <floating> (rule.alpha / n_t), 1)
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
            if scale == 1:  # no L2 decay: u_t is delta_t itself
                memcpy(u, d0, m * sizeof(floating))
            else:
                for j in range(m):
                    u[j] = d0[j] / scale
            prog.loss_sum += loss
            prog.weight_sum += 1
            prog.updates += 1
        if done > 0:
            if threads > 1:
                for p in prange(threads, num_threads=threads, schedule='static', chunksize=1):
                    block_update(xb, W0, ub, done, d, m, -lr * scale, scale, threads, p, team,
                                 fpenv)
            else:
                gemm(True, False, d, m, done, -lr * scale, xb, d, ub, m, scale, W0, m)
        if usable > 1 and status == DONE:
            tuner_record(team.tuner, threads, usable, now_seconds() - t0, kb)
        if status != DONE:
            prog.position = start + done
            return status
        start += kb
    prog.position = stop
    return DONE
