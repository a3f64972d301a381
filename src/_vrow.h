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

/* Four lanes of T in registers (GCC/Clang vector extensions: AVX and AVX-512 hold them in one
 * register, SSE2 in two); loads and stores through memcpy, so any alignment will do. */
#if defined(__GNUC__)
#define MLPCORE_V4(T) T __attribute__((vector_size(4 * sizeof(T))))
#endif

#define MLPCORE_ROW_KERNELS(SUFFIX, T)                                                       \
    typedef MLPCORE_V4(T) mlpcore_v4_##SUFFIX;                                               \
    /* z[j] += sum_i a[i] W[i, j], summed over i in order for every j: columns j..j+7 (then  \
     * j..j+3, then the last 1-3 one at a time) stay in registers over all of i. */          \
    MLPCORE_CLONES static void mlpcore_row_forward_##SUFFIX(T *restrict z,                   \
                                                            const T *restrict W,             \
                                                            const T *restrict a,             \
                                                            long fan_in, long fan_out)       \
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
    MLPCORE_CLONES static void mlpcore_row_backprop_##SUFFIX(                                \
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

MLPCORE_ROW_KERNELS(f64, double)
MLPCORE_ROW_KERNELS(f32, float)

#endif
