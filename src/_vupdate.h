/* Vectorised parameter updates, compiled for several CPU levels.
 *
 * In per-sample training every weight is updated once per sample, so these loops are most
 * of the cost of momentum and Adam there, and Adam's sqrt and division per weight dominate:
 * AVX2 does four (double) or eight (float) of each per instruction, the baseline's SSE2 half
 * as many. The float kernels compute in float throughout. A row's gradient is rank-1,
 * g_j = a d_j + decay w_j, a being input unit i's activation and d the layer's delta; a bias
 * row has a = 1 and decay = 0. The *_step kernels take the gradient of the whole parameter
 * vector instead (batch training). The formulas are scikit-learn's (see _updates.pxd).
 * restrict tells GCC that the arrays never overlap, so each loop is one vectorised pass with
 * no run-time alias test. Every operation is IEEE-exact (+, *, /, sqrt; GCC does not
 * contract to FMA under -std=c11), so all CPU levels give bit-identical results.
 */
#ifndef MLPCORE_VUPDATE_H
#define MLPCORE_VUPDATE_H

#include <math.h>
#include "_vmath.h"  /* MLPCORE_CLONES */

/* One element of each rule, the gradient g given; the kernels below differ only in how g is
 * formed. */
#define MLPCORE_MOMENTUM_ELEMENT(T, w, v, g, lr, mu, nesterov)                                 \
    do {                                                                                       \
        T g_ = (g);                                                                            \
        T vj_ = (mu) * (v) - (lr) * g_;                                                        \
        (v) = vj_;                                                                             \
        (w) = (nesterov) ? (w) + ((mu) * vj_ - (lr) * g_) : (w) + vj_;                         \
    } while (0)

#define MLPCORE_ADAM_ELEMENT(T, SQRT, w, m, s, g, lr_t, b1, omb1, b2, omb2, eps)               \
    do {                                                                                       \
        T g_ = (g);                                                                            \
        T mj_ = (b1) * (m) + (omb1) * g_;                                                      \
        T sj_ = (b2) * (s) + (omb2) * (g_ * g_);                                               \
        (m) = mj_;                                                                             \
        (s) = sj_;                                                                             \
        (w) = (w) - (lr_t) * mj_ / (SQRT(sj_) + (eps));                                        \
    } while (0)

/* A row's loop over j = 0..n-1, with ELEMENT the update of w[j]. When z is given, the
 * updated w[j] is also accumulated into the next sample's pre-activation, z[j] += xn w[j],
 * while it is still in a register (see sample_backprop_update in _per_sample.pxd). */
#define MLPCORE_ROW_LOOP(ELEMENT)                                                              \
    if (z) {                                                                                   \
        for (long j = 0; j < n; j++) {                                                         \
            ELEMENT;                                                                           \
            z[j] = z[j] + xn * w[j];                                                           \
        }                                                                                      \
    } else {                                                                                   \
        for (long j = 0; j < n; j++) {                                                         \
            ELEMENT;                                                                           \
        }                                                                                      \
    }

#define MLPCORE_ROWS(PREFIX, ATTR, SUFFIX, T, SQRT)                                            \
    /* Rows, g_j = a d_j + decay w_j. sgd: w <- w - lr g */                                    \
    ATTR void PREFIX##_sgd_row_##SUFFIX(T *restrict w, const T *restrict d, T a, T decay,      \
                                        long n, T lr, T *restrict z, T xn)                     \
    {                                                                                          \
        MLPCORE_ROW_LOOP(w[j] = w[j] - lr * (a * d[j] + decay * w[j]))                         \
    }                                                                                          \
    /* v <- mu v - lr g; then w <- w + v, or w <- w + mu v - lr g (Nesterov). The two          \
     * cases are separate loops so that each vectorises without a select. */                   \
    ATTR void PREFIX##_momentum_row_##SUFFIX(T *restrict w, const T *restrict d, T a,          \
                                             T decay, T *restrict v, long n, T lr, T mu,       \
                                             int nesterov, T *restrict z, T xn)                \
    {                                                                                          \
        if (nesterov) {                                                                        \
            MLPCORE_ROW_LOOP(MLPCORE_MOMENTUM_ELEMENT(T, w[j], v[j], a * d[j] + decay * w[j],  \
                                                      lr, mu, 1))                              \
        } else {                                                                               \
            MLPCORE_ROW_LOOP(MLPCORE_MOMENTUM_ELEMENT(T, w[j], v[j], a * d[j] + decay * w[j],  \
                                                      lr, mu, 0))                              \
        }                                                                                      \
    }                                                                                          \
    /* m <- b1 m + (1 - b1) g; s <- b2 s + (1 - b2) g^2; w <- w - lr_t m / (sqrt(s) + eps)     \
     * with lr_t the bias-corrected rate. 1 - b1 and 1 - b2 come rounded from double, as       \
     * scikit-learn's NumPy arithmetic rounds them. */                                         \
    ATTR void PREFIX##_adam_row_##SUFFIX(T *restrict w, const T *restrict d, T a, T decay,     \
                                         T *restrict m, T *restrict s, long n, T lr_t, T b1,   \
                                         T omb1, T b2, T omb2, T eps, T *restrict z, T xn)     \
    {                                                                                          \
        MLPCORE_ROW_LOOP(MLPCORE_ADAM_ELEMENT(T, SQRT, w[j], m[j], s[j],                       \
                                              a * d[j] + decay * w[j], lr_t, b1, omb1, b2,     \
                                              omb2, eps))                                      \
    }

