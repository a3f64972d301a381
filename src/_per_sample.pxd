# Per-sample training (batch size 1): plain loops that touch every weight once per pass,
# and the exact blocked form of per-sample SGD that runs a large first layer at level-3 BLAS
# speed. On several threads the blocked form is split by hidden units when the network has
# one hidden layer and no L2 (run_samples_hidden: one barrier per sample), and otherwise only
# its block products are split (by samples, and by rows of W_1); the samples of a block run
# in order either way, and the weights do not depend on the thread count.
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport isfinite
from libc.string cimport memcpy

from _blas cimport gemm, gram_lower
from _activations cimport activate, derivative
from _losses cimport sample_delta, sample_loss
from _updates cimport SGD, UpdateCoefficients, UpdateRule, next_step, update_row
from _network cimport (Net, Data, Buffers, Progress, Team, DONE, DIVERGED, gather_rows,
                       l2_penalty, split_range, get_fpenv, restore_fpenv, tuner_pick,
                       tuner_record, now_seconds, note_blas_threads)


cdef extern from *:
    # An OpenMP barrier callable from a function run by every thread of a `parallel` block
    # (an orphaned directive binds to the innermost enclosing region; outside any region it
    # is a no-op), and the size of the team actually running.
    """
    #ifdef _OPENMP
    #include <omp.h>
    static inline void mlpcore_team_barrier(void) {
    #pragma omp barrier
    }
    static inline int mlpcore_team_size(void) { return omp_get_num_threads(); }
    #else
    static inline void mlpcore_team_barrier(void) {}
    static inline int mlpcore_team_size(void) { return 1; }
    #endif
    """
    void team_barrier "mlpcore_team_barrier" () nogil
    int team_size "mlpcore_team_size" () nogil


# Hidden-unit split of blocked per-sample SGD (run_samples_hidden): the hidden units are cut
# into chunks of HIDDEN_CHUNK columns, a partition that does not depend on the thread count.
# A multiple of the gemm micro-kernels' widths along that dimension (OpenBLAS Haswell/Zen:
# 16 for sgemm, 4-8 for dgemm), so every column block of a product is computed exactly as the
# unsplit product computes it (tests/test_engine_parallel.py checks it).
cdef enum:
    HIDDEN_CHUNK = 16
    HIDDEN_PAD = 16     # per-chunk and per-thread vectors of K start at multiples of this

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


cdef struct HiddenSplit:
    # One block of run_samples_hidden, as its threads share it.
    Py_ssize_t start        # position (in the visiting order) of the block's first sample
    Py_ssize_t kb           # samples in the block
    Py_ssize_t n_chunks     # ceil(M_1 / HIDDEN_CHUNK)
    Py_ssize_t kpad         # K rounded up to HIDDEN_PAD
    void* scratch           # 2 n_chunks kpad partial outputs, then 2 kpad per thread
    unsigned int fpenv      # the calling thread's floating-point mode
    int status              # DONE or DIVERGED (written by thread 0)
    Py_ssize_t done         # samples applied (written by thread 0)
    UpdateCoefficients step # plain SGD's (constant over the epoch)
    double deadline         # now_seconds() past which a split block is called off (0: never)
    int bail[2]             # thread 0's call, by barrier parity


