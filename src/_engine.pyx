# The compiled training engine of mlpcore: what Python calls.
#
# Network (the shape of a network) and Workspace (its work buffers) are built once per fit;
# the functions below check every dtype, shape and contiguity once, then run the kernels of
# _batch.pxd and _per_sample.pxd on raw pointers without the GIL: a whole epoch per call.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite
from libc.stdlib cimport malloc, calloc, free
from cpython.exc cimport PyErr_CheckSignals
from cpython.pyport cimport PY_SSIZE_T_MAX
from scipy.linalg.cython_blas cimport dgemm

import os
import threading

import numpy as np

from _activations cimport IDENTITY, SIGMOID, TANH, RELU, SOFTMAX, EXP, sigmoid_rows
from _losses cimport MSE, CROSS_ENTROPY, POISSON, sample_loss
from _blas cimport gram_lower
from _updates cimport (SGD, MOMENTUM, NESTEROV, ADAM, UpdateRule, UpdateCoefficients,
                       next_step, update_row)
from _network cimport (Net, Data, Buffers, Progress, Team, Tuner, DONE, DIVERGED, INTERRUPTED,
                       l2_penalty, split_range, flush_subnormals, restore_fpenv, get_fpenv,
                       tuner_reset, blas_get_threads, note_blas_threads)
from _batch cimport (add_weight_decay, pass_gradient, pass_threads, rows_forward,
                     run_batches, row_forward, row_backprop)
from _per_sample cimport run_samples, run_samples_blocked, HIDDEN_CHUNK as _HIDDEN_CHUNK
from _csr cimport csr_index
from _sparse cimport (ScaledFirstLayer, LazyRows, sparse_chunk_gradient,
                      sparse_pass_threads, fold_scale, lazy_reset,
                      catch_up_all, run_sparse_batches)

cdef extern from "_blasctl.h" nogil:
    int blas_find "mlpcore_blas_find" (void* fn)
    void blas_set_threads "mlpcore_blas_set_threads" (int n)

