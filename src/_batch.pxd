# Mini-batch and full-batch training: forward pass, backpropagation and update of a batch
# of rows with level-3 BLAS, in work buffers allocated once per fit.
#
# A pass over n rows (one batch, or one CHUNK_ROWS chunk of a larger batch) runs either on
# the calling thread (pass_threads(...) == 1) or split among the Team's OpenMP threads, each
# calling single-threaded BLAS, in two phases:
#
#   rows phase      thread p takes the p-th block of rows: gathers them (shuffled order),
#                   forward pass, output delta, and the deltas of every layer. Rows are
#                   independent here, so there is no synchronisation between layers.
#   gradient phase  thread p takes the p-th block of the rows of each large W_l's gradient,
#                   A_{l-1}[:, block]^T delta_l (the full reduction over the pass's rows, in
#                   BLAS's order), and small layers and biases whole (layer l: thread l mod T);
#                   on the last pass of a batch it applies the update to the parameters whose
#                   gradient it just formed.
#
# No gradient is split by rows, so no partial gradients are summed: every gradient entry is
# formed by one call computing exactly what the single-threaded call computes for it. Blocks
# start at multiples of Team.align (ROW_ALIGN in _engine.pyx, a multiple of OpenBLAS's gemm
# tile width), so every entry of every product is computed by the same kernel code path as in
# the unsplit call, and the weights are bit-identical for any thread count (tests/
# test_engine_parallel.py checks it, and checks the BLAS property it rests on).
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite
from libc.string cimport memset

from _blas cimport gemm, gemv
from _activations cimport bias_activation, mul_derivative
from _losses cimport output_delta, output_delta_rows
from _csr cimport sparse_first_layer
from _updates cimport SGD, UpdateCoefficients, UpdateRule, apply_step, next_step
from _network cimport (Net, Data, Buffers, Progress, Team, DONE, DIVERGED, batch_normaliser,
                       gather_rows, l2_penalty, split_range, get_fpenv, restore_fpenv,
                       tuner_pick, tuner_record, now_seconds, note_blas_threads)

cdef extern from "_vrow.h" nogil:
    # One row through a dense layer, each row of W read once (built per CPU level):
    #   forward   z += sum_i a_i W[i, :]
    #   backprop  d_prev[i] = <W[i, :], d> (d_prev may be NULL),
    #             out[i, :] = scale a_i d + beta out[i, :]
    void row_forward_f64 "mlpcore_row_forward_f64" (double* z, const double* W,
                                                    const double* a, long fan_in, long fan_out)
    void row_forward_f32 "mlpcore_row_forward_f32" (float* z, const float* W, const float* a,
                                                    long fan_in, long fan_out)
    void row_backprop_f64 "mlpcore_row_backprop_f64" (const double* W, const double* a,
                                                      const double* d, double* d_prev,
                                                      long fan_in, long fan_out, double* out,
                                                      double scale, double beta)
    void row_backprop_f32 "mlpcore_row_backprop_f32" (const float* W, const float* a,
                                                      const float* d, float* d_prev,
                                                      long fan_in, long fan_out, float* out,
                                                      float scale, float beta)


# One row through a layer of at most this many weights goes through the kernels of _vrow.h
# (BLAS's call and packing cost more than the arithmetic there); larger layers through BLAS,
# whose kernels are faster once the work is large (the one-row kernels sum each output in a
# fixed order, which is latency-bound on wide layers). 4,096 float64 weights fill L1.
DEF ONE_ROW_MAX_WEIGHTS = 4096


cdef inline void row_forward(floating* z, const floating* W, const floating* a,
                             Py_ssize_t fan_in, Py_ssize_t fan_out) noexcept nogil:
    if floating is double:
        row_forward_f64(z, W, a, fan_in, fan_out)
    else:
        row_forward_f32(z, W, a, fan_in, fan_out)