cdef inline bint hidden_split_fits(const Net* net, const UpdateRule* rule,
                                   Py_ssize_t scratch_len) noexcept nogil:
    """Whether run_samples_hidden applies: one hidden layer, no L2 (the decay factors of
    run_samples_blocked are 1), and its scratch fits in ``scratch_len`` entries. Decided by
    the network alone, never by the thread count, so that 1 and T threads run the same
    arithmetic."""
    cdef Py_ssize_t chunks, kpad
    if net.n_layers != 2 or rule.alpha != 0:
        return False
    chunks = (net.sizes[1] + HIDDEN_CHUNK - 1) // HIDDEN_CHUNK
    kpad = ((net.sizes[2] + HIDDEN_PAD - 1) // HIDDEN_PAD) * HIDDEN_PAD
    return 4 * chunks * kpad <= scratch_len


cdef inline int hidden_threads(const Team* team, Py_ssize_t kb, Py_ssize_t d,
                               Py_ssize_t m) noexcept nogil:
    """Threads worth splitting a block's hidden units among: each must get a chunk and
    team.min_macs of the block's 3 kb d m multiply-adds."""
    cdef int t = <int> min(<Py_ssize_t> team.n_threads, (m + HIDDEN_CHUNK - 1) // HIDDEN_CHUNK)
    cdef double macs = 3.0 * kb * d * m
    while t > 1 and macs < t * team.min_macs:
        t -= 1
    return max(t, 1)


cdef inline void hidden_block(const Net* net, floating* theta, const Data* data,
                              const Buffers* buf, const Team* team, floating lr,
                              Progress* prog, HiddenSplit* hs, int p,
                              int nt) noexcept nogil:
    """Thread p of nt: its share of one block of run_samples_hidden.

    Thread p owns the hidden chunks [q0, q1), i.e. hidden units [c0, c1) (columns of W_1,
    b_1, U and rows of W_2); thread 0 also owns b_2 and the epoch's sums. The block runs as

        gather X_blk (rows split)                                        -- barrier --
        Z^T = W_1(0)^T X_blk^T (hidden units split), G = X_blk X_blk^T   -- barrier --
        per sample t, on the own hidden units j:
            u_tj = (x_t W_1(t))_j = Z[t, j] - lr sum_{i<t} G[t, i] u_ij,  a_tj = g(u_tj + b_1j)
            P_c = [c = 0] b_2 + sum_{j in chunk c} a_tj W_2[j, :]   (own chunks)  -- barrier --
            a2 = g_out(P_0 + P_1 + ... + P_{C-1})   (every thread, in chunk order)
            delta2 = dl/dz2,  delta1_j = <W_2[j, :], delta2> g'(a_tj),
            W_2[j, :] -= lr a_tj delta2,  b_1j -= lr delta1_j,  u_tj <- delta1_j
                                                                         -- barrier --
        W_1 <- W_1(0) - lr X_blk^T U (rows of W_1 split)

    with no L2, so every decay factor of run_samples_blocked is 1. One barrier per sample:
    the partial sums P alternate between two buffers, so a thread running ahead never
    overwrites partials another one is still adding. Every thread computes a2 and delta2
    itself, identically. Product splits start at multiples of team.align (rows of the
    products: computed as the unsplit gemm computes them) and the chunks do not depend on nt,
    so every value is what one thread computes: the weights are bit-identical for any thread
    count.
    """
    cdef Py_ssize_t d = net.sizes[0], m = net.sizes[1], k = net.sizes[2]
    cdef Py_ssize_t kb = hs.kb, start = hs.start, n_chunks = hs.n_chunks, kp = hs.kpad
    cdef Py_ssize_t q0, q1, r0, r1, c0, c1, mc, t, i, j, c, j0, row, done = kb
    cdef const floating* X = <const floating*> data.X
    cdef const floating* Y = <const floating*> data.Y
    cdef const floating* sw = <const floating*> data.sw
    cdef const Py_ssize_t* order = data.order
    cdef floating* xb = <floating*> buf.x_buf
    cdef floating* zb = <floating*> buf.gram_z
    cdef floating* gb = <floating*> buf.gram_g
    cdef floating* ub = <floating*> buf.gram_u
    cdef floating* z = (<floating**> buf.acts)[0]
    cdef floating* d0 = (<floating**> buf.deltas)[0]
    cdef floating* W0 = theta + net.w_off[0]
    cdef floating* b0 = theta + net.b_off[0]
    cdef floating* W1 = theta + net.w_off[1]
    cdef floating* b1 = theta + net.b_off[1]
    cdef floating* part = <floating*> hs.scratch
    cdef floating* out = part + 2 * n_chunks * kp + 2 * p * kp
    cdef floating* dk = out + kp
    cdef floating* pp
    cdef floating* u
    cdef floating* wr
    cdef floating w, n_t, dw, coef, dot
    cdef double loss
    cdef int phase = 0
    cdef bint noop_zero = True   # alpha = 0 here: a zero-weight sample makes no step
    cdef bint sync = nt > 1, bailed
    cdef Py_ssize_t t_from = 0
    cdef unsigned int fpenv = get_fpenv()
    restore_fpenv(hs.fpenv)
    if nt > 1:
        note_blas_threads(team, p)
    split_range(n_chunks, nt, 1, p, &q0, &q1)
    c0 = min(m, q0 * HIDDEN_CHUNK)
    c1 = min(m, q1 * HIDDEN_CHUNK)
    mc = c1 - c0
    split_range(kb, nt, 1, p, &r0, &r1)
    if r1 > r0:
        if order == NULL:
            memcpy(xb + r0 * d, X + (start + r0) * d, (r1 - r0) * d * sizeof(floating))
        else:
            gather_rows(xb + r0 * d, X, order + start + r0, r1 - r0, d)
    team_barrier()
    # Z^T = W_1(0)^T X_blk^T (M_1 x kb), its rows (hidden units) split at multiples of
    # team.align: the rows of a product are what the unsplit product computes (its columns
    # are not, in OpenBLAS's sgemm), so Z is formed transposed.
    split_range(m, nt, team.align, p, &r0, &r1)
    if r1 > r0:
        gemm(True, True, r1 - r0, kb, d, 1, W0 + r0, m, xb, d, 0, zb + r0 * kb, kb)
    if p == nt - 1:
        gram_lower(kb, d, xb, d, gb, kb)
    team_barrier()
    while True:
        bailed = False
        for t in range(t_from, kb):
            row = order[start + t] if order != NULL else start + t
            w = sw[row] if sw != NULL else 1
            u = ub + t * m
            if w == 0 and noop_zero:  # no step (see run_samples); every thread skips it
                for j in range(c0, c1):
                    u[j] = 0
                if p == 0 and not prog.by_weight:
                    prog.weight_sum += 1
                    prog.updates += 1
                continue
            n_t = w if prog.by_weight else 1
            dw = 1 if prog.by_weight else w
            for j in range(c0, c1):
                u[j] = zb[j * kb + t]
            for i in range(t):
                coef = -lr * gb[t * kb + i]
                if coef != 0:
                    for j in range(c0, c1):
                        u[j] = u[j] + coef * ub[i * m + j]
            for j in range(c0, c1):
                z[j] = u[j] + b0[j]
            activate(z + c0, mc, net.hidden)
            pp = part + (phase & 1) * n_chunks * kp
            for c in range(q0, q1):
                j0 = c * HIDDEN_CHUNK
                if c == 0:  # chunk 0 starts from b_2: one chunk is sample_forward's sum exactly
                    memcpy(pp, b1, k * sizeof(floating))
                else:
                    for i in range(k):
                        pp[c * kp + i] = 0
                add_rows(pp + c * kp, W1 + j0 * k, z + j0, min(m, j0 + HIDDEN_CHUNK) - j0, k)
            if sync:
                # Thread 0 calls the block off past its deadline; the flag alternates like
                # the partials, and every thread reads it after the same barrier.
                if p == 0 and hs.deadline > 0 and now_seconds() > hs.deadline:
                    hs.bail[phase & 1] = 1
                team_barrier()
                bailed = hs.bail[phase & 1] != 0
            phase += 1
            memcpy(out, pp, k * sizeof(floating))
            for c in range(1, n_chunks):
                for i in range(k):
                    out[i] = out[i] + pp[c * kp + i]
            activate(out, k, net.output)
            loss = 0
            if w != 0:
                loss = w * sample_loss(out, Y + row * k, k, net.output, net.loss, prog.eps)
            loss = loss / n_t
            if not isfinite(loss):  # every thread sees the same loss and stops here
                done = t
                if p == 0:
                    hs.status = DIVERGED
                bailed = False
                break
            sample_delta(dk, out, Y + row * k, k, net.output, net.loss, dw)
            if p == 0:
                update_row(b1, dk, 1, 0, NULL, NULL, k, &hs.step)
            for j in range(c0, c1):
                wr = W1 + j * k
                dot = 0
                for i in range(k):
                    dot = dot + wr[i] * dk[i]
                d0[j] = dot * derivative(z[j], net.hidden)
                update_row(wr, dk, z[j], 0, NULL, NULL, k, &hs.step)
            for j in range(c0, c1):
                b0[j] = b0[j] - lr * d0[j]
                u[j] = d0[j]        # no L2 decay: u_t is delta_t itself
            if p == 0:
                prog.loss_sum += loss
                prog.weight_sum += 1
                prog.updates += 1
            if bailed:
                t_from = t + 1
                break
        if not bailed:
            break
        # Called off (another process holds a core: every barrier waits for a descheduled
        # thread): once every thread has finished sample t_from - 1, thread 0 runs the rest
        # of the block alone, on every hidden unit, with the same arithmetic.
        team_barrier()
        if p != 0:
            break
        q0, q1, c0, c1, mc = 0, n_chunks, 0, m, m
        sync = False
    if p == 0:
        hs.done = done
    # W_1 <- W_1(0) - lr X_blk^T U once every U row is complete, split by W_1's rows (rows
    # of the product again: as the unsplit gemm computes them).
    team_barrier()
    split_range(d, nt, team.align, p, &r0, &r1)
    if r1 > r0 and hs.done > 0:
        gemm(True, False, r1 - r0, m, hs.done, -lr, xb + r0, d, ub, m, 1, W0 + r0 * m, m)
    restore_fpenv(fpenv)


cdef inline int run_samples_hidden(const Net* net, floating* theta, const Data* data,
                                   const Buffers* buf, UpdateRule* rule, const Team* team,
                                   Progress* prog) noexcept nogil:
    """run_samples_blocked for one hidden layer without L2, split by hidden units.

    The same blocked form (see run_samples_blocked; all decay factors are 1, so
    W_1(t) = W_1(0) - lr sum_{i<t} x_i^T delta_i and u_i = delta_i), with the block's work
    cut by hidden units among the threads of one parallel region per block (hidden_block):
    one synchronisation per sample. The output layer's pre-activation is summed over fixed
    chunks of HIDDEN_CHUNK hidden units, P_0 + ... + P_{C-1} (P_0 includes b_2), on one
    thread as on many, so the weights do not depend on the thread count. Each block runs on
    one thread or on the team as the Tuner chooses (a barrier per sample makes a split block
    wait for a descheduled thread dozens of times on a busy machine).
    """
    cdef Py_ssize_t d = net.sizes[0], m = net.sizes[1], k = net.sizes[2]
    cdef Py_ssize_t start = prog.position, stop = min(prog.position + prog.budget, data.n)
    cdef HiddenSplit hs
    cdef int usable, threads
    cdef double t0 = 0
    cdef floating lr = <floating> rule.lr
    hs.n_chunks = (m + HIDDEN_CHUNK - 1) // HIDDEN_CHUNK
    hs.kpad = ((k + HIDDEN_PAD - 1) // HIDDEN_PAD) * HIDDEN_PAD
    hs.scratch = buf.grad   # the batch gradient buffer, unused by per-sample training
    hs.step = next_step(rule)   # SGD: no state to advance
    while start < stop:
        hs.kb = min(buf.gram_block, stop - start)
        hs.start = start
        hs.status = DONE
        hs.done = hs.kb
        hs.fpenv = get_fpenv()
        usable = hidden_threads(team, hs.kb, d, m)
        threads = tuner_pick(team.tuner, usable)
        if usable > 1:
            t0 = now_seconds()
        # A split block taking team.bail_factor times one thread's measured time is called
        # off and finished on one thread (see hidden_block): on a busy machine the tuner's tries
        # of the team then cost a few blocks' time instead of dozens.
        hs.deadline = 0
        hs.bail[0] = 0
        hs.bail[1] = 0
        if threads > 1 and team.tuner != NULL and team.tuner.rate[0] > 0 and team.bail_factor >= 0:
            hs.deadline = t0 + team.bail_factor * team.tuner.rate[0] * hs.kb
        if threads > 1:
            with parallel(num_threads=threads):
                hidden_block(net, theta, data, buf, team, lr, prog, &hs, threadid(),
                             team_size())
        else:
            hidden_block(net, theta, data, buf, team, lr, prog, &hs, 0, 1)
        if usable > 1 and hs.status == DONE:
            tuner_record(team.tuner, threads, usable, now_seconds() - t0, hs.kb)
        if hs.status != DONE:
            prog.position = start + hs.done
            return hs.status
        start += hs.kb
    prog.position = stop
    return DONE


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
    if buf.grad != NULL and hidden_split_fits(net, rule, net.b_off[net.n_layers - 1] + k):
        return run_samples_hidden(net, theta, data, buf, rule, team, prog)
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