cdef extern from "_vmath.h" nogil:
    double exp_nonpositive "mlpcore_exp_nonpositive" (double x)
    float expf_nonpositive "mlpcore_expf_nonpositive" (float x)

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int mlpcore_have_openmp(void) { return 1; }
    static int mlpcore_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int mlpcore_have_openmp(void) { return 0; }
    static int mlpcore_omp_max_threads(void) { return 1; }
    #endif
    """
    int have_openmp "mlpcore_have_openmp" ()

# Find the BLAS library cython_blas calls, to read and set its thread count (_blasctl.h).
BLAS_THREADS_CONTROLLABLE = bool(blas_find(<void*> dgemm))

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
# With one hidden layer and no L2 it is split by hidden units, in chunks of this many
# (run_samples_hidden in _per_sample.pxd): at most ceil(M_1 / HIDDEN_CHUNK) threads.
HIDDEN_CHUNK = _HIDDEN_CHUNK
# Samples processed between two checks for Ctrl-C (each check takes the GIL briefly).
SIGNAL_CHECK_SAMPLES = 4096

# Parallel passes (see _batch.pxd): row blocks start at multiples of ROW_ALIGN[dtype], a
# multiple of the gemm tile width of OpenBLAS's kernels (12 rows for Haswell/Zen sgemm, 2-8
# for dgemm), so every entry of a product is computed exactly as in the unsplit product and
# the weights do not depend on the thread count. A pass is split only among threads that each
# get PARALLEL_MIN_MACS multiply-adds (about 30-60 microseconds of gemm): below that, waking a
# thread costs more than it saves.
ROW_ALIGN = {np.dtype(np.float32): 12, np.dtype(np.float64): 8}
PARALLEL_MIN_MACS = 1 << 18
# The tuner keeps the team only while it measures faster than this times one thread.
TUNER_MARGIN_VALUE = 0.85  # TUNER_MARGIN in _network.pxd
# In the gradient phase a W_l with fewer weights than this is formed whole by one thread (a
# split would cost more than the work).
SPLIT_MIN_WEIGHTS = 4096
cdef double _min_macs = PARALLEL_MIN_MACS
# A split per-sample block past this times one thread's measured time is finished on one
# thread (as the tuner's TUNER_GIVE_UP); a test hook lowers it.
HIDDEN_BAIL = 3.0
cdef double _hidden_bail = HIDDEN_BAIL
cdef Py_ssize_t _split_min_weights = SPLIT_MIN_WEIGHTS
# Whether the engine was built with OpenMP; without it every pass runs on one thread.
OPENMP = bool(have_openmp())

EPOCH_DONE = DONE
EPOCH_DIVERGED = DIVERGED
EPOCH_INTERRUPTED = INTERRUPTED


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
    cdef Py_ssize_t n_params
    cdef readonly bint sparse   # made for CSR input: no gather buffer for X, no Gram buffers
    cdef void** acts
    cdef void** deltas
    cdef void* x_buf
    cdef void* y_buf
    cdef void* sw_buf
    cdef void* grad
    cdef Py_ssize_t* lazy_rows  # 3 x D (sparse workspaces, lazy momentum): see LazyRows
    cdef double* row_loss # rows: per-row losses of a parallel pass
    cdef Tuner tuner      # one thread or the team, pass by pass (see Tuner in _network.pxd)
    cdef readonly Py_ssize_t gram_block
    cdef void* gram_z     # gram_block x M_1: X_blk W_1 at the block's start
    cdef void* gram_g     # gram_block x gram_block: X_blk X_blk^T
    cdef void* gram_u     # gram_block x M_1: the scaled first-layer deltas

    def __cinit__(self, Network network not None, Py_ssize_t rows, dtype, bint sparse=False):
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
        large = sizes[0] * sizes[1] >= GRAM_MIN_WEIGHTS
        self.sparse = sparse
        self.n_params = network.n_params
        self.gram_block = GRAM_BLOCK if (rows == 1 and large and not sparse) else 0
        if self.gram_block:
            self.gram_z = _calloc(self.gram_block * sizes[1] * itemsize)
            self.gram_u = _calloc(self.gram_block * sizes[1] * itemsize)
            self.gram_g = _calloc(self.gram_block * self.gram_block * itemsize)
        # Sparse rows are read where they are (a dense gather of 4096 rows of a wide sparse
        # X could take gigabytes); their gradient buffer is allocated only when a rule needs
        # one (plain SGD steps straight into theta), see need_gradient.
        if not sparse:
            self.x_buf = _calloc(max(rows, self.gram_block) * sizes[0] * itemsize)
            self.grad = _calloc(network.n_params * itemsize)
        self.y_buf = _calloc(rows * sizes[n_layers] * itemsize)
        self.sw_buf = _calloc(rows * itemsize)
        self.row_loss = <double*> _calloc(rows * sizeof(double))
        tuner_reset(&self.tuner)

    cdef int need_gradient(self) except -1:
        """Allocate the gradient buffer if it is not there yet (sparse workspaces)."""
        if self.grad == NULL:
            self.grad = _calloc(self.n_params * self.dtype.itemsize)
        return 0

    cdef int need_lazy_rows(self) except -1:
        """Allocate the row bookkeeping of lazy momentum (LazyRows) if not there yet."""
        if self.lazy_rows == NULL:
            self.lazy_rows = <Py_ssize_t*> _calloc(3 * self.sizes[0] * sizeof(Py_ssize_t))
        return 0

    cdef Buffers buffers(self):
        cdef Buffers b
        b.rows = self.rows
        b.acts = self.acts
        b.deltas = self.deltas
        b.x_buf = self.x_buf
        b.y_buf = self.y_buf
        b.sw_buf = self.sw_buf
        b.grad = self.grad
        b.row_loss = self.row_loss
        b.gram_block = self.gram_block
        b.gram_z = self.gram_z
        b.gram_g = self.gram_g
        b.gram_u = self.gram_u
        return b

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
        free(self.lazy_rows)
        free(self.row_loss)
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
# Threads: how many the engine may use, per Python thread (set by mlpcore._threads).
# ---------------------------------------------------------------------------------------------

_thread_state = threading.local()
# Most engine threads a pass can use: team buffers are sized for it.
MAX_THREADS = 256


def set_num_threads(n_threads):
    """Let the engine's passes, called from this Python thread, use up to n_threads threads.

    All of the engine's parallelism: its OpenMP threads each call single-threaded BLAS. The
    default (never set) is 1. mlpcore._threads.blas_threads sets it around every fit.
    """
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)):
        raise TypeError(f"n_threads must be an int, got {type(n_threads).__name__}")
    if not 1 <= n_threads <= MAX_THREADS:
        raise ValueError(f"n_threads must be between 1 and {MAX_THREADS}, got {n_threads}")
    _thread_state.n = int(n_threads) if OPENMP else 1


def get_num_threads():
    """The thread count set by set_num_threads in this Python thread (1 if never set)."""
    return getattr(_thread_state, "n", 1)


def blas_num_threads():
    """The thread count of the BLAS the engine calls, as the engine reads it (-1: unknown)."""
    return blas_get_threads()


# Test hook: when a list, each parallel segment records the BLAS thread count each engine
# thread saw inside the parallel region (see last_region_blas_threads).
cdef int _blas_seen[256]  # MAX_THREADS
cdef bint _record_blas = False
cdef int _recorded_threads = 0


def _record_region_blas_threads(bint on):
    """Test hook: record the BLAS thread count seen inside each parallel region."""
    global _record_blas, _recorded_threads
    _record_blas = on
    _recorded_threads = 0


def last_region_blas_threads():
    """Test hook: [BLAS threads seen by engine thread p] in the last parallel region run
    while recording was on (empty if none ran)."""
    return [_blas_seen[p] for p in range(_recorded_threads) if _blas_seen[p] != 0]


# Whether passes choose between one thread and the team by their measured speed (Tuner); a
# test hook turns it off to force the team.
cdef bint _tuning = True


def _set_tuning(bint on):
    """Test hook: False makes every large enough pass use the whole team."""
    global _tuning
    _tuning = on


def _set_parallel_limits(min_macs=PARALLEL_MIN_MACS, split_min_weights=SPLIT_MIN_WEIGHTS):
    """Test hook: the work below which passes and gradients are not split (the defaults
    restore the built-in values); small limits let tests run tiny networks in parallel."""
    global _min_macs, _split_min_weights
    if min_macs < 0 or split_min_weights < 0:
        raise ValueError("the limits must be non-negative")
    _min_macs = min_macs
    _split_min_weights = split_min_weights


def _set_hidden_bail(double factor=HIDDEN_BAIL):
    """Test hook: split per-sample blocks are called off past factor times one thread's
    measured time (0: at their first sample; negative: never)."""
    global _hidden_bail
    _hidden_bail = factor


def _tuner_state(Workspace workspace not None):
    """Diagnostics: the workspace's tuner (seconds per row of each option, passes, choice)."""
    cdef Tuner* tu = &workspace.tuner
    return dict(rate_one=tu.rate[0], rate_team=tu.rate[1], passes_one=tu.count[0],
                passes_team=tu.count[1], choice="team" if tu.choice else "one",
                backoff=tu.backoff, margin=TUNER_MARGIN_VALUE, trying=tu.burst > 0)