cdef inline void row_backprop(const floating* W, const floating* a, const floating* d,
                              floating* d_prev, Py_ssize_t fan_in, Py_ssize_t fan_out,
                              floating* out, floating scale, floating beta) noexcept nogil:
    if floating is double:
        row_backprop_f64(W, a, d, d_prev, fan_in, fan_out, out, scale, beta)
    else:
        row_backprop_f32(W, a, d, d_prev, fan_in, fan_out, out, scale, beta)


cdef struct Pass:
    # One forward/backward pass over n rows, as the threads share it.
    Py_ssize_t first    # position in the visiting order (or row) of the pass's first row
    Py_ssize_t n        # rows
    int n_threads       # threads splitting this pass
    const void* x       # the pass's inputs A_0 (n x D): into X, or x_buf when gathered
    const void* y       # its targets (n x K)
    const void* sw      # its sample weights, or NULL
    void* out           # where the gradient terms go: grad, or theta (fused SGD step)
    double scale        # out_W = scale A^T delta + w_beta out_W, out_b = scale colsum + b_beta out_b
    double w_beta
    double b_beta
    unsigned int fpenv  # the calling thread's floating-point mode, set in every worker
    double x_scale      # CSR rows: the scale factor s of W_1 = s V (see _sparse.pxd)
    bint apply          # form the update of each range once its gradient is complete
    double decay_coef   # with apply: grad_W += decay_coef W first (L2)
    UpdateCoefficients step


cdef inline void forward_pass(const Net* net, const floating* theta, const floating* x,
                              Py_ssize_t n, floating** acts, Py_ssize_t row0=0,
                              bint whole=True, Py_ssize_t first_layer=0) noexcept nogil:
    """A_l = g_l(A_{l-1} W_l + b_l) for l = 1..L into rows row0.. of acts[l-1]; x is A_0 (n x D).

    ``whole`` says the n rows are the whole pass: only then does a single row go through
    gemv or the one-row kernel of _vrow.h (a block of a split pass always uses gemm, as the
    unsplit pass does). With
    ``first_layer`` f > 0 the pass starts at layer f + 1 and x is A_f (sparse input forms
    A_1 itself, see _sparse.pxd).
    """
    cdef Py_ssize_t l, fan_in, fan_out
    cdef const floating* prev = x
    cdef floating* a
    cdef int act
    for l in range(first_layer, net.n_layers):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        act = net.output if l == net.n_layers - 1 else net.hidden
        a = acts[l] + row0 * fan_out
        if n == 1 and whole and fan_in * fan_out <= ONE_ROW_MAX_WEIGHTS:
            memset(a, 0, fan_out * sizeof(floating))
            row_forward(a, theta + net.w_off[l], prev, fan_in, fan_out)
        elif n == 1 and whole:  # one row: gemv reads W once; gemm would first pack all of it
            gemv(True, fan_in, fan_out, 1, theta + net.w_off[l], fan_out, prev, 0, a)
        else:
            gemm(False, False, n, fan_out, fan_in, 1, prev, fan_in,
                 theta + net.w_off[l], fan_out, 0, a, fan_out)
        bias_activation(a, theta + net.b_off[l], n, fan_out, act)
        prev = a


