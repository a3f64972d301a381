"""Checks and conversions at the Python boundary, done once so the kernels need none.

What is copied: X and Y are converted with :func:`numpy.ascontiguousarray` to the working
dtype, which copies only when the input is not already a C-contiguous array of that dtype
(lists, Fortran-ordered or strided views, other dtypes). A C-contiguous float64 array (or
float32 when training in float32) is used as is, read-only and memory-mapped arrays included;
it is never written to. Integer, boolean and float16 inputs are converted once, to float64
(or to float32 with ``dtype=np.float32``). Class labels become a one-hot (N, K) matrix in the
working dtype. A validation split (``validation_fraction``, ``early_stopping``) copies the
rows of each part.

Sparse X (any ``scipy.sparse`` matrix or array) is kept sparse: a CSR matrix of the working
dtype is used as is (its values, indices and row pointers are read, never written, and
never densified); any other format (CSC, COO, LIL, ...) or dtype is converted once to CSR
in the working dtype, which copies it. Duplicate entries add up and unsorted indices are
fine, as in scipy.

What is refused: non-numeric, complex, object and structured inputs (TypeError); masked
arrays with masked entries, arrays that are not 2-D, empty arrays, NaN or infinity, and the
wrong number of features (ValueError). Each message names the argument.
"""

import numbers
import operator

import numpy as np
import scipy.sparse

# Rows checked at a time for NaN/inf, so the check allocates a bounded temporary.
_FINITE_CHECK_ROWS = 65536


def working_dtype(X, dtype):
    """The dtype training runs in: ``dtype`` if given, else float32 for float32 X, else float64."""
    if dtype is not None:
        try:
            dt = np.dtype(dtype)
        except TypeError as exc:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
        if dt not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        return dt
    dt = getattr(X, "dtype", None)
    if isinstance(dt, np.dtype) and dt.kind == "f" and dt.itemsize == 4:  # either byte order
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _as_numeric_array(a, name):
    if scipy.sparse.issparse(a):
        raise TypeError(f"{name} is a sparse matrix; it must be a dense array "
                        f"({name}.toarray())")
    if np.ma.isMaskedArray(a) and np.ma.is_masked(a):
        raise ValueError(f"{name} is a masked array with masked entries; fill them "
                         f"({name}.filled(value)) or drop those rows")
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} has complex dtype {arr.dtype}; only real numbers are supported")
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold numbers, got dtype {arr.dtype}"
            + (" (an object array)" if arr.dtype.kind == "O" else "")
        )
    return arr


def check_finite(arr, name):
    """Raise ValueError if ``arr`` holds NaN or infinity, checking a bounded block at a time."""
    flat = arr.reshape(len(arr), -1) if arr.ndim > 1 else arr
    if len(flat) <= _FINITE_CHECK_ROWS:
        # One block: a sum is finite exactly when no entry is NaN or infinite (and no
        # finite entries overflow it, which the fallback below sorts out); it needs no
        # temporary boolean array, which is what a prediction on a few rows pays for.
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(np.add.reduce(flat, axis=None)):
                return
    for start in range(0, len(flat), _FINITE_CHECK_ROWS):
        block = flat[start:start + _FINITE_CHECK_ROWS]
        if not np.isfinite(block).all():
            bad = start + int(np.argwhere(~np.isfinite(block))[0][0])
            raise ValueError(f"{name} contains NaN or infinity (first at row {bad})")


def check_X(X, dtype, n_features=None, name="X"):
    """Return X as a C-contiguous 2-D array of ``dtype``, refusing anything unusable.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    dtype : numpy dtype
        float32 or float64.
    n_features : int, optional
        The number of columns X must have (a trained model's input width).

    Raises
    ------
    TypeError
        Non-numeric, complex, object or sparse input.
    ValueError
        Not 2-D, empty, NaN or infinite values, or the wrong number of features.
    """
    if scipy.sparse.issparse(X):
        return _check_sparse_X(X, dtype, n_features, name)
    arr = _as_numeric_array(_from_nullable_columns(X), name)
    if arr.ndim != 2:
        hint = f"; for a single feature use {name}.reshape(-1, 1)" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got {arr.ndim}-D{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has zero samples")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has zero features")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, but the model expects {n_features}")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > np.dtype(dtype).itemsize:
        big = np.finfo(dtype).max
        for start in range(0, arr.shape[0], _FINITE_CHECK_ROWS):
            part = arr[start:start + _FINITE_CHECK_ROWS]
            with np.errstate(invalid="ignore"):
                over = np.abs(part) > big
            if over.any():
                row, col = np.argwhere(over)[0]
                raise ValueError(
                    f"{name} holds {part[row, col]!r} (row {start + row}, column {col}), beyond "
                    f"{np.dtype(dtype).name}'s range (+-{big:.3g}); train in float64 "
                    "(dtype=None or numpy.float64) or rescale the features")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    check_finite(arr, name)
    return arr


