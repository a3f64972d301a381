# The network as the kernels see it, and what every training path shares.
#
# A network with L layers maps X (n x D) through Z_l = A_{l-1} W_l + b_l, A_l = g_l(Z_l), with
# A_0 = X. All parameters live in one flat vector theta, layer by layer: W_1 (row-major,
# fan_in x fan_out), b_1, W_2, b_2, ..., so optimizers and L-BFGS see one array and the
# weight matrices the user sees are views into it.
#
# The kernels take a few structs instead of long argument lists: Net (the shape), Data (the
# training rows), Buffers (the work buffers of a Workspace), UpdateRule (in _updates.pxd: the
# rule's constants and state), Progress (where an epoch is and what it has summed) and Team
# (the threads). Structs cannot hold fused types, so their arrays are void* and each fused
# kernel casts them to its floating type.
from cython cimport floating
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from _blas cimport sumsq

cdef extern from "_fpenv.h" nogil:
    # Subnormals flushed to zero while an epoch trains; see _fpenv.h. The flags are per
    # thread: every engine thread sets them for its share of the work and restores them.
    unsigned int flush_subnormals "mlpcore_flush_subnormals" ()
    void restore_fpenv "mlpcore_restore_fpenv" (unsigned int old)
    unsigned int get_fpenv "mlpcore_get_fpenv" ()


# Status codes returned by train_epoch.
cdef enum EpochStatus:
    DONE = 0
    DIVERGED = 1
    INTERRUPTED = 2


cdef struct Net:
    Py_ssize_t n_layers
    Py_ssize_t* sizes   # n_layers + 1 widths: D, M_1, ..., K
    Py_ssize_t* w_off   # offset of W_l in theta
    Py_ssize_t* b_off   # offset of b_l in theta
    int hidden          # activation code of the hidden layers
    int output          # activation code of the output layer
    int loss            # loss code


cdef struct Data:
    # The training rows: X (n x D) and Y (n x K), row-major, of the kernel's floating type.
    const void* X              # dense: n x D; CSR (indptr != NULL): its nnz values
    const void* Y
    const void* sw             # n sample weights, or NULL for unit weights
    const Py_ssize_t* order    # visiting order (n row indices), or NULL: rows in order
    Py_ssize_t n
    const void* indptr         # CSR X: n + 1 row pointers, or NULL when X is dense
    const void* indices        # CSR X: column index of each value
    bint index64               # CSR index arrays are int64 (else int32)


cdef struct Buffers:
    # A Workspace's buffers (see _engine.Workspace), allocated once per fit.
    Py_ssize_t rows     # rows per forward/backward pass (the chunk)
    void** acts         # per layer: rows x M_l activations
    void** deltas       # per layer: rows x M_l deltas
    void* x_buf         # max(rows, gram_block) x D: gathered (shuffled) inputs
    void* y_buf         # rows x K: gathered targets
    void* sw_buf        # rows: gathered sample weights
    void* grad          # n_params: the batch gradient
    double* row_loss    # rows: w_i l_i of each row of a pass (summed in row order)
    Py_ssize_t gram_block
    void* gram_z        # gram_block x M_1: X_blk W_1 at the block's start
    void* gram_g        # gram_block x gram_block: X_blk X_blk^T
    void* gram_u        # gram_block x M_1: the scaled first-layer deltas


cdef struct Progress:
    # Where an epoch is (position in the visiting order) and what its batches have summed.
    Py_ssize_t position
    Py_ssize_t budget   # samples to process in this segment (then the GIL is taken briefly)
    double loss_sum     # sum over the applied batches of B_b J_b (B_b: the batch's rows)
    double weight_sum   # sum over the applied batches of B_b (loss_sum / weight_sum: the
                        # epoch's loss, the batch losses averaged by row count)
    Py_ssize_t updates
    double eps          # the dtype's machine epsilon (clipping inside log)
    bint by_weight      # normalise a batch by its total weight sum_i w_i (scikit-learn's
                        # rule; a batch of total weight 0 is skipped) instead of by its row
                        # count B (mlpcore's rule, for weights scaled to mean 1)


cdef struct Tuner:
    # Chooses, pass by pass, between one thread and the team, from the measured time per row
    # of each (see tuner_pick). On an idle machine the team wins and stays chosen; when another
    # process takes a core, a pass split across threads waits for the descheduled one at every
    # synchronisation, and one thread wins. The weights do not depend on the choice (the
    # passes are bit-identical for any thread count), so switching costs nothing in
    # reproducibility.
    double rate[2]      # EWMA of seconds per row: [0] one thread, [1] the team
    int count[2]        # passes measured with each
    int choice          # 0: one thread, 1: the team
    int explore_in      # passes until the option not chosen is tried again
    int backoff         # the next interval between such tries
    int burst           # passes left in the current try (the first is not measured)


