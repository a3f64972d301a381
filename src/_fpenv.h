/* Subnormal numbers flushed to zero while an epoch trains.
 *
 * When a weight's gradient vanishes (a saturated unit, a dead input), Adam's first moment and
 * the momentum velocity decay geometrically, by beta1 or mu per step, and within a few
 * thousand steps (a few hundred in float32) they become subnormal: below 2.2e-308 in double,
 * 1.2e-38 in float. On x86 every operation on a subnormal takes a microcode assist costing
 * about a hundred cycles, and an epoch of per-sample Adam was measured to slow down twofold
 * from one epoch to the next. With FTZ and DAZ set, such values count as zero. No weight can
 * notice: a step from a subnormal moment is lr m / (sqrt(s) + eps) < 1e-3 * 2.2e-308 / 1e-8
 * in double (1.2e-33 in float), far below half an ulp of any weight larger than 1e-280
 * (1e-24 in float). The flags are per thread, set for the nogil segment only and restored
 * before Python runs again.
 */
#ifndef MLPCORE_FPENV_H
#define MLPCORE_FPENV_H

#if defined(__SSE2__) || defined(__x86_64__)
#include <xmmintrin.h>

static inline unsigned int mlpcore_flush_subnormals(void)
{
    unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u);  /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
}

static inline void mlpcore_restore_fpenv(unsigned int old)
{
    _mm_setcsr(old);
}

/* The calling thread's mode, to be set in the engine's worker threads for their share of a
 * pass (they compute in exactly the caller's floating-point environment). */
static inline unsigned int mlpcore_get_fpenv(void)
{
    return _mm_getcsr();
}
#else
static inline unsigned int mlpcore_get_fpenv(void) { return 0; }
static inline unsigned int mlpcore_flush_subnormals(void) { return 0; }
static inline void mlpcore_restore_fpenv(unsigned int old) { (void)old; }
#endif

#endif
