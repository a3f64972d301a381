"""The vector kernels of src/_vmath.h and src/_vrow.h and the Gram block, through the
engine's test hooks, against the accuracy their comments claim: exp within 2 ulp of the
correctly rounded value, 0 below its cut-off; sigmoid within 3 ulp; the Gram block equal to
NumPy's products; the one-row kernels equal, bit for bit, to the sums in the order they
state."""

import numpy as np
import pytest

from mlpcore import _engine

RNG = np.random.default_rng(20261201)


def ulp_distance(a, b):
    """|a - b| in units in the last place, for finite non-negative arrays of one dtype."""
    as_int = np.int64 if a.dtype == np.float64 else np.int32
    return np.abs(a.view(as_int).astype(np.int64) - b.view(as_int).astype(np.int64))


def exp_reference(x):
    """exp(x) correctly rounded to x's dtype (long double for float64, double for float32)."""
    wide = np.longdouble if x.dtype == np.float64 else np.float64
    return np.exp(x.astype(wide)).astype(x.dtype)


@pytest.mark.parametrize("dtype, low", [(np.float64, -708.0), (np.float32, -87.0)])
def test_exp_is_within_2_ulp(dtype, low):
    if dtype == np.float64 and np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        pytest.skip("long double is no wider than double here: no reference")
    x = np.concatenate([RNG.random(400_000) * low, -RNG.random(50_000) * 1e-3,
                        -np.arange(0, -low, 0.25), [0.0, low, -np.finfo(dtype).tiny]])
    x = x.astype(dtype)
    got = x.copy()
    _engine._exp_nonpositive(got)
    assert ulp_distance(got, exp_reference(x)).max() <= 2


@pytest.mark.parametrize("dtype, low", [(np.float64, -708.0), (np.float32, -87.0)])
def test_exp_is_zero_below_its_cutoff(dtype, low):
    x = np.array([low - 0.5, low - 100, -np.inf], dtype=dtype)
    _engine._exp_nonpositive(x)
    assert np.array_equal(x, np.zeros(3, dtype))


def test_exp_refuses_positive_input():
    with pytest.raises(ValueError, match="not <= 0"):
        _engine._exp_nonpositive(np.array([-1.0, 0.5]))
    with pytest.raises(ValueError):
        _engine._exp_nonpositive(np.array([np.nan]))


@pytest.mark.parametrize("dtype, span", [(np.float64, 40.0), (np.float32, 20.0)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_sigmoid_is_within_3_ulp(dtype, span, with_bias):
    # From exp(-|v|) (2 ulp): 1 / (1 + e) or e / (1 + e), one rounding more for 1 + e and
    # one for the quotient.
    z = ((RNG.random((700, 301)) * 2 - 1) * span).astype(dtype)
    b = ((RNG.random(301) * 2 - 1)).astype(dtype) if with_bias else None
    v = z + b if with_bias else z  # the kernel adds the bias in the dtype first, as here
    got = z.copy()
    _engine._sigmoid_rows(got, b)
    wide = np.longdouble if dtype == np.float64 else np.float64
    want = (1 / (1 + np.exp(-v.astype(wide)))).astype(dtype)
    assert ulp_distance(got.ravel(), want.ravel()).max() <= 3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_saturates_without_overflow(dtype):
    z = np.array([[-1e4, -800.0, 0.0, 800.0, 1e4]], dtype=dtype)
    with np.errstate(all="raise"):
        _engine._sigmoid_rows(z)
    assert np.array_equal(z, np.array([[0, 0, 0.5, 1, 1]], dtype=dtype))


def test_sigmoid_refuses_a_bias_of_the_wrong_length():
    with pytest.raises(ValueError, match="entries"):
        _engine._sigmoid_rows(np.zeros((2, 3)), np.zeros(4))


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 1e-5)])
@pytest.mark.parametrize("n, k", [(32, 784), (7, 3), (1, 50)])
def test_gram_block_is_the_lower_triangle_of_a_a_transpose(dtype, rtol, n, k):
    a = RNG.random((n, k)).astype(dtype)
    out = np.full((n, n), 7.0, dtype=dtype)
    _engine._gram_block(a, out)
    want = a.astype(np.float64) @ a.T.astype(np.float64)
    lower = np.tril_indices(n)
    np.testing.assert_allclose(out[lower], want[lower], rtol=rtol)
    assert np.all(out[np.triu_indices(n, 1)] == 7.0)  # the upper triangle is left alone


