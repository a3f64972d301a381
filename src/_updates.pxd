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
