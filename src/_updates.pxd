# Parameter updates, elementwise over the flat parameter vector theta and its gradient g.
# The formulas are scikit-learn's (sklearn/neural_network/_stochastic_optimizers.py), so the
# two libraries can be compared step for step:
#   sgd:       theta <- theta - lr g
#   momentum:  v <- mu v - lr g;            theta <- theta + v
#   nesterov:  v <- mu v - lr g;            theta <- theta + mu v - lr g
#   adam:      m <- b1 m + (1 - b1) g;  s <- b2 s + (1 - b2) g^2;
#              theta <- theta - lr_t m / (sqrt(s) + eps),  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
from cython cimport floating
from libc.math cimport sqrt, sqrtf


cdef enum UpdateKind:
    SGD = 0
    MOMENTUM = 1
    NESTEROV = 2
    ADAM = 3


cdef inline void sgd_step(floating* theta, const floating* g, Py_ssize_t n,
                          floating lr) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        theta[i] = theta[i] - lr * g[i]


cdef inline void momentum_step(floating* theta, const floating* g, floating* v, Py_ssize_t n,
                               floating lr, floating mu, bint nesterov) noexcept nogil:
    cdef Py_ssize_t i
    if nesterov:
        for i in range(n):
            v[i] = mu * v[i] - lr * g[i]
            theta[i] = theta[i] + (mu * v[i] - lr * g[i])
    else:
        for i in range(n):
            v[i] = mu * v[i] - lr * g[i]
            theta[i] = theta[i] + v[i]


cdef inline void adam_step(floating* theta, const floating* g, floating* m, floating* s,
                           Py_ssize_t n, floating lr_t, floating beta1, floating beta2,
                           floating eps) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        m[i] = beta1 * m[i] + (1 - beta1) * g[i]
        s[i] = beta2 * s[i] + (1 - beta2) * (g[i] * g[i])
        if floating is float:
            theta[i] = theta[i] - lr_t * m[i] / (sqrtf(s[i]) + eps)
        else:
            theta[i] = theta[i] - lr_t * m[i] / (sqrt(s[i]) + eps)


cdef inline void update_row(floating* w, const floating* d, floating a, floating decay,
                            floating* s1, floating* s2, Py_ssize_t n, int kind, floating lr,
                            floating mu, floating beta1, floating beta2,
                            floating eps) noexcept nogil:
    """One row of a per-sample step, the gradient formed on the fly: g_j = a d_j + decay w_j.

    For a weight row, a is the input unit's activation and d the layer's delta (a rank-1
    gradient, a x d); for a bias, a = 1 and decay = 0. ``lr`` is Adam's bias-corrected rate.
    """
    cdef Py_ssize_t j
    cdef floating g
    if kind == SGD:
        for j in range(n):
            w[j] = w[j] - lr * (a * d[j] + decay * w[j])
    elif kind == MOMENTUM:
        for j in range(n):
            g = a * d[j] + decay * w[j]
            s1[j] = mu * s1[j] - lr * g
            w[j] = w[j] + s1[j]
    elif kind == NESTEROV:
        for j in range(n):
            g = a * d[j] + decay * w[j]
            s1[j] = mu * s1[j] - lr * g
            w[j] = w[j] + (mu * s1[j] - lr * g)
    else:
        for j in range(n):
            g = a * d[j] + decay * w[j]
            s1[j] = beta1 * s1[j] + (1 - beta1) * g
            s2[j] = beta2 * s2[j] + (1 - beta2) * (g * g)
            if floating is float:
                w[j] = w[j] - lr * s1[j] / (sqrtf(s2[j]) + eps)
            else:
                w[j] = w[j] - lr * s1[j] / (sqrt(s2[j]) + eps)