cdef extern from "_blasctl.h" nogil:
    # The BLAS thread count (SciPy's OpenBLAS), -1 when it cannot be read; see _blasctl.h.
    int blas_get_threads "mlpcore_blas_get_threads" ()


cdef struct Team:
    # The threads of the engine's parallel passes (see _batch.pxd).
    int n_threads       # at most this many OpenMP threads; BLAS runs single-threaded inside
    Py_ssize_t align    # row blocks start at multiples of this (see ROW_ALIGN in _engine.pyx)
    double min_macs     # multiply-adds a thread must get for a pass to be split
    Py_ssize_t split_min_weights  # a W_l this small has its gradient formed by one thread
    int* blas_seen      # n_threads entries: BLAS threads seen inside the region, or NULL
    Tuner* tuner        # NULL: always split passes that are large enough
    double bail_factor  # a split per-sample block past this times one thread's measured
                        # time is finished on one thread (run_samples_hidden)


cdef inline void note_blas_threads(const Team* team, int p) noexcept nogil:
    """Record, for the tests, the BLAS thread count thread p sees inside a parallel region."""
    if team.blas_seen != NULL:
        team.blas_seen[p] = blas_get_threads()


# Tuner constants. The first TUNER_WARMUP passes with each option are not measured (thread
# start-up, cold caches), the next TUNER_FIRST are, and the fastest of them is the option's
# first rate (so that one pass descheduled at the start does not condemn an option). Then the
# option not chosen is tried for TUNER_BURST passes (the first of them, which wakes sleeping
# threads, not measured; the mean of the others replaces its rate) at intervals chosen so
# that the tries cost at most 1/TUNER_OVERHEAD_INV of the time: a try costs BURST (ratio - 1)
# passes' worth more than the chosen option, ratio being the measured slowdown of the other
# option, so the interval is TUNER_OVERHEAD_INV BURST (ratio - 1) passes (at least
# TUNER_MIN_INTERVAL). When a core is taken by another process, a pass on two threads can
# take 10-50x one thread's time: then it is tried only every few thousand passes.
DEF TUNER_WARMUP = 1
DEF TUNER_FIRST = 3
DEF TUNER_BURST = 3
DEF TUNER_MIN_INTERVAL = 8
DEF TUNER_OVERHEAD_INV = 100
DEF TUNER_EWMA = 0.25
# A team pass measured this many times slower than one thread while the team is first being
# measured ends its measurement at once: on a busy machine, where a split pass can take tens
# of times longer, the first measurements would otherwise cost more than they can save.
DEF TUNER_GIVE_UP = 3.0
# The team is chosen only while it measures faster than TUNER_MARGIN times one thread's rate:
# on a machine whose second core is mostly taken, split passes are sometimes fast and
# sometimes wait a whole time slice for a descheduled thread, and a close call is not worth
# those waits.
DEF TUNER_MARGIN = 0.85


cdef inline void tuner_reset(Tuner* tu) noexcept nogil:
    tu.rate[0] = 0
    tu.rate[1] = 0
    tu.count[0] = 0
    tu.count[1] = 0
    tu.choice = 1
    tu.explore_in = TUNER_MIN_INTERVAL
    tu.backoff = TUNER_MIN_INTERVAL
    tu.burst = 0


cdef inline int tuner_pick(Tuner* tu, int usable) noexcept nogil:
    """Threads for the next pass: 1 or ``usable`` (the most the pass can use)."""
    if tu == NULL or usable <= 1:
        return usable
    if tu.count[0] < TUNER_WARMUP + TUNER_FIRST:    # start with one thread, measure it,
        return 1
    if tu.count[1] < TUNER_WARMUP + TUNER_FIRST:    # then the team
        return usable
    if tu.burst == 0:
        tu.explore_in -= 1
        if tu.explore_in <= 0:
            tu.burst = TUNER_BURST
    if tu.burst > 0:
        return 1 if tu.choice == 1 else usable
    return usable if tu.choice == 1 else 1


cdef inline double now_seconds() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