cdef inline void rows_forward(const Net* net, const floating* theta, const Data* data,
                              const floating* x, Py_ssize_t first, Py_ssize_t lo, Py_ssize_t n,
                              floating** acts, floating x_scale, bint whole) noexcept nogil:
    """Every layer's activations for rows lo..lo+n of a pass, into those rows of acts: from
    x (the pass's dense A_0) or, for CSR rows (data.indptr), from the nonzeros of the rows at
    positions first + lo.. of the visiting order, with W_1 = x_scale V (_csr.pxd).
    ``whole`` as for forward_pass."""
    cdef Py_ssize_t m = net.sizes[1]
    if data.indptr == NULL:
        forward_pass(net, theta, x + lo * net.sizes[0], n, acts, lo, whole)
        return
    sparse_first_layer(net, theta, x_scale, data, first + lo, n, acts[0] + lo * m)
    if net.n_layers > 1:
        forward_pass(net, theta, acts[0] + lo * m, n, acts, lo, whole, 1)


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
                          floating w_beta, floating b_beta,
                          Py_ssize_t first_layer=0) noexcept nogil:
    """Backpropagate deltas[L-1] (delta_L, already filled) and accumulate gradient terms.

    For l = L..1:  delta_{l-1} = (delta_l W_l^T) * g'(A_{l-1})
                   out_W_l     = scale * A_{l-1}^T delta_l  + w_beta * out_W_l
                   out_b_l     = scale * colsum(delta_l)    + b_beta * out_b_l
    ``out`` is laid out like theta. With out = grad, scale = 1/n, betas = 0 it is the mean
    gradient; with out = theta, scale = -lr/n, w_beta = 1 - lr*alpha/n, b_beta = 1 it is a
    complete SGD step (L2 included) with no gradient buffer. delta_{l-1} is formed before
    W_l is written, so out may alias theta. With ``first_layer`` f > 0 the gradients of
    layers f + 1..L are formed, and delta_f (x unused; sparse input forms layer 1's gradient
    itself, see _sparse.pxd).
    """
    cdef Py_ssize_t l, fan_in, fan_out
    cdef const floating* a_prev
    for l in range(net.n_layers - 1, first_layer - 1, -1):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        a_prev = x if l == 0 else acts[l - 1]
        if n == 1 and fan_in * fan_out <= ONE_ROW_MAX_WEIGHTS:  # see _vrow.h
            row_backprop(theta + net.w_off[l], a_prev, deltas[l],
                         deltas[l - 1] if l > 0 else NULL, fan_in, fan_out,
                         out + net.w_off[l], scale, w_beta)
        else:
            if l > 0:
                gemm(False, True, n, fan_in, fan_out, 1, deltas[l], fan_out,
                     theta + net.w_off[l], fan_out, 0, deltas[l - 1], fan_in)
            gemm(True, False, fan_in, fan_out, n, scale, a_prev, fan_in, deltas[l], fan_out,
                 w_beta, out + net.w_off[l], fan_out)
        if l > 0:  # (the weight gradient above reads delta_l, not delta_{l-1})
            mul_derivative(deltas[l - 1], acts[l - 1], n * fan_in, net.hidden)
        column_sums(out + net.b_off[l], deltas[l], n, fan_out, scale, b_beta)


cdef inline void add_weight_decay(const Net* net, floating* grad, const floating* theta,
                                  floating coef) noexcept nogil:
    """grad_W += coef * W on the weights only (the gradient of coef/2 ||W||^2)."""
    cdef Py_ssize_t l
    if coef == 0:
        return
    for l in range(net.n_layers):
        add_decay_range(grad + net.w_off[l], theta + net.w_off[l],
                        net.b_off[l] - net.w_off[l], coef)


cdef inline void add_decay_range(floating* grad, const floating* theta, Py_ssize_t n,
                                 floating coef) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        grad[i] = grad[i] + coef * theta[i]


cdef inline void apply_batch_gradient(const Net* net, floating* theta, floating* grad,
                                      UpdateRule* rule, double w_b,
                                      Py_ssize_t n_params) noexcept nogil:
    """The rule's step from a batch's finished gradient (the sum of its rows' gradients over
    n_b = w_b): the L2 term alpha W / n_b added first, then every parameter updated."""
    cdef UpdateCoefficients step
    add_weight_decay(net, grad, theta, <floating> (rule.alpha / w_b))
    step = next_step(rule)
    apply_step(theta, grad, <floating*> rule.s1, <floating*> rule.s2, n_params, &step)


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


# ---------------------------------------------------------------------------------------------
# Parallel passes
# ---------------------------------------------------------------------------------------------

