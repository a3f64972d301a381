# Parameter updates, elementwise over the flat parameter vector theta and its gradient g.
# The formulas are scikit-learn's (sklearn/neural_network/_stochastic_optimizers.py), so the
# two libraries can be compared step for step:
#   sgd:       theta <- theta - lr g
#   momentum:  v <- mu v - lr g;            theta <- theta + v
#   nesterov:  v <- mu v - lr g;            theta <- theta + mu v - lr g
#   adam:      m <- b1 m + (1 - b1) g;  s <- b2 s + (1 - b2) g^2;
#              theta <- theta - lr_t m / (sqrt(s) + eps),  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
from cython cimport floating
from libc.math cimport pow, sqrt

cdef extern from "_vupdate.h" nogil:
    # Vectorised kernels, one per rule and dtype; see _vupdate.h. The row kernels also take
    # z and xn: when z is not NULL, z += xn * (the updated row).
    void sgd_row_f64 "mlpcore_sgd_row_f64" (double* w, const double* d, double a,
                                             double decay, long n, double lr, double* z,
                                             double xn)
    void sgd_row_f32 "mlpcore_sgd_row_f32" (float* w, const float* d, float a, float decay,
                                             long n, float lr, float* z, float xn)
    void momentum_row_f64 "mlpcore_momentum_row_f64" (double* w, const double* d, double a,
                                                       double decay, double* v, long n,
                                                       double lr, double mu, int nesterov,
                                                       double* z, double xn)
    void momentum_row_f32 "mlpcore_momentum_row_f32" (float* w, const float* d, float a,
                                                       float decay, float* v, long n, float lr,
                                                       float mu, int nesterov, float* z,
                                                       float xn)
    void adam_row_f64 "mlpcore_adam_row_f64" (double* w, const double* d, double a,
                                               double decay, double* m, double* s, long n,
                                               double lr_t, double b1, double omb1, double b2,
                                               double omb2, double eps, double* z, double xn)
    void adam_row_f32 "mlpcore_adam_row_f32" (float* w, const float* d, float a, float decay,
                                               float* m, float* s, long n, float lr_t,
                                               float b1, float omb1, float b2, float omb2,
                                               float eps, float* z, float xn)
    void momentum_step_f64 "mlpcore_momentum_step_f64" (double* w, const double* g,
                                                         double* v, long n, double lr,
                                                         double mu, int nesterov)
    void momentum_step_f32 "mlpcore_momentum_step_f32" (float* w, const float* g, float* v,
                                                         long n, float lr, float mu,
                                                         int nesterov)
    void adam_step_f64 "mlpcore_adam_step_f64" (double* w, const double* g, double* m,
                                                 double* s, long n, double lr_t, double b1,
                                                 double omb1, double b2, double omb2,
                                                 double eps)
    void adam_step_f32 "mlpcore_adam_step_f32" (float* w, const float* g, float* m, float* s,
                                                 long n, float lr_t, float b1, float omb1,
                                                 float b2, float omb2, float eps)


cdef enum UpdateKind:
    SGD = 0
    MOMENTUM = 1
    NESTEROV = 2
    ADAM = 3


cdef struct UpdateCoefficients:
    # One step's scalars, in double; each kernel rounds them to its dtype. 1 - beta1 and
    # 1 - beta2 are formed in double and then rounded, as scikit-learn's NumPy arithmetic
    # rounds them.
    int kind
    double lr            # Adam: the bias-corrected lr_t of this step
    double momentum
    double beta1
    double beta2
    double one_minus_beta1
    double one_minus_beta2
    double epsilon


cdef struct UpdateRule:
    # A rule's constants and its state across steps: what one fit's updates share.
    int kind
    double lr
    double alpha        # L2 penalty: J_b += alpha / 2 * sum ||W_l||^2 / (B or sum_i w_i)
    double momentum
    double beta1
    double beta2
    double epsilon
    long long t         # Adam: updates taken so far
    double penalty_sum  # the L2 part of Progress.loss_sum: sum over batches of
                        # alpha/2 sum ||W||^2 (times B / sum_i w_i when normalised by weight)
    void* s1            # velocity (momentum, Nesterov) or Adam's m; NULL for SGD
    void* s2            # Adam's s; NULL otherwise


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


cdef inline void sgd_step(floating* theta, const floating* g, Py_ssize_t n,
                          floating lr) noexcept nogil:
    """theta <- theta - lr g (vectorised by GCC as written: one stream, no state)."""
    cdef Py_ssize_t i
    for i in range(n):
        theta[i] = theta[i] - lr * g[i]


cdef inline void apply_step(floating* theta, const floating* g, floating* s1, floating* s2,
                            Py_ssize_t n, const UpdateCoefficients* c) noexcept nogil:
    """One step of the rule ``c.kind`` over the flat parameter vector with gradient g.

    s1 is the velocity (momentum, Nesterov) or Adam's first moment m, s2 Adam's second
    moment s; both are unused (may be NULL) for plain SGD.
    """
    if c.kind == SGD:
        sgd_step(theta, g, n, <floating> c.lr)
    elif c.kind == MOMENTUM or c.kind == NESTEROV:
        if floating is float:
            momentum_step_f32(theta, g, s1, n, <float> c.lr, <float> c.momentum,
                              c.kind == NESTEROV)
        else:
            momentum_step_f64(theta, g, s1, n, c.lr, c.momentum, c.kind == NESTEROV)
    elif floating is float:
        adam_step_f32(theta, g, s1, s2, n, <float> c.lr, <float> c.beta1,
                      <float> c.one_minus_beta1, <float> c.beta2, <float> c.one_minus_beta2,
                      <float> c.epsilon)
    else:
        adam_step_f64(theta, g, s1, s2, n, c.lr, c.beta1, c.one_minus_beta1, c.beta2,
                      c.one_minus_beta2, c.epsilon)


cdef inline void update_row(floating* w, const floating* d, floating a, floating decay,
                            floating* s1, floating* s2, Py_ssize_t n,
                            const UpdateCoefficients* c, floating* z=NULL,
                            floating xn=0) noexcept nogil:
    """One row of a per-sample step, the gradient formed on the fly: g_j = a d_j + decay w_j.

    For a weight row, a is the input unit's activation and d the layer's delta (a rank-1
    gradient, a x d); for a bias, a = 1 and decay = 0. If z is not NULL, z_j += xn w_j with
    the updated w_j (the next sample's forward pass, formed while the row is in registers).
    """
    if floating is float:
        if c.kind == SGD:
            sgd_row_f32(w, d, a, decay, n, <float> c.lr, z, xn)
        elif c.kind == MOMENTUM or c.kind == NESTEROV:
            momentum_row_f32(w, d, a, decay, s1, n, <float> c.lr, <float> c.momentum,
                             c.kind == NESTEROV, z, xn)
        else:
            adam_row_f32(w, d, a, decay, s1, s2, n, <float> c.lr, <float> c.beta1,
                         <float> c.one_minus_beta1, <float> c.beta2,
                         <float> c.one_minus_beta2, <float> c.epsilon, z, xn)
    else:
        if c.kind == SGD:
            sgd_row_f64(w, d, a, decay, n, c.lr, z, xn)
        elif c.kind == MOMENTUM or c.kind == NESTEROV:
            momentum_row_f64(w, d, a, decay, s1, n, c.lr, c.momentum, c.kind == NESTEROV, z,
                             xn)
        else:
            adam_row_f64(w, d, a, decay, s1, s2, n, c.lr, c.beta1, c.one_minus_beta1,
                         c.beta2, c.one_minus_beta2, c.epsilon, z, xn)