cdef Team _team(floating dummy, Py_ssize_t rows, Workspace workspace=None):
    """The team for passes of up to ``rows`` rows, from this Python thread's setting."""
    global _recorded_threads
    cdef Team team
    team.tuner = &workspace.tuner if (workspace is not None and _tuning) else NULL
    team.n_threads = get_num_threads()
    team.align = 12 if floating is float else 8
    team.min_macs = _min_macs
    team.split_min_weights = _split_min_weights
    team.bail_factor = _hidden_bail
    team.blas_seen = NULL
    if _record_blas:
        for p in range(team.n_threads):
            _blas_seen[p] = 0
        team.blas_seen = _blas_seen if team.n_threads > 1 else NULL
        _recorded_threads = team.n_threads if team.n_threads > 1 else 0
    return team


cdef inline int _blas_single_begin(const Team* team) noexcept nogil:
    """Before a parallel segment: BLAS to one thread if it has more; returns the old count
    to restore (0: nothing to restore)."""
    cdef int old
    if team.n_threads < 2:
        return 0
    old = blas_get_threads()
    if old > 1:
        blas_set_threads(1)
        return old
    return 0


cdef inline void _blas_single_end(int old) noexcept nogil:
    if old > 0:
        blas_set_threads(old)


# ---------------------------------------------------------------------------------------------
# Python-facing functions: check every shape once, then run the kernels without the GIL.
# ---------------------------------------------------------------------------------------------

cdef inline double _machine_eps(floating dummy) noexcept nogil:
    if floating is float:
        return 1.1920928955078125e-07
    else:
        return 2.220446049250313e-16


cdef Py_ssize_t _csr_problem(const csr_index* indptr, const csr_index* indices,
                             Py_ssize_t n, Py_ssize_t d, Py_ssize_t nnz) noexcept nogil:
    """-1 if the CSR structure is sound (row pointers from 0, non-decreasing, within the
    nnz entries; every column index in 0..d-1); else the first row at fault."""
    cdef Py_ssize_t i, e
    if indptr[0] != 0 or indptr[n] > nnz:
        return 0
    for i in range(n):
        if indptr[i + 1] < indptr[i]:
            return i
        for e in range(indptr[i], indptr[i + 1]):
            if indices[e] < 0 or indices[e] >= d:
                return i
    return -1


cdef Py_ssize_t _point_at_csr(Data* data, const csr_index[::1] indptr,
                              const csr_index[::1] indices, Py_ssize_t n, Py_ssize_t d,
                              Py_ssize_t nnz) except -2:
    """Point ``data`` at a CSR matrix's row pointers and column indices (int32 or intp) once
    their lengths are checked; returns _csr_problem's verdict on the structure."""
    cdef Py_ssize_t bad
    if indptr.shape[0] != n + 1 or indices.shape[0] < nnz:
        raise ValueError("X is not a valid CSR matrix: indptr must have n_rows + 1 entries "
                         "and indices one per value")
    with nogil:
        bad = _csr_problem(&indptr[0], &indices[0] if nnz > 0 else NULL, n, d, nnz)
    data.indptr = &indptr[0]
    data.indices = &indices[0] if nnz > 0 else NULL
    data.index64 = csr_index is Py_ssize_t
    return bad


def is_sparse_rows(X):
    """Whether X is taken as sparse rows: a scipy.sparse CSR matrix or array."""
    return getattr(X, "format", None) == "csr" and hasattr(X, "indptr")


