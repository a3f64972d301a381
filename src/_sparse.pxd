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
# before Python sees theta, and before a step that would take s out of
# (SCALE_FOLD_BELOW, 1 / SCALE_FOLD_BELOW).
#
# Momentum and Nesterov without L2 are lazy too. A row j of W_1 that no sample of a batch
# selects has zero gradient, so the step only decays its velocity: after k such steps
#     momentum:  v <- mu^k v,   w <- w + (mu + mu^2 + ... + mu^k) v
#     nesterov:  v <- mu^k v,   w <- w + mu (mu + mu^2 + ... + mu^k) v
# (v the velocity before them). LazyRows keeps, per row, the step it is current at; a row is
# brought up to date in closed form when a batch selects it (before the forward pass reads
# it) and every row at the end of the call, so theta and the velocity Python sees are those
# of k explicit steps, up to rounding. Everything else (biases, later layers) steps densely.
#
# Adam (its second moment makes the catch-up depend on every past gradient's size), momentum
# with L2 (the shrink couples w and v), and full batches larger than a chunk form the
# gradient in the workspace's gradient buffer (rows of W_1 not selected are zero) and apply
# the rule to every parameter: a dense update per step.
#
# Mini-batches of plain SGD split among the Team's threads as dense ones do (_batch.pxd):
# thread p forms A_1 and every delta of its block of rows, then the gradient step of its
# share of the dense layers and of a block of W_1's rows (it applies every entry whose
# column falls in its block, in the same order as one thread would, so the weights do not
# depend on the thread count).
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite, pow
from libc.string cimport memset

from _blas cimport dot
from _losses cimport output_delta
from _updates cimport (SGD, MOMENTUM, NESTEROV, UpdateCoefficients, UpdateRule, apply_step,
                       next_step)
from _network cimport (Net, Data, Buffers, Progress, Team, DONE, DIVERGED, batch_normaliser,
                       gather_rows, l2_penalty, split_range, get_fpenv, restore_fpenv,
                       tuner_pick, tuner_record, now_seconds)
from _csr cimport (csr_index, csr_row, visited_row, prefetch_row, prefetch_visit,
                   add_selected_rows, sparse_first_layer, PREFETCH_AHEAD, scatter_f64_i32,
                   scatter_f64_i64, scatter_f32_i32, scatter_f32_i64)
from _batch cimport (Pass, rows_forward, backprop, column_sums, apply_batch_gradient,
                     gradient_phase, parallel_rows)

# A step that would take s outside (SCALE_FOLD_BELOW, 1 / SCALE_FOLD_BELOW) folds it into V
# first (a dense pass over W_1, once per ln(1e6) / (lr alpha / n_b) steps), so V = W_1 / s
# stays within a factor 1e6 of W_1.
DEF SCALE_FOLD_BELOW = 1e-6


cdef struct ScaledFirstLayer:
    # W_1 = scale * V while plain SGD with L2 trains on sparse rows; V is what theta holds.
    double scale
    double v_sumsq      # ||V||^2, kept up to date (meaningful only when tracked)
    bint track          # keep v_sumsq (the L2 term is reported: alpha != 0)


cdef struct LazyRows:
    # Momentum and Nesterov on sparse rows without L2: which rows of W_1 are up to date.
    bint active         # the rule is lazy for this call (see the top of this file)
    Py_ssize_t step     # steps taken in this call
    Py_ssize_t* current # D entries: the step row j of W_1 (and its velocity) is current at
    Py_ssize_t* mark    # D entries: the step at which row j was last selected
    Py_ssize_t* rows    # D entries: the rows selected by the current batch