cdef inline int pass_threads(const Net* net, const Team* team, Py_ssize_t n) noexcept nogil:
    """Threads worth splitting a pass of n rows among: each gets at least team.align rows and
    team.min_macs multiply-adds (forward and backward: about 3 n sum_l fan_in fan_out)."""
    cdef Py_ssize_t l
    cdef double macs = 0
    cdef int t = team.n_threads
    for l in range(net.n_layers):
        macs += <double> net.sizes[l] * net.sizes[l + 1]
    macs *= 3.0 * n
    while t > 1 and (macs < t * team.min_macs or n < t * team.align):
        t -= 1
    return t


cdef inline void rows_phase(const Net* net, const floating* theta, const Data* data,
                            const Buffers* buf, const Pass* ps, const Team* team,
                            double eps, int p) noexcept nogil:
    """Thread p's block of rows: gather, forward pass, output delta, deltas of every layer.

    CSR rows (data.indptr) are read where they are: A_1 is formed from their nonzeros with
    W_1 = ps.x_scale V (_csr.pxd), and the later layers follow as for dense rows.
    """
    cdef Py_ssize_t lo, hi, n, d = net.sizes[0], k = net.sizes[net.n_layers]
    cdef floating** acts = <floating**> buf.acts
    cdef const floating* x = <const floating*> ps.x
    cdef unsigned int fpenv
    note_blas_threads(team, p)
    split_range(ps.n, ps.n_threads, team.align, p, &lo, &hi)
    n = hi - lo
    if n <= 0:
        return
    fpenv = get_fpenv()
    restore_fpenv(ps.fpenv)
    if data.order != NULL:
        if data.indptr == NULL:
            gather_rows(<floating*> buf.x_buf + lo * d, <const floating*> data.X,
                        data.order + ps.first + lo, n, d)
        gather_targets(<floating*> buf.y_buf, <floating*> buf.sw_buf, data, ps.first, lo, n, k)
    rows_forward(net, theta, data, x, ps.first, lo, n, acts, <floating> ps.x_scale, False)
    block_deltas(net, theta, buf, ps, eps, lo, n)
    restore_fpenv(fpenv)


cdef inline void gather_targets(floating* y_buf, floating* sw_buf, const Data* data,
                                Py_ssize_t first, Py_ssize_t lo, Py_ssize_t n,
                                Py_ssize_t k) noexcept nogil:
    """Rows lo..lo+n of the pass starting at position ``first`` of the visiting order: their
    targets and weights into the gather buffers."""
    gather_rows(y_buf + lo * k, <const floating*> data.Y, data.order + first + lo, n, k)
    if data.sw != NULL:
        gather_rows(sw_buf + lo, <const floating*> data.sw, data.order + first + lo, n, 1)


cdef inline void block_deltas(const Net* net, const floating* theta, const Buffers* buf,
                              const Pass* ps, double eps, Py_ssize_t lo,
                              Py_ssize_t n) noexcept nogil:
    """Rows lo..lo+n of a pass whose activations are formed: output delta (and w_i l_i into
    row_loss), then the deltas of every layer."""
    cdef Py_ssize_t l, fan_in, fan_out, k = net.sizes[net.n_layers]
    cdef floating** acts = <floating**> buf.acts
    cdef floating** deltas = <floating**> buf.deltas
    cdef const floating* y = <const floating*> ps.y
    cdef const floating* sw = <const floating*> ps.sw
    output_delta_rows(deltas[net.n_layers - 1] + lo * k, acts[net.n_layers - 1] + lo * k,
                      y + lo * k, sw + lo if sw != NULL else NULL, n, k, net.output, net.loss,
                      eps, buf.row_loss + lo)
    for l in range(net.n_layers - 1, 0, -1):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        gemm(False, True, n, fan_in, fan_out, 1, deltas[l] + lo * fan_out, fan_out,
             theta + net.w_off[l], fan_out, 0, deltas[l - 1] + lo * fan_in, fan_in)
        mul_derivative(deltas[l - 1] + lo * fan_in, acts[l - 1] + lo * fan_in, n * fan_in,
                       net.hidden)