cdef object _point_at_rows(Data* data, object X, floating dummy):
    """Point ``data`` at the rows of X, a C-contiguous 2-D ndarray or a scipy CSR matrix of
    the kernel's dtype (its structure checked here: a bad index would read outside W_1).
    Returns what must stay alive while the kernels read X."""
    cdef const floating[:, ::1] dense
    cdef const floating[::1] values
    cdef const int[::1] ptr32, idx32
    cdef const Py_ssize_t[::1] ptr64, idx64
    cdef Py_ssize_t n, d, nnz, bad
    data.Y = NULL
    data.sw = NULL
    data.order = NULL
    data.indptr = NULL
    data.indices = NULL
    data.index64 = False
    if not is_sparse_rows(X):
        dense = X
        data.X = &dense[0, 0] if dense.shape[0] > 0 and dense.shape[1] > 0 else NULL
        data.n = dense.shape[0]
        return X
    expected = np.dtype(np.float32 if floating is float else np.float64)
    if X.dtype != expected:
        raise ValueError(f"X has dtype {X.dtype}, the parameters {expected}")
    n, d = X.shape
    values_array = np.ascontiguousarray(X.data)
    values = values_array
    nnz = values.shape[0]
    if X.indptr.dtype == np.int32 and X.indices.dtype == np.int32:
        keep = (values_array, X.indptr, X.indices)
        ptr32 = X.indptr
        idx32 = X.indices
        bad = _point_at_csr(data, ptr32, idx32, n, d, nnz)
    else:
        keep = (values_array, np.ascontiguousarray(X.indptr, dtype=np.intp),
                np.ascontiguousarray(X.indices, dtype=np.intp))
        ptr64 = keep[1]
        idx64 = keep[2]
        bad = _point_at_csr(data, ptr64, idx64, n, d, nnz)
    if bad >= 0:
        raise ValueError(f"X is not a valid CSR matrix (row {bad}: row pointers must start "
                         f"at 0 and not decrease, column indices must lie in 0..{d - 1})")
    data.X = &values[0] if nnz > 0 else NULL
    data.n = n
    return keep


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


def forward(Network network not None, const floating[::1] theta not None, X not None,
            floating[:, ::1] out not None):
    """Output activations a_L of the network for every row of X, written into ``out``.

    Parameters
    ----------
    network : Network
    theta : ndarray of shape (n_params,)
        Flat parameters.
    X : ndarray of shape (n, D), C-contiguous, or scipy.sparse CSR matrix; theta's dtype.
    out : ndarray of shape (n, K), C-contiguous, same dtype; receives a_L.

    Notes
    -----
    Thread-safe: the hidden activations live in buffers private to this call (CHUNK_ROWS
    rows at a time), and the GIL is released while they are computed.
    """
    cdef const Net* net = &network.net
    cdef Py_ssize_t n = X.shape[0], rows, start, nc, l, L = network.net.n_layers
    cdef Py_ssize_t k = network.net.sizes[L], d = network.net.sizes[0]
    cdef floating** acts
    cdef floating dummy = 0
    cdef Team team
    cdef int t, p, blas_old
    cdef unsigned int fpenv
    cdef Data data
    _check_shapes(network, theta.shape[0], X.shape[0], X.shape[1], -1, -1, -1)
    keep = _point_at_rows(&data, X, dummy)
    cdef const floating* x = <const floating*> data.X
    if out.shape[0] != n or out.shape[1] != k:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({n}, {k})")
    if n == 0:
        return
    rows = min(n, CHUNK_ROWS)
    team = _team(dummy, rows)
    # A forward pass costs a third of a training pass: split it when each thread gets the
    # same work as in training.
    team.min_macs = 3 * team.min_macs
    acts = <floating**> _calloc(L * sizeof(floating*))
    try:
        for l in range(L - 1):
            acts[l] = <floating*> _calloc(rows * net.sizes[l + 1] * sizeof(floating))
        with nogil:
            blas_old = _blas_single_begin(&team)
            start = 0
            while start < n:
                nc = min(rows, n - start)
                acts[L - 1] = &out[start, 0]  # the last layer writes straight into out
                if data.indptr != NULL:
                    t = sparse_pass_threads(net, &team, &data, start, nc)
                else:
                    t = pass_threads(net, &team, nc)
                if t == 1:
                    rows_forward(net, &theta[0], &data, x + start * d if data.indptr == NULL else NULL,
                                 start, 0, nc, acts, 1, True)
                else:
                    fpenv = get_fpenv()
                    for p in prange(t, num_threads=t, schedule='static', chunksize=1):
                        _forward_block(net, &theta[0], &data, start, nc, acts, &team, t, p,
                                       fpenv)
                start += nc
            _blas_single_end(blas_old)
    finally:
        for l in range(L - 1):
            free(acts[l])
        free(acts)


