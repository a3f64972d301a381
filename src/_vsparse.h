/* The row loops of sparse (CSR) input, see _sparse.pxd, built for several CPU levels like
 * _vmath.h (target_clones: AVX-512, AVX2+FMA, baseline; one picked at load time):
 *
 *   gather   z += sum_e val[e] W[idx[e], :]          (a CSR row times W_1)
 *   scatter  G[idx[e], :] += c val[e] d   for each e (its gradient step into W_1's rows)
 *
 * The Cython loops compile for baseline x86-64 (SSE2, no FMA); these run at the CPU's width.
 * Each entry's row is a run of cache misses (W_1 is megabytes), so row e + PREFETCH_AHEAD is
 * requested while row e is worked on. The empty asm after each prefetch marks it as a side
 * effect: without it GCC (12, -O1 and up) deletes a loop whose only effect is prefetching.
 * The arithmetic is the Cython loops', entry by entry in order, and IEEE-exact (GCC does not
 * contract to FMA under -std=c11), so every CPU level gives bit-identical results.
 */
#ifndef MLPCORE_VSPARSE_H
#define MLPCORE_VSPARSE_H

#include "_vmath.h" /* MLPCORE_CLONES */

#define MLPCORE_PREFETCH_AHEAD 4
#define MLPCORE_LINE 64

/* One cache line into cache; the asm keeps GCC from deleting it (see above). */
#if defined(__GNUC__)
#define mlpcore_prefetch(p)                                                                  \
    do {                                                                                     \
        __builtin_prefetch((const void *) (p));                                              \
        __asm__ __volatile__("" : : "r"(p));                                                 \
    } while (0)
#else
#define mlpcore_prefetch(p) ((void) (p))
#endif

#define MLPCORE_PREFETCH_ROW(W, m, row)                                                      \
    do {                                                                                     \
        const char *p_ = (const char *) ((W) + (row) * (m));                                 \
        for (long b_ = 0; b_ < (long) ((m) * (long) sizeof(*(W))); b_ += MLPCORE_LINE)       \
            mlpcore_prefetch(p_ + b_);                                                       \
    } while (0)

#define MLPCORE_SPARSE_ROWS(SUFFIX, T, I)                                                    \
    MLPCORE_CLONES static void mlpcore_gather_##SUFFIX(T *restrict z, const T *restrict W,   \
                                                       long m, const I *idx, const T *val,   \
                                                       long nnz)                             \
    {                                                                                        \
        for (long e = 0; e < nnz && e < MLPCORE_PREFETCH_AHEAD; e++)                         \
            MLPCORE_PREFETCH_ROW(W, m, (long) idx[e]);                                       \
        for (long e = 0; e < nnz; e++) {                                                     \
            if (e + MLPCORE_PREFETCH_AHEAD < nnz)                                            \
                MLPCORE_PREFETCH_ROW(W, m, (long) idx[e + MLPCORE_PREFETCH_AHEAD]);          \
            const T v = val[e];                                                              \
            const T *restrict w = W + (long) idx[e] * m;                                     \
            for (long j = 0; j < m; j++)                                                     \
                z[j] = z[j] + v * w[j];                                                      \
        }                                                                                    \
    }                                                                                        \
    MLPCORE_CLONES static void mlpcore_scatter_##SUFFIX(T *G, const T *restrict d, long m,   \
                                                        const I *idx, const T *val,          \
                                                        long nnz, T c)                       \
    {                                                                                        \
        for (long e = 0; e < nnz && e < MLPCORE_PREFETCH_AHEAD; e++)                         \
            MLPCORE_PREFETCH_ROW(G, m, (long) idx[e]);                                       \
        for (long e = 0; e < nnz; e++) {                                                     \
            if (e + MLPCORE_PREFETCH_AHEAD < nnz)                                            \
                MLPCORE_PREFETCH_ROW(G, m, (long) idx[e + MLPCORE_PREFETCH_AHEAD]);          \
            const T a = c * val[e];                                                          \
            T *restrict g = G + (long) idx[e] * m;                                           \
            for (long j = 0; j < m; j++)                                                     \
                g[j] = g[j] + a * d[j];                                                      \
        }                                                                                    \
    }

MLPCORE_SPARSE_ROWS(f64_i32, double, int)
MLPCORE_SPARSE_ROWS(f64_i64, double, Py_ssize_t)
MLPCORE_SPARSE_ROWS(f32_i32, float, int)
MLPCORE_SPARSE_ROWS(f32_i64, float, Py_ssize_t)

#endif