cdef inline void step_range(floating* theta, const floating* grad, const UpdateRule* rule,
                            Py_ssize_t off, Py_ssize_t n, floating decay,
                            const UpdateCoefficients* step) noexcept nogil:
    """The update of theta[off:off+n] from its finished gradient (decay added first)."""
    cdef floating* s1 = <floating*> rule.s1
    cdef floating* s2 = <floating*> rule.s2
    if decay != 0:
        add_decay_range(<floating*> grad + off, theta + off, n, decay)
    apply_step(theta + off, grad + off, s1 + off if s1 != NULL else NULL,
               s2 + off if s2 != NULL else NULL, n, step)


cdef inline void gradient_phase(const Net* net, floating* theta, const Buffers* buf,
                                const UpdateRule* rule, const Pass* ps, const Team* team,
                                int p, Py_ssize_t first_layer=0) noexcept nogil:
    """Thread p's share of the gradient (and, with ps.apply, of the update), of layers
    first_layer + 1..L (sparse input forms layer 1's itself, see _sparse.pxd)."""
    cdef Py_ssize_t l, i0, i1, fan_in, fan_out
    cdef int t = ps.n_threads
    cdef floating** acts = <floating**> buf.acts
    cdef floating** deltas = <floating**> buf.deltas
    cdef floating* out = <floating*> ps.out
    cdef const floating* a_prev
    cdef unsigned int fpenv = get_fpenv()
    restore_fpenv(ps.fpenv)
    for l in range(first_layer, net.n_layers):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        a_prev = <const floating*> ps.x if l == 0 else acts[l - 1]
        if fan_in * fan_out >= team.split_min_weights:
            split_range(fan_in, t, team.align, p, &i0, &i1)
        elif l % t == p:
            i0 = 0
            i1 = fan_in
        else:
            i0 = 0
            i1 = 0
        if i1 > i0:
            gemm(True, False, i1 - i0, fan_out, ps.n, <floating> ps.scale, a_prev + i0, fan_in,
                 deltas[l], fan_out, <floating> ps.w_beta, out + net.w_off[l] + i0 * fan_out,
                 fan_out)
            if ps.apply:
                step_range(theta, out, rule, net.w_off[l] + i0 * fan_out, (i1 - i0) * fan_out,
                           <floating> ps.decay_coef, &ps.step)
        if l % t == p:
            column_sums(out + net.b_off[l], deltas[l], ps.n, fan_out, <floating> ps.scale,
                        <floating> ps.b_beta)
            if ps.apply:
                step_range(theta, out, rule, net.b_off[l], fan_out, 0, &ps.step)
    restore_fpenv(fpenv)


cdef inline double parallel_rows(const Net* net, const floating* theta, const Data* data,
                                 const Buffers* buf, Pass* ps, const Team* team,
                                 double eps) noexcept nogil:
    """The rows phase of a pass on ps.n_threads threads; returns sum_i w_i l_i in row order."""
    cdef int p
    cdef Py_ssize_t i
    cdef double total = 0
    ps.fpenv = get_fpenv()
    for p in prange(ps.n_threads, num_threads=ps.n_threads, schedule='static', chunksize=1):
        rows_phase(net, theta, data, buf, ps, team, eps, p)
    for i in range(ps.n):
        total = total + buf.row_loss[i]
    return total


cdef inline void parallel_gradient(const Net* net, floating* theta, const Buffers* buf,
                                   const UpdateRule* rule, Pass* ps,
                                   const Team* team) noexcept nogil:
    cdef int p
    ps.fpenv = get_fpenv()
    for p in prange(ps.n_threads, num_threads=ps.n_threads, schedule='static', chunksize=1):
        gradient_phase(net, theta, buf, rule, ps, team, p)


cdef inline void set_pass_rows(const Net* net, const floating* X, const floating* Y,
                               const floating* sw, const Data* data, const Buffers* buf,
                               Pass* ps, Py_ssize_t first, Py_ssize_t n) noexcept nogil:
    """Point the pass at its rows: in X when visited in order, else at the gather buffers."""
    cdef Py_ssize_t d = net.sizes[0], k = net.sizes[net.n_layers]
    ps.first = first
    ps.n = n
    if data.order == NULL:
        ps.x = X + first * d
        ps.y = Y + first * k
        ps.sw = sw + first if sw != NULL else NULL
    else:
        ps.x = buf.x_buf
        ps.y = buf.y_buf
        ps.sw = buf.sw_buf if data.sw != NULL else NULL