cdef inline void _forward_block(const Net* net, const floating* theta, const Data* data,
                                Py_ssize_t start, Py_ssize_t n, floating** acts,
                                const Team* team, int t, int p,
                                unsigned int caller_fpenv) noexcept nogil:
    """Thread p's block of the n rows from ``start`` of a forward pass split among t
    threads (dense or CSR rows)."""
    cdef Py_ssize_t lo, hi
    cdef const floating* x = <const floating*> data.X
    cdef unsigned int fpenv
    note_blas_threads(team, p)
    split_range(n, t, team.align, p, &lo, &hi)
    if hi > lo:
        fpenv = get_fpenv()
        restore_fpenv(caller_fpenv)  # the caller's floating-point mode
        rows_forward(net, theta, data, x + start * net.sizes[0] if data.indptr == NULL else NULL,
                     start, lo, hi - lo, acts, 1, False)
        restore_fpenv(fpenv)


def loss_gradient(Network network not None, const floating[::1] theta not None, X not None,
                  const floating[:, ::1] Y not None, const floating[::1] sample_weight,
                  double alpha, floating[::1] grad not None, Workspace workspace=None):
    """Loss J and its gradient over all rows of (X, Y), at parameters theta.

    J = sum_i w_i l_i / sum_i w_i + alpha/2 * sum_l ||W_l||^2 / sum_i w_i, with w_i = 1 when
    ``sample_weight`` is None; ``grad`` (laid out like theta) receives dJ/dtheta. The rows are
    processed CHUNK_ROWS at a time and their gradients summed, so memory stays bounded.

    This is the full batch of train_epoch under either rule: with weights of mean 1,
    sum_i w_i = N and J is the 'rows' J_b of the whole set; it is the 'weights' J_b as it
    stands (weights of any sign with a nonzero sum, as scikit-learn takes them).

    Returns
    -------
    loss : float
    """
    cdef const Net* net = &network.net
    cdef Py_ssize_t n = X.shape[0], start, nc, rows
    cdef double total = 0, w_total
    cdef floating dummy = 0
    cdef double eps = _machine_eps(dummy)
    cdef bint weighted = sample_weight is not None
    _check_shapes(network, theta.shape[0], X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                  -1 if sample_weight is None else sample_weight.shape[0])
    if grad.shape[0] != network.n_params:
        raise ValueError(f"grad has {grad.shape[0]} entries, the network {network.n_params}")
    w_total = n if sample_weight is None else float(np.sum(sample_weight, dtype=np.float64))
    if n == 0 or w_total == 0 or not isfinite(w_total):
        raise ValueError("the loss needs sample weights with a finite, nonzero sum")
    rows = min(n, CHUNK_ROWS)
    cdef Data data
    keep = _point_at_rows(&data, X, dummy)
    cdef bint sparse = data.indptr != NULL
    if workspace is None:
        workspace = Workspace(network, rows, np.float32 if floating is float else np.float64,
                              sparse)
    elif (workspace.rows < rows or workspace.dtype.itemsize != sizeof(floating)
          or workspace.sizes != network.sizes or (workspace.sparse and not sparse)):
        raise ValueError("workspace is too small, has the wrong dtype, another network's "
                         "layer sizes, or was made for sparse input")
    cdef Buffers buf = workspace.buffers()
    cdef Team team = _team(dummy, rows, workspace)
    cdef int blas_old
    cdef double w_c
    data.Y = &Y[0, 0]
    data.sw = &sample_weight[0] if weighted else NULL
    data.order = NULL
    with nogil:
        blas_old = _blas_single_begin(&team)
        start = 0
        while start < n:
            nc = min(rows, n - start)
            if sparse:
                total += sparse_chunk_gradient(
                    net, &theta[0], &data, &Y[start, 0],
                    &sample_weight[start] if weighted else NULL, start, nc,
                    <floating**> buf.acts, <floating**> buf.deltas, &grad[0],
                    <floating> (1 / w_total), start > 0, eps, &w_c)
            else:
                total += pass_gradient(net, &theta[0], &data, &buf, &team, start, nc, &grad[0],
                                       <floating> (1 / w_total), start > 0, eps)
            start += nc
        _blas_single_end(blas_old)
        add_weight_decay(net, &grad[0], &theta[0], <floating> (alpha / w_total))
        total = (total + 0.5 * alpha * l2_penalty(net, &theta[0])) / w_total
    return total


def evaluate(Network network not None, const floating[::1] theta not None, X not None,
             const floating[:, ::1] Y not None, const floating[::1] sample_weight, double alpha,
             floating[:, ::1] out not None):
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
    if n == 0 or w_total == 0 or not isfinite(w_total):
        raise ValueError("the loss needs sample weights with a finite, nonzero sum")
    forward(network, theta, X, out)
    with nogil:
        for i in range(n):
            w = sample_weight[i] if weighted else 1
            if w != 0:
                total += w * sample_loss(&out[i, 0], &Y[i, 0], k, net.output, net.loss, eps)
        total = (total + 0.5 * alpha * l2_penalty(net, &theta[0])) / w_total
    return total


