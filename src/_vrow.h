/* One row through a dense layer (a pass of n = 1 rows, see _batch.pxd), built for several
 * CPU levels like _vmath.h (target_clones: AVX-512, AVX2, baseline; one picked at load time):
 *
 *   forward    z[j] += sum_i a[i] W[i, j]                         (W row-major, fan_in x fan_out)
 *   backprop   d_prev[i] = <W[i, :], d>;  out[i, :] = scale a[i] d + beta out[i, :]
 *
 * For one row these are a matrix-vector product and a rank-1 update. Through BLAS the update
 * is a gemm with k = 1, which packs its operands like a matrix product: on the small layers
 * after a sparse first layer (128 x 10) the calls cost more than the arithmetic. Each row of W
 * is read once. The sums run in a fixed order: z[j] over i in order, and each dot over four
 * interleaved partial sums (j mod 4) added as (s0 + s1) + (s2 + s3), which GCC vectorises at
 * any width without reordering. Every operation is IEEE-exact (no FMA contraction under
 * -std=c11), so every CPU level gives bit-identical results.
 */
#ifndef MLPCORE_VROW_H
#define MLPCORE_VROW_H

#include "_vmath.h" /* MLPCORE_CLONES */

#include <string.h>

#if defined(__GNUC__)
/* Four lanes of T in registers (GCC/Clang vector extensions: AVX and AVX-512 hold them in one
 * register, SSE2 in two); loads and stores through memcpy, so any alignment will do. */
#define MLPCORE_V4(T) T __attribute__((vector_size(4 * sizeof(T))))
#define MLPCORE_ALWAYS_INLINE static inline __attribute__((always_inline))

/* The bodies take fan_out as an argument; the kernels below call them with a constant for
 * fan_out <= 16 (output layers: a few classes), so that GCC unrolls the loops over a row
 * and keeps d in registers, and with the variable above that. Same arithmetic either way. */
#define MLPCORE_ROW_BODIES(SUFFIX, T)                                                        \
    typedef MLPCORE_V4(T) mlpcore_v4_##SUFFIX;                                               \
    /* z[j] += sum_i a[i] W[i, j], summed over i in order for every j: columns j..j+7 (then  \
     * j..j+3, then the last 1-3 one at a time) stay in registers over all of i. */          \
    MLPCORE_ALWAYS_INLINE void mlpcore_row_forward_body_##SUFFIX(                            \
        T *restrict z, const T *restrict W, const T *restrict a, long fan_in, long fan_out)  \
    {                                                                                        \
        typedef mlpcore_v4_##SUFFIX V;                                                       \
        long j = 0;                                                                          \
        for (; j + 8 <= fan_out; j += 8) {                                                   \
            V z0, z1, w0, w1;                                                                \
            memcpy(&z0, z + j, sizeof(V));                                                   \
            memcpy(&z1, z + j + 4, sizeof(V));                                               \
            for (long i = 0; i < fan_in; i++) {                                              \
                memcpy(&w0, W + i * fan_out + j, sizeof(V));                                 \
                memcpy(&w1, W + i * fan_out + j + 4, sizeof(V));                             \
                z0 = z0 + a[i] * w0;                                                         \
                z1 = z1 + a[i] * w1;                                                         \
            }                                                                                \
            memcpy(z + j, &z0, sizeof(V));                                                   \
            memcpy(z + j + 4, &z1, sizeof(V));                                               \
        }                                                                                    \
        for (; j + 4 <= fan_out; j += 4) {                                                   \
            V z0, w0;                                                                        \
            memcpy(&z0, z + j, sizeof(V));                                                   \
            for (long i = 0; i < fan_in; i++) {                                              \
                memcpy(&w0, W + i * fan_out + j, sizeof(V));                                 \
                z0 = z0 + a[i] * w0;                                                         \
            }                                                                                \
            memcpy(z + j, &z0, sizeof(V));                                                   \
        }                                                                                    \
        for (; j < fan_out; j++) {                                                           \
            T zj = z[j];                                                                     \
            for (long i = 0; i < fan_in; i++)                                                \
                zj = zj + a[i] * W[i * fan_out + j];                                         \
            z[j] = zj;                                                                       \
        }                                                                                    \
    }                                                                                        \
    /* out may be W itself (a fused SGD step): row i's dot is formed before it is written,  \
     * so no restrict on W and out. The dot: lane q sums the products of j = q mod 4 in     \
     * order of j, then (s0 + s1) + (s2 + s3). */                                            \
    MLPCORE_ALWAYS_INLINE void mlpcore_row_backprop_body_##SUFFIX(                           \
        const T *W, const T *restrict a, const T *restrict d, T *restrict d_prev,            \
        long fan_in, long fan_out, T *out, T scale, T beta)                                  \
    {                                                                                        \
        typedef mlpcore_v4_##SUFFIX V;                                                       \
        for (long i = 0; i < fan_in; i++) {                                                  \
            const T *w = W + i * fan_out;                                                    \
            T *o = out + i * fan_out;                                                        \
            if (d_prev) {                                                                    \
                V s = {0, 0, 0, 0}, wv, dv;                                                  \
                long j = 0;                                                                  \
                for (; j + 4 <= fan_out; j += 4) {                                           \
                    memcpy(&wv, w + j, sizeof(V));                                           \
                    memcpy(&dv, d + j, sizeof(V));                                           \
                    s = s + wv * dv;                                                         \
                }                                                                            \
                T s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];                                \
                if (j < fan_out)                                                             \
                    s0 = s0 + w[j] * d[j];                                                   \
                if (j + 1 < fan_out)                                                         \
                    s1 = s1 + w[j + 1] * d[j + 1];                                           \
                if (j + 2 < fan_out)                                                         \
                    s2 = s2 + w[j + 2] * d[j + 2];                                           \
                d_prev[i] = (s0 + s1) + (s2 + s3);                                           \
            }                                                                                \
            const T c = scale * a[i];                                                        \
            if (beta == 0) {                                                                 \
                for (long j = 0; j < fan_out; j++)                                           \
                    o[j] = c * d[j];                                                         \
            } else if (beta == 1) {                                                          \
                for (long j = 0; j < fan_out; j++)                                           \
                    o[j] = o[j] + c * d[j];                                                  \
            } else {                                                                         \
                for (long j = 0; j < fan_out; j++)                                           \
                    o[j] = beta * o[j] + c * d[j];                                           \
            }                                                                                \
        }                                                                                    \
    }