def test_gram_block_checks_shapes():
    with pytest.raises(ValueError, match="expected"):
        _engine._gram_block(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError):
        _engine._gram_block(np.ones((0, 2)), np.ones((0, 0)))


# -- the one-row kernels of src/_vrow.h -------------------------------------------------------

ROW_SHAPES = [(1, 1), (3, 2), (5, 4), (7, 7), (9, 8), (128, 10), (6, 13), (4, 33)]


def sequential_row_forward(z, W, a):
    """z + sum_i a_i W[i, :], added one i at a time in the dtype (the order _vrow.h claims)."""
    out = z.copy()
    for i in range(W.shape[0]):
        out = out + a[i] * W[i]
    return out


def lane_dots(W, d):
    """<W[i, :], d> in _vrow.h's order: lane q sums j = q mod 4 in order, (s0 + s1) + (s2 + s3)."""
    prod = W * d
    lanes = np.zeros((W.shape[0], 4), dtype=W.dtype)
    for j in range(W.shape[1]):
        lanes[:, j % 4] = lanes[:, j % 4] + prod[:, j]
    return (lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fan_in, fan_out", ROW_SHAPES)
def test_row_forward_is_the_sum_over_rows_in_order(dtype, fan_in, fan_out):
    W = RNG.standard_normal((fan_in, fan_out)).astype(dtype)
    a = RNG.standard_normal(fan_in).astype(dtype)
    z = RNG.standard_normal(fan_out).astype(dtype)
    want = sequential_row_forward(z, W, a)
    in_float64 = z.astype(np.float64) + a.astype(np.float64) @ W.astype(np.float64)
    _engine._row_forward(z, W, a)
    np.testing.assert_array_equal(z, want)  # bit for bit: the order is fixed
    np.testing.assert_allclose(z, in_float64, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fan_in, fan_out", ROW_SHAPES)
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.75])
def test_row_backprop_forms_the_delta_and_the_rank_1_step(dtype, fan_in, fan_out, beta):
    W = RNG.standard_normal((fan_in, fan_out)).astype(dtype)
    a = RNG.standard_normal(fan_in).astype(dtype)
    d = RNG.standard_normal(fan_out).astype(dtype)
    scale = dtype(-0.125)
    out = RNG.standard_normal((fan_in, fan_out)).astype(dtype)
    if beta == 0:
        out[:] = np.nan  # beta = 0: out is written, never read
    want_out = (scale * a)[:, None] * d + (dtype(beta) * out if beta != 0 else 0)
    d_prev = np.full(fan_in, np.nan, dtype=dtype)
    _engine._row_backprop(W, a, d, d_prev, out, scale, dtype(beta))
    np.testing.assert_array_equal(d_prev, lane_dots(W, d))
    np.testing.assert_allclose(d_prev, W.astype(np.float64) @ d,
                               rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5)
    np.testing.assert_array_equal(out, want_out.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_backprop_in_place_uses_the_weights_before_the_step(dtype):
    """out = W (the fused SGD step): every delta comes from the old weights."""
    W = RNG.standard_normal((128, 10)).astype(dtype)
    a = RNG.standard_normal(128).astype(dtype)
    d = RNG.standard_normal(10).astype(dtype)
    old = W.copy()
    d_prev = np.empty(128, dtype=dtype)
    _engine._row_backprop(W, a, d, d_prev, W, dtype(-0.5), dtype(1.0))
    np.testing.assert_array_equal(d_prev, lane_dots(old, d))
    np.testing.assert_array_equal(W, old + (dtype(-0.5) * a)[:, None] * d)
    untouched = RNG.standard_normal((3, 4)).astype(dtype)
    before = untouched.copy()
    _engine._row_backprop(untouched, np.ones(3, dtype), np.zeros(4, dtype), None, untouched,
                          dtype(1), dtype(1))  # d_prev None: only the (zero) step
    np.testing.assert_array_equal(untouched, before)


def test_row_kernels_check_shapes():
    with pytest.raises(ValueError, match="expected"):
        _engine._row_forward(np.zeros(3), np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="do not match"):
        _engine._row_backprop(np.zeros((2, 3)), np.zeros(2), np.zeros(4), None,
                              np.zeros((2, 3)), 1.0, 1.0)