def penalty(Network network not None, const floating[::1] theta not None):
    """sum_l ||W_l||^2 over the weight matrices (biases excluded)."""
    if theta.shape[0] != network.n_params:
        raise ValueError(f"theta has {theta.shape[0]} entries, the network {network.n_params}")
    return l2_penalty(&network.net, &theta[0])


def train_epoch(Network network not None, Workspace workspace not None, floating[::1] theta not None,
                X not None, const floating[:, ::1] Y not None,
                const floating[::1] sample_weight, const Py_ssize_t[::1] order,
                Py_ssize_t batch_size, str rule, double learning_rate, double alpha=0.0,
                double momentum=0.0, double beta1=0.9, double beta2=0.999,
                double epsilon=1e-8, floating[::1] state1=None, floating[::1] state2=None,
                long long t=0, double[::1] penalty_out=None, str normalize="rows"):
    """Train for one epoch in place: every batch is forward, backprop, update, without the GIL.

    While the compiled segments run, subnormal numbers count as zero (x86-64 FTZ/DAZ, see
    _fpenv.h); the caller's floating-point flags are restored before Python runs again.

    Passes run on up to ``get_num_threads()`` engine threads (set_num_threads; the Python
    layer sets it around every fit), each calling single-threaded BLAS: with more than one,
    BLAS is held at one thread for the epoch's segments and restored after. The weights and
    the returned sums do not depend on the thread count (see _batch.pxd), provided BLAS runs
    single-threaded on one thread too (OpenBLAS's own threads split a product differently,
    which can change float32 results in the last bit).

    Parameters
    ----------
    network, workspace : Network, Workspace
        The workspace must have min(batch_size, CHUNK_ROWS) rows and theta's dtype.
    theta : ndarray of shape (n_params,)
        Parameters, updated in place.
    X, Y : arrays of shapes (N, D) and (N, K)
        Inputs and targets (one-hot rows for classification). X is a C-contiguous ndarray
        or a scipy.sparse CSR matrix (trained at the cost of its nonzeros, see _sparse.pxd).
    sample_weight : ndarray of shape (N,) or None
        Per-sample weights w_i (None: all 1). With ``normalize="rows"`` they are expected
        scaled to mean 1 over the training set (the Python layer does it).
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
    normalize : {'rows', 'weights'}
        What a batch's loss is divided by. 'rows' (mlpcore's rule): its row count B,
        J_b = (sum_i w_i l_i + alpha/2 sum_l ||W_l||^2) / B, so a step scales with the
        weights (at batch size 1, with w_i) and, for weights of mean 1, a full batch gives
        sum_i w_i l_i / sum_i w_i; every batch is applied. 'weights' (scikit-learn's rule,
        for mlpcore.sklearn): its total weight sum_i w_i, of any sign; a batch of total
        weight 0 is skipped. Without weights the two are the same, bit for bit.

    Returns
    -------
    loss_sum : float
        sum over the applied batches of B_b J_b, each J_b at the batch's starting
        parameters; loss_sum / weight_sum is the epoch's loss (the batch losses averaged by
        batch length, as scikit-learn's ``loss_``).
    weight_sum : float
        sum_b B_b: the rows of the applied batches (N for a complete epoch with 'rows').
    updates : int
        Number of updates applied.
    status : int
        EPOCH_DONE; EPOCH_DIVERGED if a batch's loss was not finite (it was not applied);
        EPOCH_INTERRUPTED on Ctrl-C (training stopped after a complete batch).
    """
    cdef UpdateRule r
    cdef Py_ssize_t n = X.shape[0], i, n_params = network.n_params
    cdef Py_ssize_t chunk = min(batch_size, CHUNK_ROWS)
    cdef int status
    cdef floating dummy = 0
    cdef Data data
    cdef Buffers buf
    cdef Progress prog
    cdef Team team
    cdef int blas_old
    _check_shapes(network, theta.shape[0], X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                  -1 if sample_weight is None else sample_weight.shape[0])
    if penalty_out is not None and penalty_out.shape[0] < 1:
        raise ValueError("penalty_out must have room for one value, got an empty array")
    if rule not in UPDATE_RULES:
        raise ValueError(f"unknown update rule {rule!r}; valid: {sorted(UPDATE_RULES)}")
    if normalize not in ("rows", "weights"):
        raise ValueError(f"normalize must be 'rows' or 'weights', got {normalize!r}")
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
    r.s1 = NULL
    r.s2 = NULL
    if r.kind != SGD:
        if state1 is None or state1.shape[0] != n_params:
            raise ValueError(f"rule {rule!r} needs state1 of shape ({n_params},)")
        r.s1 = &state1[0]
    if r.kind == ADAM:
        if state2 is None or state2.shape[0] != n_params:
            raise ValueError(f"rule {rule!r} needs state2 of shape ({n_params},)")
        r.s2 = &state2[0]
    keep = _point_at_rows(&data, X, dummy)
    cdef bint sparse = data.indptr != NULL
    if workspace.sparse and not sparse:
        raise ValueError("workspace was made for sparse input; X is dense")
    if sparse and (r.kind != SGD or batch_size > chunk):
        workspace.need_gradient()  # the rule is applied to a gradient buffer
    data.Y = &Y[0, 0]
    data.sw = &sample_weight[0] if sample_weight is not None else NULL
    data.order = NULL
    if order is not None:
        if order.shape[0] != n:
            raise ValueError(f"order has {order.shape[0]} entries, X {n} rows")
        for i in range(n):  # an index out of range would read outside X: refuse it here
            if order[i] < 0 or order[i] >= n:
                raise ValueError(f"order[{i}] = {order[i]} is not a row of X")
        data.order = &order[0]
    buf = workspace.buffers()
    buf.rows = chunk  # passes of at most one chunk (the workspace may hold more rows)
    prog.position = 0
    prog.budget = SIGNAL_CHECK_SAMPLES
    prog.loss_sum = 0
    prog.weight_sum = 0
    prog.updates = 0
    prog.eps = _machine_eps(dummy)
    prog.by_weight = normalize == "weights"
    team = _team(dummy, chunk, workspace)
    # Blocked per-sample SGD needs every decay factor 1 - lr alpha / n_i well above 0 (n_i:
    # 1, or w_i when normalised by weight).
    cdef double min_weight = 1.0
    if prog.by_weight and sample_weight is not None and alpha != 0:
        size = np.abs(np.asarray(sample_weight))
        nonzero = size[size > 0]
        min_weight = float(nonzero.min()) if nonzero.size else 1.0
    cdef bint blocked = (batch_size == 1 and r.kind == SGD and workspace.gram_block > 0
                         and learning_rate * alpha / min_weight < 0.5 and not sparse)
    # Plain SGD with L2 on sparse rows keeps W_1 as a scale factor times theta's W_1 block
    # during the epoch (see _sparse.pxd), folded back before returning.
    cdef ScaledFirstLayer scaled
    scaled.scale = 1
    scaled.track = sparse and r.kind == SGD and alpha != 0
    scaled.v_sumsq = 0
    if scaled.track:
        fold_scale(&network.net, &theta[0], &scaled)
    # Momentum and Nesterov without L2 on sparse rows step only the rows of W_1 a batch
    # selects, catching the others up in closed form (see _sparse.pxd).
    cdef LazyRows lazy
    lazy.active = sparse and (r.kind == MOMENTUM or r.kind == NESTEROV) and alpha == 0
    if lazy.active:
        workspace.need_lazy_rows()
        lazy.current = workspace.lazy_rows
        lazy.mark = workspace.lazy_rows + network.net.sizes[0]
        lazy.rows = workspace.lazy_rows + 2 * network.net.sizes[0]
        lazy_reset(&lazy, network.net.sizes[0])
    cdef unsigned int fpenv
    status = DONE
    while prog.position < n and status == DONE:
        with nogil:
            fpenv = flush_subnormals()
            blas_old = _blas_single_begin(&team)
            if sparse:
                status = run_sparse_batches(&network.net, &theta[0], &data, &buf, &r,
                                            batch_size, n_params, &prog, &scaled, &lazy,
                                            &team)
            elif blocked:
                status = run_samples_blocked(&network.net, &theta[0], &data, &buf, &r, &team,
                                             &prog)
            elif batch_size == 1:
                status = run_samples(&network.net, &theta[0], &data, &buf, &r, &prog)
            else:
                status = run_batches(&network.net, &theta[0], &data, &buf, &r, &team,
                                     batch_size, n_params, &prog)
            _blas_single_end(blas_old)
            restore_fpenv(fpenv)
        # Between segments the GIL is held: a Ctrl-C stops training after the current batch,
        # with parameters, optimizer state and the counts above all consistent.
        try:
            PyErr_CheckSignals()
        except KeyboardInterrupt:
            status = INTERRUPTED
    fold_scale(&network.net, &theta[0], &scaled)  # theta holds W_1 itself again
    catch_up_all(&network.net, &theta[0], &r, &lazy)  # every row of W_1 current again
    if penalty_out is not None:
        penalty_out[0] = r.penalty_sum  # its length was checked before training
    return prog.loss_sum, prog.weight_sum, prog.updates, status