def _check_sparse_X(X, dtype, n_features, name):
    """check_X for a scipy.sparse X: CSR in ``dtype`` (converted once if it is not), with
    finite values and the right shape; its structure is checked again by the engine."""
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got {X.ndim}-D")
    if X.dtype.kind == "c":
        raise TypeError(f"{name} has complex dtype {X.dtype}; only real numbers are supported")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {X.dtype}")
    n, d = X.shape
    if n == 0:
        raise ValueError(f"{name} has zero samples")
    if d == 0:
        raise ValueError(f"{name} has zero features")
    if n_features is not None and d != n_features:
        raise ValueError(f"{name} has {d} features, but the model expects {n_features}")
    if X.format != "csr":
        X = X.tocsr()
    values = X.data
    if values.dtype.kind == "f" and values.dtype.itemsize > np.dtype(dtype).itemsize:
        with np.errstate(invalid="ignore"):
            over = np.abs(values) > np.finfo(dtype).max
        if over.any():
            raise ValueError(f"{name} holds {values[np.argmax(over)]!r}, beyond "
                             f"{np.dtype(dtype).name}'s range; train in float64 or rescale "
                             "the features")
    if X.dtype != dtype:
        X = X.astype(dtype)
    if not np.isfinite(np.add.reduce(X.data, dtype=np.float64)):
        bad = np.flatnonzero(~np.isfinite(X.data))
        if bad.size:
            row = int(np.searchsorted(X.indptr, bad[0], side="right")) - 1
            raise ValueError(f"{name} contains NaN or infinity (first at row {row})")
    return X


def _from_nullable_columns(X):
    """A DataFrame with pandas' nullable columns (Float64, Int64, boolean) as a float64
    array with NaN for missing values (then refused as NaN, naming the row); anything else
    unchanged. NumPy would make such a frame an object array."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(X, "to_numpy"):
        return X
    try:
        nullable = any(getattr(d, "na_value", None) is not None and not isinstance(d, np.dtype)
                       for d in dtypes)
    except TypeError:
        return X
    if not nullable:
        return X
    try:
        return X.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        return X


def check_sample_weight(sample_weight, n_samples, dtype, scale=False):
    """Return per-sample weights as a C-contiguous 1-D array of ``dtype``, or None when not
    given.

    Weights must be finite and non-negative with a positive sum. With ``scale`` (training)
    they are returned scaled to mean 1 (:func:`mean_one`), so any magnitude a float64 holds
    is taken: 1e308 or 1e-320 each neither overflows nor underflows. Without it (the loss
    and score of given data, J = sum_i w_i l_i / sum_i w_i + penalty / sum_i w_i) they are
    returned as given, and their sum must be a normal number of the working dtype: neither
    overflowing (1e308 each) nor below its normal range (1e-320 each), where every later
    division by it would be blamed on the learning rate.
    """
    if sample_weight is None:
        return None
    sw = _as_numeric_array(sample_weight, "sample_weight")
    if sw.dtype.kind == "b":
        raise TypeError("sample_weight must hold numbers (one weight per sample), got "
                        f"booleans: {sample_weight!r}"[:200])
    if sw.ndim == 0:
        sw = np.full(n_samples, sw.item())
    if sw.ndim != 1 or sw.shape[0] != n_samples:
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {sw.shape}")
    if scale:
        sw = np.asarray(sw, dtype=np.float64)
        check_finite(sw, "sample_weight")
        if (sw < 0).any():
            raise ValueError("sample_weight must be non-negative")
        if not (sw > 0).any():
            raise ValueError("sample_weight must have a positive sum")
        return mean_one(sw, dtype)
    sw = np.ascontiguousarray(sw, dtype=dtype)
    check_finite(sw, "sample_weight")
    if (sw < 0).any():
        raise ValueError("sample_weight must be non-negative")
    with np.errstate(over="ignore"):
        total = sw.sum(dtype=np.float64 if dtype == np.float64 else np.float32)
    info = np.finfo(dtype)
    if not np.isfinite(total):
        raise ValueError(f"sample_weight sums beyond {np.dtype(dtype).name}'s range; only the "
                         "weights' ratios matter: divide them by their maximum")
    if not total > 0:
        raise ValueError("sample_weight must have a positive sum")
    if total < info.tiny:
        raise ValueError(f"sample_weight sums to {float(total):.3g}, below "
                         f"{np.dtype(dtype).name}'s normal range; only the weights' ratios "
                         "matter: divide them by their maximum")
    return sw


def mean_one(sw, dtype):
    """Non-negative weights with a positive entry, scaled to mean 1, as ``dtype``.

    Computed in float64, dividing by the maximum first, so neither huge (1e308) nor tiny
    (1e-320) weights overflow or underflow; a weight below ``dtype``'s range relative to the
    largest becomes 0. This is the scale training uses: a batch of B rows has the loss
    sum_i w_i l_i / B, which for the whole training set is sum_i w_i l_i / sum_i w_i.
    """
    w = np.asarray(sw, dtype=np.float64)
    if not w.max() > 0:
        raise ValueError("the sample weights leave no training sample with a positive weight")
    w = w / w.max()
    w *= len(w) / w.sum()
    return np.ascontiguousarray(w, dtype=dtype)


def check_int(value, name, minimum=1, maximum=None):
    """Return ``value`` as an int in [minimum, maximum]; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = operator.index(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_positive_float(value, name, allow_zero=False):
    """Return ``value`` as a finite float > 0 (or >= 0 when ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound} and finite, got {value}")
    return value


def check_hidden(hidden):
    """Return the hidden layer widths as a tuple of positive ints (an int means one layer).

    A sequence (tuple, list, 1-D integer array) of widths, or one integer; strings, bytes,
    mappings and sets are refused (their items are not an ordered list of widths).
    """
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if isinstance(hidden, (str, bytes, bytearray, dict, set, frozenset)) or not hasattr(
            hidden, "__iter__"):
        raise TypeError(f"hidden must be a sequence of layer widths like (128, 64) or one "
                        f"integer (each hidden layer width must be an integer), got {hidden!r}")
    return tuple(check_int(h, "hidden layer width", minimum=1) for h in hidden)


def check_bool(value, name):
    """Return ``value`` as a bool; only True/False (and NumPy booleans) are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)
