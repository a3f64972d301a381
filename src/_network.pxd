# The network as the kernels see it, and what every training path shares.
#
# A network with L layers maps X (n x D) through Z_l = A_{l-1} W_l + b_l, A_l = g_l(Z_l), with
# A_0 = X. All parameters live in one flat vector theta, layer by layer: W_1 (row-major,
# fan_in x fan_out), b_1, W_2, b_2, ..., so optimizers and L-BFGS see one array and the
# weight matrices the user sees are views into it.
from cython cimport floating
from libc.math cimport pow, sqrt
from libc.string cimport memcpy

from _blas cimport sumsq
from _updates cimport ADAM, UpdateCoefficients


# Status codes returned by train_epoch.
cdef enum EpochStatus:
    DONE = 0
    DIVERGED = 1
    INTERRUPTED = 2


cdef struct Net:
    Py_ssize_t n_layers
    Py_ssize_t* sizes   # n_layers + 1 widths: D, M_1, ..., K
    Py_ssize_t* w_off   # offset of W_l in theta
    Py_ssize_t* b_off   # offset of b_l in theta
    int hidden          # activation code of the hidden layers
    int output          # activation code of the output layer
    int loss            # loss code


cdef struct UpdateRule:
    int kind
    double lr
    double alpha        # L2 penalty: J += alpha / 2 * sum ||W_l||^2 / sum_i w_i
    double momentum
    double beta1
    double beta2
    double epsilon
    long long t         # Adam: updates taken so far
    double penalty_sum  # sum over batches of the L2 term alpha/2 sum ||W||^2 in their loss


cdef inline UpdateCoefficients next_step(UpdateRule* rule) noexcept nogil:
    """The scalars of the rule's next update; for Adam, advances t and bias-corrects the rate.

    lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t), as scikit-learn's AdamOptimizer computes it.
    """
    cdef UpdateCoefficients c
    c.kind = rule.kind
    c.lr = rule.lr
    c.momentum = rule.momentum
    c.beta1 = rule.beta1
    c.beta2 = rule.beta2
    c.one_minus_beta1 = 1 - rule.beta1
    c.one_minus_beta2 = 1 - rule.beta2
    c.epsilon = rule.epsilon
    if rule.kind == ADAM:
        rule.t += 1
        c.lr = (rule.lr * sqrt(1 - pow(rule.beta2, <double> rule.t))
                / (1 - pow(rule.beta1, <double> rule.t)))
    return c


cdef inline void gather_rows(floating* dst, const floating* src, const Py_ssize_t* rows,
                             Py_ssize_t n, Py_ssize_t width) noexcept nogil:
    """dst[i, :] = src[rows[i], :] for i < n (row-major, width columns)."""
    cdef Py_ssize_t i
    for i in range(n):
        memcpy(dst + i * width, src + rows[i] * width, width * sizeof(floating))


cdef inline double l2_penalty(const Net* net, const floating* theta,
                              Py_ssize_t first_layer=0) noexcept nogil:
    """sum_l ||W_l||^2 over layers l >= first_layer (biases excluded), accumulated in double."""
    cdef Py_ssize_t l
    cdef double total = 0
    for l in range(first_layer, net.n_layers):
        total += sumsq(theta + net.w_off[l], <int> (net.b_off[l] - net.w_off[l]))
    return total
