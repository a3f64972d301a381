# Reading CSR rows: the entries of a row, the visiting order, and the first layer over the
# nonzeros, Z_1[i, :] = sum_{(j, v) in row i} v W_1[j, :] + b_1 (nnz(row) x M_1 operations).
# Shared by the dense engine's passes (_batch.pxd reads Data, which may hold CSR rows) and the
# sparse training paths (_sparse.pxd); see the top of _sparse.pxd for the rest.
from cython cimport floating
from libc.string cimport memset

from _activations cimport bias_activation
from _network cimport Net, Data

ctypedef fused csr_index:
    int
    Py_ssize_t

cdef extern from "_vsparse.h" nogil:
    # The rows of W_1 a batch selects are scattered over memory (a 50,000 x 128 W_1 is 51 MB),
    # so each is a run of cache misses: the kernels ask for row e + PREFETCH_AHEAD while
    # working on row e, so that several rows are in flight at once. LINE: bytes per cache line.
    enum: PREFETCH_AHEAD "MLPCORE_PREFETCH_AHEAD"
    enum: LINE "MLPCORE_LINE"
    # One cache line into cache, kept by the compiler (see _vsparse.h).
    void prefetch "mlpcore_prefetch" (const void* p)
    # The gather (a CSR row times W_1) and scatter (its step into W_1's rows) loops, built per
    # CPU level (AVX2/AVX-512 where available); see _vsparse.h.
    void gather_f64_i32 "mlpcore_gather_f64_i32" (double* z, const double* W, long m,
                                                  const int* idx, const double* val, long nnz)
    void gather_f64_i64 "mlpcore_gather_f64_i64" (double* z, const double* W, long m,
                                                  const Py_ssize_t* idx, const double* val,
                                                  long nnz)
    void gather_f32_i32 "mlpcore_gather_f32_i32" (float* z, const float* W, long m,
                                                  const int* idx, const float* val, long nnz)
    void gather_f32_i64 "mlpcore_gather_f32_i64" (float* z, const float* W, long m,
                                                  const Py_ssize_t* idx, const float* val,
                                                  long nnz)
    void scatter_f64_i32 "mlpcore_scatter_f64_i32" (double* G, const double* d, long m,
                                                    const int* idx, const double* val,
                                                    long nnz, double c)
    void scatter_f64_i64 "mlpcore_scatter_f64_i64" (double* G, const double* d, long m,
                                                    const Py_ssize_t* idx, const double* val,
                                                    long nnz, double c)
    void scatter_f32_i32 "mlpcore_scatter_f32_i32" (float* G, const float* d, long m,
                                                    const int* idx, const float* val,
                                                    long nnz, float c)
    void scatter_f32_i64 "mlpcore_scatter_f32_i64" (float* G, const float* d, long m,
                                                    const Py_ssize_t* idx, const float* val,
                                                    long nnz, float c)


cdef inline void csr_row(const Data* data, Py_ssize_t r, Py_ssize_t* lo,
                         Py_ssize_t* hi) noexcept nogil:
    """The entries of CSR row r: lo..hi into indices and values."""
    if data.index64:
        lo[0] = (<const Py_ssize_t*> data.indptr)[r]
        hi[0] = (<const Py_ssize_t*> data.indptr)[r + 1]
    else:
        lo[0] = (<const int*> data.indptr)[r]
        hi[0] = (<const int*> data.indptr)[r + 1]


cdef inline Py_ssize_t visited_row(const Data* data, Py_ssize_t position) noexcept nogil:
    return data.order[position] if data.order != NULL else position


cdef inline void prefetch_bytes(const char* p, Py_ssize_t size) noexcept nogil:
    """Ask for the ``size`` bytes at p to be brought into cache."""
    cdef Py_ssize_t b = 0
    while b < size:
        prefetch(p + b)
        b += LINE


cdef inline void prefetch_row(const floating* W, Py_ssize_t m, const csr_index* idx,
                              Py_ssize_t e, Py_ssize_t nnz) noexcept nogil:
    """Ask for row idx[e] of W (m columns) to be brought into cache, if e < nnz."""
    if e < nnz:
        prefetch_bytes(<const char*> (W + idx[e] * m), m * <Py_ssize_t> sizeof(floating))


cdef inline void prefetch_visit(const floating* y, Py_ssize_t k, const Data* data,
                                Py_ssize_t position) noexcept nogil:
    """Ask for the entries (indices and values) and the target row (y, k columns) of the CSR
    row at ``position`` of the visiting order, when there is one: the next batch's first row,
    requested while this batch trains, so that its gather starts on indices in cache."""
    cdef Py_ssize_t r, lo, hi
    cdef Py_ssize_t index_size = sizeof(Py_ssize_t) if data.index64 else sizeof(int)
    if position >= data.n:
        return
    r = visited_row(data, position)
    csr_row(data, r, &lo, &hi)
    prefetch_bytes(<const char*> data.indices + lo * index_size, (hi - lo) * index_size)
    prefetch_bytes(<const char*> ((<const floating*> data.X) + lo),
                   (hi - lo) * <Py_ssize_t> sizeof(floating))
    prefetch_bytes(<const char*> (y + r * k), k * <Py_ssize_t> sizeof(floating))


cdef inline void add_selected_rows(floating* z, const floating* W, Py_ssize_t m,
                                   const csr_index* idx, const floating* val,
                                   Py_ssize_t nnz) noexcept nogil:
    """z <- z + sum_e val[e] W[idx[e], :] (W row-major with m columns)."""
    if floating is double:
        if csr_index is int:
            gather_f64_i32(z, W, m, idx, val, nnz)
        else:
            gather_f64_i64(z, W, m, idx, val, nnz)
    else:
        if csr_index is int:
            gather_f32_i32(z, W, m, idx, val, nnz)
        else:
            gather_f32_i64(z, W, m, idx, val, nnz)


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
