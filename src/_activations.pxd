# Activation functions and their derivatives, applied in place to row-major blocks.
#
# Derivatives are written in terms of the activation's output a = g(z), so the forward pass
# never has to keep the pre-activations Z: sigmoid' = a(1 - a), tanh' = 1 - a^2,
# relu' = [a > 0], identity' = 1.
from cython cimport floating
from libc.math cimport exp, expf, tanh, tanhf

cdef extern from "_vmath.h" nogil:
    # Vectorised sigmoid of a row-major block, b (may be NULL) added first; see _vmath.h.
    void sigmoid_rows_f64 "mlpcore_sigmoid_rows_f64" (double* z, const double* b,
                                                      long n_rows, long n_cols)
    void sigmoid_rows_f32 "mlpcore_sigmoid_rows_f32" (float* z, const float* b,
                                                      long n_rows, long n_cols)


cdef enum Activation:
    IDENTITY = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    SOFTMAX = 4
    EXP = 5        # output only: the Poisson mean exp(z)


cdef inline floating fexp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline void sigmoid_rows(floating* z, const floating* b, Py_ssize_t n_rows,
                              Py_ssize_t n_cols) noexcept nogil:
    """z[i, j] <- 1 / (1 + exp(-(z[i, j] + b[j]))), with b NULL meaning no bias.

    Evaluated from exp(-|v|) so no exp overflows, by the vectorised kernel of _vmath.h.
    """
    if floating is float:
        sigmoid_rows_f32(z, b, n_rows, n_cols)
    else:
        sigmoid_rows_f64(z, b, n_rows, n_cols)


cdef inline void softmax_row(floating* z, Py_ssize_t n) noexcept nogil:
    """z <- exp(z - max z) / sum exp(z - max z): the max shift keeps every exp <= 1."""
    cdef Py_ssize_t j
    cdef floating zmax = z[0]
    cdef floating total = 0
    for j in range(1, n):
        if z[j] > zmax:
            zmax = z[j]
    for j in range(n):
        z[j] = fexp(z[j] - zmax)
        total = total + z[j]
    total = 1 / total
    for j in range(n):
        z[j] = z[j] * total


cdef inline void activate(floating* z, Py_ssize_t n, int act) noexcept nogil:
    """z <- g(z) in place for one row of n pre-activations (softmax over the row)."""
    cdef Py_ssize_t j
    if act == SIGMOID:
        sigmoid_rows(z, NULL, 1, n)
    elif act == TANH:
        for j in range(n):
            if floating is float:
                z[j] = tanhf(z[j])
            else:
                z[j] = tanh(z[j])
    elif act == RELU:
        for j in range(n):
            if z[j] < 0:
                z[j] = 0
    elif act == SOFTMAX:
        softmax_row(z, n)
    elif act == EXP:
        for j in range(n):
            z[j] = fexp(z[j])


cdef inline floating derivative(floating a, int act) noexcept nogil:
    """g'(z) for one unit, written in terms of its output a = g(z)."""
    if act == SIGMOID:
        return a * (1 - a)
    if act == TANH:
        return 1 - a * a
    if act == RELU:
        return 1 if a > 0 else 0
    return 1


cdef inline void bias_activation(floating* z, const floating* b, Py_ssize_t n_rows,
                                 Py_ssize_t n_cols, int act) noexcept nogil:
    """z[i, j] <- g(z[i, j] + b[j]) in place (softmax normalises each row); one pass."""
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef floating v
    if act == SIGMOID:
        sigmoid_rows(z, b, n_rows, n_cols)
        return
    for i in range(n_rows):
        row = z + i * n_cols
        if act == IDENTITY:
            for j in range(n_cols):
                row[j] = row[j] + b[j]
        elif act == TANH:
            for j in range(n_cols):
                if floating is float:
                    row[j] = tanhf(row[j] + b[j])
                else:
                    row[j] = tanh(row[j] + b[j])
        elif act == RELU:
            for j in range(n_cols):
                v = row[j] + b[j]
                row[j] = v if v > 0 else 0
        elif act == SOFTMAX:
            for j in range(n_cols):
                row[j] = row[j] + b[j]
            softmax_row(row, n_cols)
        else:  # EXP
            for j in range(n_cols):
                row[j] = fexp(row[j] + b[j])


cdef inline void mul_derivative(floating* delta, const floating* a, Py_ssize_t size,
                                int act) noexcept nogil:
    """delta <- delta * g'(z), with g'(z) written in terms of a = g(z) (elementwise)."""
    cdef Py_ssize_t i
    if act == SIGMOID:
        for i in range(size):
            delta[i] = delta[i] * (a[i] * (1 - a[i]))
    elif act == TANH:
        for i in range(size):
            delta[i] = delta[i] * (1 - a[i] * a[i])
    elif act == RELU:
        for i in range(size):
            if a[i] <= 0:
                delta[i] = 0
    # IDENTITY: g' = 1, nothing to do.