cdef inline void lazy_reset(LazyRows* lz, Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t j
    lz.step = 0
    for j in range(d):
        lz.current[j] = 0
        lz.mark[j] = -1


cdef inline void catch_up_row(floating* w, floating* v, Py_ssize_t m, Py_ssize_t k,
                              double mu, bint nesterov) noexcept nogil:
    """k steps with zero gradient on one row: v <- mu^k v, w <- w + c v (see the top)."""
    cdef Py_ssize_t j
    cdef double muk, geometric
    cdef floating cw, cv
    if k <= 0:
        return
    muk = pow(mu, <double> k)
    geometric = k if mu == 1 else mu * (1 - muk) / (1 - mu)   # mu + ... + mu^k
    cw = <floating> (mu * geometric if nesterov else geometric)
    cv = <floating> muk
    for j in range(m):
        w[j] = w[j] + cw * v[j]
        v[j] = cv * v[j]


cdef inline void catch_up_all(const Net* net, floating* theta, const UpdateRule* rule,
                              LazyRows* lz) noexcept nogil:
    """Bring every row of W_1 (and its velocity) to step lz.step."""
    cdef Py_ssize_t j, m = net.sizes[1]
    cdef floating* W = theta + net.w_off[0]
    cdef floating* V = <floating*> rule.s1 + net.w_off[0]
    if not lz.active:
        return
    for j in range(net.sizes[0]):
        catch_up_row(W + j * m, V + j * m, m, lz.step - lz.current[j], rule.momentum,
                     rule.kind == NESTEROV)
        lz.current[j] = lz.step


cdef inline Py_ssize_t select_rows(const Net* net, floating* theta, floating* grad,
                                   const UpdateRule* rule, const Data* data, Py_ssize_t first,
                                   Py_ssize_t n, LazyRows* lz) noexcept nogil:
    """The rows of W_1 the batch at positions first..first+n selects: each brought up to
    date and its gradient row cleared; returns how many (listed in lz.rows)."""
    cdef Py_ssize_t i, e, lo, hi, j, count = 0, m = net.sizes[1]
    cdef floating* W = theta + net.w_off[0]
    cdef floating* V = <floating*> rule.s1 + net.w_off[0]
    for i in range(n):
        csr_row(data, visited_row(data, first + i), &lo, &hi)
        for e in range(lo, hi):
            j = ((<const Py_ssize_t*> data.indices)[e] if data.index64
                 else (<const int*> data.indices)[e])
            if lz.mark[j] != lz.step:
                lz.mark[j] = lz.step
                lz.rows[count] = j
                count += 1
                catch_up_row(W + j * m, V + j * m, m, lz.step - lz.current[j],
                             rule.momentum, rule.kind == NESTEROV)
                memset(grad + net.w_off[0] + j * m, 0, m * sizeof(floating))
    return count


cdef inline void scatter_selected_rows(floating* G, const floating* d, Py_ssize_t m,
                                       const csr_index* idx, const floating* val,
                                       Py_ssize_t nnz, floating c, ScaledFirstLayer* sc,
                                       Py_ssize_t j0=0, Py_ssize_t j1=-1) noexcept nogil:
    """G[idx[e], :] += c val[e] d for every entry e (with j1 >= 0: only those whose column
    lies in j0..j1-1); with sc.track, ||G||^2 follows."""
    cdef Py_ssize_t e, j
    cdef floating* g
    cdef floating a
    cdef double dd = 0
    cdef bint track = sc != NULL and sc.track
    if track:
        for j in range(m):
            dd += <double> d[j] * d[j]
    if j1 >= 0:
        for e in range(nnz):
            if j0 <= idx[e] < j1:
                scatter_selected_rows(G, d, m, idx + e, val + e, 1, c, sc)
        return
    if not track:
        if floating is double:
            if csr_index is int:
                scatter_f64_i32(G, d, m, idx, val, nnz, c)
            else:
                scatter_f64_i64(G, d, m, idx, val, nnz, c)
        else:
            if csr_index is int:
                scatter_f32_i32(G, d, m, idx, val, nnz, c)
            else:
                scatter_f32_i64(G, d, m, idx, val, nnz, c)
        return
    for e in range(min(PREFETCH_AHEAD, nnz)):
        prefetch_row(G, m, idx, e, nnz)
    for e in range(nnz):
        prefetch_row(G, m, idx, e + PREFETCH_AHEAD, nnz)
        a = c * val[e]
        g = G + idx[e] * m
        if track:
            # ||g + a d||^2 - ||g||^2 = 2 a <g, d> + a^2 ||d||^2, <g, d> from the row before
            # the step (BLAS's dot: a reduction the compiler would not vectorise)
            sc.v_sumsq += 2 * a * dot(g, d, <int> m) + <double> a * a * dd
        for j in range(m):
            g[j] = g[j] + a * d[j]


cdef inline void sparse_forward(const Net* net, const floating* theta, floating scale,
                                const Data* data, Py_ssize_t first, Py_ssize_t n,
                                floating** acts) noexcept nogil:
    """Every layer's activations for the rows at positions first..first+n."""
    rows_forward(net, theta, data, NULL, first, 0, n, acts, scale, True)


cdef inline void sparse_first_gradient(floating* G, const floating* delta, Py_ssize_t m,
                                       const Data* data, Py_ssize_t first, Py_ssize_t n,
                                       floating c, ScaledFirstLayer* sc, Py_ssize_t j0=0,
                                       Py_ssize_t j1=-1) noexcept nogil:
    """G += c X_b^T delta_1 over the rows at positions first..first+n; G is laid out as W_1.

    Only the rows of G that the batch's features select are written (with j1 >= 0, only
    those of them in j0..j1-1)."""
    cdef Py_ssize_t i, lo, hi
    cdef const floating* val = <const floating*> data.X
    for i in range(n):
        csr_row(data, visited_row(data, first + i), &lo, &hi)
        if data.index64:
            scatter_selected_rows(G, delta + i * m, m, <const Py_ssize_t*> data.indices + lo,
                                  val + lo, hi - lo, c, sc, j0, j1)
        else:
            scatter_selected_rows(G, delta + i * m, m, <const int*> data.indices + lo,
                                  val + lo, hi - lo, c, sc, j0, j1)


cdef inline double sparse_chunk_gradient(const Net* net, const floating* theta,
                                         const Data* data, const floating* y,
                                         const floating* sw, Py_ssize_t first, Py_ssize_t n,
                                         floating** acts, floating** deltas, floating* grad,
                                         floating scale, bint accumulate, double eps,
                                         double* weight_sum,
                                         bint rows_cleared=False) noexcept nogil:
    """grad (+)= scale * the summed gradient of the rows at positions first..first+n
    (y, sw: their targets and weights, gathered); returns sum_i w_i l_i.

    When not accumulating, the first layer's weight gradient is cleared whole first, unless
    ``rows_cleared`` says the rows the batch selects are already (see select_rows)."""
    cdef Py_ssize_t m = net.sizes[1], k = net.sizes[net.n_layers]
    cdef floating beta = 1 if accumulate else 0
    cdef double loss_sum
    sparse_forward(net, theta, 1, data, first, n, acts)
    loss_sum = output_delta(deltas[net.n_layers - 1], acts[net.n_layers - 1], y, sw, n, k,
                            net.output, net.loss, eps, weight_sum)
    backprop(net, theta, NULL, n, acts, deltas, grad, scale, beta, beta, 1)
    if not accumulate and not rows_cleared:
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


cdef inline int sparse_pass_threads(const Net* net, const Team* team, const Data* data,
                                    Py_ssize_t first, Py_ssize_t n) noexcept nogil:
    """Threads worth splitting a plain-SGD pass over these rows among: each must get
    team.align rows and team.min_macs multiply-adds (about 2 nnz M_1 for the first layer,
    3 n fan_in fan_out for each later one)."""
    cdef Py_ssize_t i, l, lo, hi, nnz = 0
    cdef double macs = 0
    cdef int t = team.n_threads
    if t < 2 or n < 2 * team.align:
        return 1
    for i in range(n):
        csr_row(data, visited_row(data, first + i), &lo, &hi)
        nnz += hi - lo
    macs = 2.0 * nnz * net.sizes[1]
    for l in range(1, net.n_layers):
        macs += 3.0 * n * net.sizes[l] * net.sizes[l + 1]
    while t > 1 and (macs < t * team.min_macs or n < t * team.align):
        t -= 1
    return t


cdef inline void sparse_step_block(const Net* net, floating* theta, const Data* data,
                                   const Buffers* buf, const Pass* ps, const Team* team,
                                   floating c, ScaledFirstLayer* sc, double* sumsq_change,
                                   int p) noexcept nogil:
    """Thread p's share of a plain-SGD step: its share of the later layers (gradient_phase)
    and the entries of the batch whose column lies in its block of W_1's rows; b_1 by
    thread 0. sumsq_change[p] receives its change of ||V||^2."""
    cdef Py_ssize_t j0, j1, m = net.sizes[1]
    cdef ScaledFirstLayer mine
    cdef unsigned int fpenv
    gradient_phase(net, theta, buf, NULL, ps, team, p, 1)
    fpenv = get_fpenv()
    restore_fpenv(ps.fpenv)
    split_range(net.sizes[0], ps.n_threads, 1, p, &j0, &j1)
    mine.track = sc.track
    mine.v_sumsq = 0
    if j1 > j0:
        sparse_first_gradient(theta + net.w_off[0], (<floating**> buf.deltas)[0], m, data,
                              ps.first, ps.n, c, &mine, j0, j1)
    sumsq_change[p] = mine.v_sumsq
    if p == 0:
        column_sums(theta + net.b_off[0], (<floating**> buf.deltas)[0], ps.n, m,
                    <floating> ps.scale, 1)
    restore_fpenv(fpenv)


cdef inline int run_sparse_batches(const Net* net, floating* theta, const Data* data,
                                   const Buffers* buf, UpdateRule* rule,
                                   Py_ssize_t batch_size, Py_ssize_t n_params,
                                   Progress* prog, ScaledFirstLayer* sc,
                                   LazyRows* lz, const Team* team) noexcept nogil:
    """run_batches (_batch.pxd) for CSR rows: the same batches, losses and updates.

    A batch of B rows minimises J_b = (sum_i w_i l_i + alpha/2 sum ||W||^2) / n_b at its
    starting parameters (n_b = B, or sum_i w_i with prog.by_weight; a batch with n_b = 0 is
    skipped). Plain SGD on a batch of at most one chunk applies
        W_l <- (1 - lr alpha / n_b) W_l - (lr / n_b) A_{l-1}^T delta_l,
        b_l <- b_l - (lr / n_b) colsum(delta_l)
    straight to theta, the first layer through its scale factor (see the top of this file);
    momentum and Nesterov without L2 (lz.active) step only the rows of W_1 the batch
    selects, after bringing them up to date; every other case forms the gradient and
    applies the rule to all parameters. Batch size 1 (per-sample SGD) is the same loop with
    one row per batch.
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
    cdef bint fused, last, lazy
    cdef UpdateCoefficients step
    cdef Py_ssize_t r, j, selected = 0, rest = n_params - net.b_off[0]
    cdef floating* s1 = <floating*> rule.s1
    cdef int usable = 1, p
    cdef double t0 = 0
    cdef double sumsq_change[256]  # MAX_THREADS
    cdef Pass ps

    while start < data.n and done < prog.budget:
        stop = min(start + batch_size, data.n)
        nb = stop - start
        w_b = batch_normaliser(sw, data, prog, start, stop)
        if w_b != 0:
            per_row = nb / w_b
            fused = rule.kind == SGD and nb <= chunk
            lazy = lz.active and nb <= chunk
            if not fused and sc.scale != 1:
                fold_scale(net, theta, sc)
            if lz.active and not lazy:
                catch_up_all(net, theta, rule, lz)  # a dense step follows
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
                prefetch_visit(Y, k, data, ce)
                if fused:
                    usable = sparse_pass_threads(net, team, data, cs, nc)
                    ps.n_threads = tuner_pick(team.tuner, usable)
                    if usable > 1:
                        t0 = now_seconds()
                    decay = 1 - lr * rule.alpha / w_b
                    if ps.n_threads > 1:
                        # The rows phase on the team (A_1 from the current scale factor).
                        ps.first = cs
                        ps.n = nc
                        ps.y = yb
                        ps.sw = wb
                        ps.x_scale = sc.scale
                        loss_b += parallel_rows(net, theta, data, buf, &ps, team, prog.eps)
                    else:
                        sparse_forward(net, theta, <floating> sc.scale, data, cs, nc, acts)
                        loss_b += output_delta(deltas[net.n_layers - 1],
                                               acts[net.n_layers - 1], yb, wb, nc, k,
                                               net.output, net.loss, prog.eps, &w_c)
                    if not isfinite(loss_b):
                        return DIVERGED
                    if ps.n_threads == 1:
                        # Layers 2..L: the dense fused step (delta_1 is formed before W_2
                        # moves).
                        backprop(net, theta, NULL, nc, acts, deltas, theta,
                                 <floating> (-lr / w_b), <floating> decay, 1, 1)
                    if not SCALE_FOLD_BELOW < decay * sc.scale < 1 / SCALE_FOLD_BELOW:
                        # A shrink to (about) zero or below, or a growth (negative weights
                        # with scikit-learn's rule): applied to W_1 densely.
                        fold_scale(net, theta, sc)
                        scale_rows(W1, net.b_off[0] - net.w_off[0], <floating> decay)
                        sc.v_sumsq = sc.v_sumsq * decay * decay
                        decay = 1
                    # Layer 1: s <- s decay, V[j, :] -= (lr / n_b / s) v delta_1[i, :].
                    scale_next = sc.scale * decay
                    if ps.n_threads > 1:
                        # Later layers (their L2 shrink as dense ones: w_beta) and W_1's
                        # rows, split among the team.
                        ps.out = theta
                        ps.scale = -lr / w_b
                        ps.w_beta = <floating> (1 - lr * rule.alpha / w_b)
                        ps.b_beta = 1
                        ps.apply = False
                        for p in prange(ps.n_threads, num_threads=ps.n_threads,
                                        schedule='static', chunksize=1):
                            sparse_step_block(net, theta, data, buf, &ps, team,
                                              <floating> (-lr / w_b / scale_next), sc,
                                              sumsq_change, p)
                        for p in range(ps.n_threads):
                            sc.v_sumsq += sumsq_change[p]
                    else:
                        sparse_first_gradient(W1, deltas[0], m, data, cs, nc,
                                              <floating> (-lr / w_b / scale_next), sc)
                        column_sums(theta + net.b_off[0], deltas[0], nc, m,
                                    <floating> (-lr / w_b), 1)
                    sc.scale = scale_next
                    if usable > 1:
                        tuner_record(team.tuner, ps.n_threads, usable, now_seconds() - t0, nc)
                elif lazy:
                    selected = select_rows(net, theta, grad, rule, data, cs, nc, lz)
                    loss_b += sparse_chunk_gradient(net, theta, data, yb, wb, cs, nc, acts,
                                                    deltas, grad, <floating> (1 / w_b),
                                                    False, prog.eps, &w_c, True)
                    if not isfinite(loss_b):
                        return DIVERGED
                    step = next_step(rule)
                    # Biases and later layers densely, then the selected rows of W_1.
                    apply_step(theta + net.b_off[0], grad + net.b_off[0], s1 + net.b_off[0],
                               NULL, rest, &step)
                    for r in range(selected):
                        j = net.w_off[0] + lz.rows[r] * m
                        apply_step(theta + j, grad + j, s1 + j, NULL, m, &step)
                        lz.current[lz.rows[r]] = lz.step + 1
                    lz.step += 1
                else:
                    loss_b += sparse_chunk_gradient(net, theta, data, yb, wb, cs, nc, acts,
                                                    deltas, grad, <floating> (1 / w_b),
                                                    cs > start, prog.eps, &w_c)
                    if last:
                        if not isfinite(loss_b):
                            return DIVERGED
                        apply_batch_gradient(net, theta, grad, rule, w_b, n_params)
                cs = ce
            prog.updates += 1
            prog.loss_sum += loss_b * per_row
            prog.weight_sum += nb
        done += nb
        start = stop
        prog.position = start
    return DONE
