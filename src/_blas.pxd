# Row-major BLAS for the engine, over scipy.linalg.cython_blas (SciPy's own BLAS, no link step).
#
# Fortran BLAS is column-major. A C-contiguous (row-major) m x n matrix with row stride ld is,
# read column-major, its n x m transpose with the same ld. So a row-major product C = op(A) op(B)
# is computed as the column-major product C^T = op(B)^T op(A)^T: swap the operands and the
# dimensions, keep the transpose flags and leading dimensions. Nothing is ever copied.
#
# Every wrapper is fused over float32 (s...) and float64 (d...), inline, noexcept and nogil.
from cython cimport floating
from scipy.linalg.cython_blas cimport (
    sgemm, dgemm, sgemv, dgemv, sger, dger, ssyrk, dsyrk, ddot, dsdot,
)


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """C = alpha * op(A) @ op(B) + beta * C for row-major matrices; C is m x n, op(A) m x k."""
    cdef char ta = b't' if trans_a else b'n'
    cdef char tb = b't' if trans_b else b'n'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> b, &ldb, <float*> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> b, &ldb, <double*> a, &lda, &beta, c, &ldc)


cdef inline void gemv(bint trans_a, int m, int n, floating alpha, const floating* a, int lda,
                      const floating* x, floating beta, floating* y) noexcept nogil:
    """y = alpha * op(A) @ x + beta * y for a row-major m x n matrix A and unit-stride vectors."""
    # Row-major A is the column-major n x m matrix A^T, so the transpose flag flips.
    cdef char ta = b'n' if trans_a else b't'
    cdef int inc = 1
    if floating is float:
        sgemv(&ta, &n, &m, &alpha, <float*> a, &lda, <float*> x, &inc, &beta, y, &inc)
    else:
        dgemv(&ta, &n, &m, &alpha, <double*> a, &lda, <double*> x, &inc, &beta, y, &inc)


cdef inline void ger(int m, int n, floating alpha, const floating* x, const floating* y,
                     floating* a, int lda) noexcept nogil:
    """A += alpha * x @ y^T for a row-major m x n matrix A (a rank-1 update)."""
    # Column-major A^T += alpha * y @ x^T: the vectors swap places.
    cdef int inc = 1
    if floating is float:
        sger(&n, &m, &alpha, <float*> y, &inc, <float*> x, &inc, a, &lda)
    else:
        dger(&n, &m, &alpha, <double*> y, &inc, <double*> x, &inc, a, &lda)


cdef inline double sumsq(const floating* x, int n) noexcept nogil:
    """sum_i x_i^2, accumulated in double (dsdot for float32)."""
    cdef int inc = 1
    if n <= 0:
        return 0
    if floating is float:
        return dsdot(&n, <float*> x, &inc, <float*> x, &inc)
    else:
        return ddot(&n, <double*> x, &inc, <double*> x, &inc)


cdef inline double dot(const floating* x, const floating* y, int n) noexcept nogil:
    """sum_i x_i y_i, accumulated in double (dsdot for float32)."""
    cdef int inc = 1
    if n <= 0:
        return 0
    if floating is float:
        return dsdot(&n, <float*> x, &inc, <float*> y, &inc)
    else:
        return ddot(&n, <double*> x, &inc, <double*> y, &inc)


cdef inline void gram_lower(int n, int k, const floating* a, int lda, floating* c,
                            int ldc) noexcept nogil:
    """C[i, j] = <a_i, a_j> for j <= i (row-major: the lower triangle and the diagonal).

    a is a row-major n x k matrix; the strict upper triangle of C is left unset. Half the
    work of gemm(a, a^T): for the row-major lower triangle, the column-major call fills the
    upper triangle of C^T = a a^T with trans='T' on the column-major k x n view of a.
    """
    cdef char uplo = b'U'
    cdef char trans = b'T'
    cdef floating one = 1, zero = 0
    if floating is float:
        ssyrk(&uplo, &trans, &n, &k, &one, <float*> a, &lda, &zero, c, &ldc)
    else:
        dsyrk(&uplo, &trans, &n, &k, &one, <double*> a, &lda, &zero, c, &ldc)