# ---------------------------------------------------------------------------------------------
# Test hooks for the vector kernels, so their accuracy claims are tested directly.
# ---------------------------------------------------------------------------------------------

cpdef void _sigmoid_rows(floating[:, ::1] z, const floating[::1] b=None):
    """z[i, j] <- sigmoid(z[i, j] + b[j]) in place (b None: no bias): the kernel of _vmath.h."""
    if b is not None and b.shape[0] != z.shape[1]:
        raise ValueError(f"b has {b.shape[0]} entries, z {z.shape[1]} columns")
    if z.shape[0] == 0 or z.shape[1] == 0:
        return
    with nogil:
        sigmoid_rows(&z[0, 0], &b[0] if b is not None else NULL, z.shape[0], z.shape[1])


cpdef void _exp_nonpositive(floating[::1] x):
    """x <- exp(x) in place for x <= 0: the polynomial exp of _vmath.h (2 ulp claimed)."""
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        if not x[i] <= 0:
            raise ValueError(f"x[{i}] = {x[i]} is not <= 0")
    with nogil:
        for i in range(x.shape[0]):
            if floating is float:
                x[i] = expf_nonpositive(x[i])
            else:
                x[i] = exp_nonpositive(x[i])


cpdef void _gram_block(const floating[:, ::1] a, floating[:, ::1] out):
    """out[i, j] = <a_i, a_j> for j <= i (the Gram block of blocked per-sample SGD); the
    strict upper triangle of out is left as it was."""
    cdef int n = a.shape[0], k = a.shape[1]
    if out.shape[0] != n or out.shape[1] != n:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({n}, {n})")
    if n == 0 or k == 0:
        raise ValueError("the Gram block needs at least one row and one column")
    with nogil:
        gram_lower(n, k, &a[0, 0], k, &out[0, 0], n)


