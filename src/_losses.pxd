# Losses and the output-layer delta delta_L = dJ/dZ_L, one sample (row) at a time.
#
# Per sample i with weight w_i (1 when no weights are given):
#   mse:            l_i = 1/2 sum_k (a_ik - y_ik)^2
#   cross_entropy:  l_i = -sum_k y_ik log a_ik                        (softmax output)
#                   l_i = -sum_k [y_ik log a_ik + (1-y_ik) log(1-a_ik)] (sigmoid output)
#   poisson:        l_i = sum_k [y_ik log(y_ik / a_ik) - y_ik + a_ik]   (exp output; half the
#                   Poisson deviance, scikit-learn's poisson_loss)
# and a batch of B rows has the loss J_b = sum_i w_i l_i / B, the weights scaled to mean 1 over
# the training set in Python (or sum_i w_i l_i / sum_i w_i, scikit-learn's rule, for the
# drop-in: Progress.by_weight). The rows of delta_L hold w_i dl_i/dz_i:
#   a - y                   for softmax + cross_entropy, sigmoid + cross_entropy, identity + mse,
#                           exp + poisson
#   (a - y) a (1 - a)       for sigmoid + mse (the tutorial's delta2)
#   a (e - <e, a>), e = a-y for softmax + mse (the softmax Jacobian applied to a - y)
# Probabilities inside log are clipped to [eps, 1 - eps] (eps = the dtype's machine epsilon,
# as scikit-learn does), so the loss is finite even for saturated outputs.
from cython cimport floating
from libc.math cimport log

from _activations cimport IDENTITY, SIGMOID, SOFTMAX


cdef enum Loss:
    MSE = 0
    CROSS_ENTROPY = 1
    POISSON = 2


cdef inline double clipped_log(double p, double eps) noexcept nogil:
    if p < eps:
        p = eps
    elif p > 1 - eps:
        p = 1 - eps
    return log(p)


cdef inline double sample_loss(const floating* a, const floating* y, Py_ssize_t k,
                               int output, int loss, double eps) noexcept nogil:
    """l_i for one sample: a and y are its K outputs and targets."""
    cdef Py_ssize_t j
    cdef double total = 0, diff
    if loss == MSE:
        for j in range(k):
            diff = <double> a[j] - y[j]
            total += diff * diff
        return 0.5 * total
    if loss == POISSON:
        for j in range(k):
            if y[j] != 0:  # xlogy(y, y / a)
                total += y[j] * log(<double> y[j] / a[j])
            total += <double> a[j] - y[j]
        return total
    if output == SOFTMAX:
        for j in range(k):
            if y[j] != 0:  # xlogy: a zero target contributes nothing, even where a = 0
                total -= y[j] * clipped_log(a[j], eps)
        return total
    for j in range(k):  # sigmoid: binary cross-entropy summed over the outputs
        if y[j] != 0:
            total -= y[j] * clipped_log(a[j], eps)
        if y[j] != 1:
            total -= (1 - <double> y[j]) * clipped_log(1 - <double> a[j], eps)
    return total


cdef inline void sample_delta(floating* d, const floating* a, const floating* y, Py_ssize_t k,
                              int output, int loss, floating w) noexcept nogil:
    """d = w * dl_i/dz for one sample (the output pre-activation z, a = g(z)); exactly 0
    when w = 0, even where the output overflowed."""
    cdef Py_ssize_t j
    cdef floating dot = 0
    if w == 0:
        for j in range(k):
            d[j] = 0
        return
    if loss != MSE or output == IDENTITY:
        for j in range(k):  # canonical link: the derivative collapses to a - y
            d[j] = w * (a[j] - y[j])
    elif output == SIGMOID:
        for j in range(k):
            d[j] = w * (a[j] - y[j]) * a[j] * (1 - a[j])
    else:  # softmax + mse
        for j in range(k):
            dot = dot + (a[j] - y[j]) * a[j]
        for j in range(k):
            d[j] = w * a[j] * ((a[j] - y[j]) - dot)


cdef inline double output_delta(floating* delta, const floating* a, const floating* y,
                                const floating* sw, Py_ssize_t n, Py_ssize_t k,
                                int output, int loss, double eps,
                                double* weight_sum) noexcept nogil:
    """Fill delta_L for n samples; return sum_i w_i l_i and store sum_i w_i in weight_sum."""
    cdef Py_ssize_t i
    cdef double total = 0, wsum = 0
    cdef floating w = 1
    for i in range(n):
        if sw != NULL:
            w = sw[i]
        wsum += w
        if w != 0:  # a zero-weight sample adds nothing, even a NaN from an overflowing loss
            total += w * sample_loss(a + i * k, y + i * k, k, output, loss, eps)
        sample_delta(delta + i * k, a + i * k, y + i * k, k, output, loss, w)
    weight_sum[0] = wsum
    return total


cdef inline void output_delta_rows(floating* delta, const floating* a, const floating* y,
                                   const floating* sw, Py_ssize_t n, Py_ssize_t k, int output,
                                   int loss, double eps, double* row_loss) noexcept nogil:
    """Fill delta_L for n samples and store w_i l_i of each in row_loss (0 when w_i = 0).

    The rows of a parallel pass are split among threads; summing row_loss afterwards in row
    order gives output_delta's total bit for bit, whatever the split.
    """
    cdef Py_ssize_t i
    cdef floating w = 1
    for i in range(n):
        if sw != NULL:
            w = sw[i]
        row_loss[i] = 0
        if w != 0:
            row_loss[i] = w * sample_loss(a + i * k, y + i * k, k, output, loss, eps)
        sample_delta(delta + i * k, a + i * k, y + i * k, k, output, loss, w)