cdef inline double pass_gradient(const Net* net, const floating* theta, const Data* data,
                                 const Buffers* buf, const Team* team, Py_ssize_t first,
                                 Py_ssize_t n, floating* grad, floating scale, bint accumulate,
                                 double eps) noexcept nogil:
    """grad (+)= scale * the gradient of rows first..first+n (in order, no gather); returns
    sum_i w_i l_i. On one thread this is chunk_gradient; on several, the two phases."""
    cdef Pass ps
    cdef double total, w_c, t0 = 0
    cdef Data rows = data[0]
    cdef int usable = pass_threads(net, team, n)
    rows.order = NULL
    set_pass_rows(net, <const floating*> data.X, <const floating*> data.Y,
                  <const floating*> data.sw, &rows, buf, &ps, first, n)
    ps.n_threads = tuner_pick(team.tuner, usable)
    if usable > 1:
        t0 = now_seconds()
    if ps.n_threads == 1:
        total = chunk_gradient(net, theta, <const floating*> ps.x, <const floating*> ps.y,
                               <const floating*> ps.sw, n, <floating**> buf.acts,
                               <floating**> buf.deltas, grad, scale, accumulate, eps, &w_c)
    else:
        ps.out = grad
        ps.scale = scale
        ps.w_beta = 1 if accumulate else 0
        ps.b_beta = ps.w_beta
        ps.apply = False
        total = parallel_rows(net, theta, &rows, buf, &ps, team, eps)
        parallel_gradient(net, <floating*> theta, buf, NULL, &ps, team)
    if usable > 1:
        tuner_record(team.tuner, ps.n_threads, usable, now_seconds() - t0, n)
    return total


