/* Vectorisable sigmoid for the engine's hot loops, compiled for several CPU levels.
 *
 * glibc's exp is scalar: in a mini-batch epoch the sigmoid of every hidden unit then costs
 * about a sixth of the time. Here exp(x), x <= 0, is written in plain arithmetic that GCC
 * vectorises: x = k ln2 + r with |r| <= ln2/2, exp(r) by its Taylor polynomial (degree 13
 * in double, 7 in float: truncation error below half an ulp), and 2^k put straight into the
 * exponent bits. The result is within 2 ulp of the correctly rounded value; below -708
 * (double) or -87 (float), where exp(x) is subnormal or underflows, it is 0. The sigmoid
 * built on it is within 3 ulp (one rounding more for 1 + e, one for the quotient).
 * tests/test_engine_kernels.py checks both through the engine's hooks (_exp_nonpositive,
 * _sigmoid_rows).
 *
 * target_clones builds AVX-512, AVX2+FMA (x86-64-v4, v3) and baseline versions of each
 * function and picks one at load time, so the wheel stays portable.
 */
#ifndef MLPCORE_VMATH_H
#define MLPCORE_VMATH_H

#include <stdint.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MLPCORE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MLPCORE_CLONES
#endif

typedef union { double d; int64_t i; } mlpcore_bits64;
typedef union { float f; int32_t i; } mlpcore_bits32;

static inline double mlpcore_exp_nonpositive(double x)
{
    const double magic = 6755399441055744.0;  /* 1.5 * 2^52: adding it rounds to an integer */
    mlpcore_bits64 t, scale;
    double k, r, p, xc = x < -708.0 ? -708.0 : x;
    t.d = xc * 1.4426950408889634 + magic;
    k = t.d - magic;
    r = xc - k * 0.6931471803691238 - k * 1.9082149292705877e-10;  /* ln2, hi + lo parts */
    p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    scale.i = (t.i - 0x4338000000000000LL + 1023) << 52;  /* 2^k */
    return x < -708.0 ? 0.0 : p * scale.d;
}

static inline float mlpcore_expf_nonpositive(float x)
{
    const float magic = 12582912.0f;  /* 1.5 * 2^23 */
    mlpcore_bits32 t, scale;
    float k, r, p, xc = x < -87.0f ? -87.0f : x;
    t.f = xc * 1.44269504f + magic;
    k = t.f - magic;
    r = xc - k * 0.693145752f - k * 1.42860677e-06f;
    p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    scale.i = (t.i - 0x4B400000 + 127) << 23;
    return x < -87.0f ? 0.0f : p * scale.f;
}

/* sigmoid(v) from e = exp(-|v|): 1 / (1 + e) for v >= 0 and e / (1 + e) below, so no exp
 * overflows. */
#define MLPCORE_SIGMOID(T, EXPNEG, ONE, v, out)                                        \
    do {                                                                               \
        T e_ = EXPNEG((v) < 0 ? (v) : -(v));                                           \
        (out) = ((v) >= 0 ? ONE : e_) * (ONE / (ONE + e_));                            \
    } while (0)

/* z[i, j] <- sigmoid(z[i, j] + b[j]) for a row-major n_rows x n_cols block; b may be NULL.
 * The two cases are separate loops: a test of b inside the loop keeps GCC from vectorising
 * it well. */
#define MLPCORE_SIGMOID_ROWS(NAME, T, EXPNEG, ONE)                                     \
    MLPCORE_CLONES static void NAME(T *restrict z, const T *restrict b, long n_rows,   \
                                    long n_cols)                                       \
    {                                                                                  \
        for (long i = 0; i < n_rows; i++) {                                            \
            T *restrict row = z + i * n_cols;                                          \
            if (b) {                                                                   \
                for (long j = 0; j < n_cols; j++) {                                    \
                    T v = row[j] + b[j];                                               \
                    MLPCORE_SIGMOID(T, EXPNEG, ONE, v, row[j]);                        \
                }                                                                      \
            } else {                                                                   \
                for (long j = 0; j < n_cols; j++) {                                    \
                    T v = row[j];                                                      \
                    MLPCORE_SIGMOID(T, EXPNEG, ONE, v, row[j]);                        \
                }                                                                      \
            }                                                                          \
        }                                                                              \
    }

MLPCORE_SIGMOID_ROWS(mlpcore_sigmoid_rows_f64, double, mlpcore_exp_nonpositive, 1.0)
MLPCORE_SIGMOID_ROWS(mlpcore_sigmoid_rows_f32, float, mlpcore_expf_nonpositive, 1.0f)

#endif