cpdef void _row_forward(floating[::1] z, const floating[:, ::1] W, const floating[::1] a):
    """z[j] += sum_i a[i] W[i, j] (summed over i in order): the one-row forward of _vrow.h."""
    if W.shape[0] != a.shape[0] or W.shape[1] != z.shape[0]:
        raise ValueError(f"W has shape ({W.shape[0]}, {W.shape[1]}), expected "
                         f"({a.shape[0]}, {z.shape[0]})")
    if W.shape[0] == 0 or W.shape[1] == 0:
        return
    with nogil:
        row_forward(&z[0], &W[0, 0], &a[0], W.shape[0], W.shape[1])


cpdef void _row_backprop(floating[:, ::1] W, const floating[::1] a, const floating[::1] d,
                         floating[::1] d_prev, floating[:, ::1] out, floating scale,
                         floating beta):
    """d_prev[i] = <W[i, :], d> (d_prev None: not formed) and out[i, :] = scale a[i] d +
    beta out[i, :] (out may be W): the one-row backprop of _vrow.h."""
    cdef Py_ssize_t fan_in = W.shape[0], fan_out = W.shape[1]
    if (a.shape[0] != fan_in or d.shape[0] != fan_out
            or (d_prev is not None and d_prev.shape[0] != fan_in)
            or out.shape[0] != fan_in or out.shape[1] != fan_out):
        raise ValueError(f"shapes do not match W's ({fan_in}, {fan_out})")
    if fan_in == 0 or fan_out == 0:
        return
    with nogil:
        row_backprop(&W[0, 0], &a[0], &d[0], &d_prev[0] if d_prev is not None else NULL,
                     fan_in, fan_out, &out[0, 0], scale, beta)


def _update_floor(Network network not None, floating[::1] theta not None, floating[::1] state1,
                  floating[::1] state2, str rule, Py_ssize_t steps, double learning_rate=1e-3,
                  double beta1=0.9, double beta2=0.999, double epsilon=1e-8):
    """Benchmark hook: only the per-sample update's arithmetic, ``steps`` times.

    Each step updates every weight row and bias of theta (and the rule's state) with the
    kernels per-sample training uses (update_row: the rank-1 gradient a_i d formed on the
    fly, a fixed here), with no forward pass and no backpropagation: the floor that the
    divide unit and memory set for per-sample Adam or momentum.
    """
    cdef const Net* net = &network.net
    cdef UpdateRule r
    cdef UpdateCoefficients c
    cdef Py_ssize_t step, l, i, fan_in, fan_out, off, width = max(network.sizes)
    cdef floating* s1
    cdef floating* s2
    if rule not in UPDATE_RULES or rule == "sgd":
        raise ValueError(f"rule must be one of 'momentum', 'nesterov', 'adam', got {rule!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    n = network.n_params
    if theta.shape[0] != n or state1.shape[0] != n or state2.shape[0] != n:
        raise ValueError(f"theta, state1 and state2 must have {n} entries")
    d_np = np.full(width, 1e-3, dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] d = d_np
    r.kind = UPDATE_RULES[rule]
    r.lr = learning_rate
    r.momentum = 0.9
    r.beta1 = beta1
    r.beta2 = beta2
    r.epsilon = epsilon
    r.t = 0
    s1 = &state1[0]
    s2 = &state2[0]
    with nogil:
        for step in range(steps):
            c = next_step(&r)
            for l in range(net.n_layers):
                fan_in = net.sizes[l]
                fan_out = net.sizes[l + 1]
                off = net.b_off[l]
                update_row(&theta[off], &d[0], 1, 0, s1 + off, s2 + off, fan_out, &c)
                for i in range(fan_in):
                    off = net.w_off[l] + i * fan_out
                    update_row(&theta[off], &d[0], <floating> 0.5, 0, s1 + off, s2 + off,
                               fan_out, &c)
