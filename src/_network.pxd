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

from _blas cimport sumsq

cdef extern from "_fpenv.h" nogil:
    # Subnormals flushed to zero while an epoch trains; see _fpenv.h. The flags are per
    # thread: every engine thread sets them for its share of the work and restores them.
    unsigned int flush_subnormals "mlpcore_flush_subnormals" ()
    void restore_fpenv "mlpcore_restore_fpenv" (unsigned int old)


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
    const void* X
    const void* Y
    const void* sw             # n sample weights, or NULL for unit weights
    const Py_ssize_t* order    # visiting order (n row indices), or NULL: rows in order
    Py_ssize_t n


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
    double loss_sum
    double weight_sum
    Py_ssize_t updates
    double eps          # the dtype's machine epsilon (clipping inside log)


cdef struct Team:
    # The threads of the engine's parallel passes (see _parallel.pxd).
    int n_threads       # at most this many OpenMP threads; BLAS runs single-threaded inside
    Py_ssize_t align    # row blocks start at multiples of this (see ROW_ALIGN in _engine.pyx)
    double min_macs     # multiply-adds a thread must get for a pass to be split
    int* blas_seen      # n_threads entries: BLAS threads seen inside the region, or NULL


cdef inline void gather_rows(floating* dst, const floating* src, const Py_ssize_t* rows,
                             Py_ssize_t n, Py_ssize_t width) noexcept nogil:
    """dst[i, :] = src[rows[i], :] for i < n (row-major, width columns)."""
    cdef Py_ssize_t i
    for i in range(n):
        memcpy(dst + i * width, src + rows[i] * width, width * sizeof(floating))


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