cdef inline void tuner_record(Tuner* tu, int threads, int usable, double seconds,
                              Py_ssize_t rows) noexcept nogil:
    """Account a pass of ``rows`` rows that took ``seconds`` on ``threads`` threads."""
    cdef int k = 1 if threads > 1 else 0
    cdef bint trying = False
    cdef double r, ratio
    cdef int i
    if tu == NULL or usable <= 1 or rows <= 0:
        return
    r = seconds / rows
    tu.count[k] += 1
    if tu.count[k] <= TUNER_WARMUP:
        return
    if (k == 1 and tu.burst == 0 and tu.count[1] <= TUNER_WARMUP + TUNER_FIRST
            and tu.rate[0] > 0 and r > TUNER_GIVE_UP * tu.rate[0]):
        tu.count[1] = TUNER_WARMUP + TUNER_FIRST   # the team lost clearly: measured enough
    if tu.burst > 0:
        tu.burst -= 1
        if tu.burst == TUNER_BURST - 1:
            return                          # the first pass of a try: not measured
        trying = True
    if tu.rate[k] == 0:
        tu.rate[k] = r
    elif trying:
        # A try replaces the option's rate by the mean of the try's own passes: its old rate
        # is stale (measured at least TUNER_MIN_INTERVAL passes ago, perhaps while another
        # process held a core), and blending it in would take several tries, each hundreds
        # of passes apart, to notice that the option has become the faster one.
        i = TUNER_BURST - 1 - tu.burst     # measured passes of this try, this one included
        tu.rate[k] = r if i == 1 else tu.rate[k] + (r - tu.rate[k]) / i
    elif tu.count[k] <= TUNER_WARMUP + TUNER_FIRST:
        tu.rate[k] = min(tu.rate[k], r)
    else:
        tu.rate[k] = (1 - TUNER_EWMA) * tu.rate[k] + TUNER_EWMA * r
    if (tu.count[0] < TUNER_WARMUP + TUNER_FIRST
            or tu.count[1] < TUNER_WARMUP + TUNER_FIRST):
        return                              # still measuring both
    if trying and tu.burst > 0:
        return                              # in the middle of a try
    tu.choice = 1 if tu.rate[1] < TUNER_MARGIN * tu.rate[0] else 0
    if trying or tu.explore_in <= 0 or tu.backoff == TUNER_MIN_INTERVAL:
        # Schedule the next try of the other option from how much slower it measured.
        ratio = tu.rate[1 - tu.choice] / tu.rate[tu.choice]
        tu.backoff = <int> min(1e8, max(<double> TUNER_MIN_INTERVAL,
                                        TUNER_OVERHEAD_INV * TUNER_BURST * (ratio - 1)))
        tu.explore_in = tu.backoff


cdef inline void gather_rows(floating* dst, const floating* src, const Py_ssize_t* rows,
                             Py_ssize_t n, Py_ssize_t width) noexcept nogil:
    """dst[i, :] = src[rows[i], :] for i < n (row-major, width columns)."""
    cdef Py_ssize_t i
    for i in range(n):
        memcpy(dst + i * width, src + rows[i] * width, width * sizeof(floating))


cdef inline double batch_normaliser(const floating* sw, const Data* data, const Progress* prog,
                                    Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """n_b of the batch at positions start..stop of the visiting order: its row count, or
    (prog.by_weight) its total weight sum_i w_i; sw is data.sw in the kernel's type."""
    cdef Py_ssize_t i
    cdef double total = 0
    if sw == NULL or not prog.by_weight:
        return stop - start
    for i in range(start, stop):
        total += sw[data.order[i] if data.order != NULL else i]
    return total


cdef inline double l2_penalty(const Net* net, const floating* theta,
                              Py_ssize_t first_layer=0) noexcept nogil:
    """sum_l ||W_l||^2 over layers l >= first_layer (biases excluded), accumulated in double."""
    cdef Py_ssize_t l
    cdef double total = 0
    for l in range(first_layer, net.n_layers):
        total += sumsq(theta + net.w_off[l], <int> (net.b_off[l] - net.w_off[l]))
    return total


cdef inline void split_range(Py_ssize_t n, int parts, Py_ssize_t align, int p,
                             Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """Block p of n items cut into `parts` contiguous blocks starting at multiples of align.

    Every block but the last has ceil(n / parts) items rounded up to a multiple of align, so
    the last ones may be short or empty (lo == hi).
    """
    cdef Py_ssize_t size = (n + parts - 1) // parts
    size = ((size + align - 1) // align) * align
    lo[0] = min(n, p * size)
    hi[0] = min(n, lo[0] + size)