/* The same rules over the whole parameter vector with its gradient g (batch steps). These
 * vectors are always long, so there are only the per-CPU-level versions. */
#define MLPCORE_STEPS(SUFFIX, T, SQRT)                                                         \
    MLPCORE_CLONES static void mlpcore_momentum_step_##SUFFIX(                                 \
        T *restrict w, const T *restrict g, T *restrict v, long n, T lr, T mu, int nesterov)   \
    {                                                                                          \
        if (nesterov)                                                                          \
            for (long j = 0; j < n; j++)                                                       \
                MLPCORE_MOMENTUM_ELEMENT(T, w[j], v[j], g[j], lr, mu, 1);                      \
        else                                                                                   \
            for (long j = 0; j < n; j++)                                                       \
                MLPCORE_MOMENTUM_ELEMENT(T, w[j], v[j], g[j], lr, mu, 0);                      \
    }                                                                                          \
    MLPCORE_CLONES static void mlpcore_adam_step_##SUFFIX(                                     \
        T *restrict w, const T *restrict g, T *restrict m, T *restrict s, long n, T lr_t,      \
        T b1, T omb1, T b2, T omb2, T eps)                                                     \
    {                                                                                          \
        for (long j = 0; j < n; j++)                                                           \
            MLPCORE_ADAM_ELEMENT(T, SQRT, w[j], m[j], s[j], g[j], lr_t, b1, omb1, b2, omb2,    \
                                 eps);                                                         \
    }

/* Long rows: versions compiled for each CPU level, one picked at load time. */
MLPCORE_ROWS(mlpcore_long, MLPCORE_CLONES static, f64, double, sqrt)
MLPCORE_ROWS(mlpcore_long, MLPCORE_CLONES static, f32, float, sqrtf)
/* Short rows (a few units): baseline versions inlined into the caller, since a call through
 * the load-time dispatch costs more than their arithmetic. */
MLPCORE_ROWS(mlpcore_short, static inline, f64, double, sqrt)
MLPCORE_ROWS(mlpcore_short, static inline, f32, float, sqrtf)
MLPCORE_STEPS(f64, double, sqrt)
MLPCORE_STEPS(f32, float, sqrtf)

#define MLPCORE_LONG_ROW 32

/* What the engine calls for a row: the long or the short version by its length. */
#define MLPCORE_DISPATCH(SUFFIX, T)                                                            \
    static inline void mlpcore_sgd_row_##SUFFIX(T *w, const T *d, T a, T decay, long n, T lr,  \
                                                T *z, T xn)                                    \
    {                                                                                          \
        if (n >= MLPCORE_LONG_ROW)                                                             \
            mlpcore_long_sgd_row_##SUFFIX(w, d, a, decay, n, lr, z, xn);                       \
        else                                                                                   \
            mlpcore_short_sgd_row_##SUFFIX(w, d, a, decay, n, lr, z, xn);                      \
    }                                                                                          \
    static inline void mlpcore_momentum_row_##SUFFIX(T *w, const T *d, T a, T decay, T *v,     \
                                                     long n, T lr, T mu, int nesterov, T *z,   \
                                                     T xn)                                     \
    {                                                                                          \
        if (n >= MLPCORE_LONG_ROW)                                                             \
            mlpcore_long_momentum_row_##SUFFIX(w, d, a, decay, v, n, lr, mu, nesterov, z, xn); \
        else                                                                                   \
            mlpcore_short_momentum_row_##SUFFIX(w, d, a, decay, v, n, lr, mu, nesterov, z,     \
                                                xn);                                           \
    }                                                                                          \
    static inline void mlpcore_adam_row_##SUFFIX(T *w, const T *d, T a, T decay, T *m, T *s,   \
                                                 long n, T lr_t, T b1, T omb1, T b2, T omb2,   \
                                                 T eps, T *z, T xn)                            \
    {                                                                                          \
        if (n >= MLPCORE_LONG_ROW)                                                             \
            mlpcore_long_adam_row_##SUFFIX(w, d, a, decay, m, s, n, lr_t, b1, omb1, b2, omb2,  \
                                           eps, z, xn);                                        \
        else                                                                                   \
            mlpcore_short_adam_row_##SUFFIX(w, d, a, decay, m, s, n, lr_t, b1, omb1, b2,       \
                                            omb2, eps, z, xn);                                 \
    }

MLPCORE_DISPATCH(f64, double)
MLPCORE_DISPATCH(f32, float)

#endif