cdef inline int run_batches(const Net* net, floating* theta, const Data* data,
                            const Buffers* buf, UpdateRule* rule, const Team* team,
                            Py_ssize_t batch_size, Py_ssize_t n_params,
                            Progress* prog) noexcept nogil:
    """Train on the batches of an epoch from ``prog.position`` on: forward, backprop, update each.

    Batches are consecutive runs of ``order`` (or of the rows themselves when order is NULL)
    starting at sample ``prog.position``; processing stops after the batch that reaches
    ``prog.budget`` samples, or at the end of the epoch, and ``prog.position`` is advanced.
    A batch of B rows minimises J_b = (sum_i w_i l_i + alpha/2 sum ||W||^2) / n_b, at its
    starting parameters, with n_b = B (mlpcore's rule: the Python layer scales the weights to
    mean 1 over the training set) or, with ``prog.by_weight``, n_b = sum_i w_i (scikit-learn's
    rule, any sign; a batch with n_b = 0 is skipped). Each applied batch adds B J_b to
    loss_sum and B to weight_sum. Returns DONE, or DIVERGED as soon as a batch's loss is not
    finite (that batch is not applied). Passes of buf.rows rows at most; each is split among
    the team's threads when it is large enough (pass_threads).
    """
    cdef Py_ssize_t d = net.sizes[0], k = net.sizes[net.n_layers], chunk = buf.rows
    cdef Py_ssize_t start = prog.position, stop, nb, cs, ce, nc, i, done = 0
    cdef const floating* X = <const floating*> data.X
    cdef const floating* Y = <const floating*> data.Y
    cdef const floating* sw = <const floating*> data.sw
    cdef const Py_ssize_t* order = data.order
    cdef floating** acts = <floating**> buf.acts
    cdef floating** deltas = <floating**> buf.deltas
    cdef floating* grad = <floating*> buf.grad
    cdef const floating* xb
    cdef const floating* yb
    cdef const floating* wb
    cdef double loss_b, w_b, w_c, per_row
    cdef floating lr = <floating> rule.lr
    cdef bint fused, last
    cdef Pass ps
    cdef int usable
    cdef double t0 = 0

    while start < data.n and done < prog.budget:
        stop = min(start + batch_size, data.n)
        nb = stop - start
        # The batch's normaliser n_b, needed before the first chunk to scale its gradient.
        w_b = batch_normaliser(sw, data, prog, start, stop)
        if w_b != 0:
            per_row = nb / w_b  # B / n_b: 1 (exactly) unless normalised by weight
            loss_b = 0.5 * rule.alpha * l2_penalty(net, theta) if rule.alpha != 0 else 0
            rule.penalty_sum += loss_b * per_row
            # Plain SGD on a batch that fits in one chunk writes its step straight into theta.
            fused = rule.kind == SGD and nb <= chunk
            cs = start
            while cs < stop:
                ce = min(cs + chunk, stop)
                nc = ce - cs
                last = ce == stop
                usable = pass_threads(net, team, nc)
                ps.n_threads = tuner_pick(team.tuner, usable)
                if usable > 1:
                    t0 = now_seconds()
                if ps.n_threads > 1:
                    set_pass_rows(net, X, Y, sw, data, buf, &ps, cs, nc)
                    if fused:
                        ps.out = theta
                        ps.scale = -lr / w_b
                        ps.w_beta = <floating> (1 - lr * rule.alpha / w_b)
                        ps.b_beta = 1
                        ps.apply = False
                    else:
                        ps.out = grad
                        ps.scale = <floating> (1 / w_b)
                        ps.w_beta = 1 if cs > start else 0
                        ps.b_beta = ps.w_beta
                        ps.apply = last
                        ps.decay_coef = <floating> (rule.alpha / w_b)
                    loss_b += parallel_rows(net, theta, data, buf, &ps, team, prog.eps)
                    if not isfinite(loss_b):
                        return DIVERGED
                    if ps.apply:
                        ps.step = next_step(rule)
                    parallel_gradient(net, theta, buf, rule, &ps, team)
                    if usable > 1:
                        tuner_record(team.tuner, ps.n_threads, usable, now_seconds() - t0, nc)
                    cs = ce
                    continue
                if order == NULL:
                    xb = X + cs * d
                    yb = Y + cs * k
                    wb = sw + cs if sw != NULL else NULL
                else:
                    gather_rows(<floating*> buf.x_buf, X, order + cs, nc, d)
                    gather_rows(<floating*> buf.y_buf, Y, order + cs, nc, k)
                    if sw != NULL:
                        gather_rows(<floating*> buf.sw_buf, sw, order + cs, nc, 1)
                    xb = <floating*> buf.x_buf
                    yb = <floating*> buf.y_buf
                    wb = <floating*> buf.sw_buf if sw != NULL else NULL
                if fused:
                    forward_pass(net, theta, xb, nc, acts)
                    loss_b += output_delta(deltas[net.n_layers - 1], acts[net.n_layers - 1],
                                           yb, wb, nc, k, net.output, net.loss, prog.eps, &w_c)
                    if not isfinite(loss_b):
                        return DIVERGED
                    backprop(net, theta, xb, nc, acts, deltas, theta, <floating> (-lr / w_b),
                             <floating> (1 - lr * rule.alpha / w_b), 1)
                else:
                    loss_b += chunk_gradient(net, theta, xb, yb, wb, nc, acts, deltas, grad,
                                             <floating> (1 / w_b), cs > start, prog.eps, &w_c)
                    if last:
                        if not isfinite(loss_b):
                            return DIVERGED
                        apply_batch_gradient(net, theta, grad, rule, w_b, n_params)
                if usable > 1:
                    tuner_record(team.tuner, 1, usable, now_seconds() - t0, nc)
                cs = ce
            prog.updates += 1
            prog.loss_sum += loss_b * per_row
            prog.weight_sum += nb
        done += nb
        start = stop
        prog.position = start
    return DONE
