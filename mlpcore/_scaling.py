"""Feature scaling: the per-column map x -> (x - shift) / scale a model can apply to its inputs.

With ``scale='standard'`` (mean 0, standard deviation 1) or ``'minmax'`` (0..1), a model
computes the scaling from the data it is first trained on, keeps it as part of its state,
and applies it to every input it is given afterwards (prediction, scores, further
training), so it takes raw data. Its parameters act on the scaled features; the same
network on raw features is, by the first layer's linearity,

    Z1 = ((X - shift) / scale) W1 + b1 = X (W1 / scale[:, None]) + (b1 - (shift / scale) W1),

which :meth:`Scaling.fold` computes (the command line folds its own scaling this way).
"""

from typing import NamedTuple

import numpy as np
import scipy.sparse

SCALINGS = ("standard", "minmax", "maxabs")

# Feature scales (standard deviations) further apart than this make gradient descent on
# the raw features crawl along the small ones; fit warns, naming scale=.
SPREAD_WARNING = 1e3


class Scaling(NamedTuple):
    """Per-column ``(A - shift) / scale``.

    Attributes
    ----------
    shift, scale : ndarray of float64, shape (D,)
    """

    shift: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_data(cls, A, how):
        """The scaling that standardises the columns of A or maps them onto 0..1.

        Parameters
        ----------
        A : ndarray of shape (N, D), or (N,) for one column
        how : {'standard', 'minmax', 'maxabs'}
            Mean 0 and standard deviation 1, minimum 0 and maximum 1, or largest absolute
            value 1 (no shift: the one for sparse A, whose zeros it keeps). Constant (or
            non-finite) columns get scale 1.

        Returns
        -------
        Scaling
        """
        if scipy.sparse.issparse(A):
            if how != "maxabs":
                raise ValueError(f"scale={how!r} would shift sparse X's zeros and make it "
                                 "dense; use scale='maxabs' (divides each column by its "
                                 "largest absolute value)")
            scale = column_max_abs(A)
            scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
            return cls(np.zeros(A.shape[1]), scale)
        A = np.asarray(A, dtype=np.float64).reshape(len(A), -1)
        if how == "maxabs":
            shift, scale = np.zeros(A.shape[1]), np.abs(A).max(axis=0)
        elif how == "standard":
            shift, scale = A.mean(axis=0), A.std(axis=0)
        else:
            shift = A.min(axis=0)
            scale = A.max(axis=0) - shift
        scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
        return cls(shift, scale)

    @classmethod
    def from_arrays(cls, shift, scale, n_features):
        """A scaling read back from a model's state, checked (it may come from a file)."""
        for name, a in (("input_shift", shift), ("input_scale", scale)):
            if a.dtype != np.float64 or a.shape != (n_features,) or not np.isfinite(a).all():
                raise ValueError(f"{name} must be {n_features} finite float64 values")
        if not (scale > 0).all():
            raise ValueError("input_scale must be positive")
        return cls(np.array(shift, copy=True), np.array(scale, copy=True))

    def apply(self, A, dtype=None):
        """``(A - shift) / scale`` for A of shape (N, D), or (N,) when D is 1: a new array,
        C-contiguous, in ``dtype`` (default float64); computed in float64. A sparse (CSR)
        A, which only a shift-free scaling takes, gives a CSR copy with its values scaled."""
        if scipy.sparse.issparse(A):
            out = A.astype(dtype or np.float64, copy=True)
            out.data[:] = A.data / self.scale[A.indices]
            return out
        out = (A.reshape(len(A), -1) - self.shift) / self.scale
        return np.ascontiguousarray(out.reshape(A.shape), dtype=dtype or np.float64)

    def fold(self, W1, b1):
        """The first layer's (W1, b1) for raw inputs, from those for scaled ones (float64)."""
        W = np.asarray(W1, dtype=np.float64)
        b = np.asarray(b1, dtype=np.float64)
        return W / self.scale[:, None], b - (self.shift / self.scale) @ W


# Stored entries of a sparse X read at a time by column_max_abs: bounds its temporary.
_BLOCK_ENTRIES = 1 << 18


def column_max_abs(X):
    """max_i |X[i, j]| for every column j of a scipy.sparse X (float64, shape (D,)), in
    O(nnz) time and bounded memory (``abs(X)`` would copy all of X): X is read a block of
    rows at a time. Duplicate entries add up, as everywhere in scipy (a block that may hold
    some is summed first)."""
    X = X if X.format == "csr" else X.tocsr()
    out = np.zeros(X.shape[1])
    n, start = X.shape[0], 0
    while start < n:
        # Rows holding about _BLOCK_ENTRIES entries (at least one row).
        stop = int(np.searchsorted(X.indptr, X.indptr[start] + _BLOCK_ENTRIES, side="right"))
        stop = min(n, max(stop - 1, start + 1))
        block = X[start:stop]
        if not block.has_canonical_format:
            block.sum_duplicates()
        np.maximum.at(out, block.indices, np.abs(block.data))
        start = stop
    return out


def scale_spread(X, max_rows=256):
    """The ratio of the largest to the smallest non-zero column standard deviation of X,
    estimated on at most ``max_rows`` evenly spaced rows (cheap next to a training epoch);
    for sparse X, of the largest to the smallest non-zero column maximum of |x|."""
    if scipy.sparse.issparse(X):
        # A few rows of sparse X hold most columns zero or once, so their standard
        # deviations say little; each column's largest |x| over all of X (O(nnz)) is the
        # scale that matters there, and the one scale='maxabs' divides by.
        std = column_max_abs(X)
    else:
        rows = X[::max(1, X.shape[0] // max_rows)]
        std = rows.std(axis=0, dtype=np.float64)
    std = std[std > 0]
    return float(std.max() / std.min()) if std.size >= 2 else 1.0