#define MLPCORE_ROW_CASES(CASE, SUFFIX)                                                      \
    CASE(SUFFIX, 1) CASE(SUFFIX, 2) CASE(SUFFIX, 3) CASE(SUFFIX, 4) CASE(SUFFIX, 5)          \
    CASE(SUFFIX, 6) CASE(SUFFIX, 7) CASE(SUFFIX, 8) CASE(SUFFIX, 9) CASE(SUFFIX, 10)         \
    CASE(SUFFIX, 11) CASE(SUFFIX, 12) CASE(SUFFIX, 13) CASE(SUFFIX, 14) CASE(SUFFIX, 15)     \
    CASE(SUFFIX, 16)
#define MLPCORE_FORWARD_CASE(SUFFIX, K)                                                      \
    case K:                                                                                  \
        mlpcore_row_forward_body_##SUFFIX(z, W, a, fan_in, K);                               \
        return;
#define MLPCORE_BACKPROP_CASE(SUFFIX, K)                                                     \
    case K:                                                                                  \
        mlpcore_row_backprop_body_##SUFFIX(W, a, d, d_prev, fan_in, K, out, scale, beta);    \
        return;

#define MLPCORE_ROW_KERNELS(SUFFIX, T)                                                       \
    MLPCORE_ROW_BODIES(SUFFIX, T)                                                            \
    MLPCORE_CLONES static void mlpcore_row_forward_##SUFFIX(T *restrict z,                   \
                                                            const T *restrict W,             \
                                                            const T *restrict a,             \
                                                            long fan_in, long fan_out)       \
    {                                                                                        \
        switch (fan_out) {                                                                   \
        MLPCORE_ROW_CASES(MLPCORE_FORWARD_CASE, SUFFIX)                                      \
        default:                                                                             \
            mlpcore_row_forward_body_##SUFFIX(z, W, a, fan_in, fan_out);                     \
        }                                                                                    \
    }                                                                                        \
    MLPCORE_CLONES static void mlpcore_row_backprop_##SUFFIX(                                \
        const T *W, const T *restrict a, const T *restrict d, T *restrict d_prev,            \
        long fan_in, long fan_out, T *out, T scale, T beta)                                  \
    {                                                                                        \
        switch (fan_out) {                                                                   \
        MLPCORE_ROW_CASES(MLPCORE_BACKPROP_CASE, SUFFIX)                                     \
        default:                                                                             \
            mlpcore_row_backprop_body_##SUFFIX(W, a, d, d_prev, fan_in, fan_out, out, scale, \
                                               beta);                                        \
        }                                                                                    \
    }

#else /* no vector extensions: the same sums, in the same order, one lane at a time */

#define MLPCORE_ROW_KERNELS(SUFFIX, T)                                                       \
    static void mlpcore_row_forward_##SUFFIX(T *restrict z, const T *restrict W,             \
                                             const T *restrict a, long fan_in, long fan_out) \
    {                                                                                        \
        for (long i = 0; i < fan_in; i++)                                                    \
            for (long j = 0; j < fan_out; j++)                                               \
                z[j] = z[j] + a[i] * W[i * fan_out + j];                                     \
    }                                                                                        \
    static void mlpcore_row_backprop_##SUFFIX(const T *W, const T *restrict a,               \
                                              const T *restrict d, T *restrict d_prev,       \
                                              long fan_in, long fan_out, T *out, T scale,    \
                                              T beta)                                        \
    {                                                                                        \
        for (long i = 0; i < fan_in; i++) {                                                  \
            const T *w = W + i * fan_out;                                                    \
            T *o = out + i * fan_out;                                                        \
            if (d_prev) {                                                                    \
                T s[4] = {0, 0, 0, 0};                                                       \
                for (long j = 0; j < fan_out; j++)                                           \
                    s[j % 4] = s[j % 4] + w[j] * d[j];                                       \
                d_prev[i] = (s[0] + s[1]) + (s[2] + s[3]);                                   \
            }                                                                                \
            const T c = scale * a[i];                                                        \
            for (long j = 0; j < fan_out; j++)                                               \
                o[j] = beta == 0 ? c * d[j] : (beta == 1 ? o[j] : beta * o[j]) + c * d[j];   \
        }                                                                                    \
    }
#endif

MLPCORE_ROW_KERNELS(f64, double)
MLPCORE_ROW_KERNELS(f32, float)

#endif
