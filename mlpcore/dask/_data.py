"""Training data on the workers: row partitions of X, Y and the sample weights, aligned,
checked, converted once into the arrays the engine takes, and kept (persisted) where they are.

A partition p holds rows ``I_p`` of the data; the partitions are disjoint and cover all N
rows. After :func:`prepare`, partition p is the triple ``(X_p, Y_p, w_p)`` the compiled
engine reads: X_p C-contiguous in the model's dtype (scaled when the model scales its
inputs), Y_p the encoded (N_p x K) target matrix, w_p the per-sample weights (class weights
folded in) or None. Those arrays never leave their worker; only parameters and the
partitions' loss and gradient sums travel (see :mod:`mlpcore.dask._methods`).
"""

import numbers

import numpy as np

import dask
import dask.array as da

from mlpcore._targets import _sorted_labels, infer_task
from mlpcore._validation import check_finite


def _is_dataframe(obj):
    return hasattr(obj, "npartitions") and hasattr(obj, "columns") and hasattr(obj, "dtypes")


def _is_series(obj):
    return hasattr(obj, "npartitions") and not hasattr(obj, "columns")


def _is_dask_array(obj):
    return isinstance(obj, da.Array)


def _is_dask(obj):
    return _is_dask_array(obj) or hasattr(obj, "npartitions")


class Blocks:
    """Row blocks of X, Y and the sample weights, aligned partition by partition.

    Attributes
    ----------
    x, y, sw : list of dask.delayed
        One delayed object per partition (``sw`` entries may be None).
    rows : list of int or None
        Rows per partition when known before computing (dask arrays), else None.
    feature_names : list of str or None
    frame : bool
        X is a dask DataFrame (its blocks are pandas DataFrames).
    """

    def __init__(self, x, y, sw, rows, feature_names, frame):
        self.x, self.y, self.sw, self.rows = x, y, sw, rows
        self.feature_names, self.frame = feature_names, frame

    def __len__(self):
        return len(self.x)


def _known_row_chunks(A, name):
    chunks = A.chunks[0]
    if any(isinstance(c, float) and np.isnan(c) for c in chunks):
        raise ValueError(f"{name} has unknown chunk sizes (a dask array built from a DataFrame "
                         f"or a filter?); call {name}.compute_chunk_sizes() first, or pass the "
                         "DataFrame itself")
    return [int(c) for c in chunks]


def _array_blocks(A, name, ndim=(1, 2)):
    """(delayed blocks along rows, row counts) of a dask array, column chunks merged."""
    if A.ndim not in ndim:
        raise ValueError(f"{name} must be {' or '.join(f'{d}-D' for d in ndim)}, got "
                         f"{A.ndim}-D with shape {A.shape}")
    rows = _known_row_chunks(A, name)
    if A.ndim == 2 and A.numblocks[1] > 1:
        A = A.rechunk({1: -1})
    return list(A.to_delayed().ravel()), rows


def split_rows(data, rows, name):
    """A NumPy (or pandas) array cut into delayed pieces of ``rows`` rows each."""
    if hasattr(data, "iloc"):
        data = data.to_numpy()
    data = np.asarray(data)
    if data.ndim == 0 or data.shape[0] != sum(rows):
        raise ValueError(f"{name} has {0 if data.ndim == 0 else data.shape[0]} rows, X "
                         f"{sum(rows)}")
    bounds = np.cumsum([0] + list(rows))
    return [dask.delayed(data[a:b], pure=True) for a, b in zip(bounds[:-1], bounds[1:])]


def blocks(client, X, Y, sample_weight):
    """Aligned row blocks of (X, Y, sample_weight).

    Parameters
    ----------
    X : dask.array.Array (N x D) or dask.dataframe.DataFrame
    Y : dask array or Series with X's row partitions, NumPy array, or (with a DataFrame X)
        the name of one of its columns, which is then taken out of the features.
    sample_weight : like Y (no column name), or None

    Raises
    ------
    TypeError
        X is not a dask collection.
    ValueError
        Unknown chunk sizes, partitions that do not line up, a target column that is not
        there, or a Y of another length.
    """
    if not _is_dask_array(X) and not _is_dataframe(X):
        raise TypeError(f"X must be a dask array or a dask DataFrame, got {type(X).__name__}; "
                        "for NumPy data use mlpcore.fit, or wrap it with dask.array.from_array")
    frame = _is_dataframe(X)
    if isinstance(Y, str):
        if not frame:
            raise ValueError(f"Y={Y!r} names a column, but X is not a DataFrame")
        if Y not in X.columns:
            raise ValueError(f"the target column {Y!r} is not in X; its columns are "
                             f"{list(X.columns)[:20]}")
        # Split each partition on its worker: X and Y then hold the same rows by
        # construction (dask may partition two projections of one source differently).
        whole = list(X.to_delayed())
        names = [n for n in X.columns if n != Y]
        x = [dask.delayed(_drop_column)(b, Y) for b in whole]
        y = [dask.delayed(_take_column)(b, Y) for b in whole]
        return Blocks(x, y, _aligned_weights(client, sample_weight, len(whole), None, X),
                      None, names if all(isinstance(n, str) for n in names) else None, True)
    if frame:
        names = list(X.columns)
        if not all(isinstance(n, str) for n in names):
            names = None
        x = list(X.to_delayed())
        rows = None
        npart = X.npartitions
    else:
        x, rows = _array_blocks(X, "X", ndim=(2,))
        names = None
        npart = len(x)

    def aligned(A, name):
        if A is None:
            return None
        if _is_dask_array(A):
            b, r = _array_blocks(A, name)
            if len(b) != npart or (rows is not None and r != rows):
                got = r if len(b) == npart else f"{len(b)} partitions"
                want = rows if rows is not None else f"{npart} partitions"
                raise ValueError(f"{name}'s row partitions ({got}) do not line up with X's "
                                 f"({want}); rechunk {name} to X's row chunks, e.g. "
                                 f"{name}.rechunk({{0: X.chunks[0]}})")
            return b
        if _is_series(A) or _is_dataframe(A):
            if A.npartitions != npart:
                raise ValueError(f"{name} has {A.npartitions} partitions, X {npart}; they must "
                                 "hold the same rows partition by partition")
            return list(A.to_delayed())
        counts = rows
        if counts is None:
            counts = [int(c) for c in client.compute(X.map_partitions(len)).result()]
        return split_rows(A, counts, name)

    y = aligned(Y, "Y")
    sw = aligned(sample_weight, "sample_weight")
    return Blocks(x, y, sw if sw is not None else [None] * npart, rows, names, frame)


def _aligned_weights(client, sample_weight, npart, rows, X):
    if sample_weight is None:
        return [None] * npart
    if _is_dask_array(sample_weight):
        b, r = _array_blocks(sample_weight, "sample_weight")
        if len(b) != npart:
            raise ValueError(f"sample_weight's row partitions ({len(b)} partitions) do not "
                             f"line up with X's ({npart} partitions)")
        return b
    if _is_series(sample_weight):
        if sample_weight.npartitions != npart:
            raise ValueError(f"sample_weight has {sample_weight.npartitions} partitions, X "
                             f"{npart}")
        return list(sample_weight.to_delayed())
    counts = [int(c) for c in client.compute(X.map_partitions(len)).result()]
    return split_rows(sample_weight, counts, "sample_weight")


def _drop_column(df, name):
    return df.drop(columns=name)


def _take_column(df, name):
    return df[name]


# -- what the client learns about the targets before building the model ----------------------
def target_summary(yb, output, loss, task):
    """What partition's targets say: shape, task, labels and their counts (on a worker)."""
    y = np.asarray(yb.to_numpy() if hasattr(yb, "to_numpy") else yb)
    info = {"rows": len(y), "ndim": y.ndim, "cols": y.shape[1] if y.ndim == 2 else 1,
            "dtype": y.dtype}
    if len(y) == 0:
        info["task"] = None
        return info
    info["task"] = task or infer_task(y, output, loss)
    if info["task"] == "classification":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim == 1:
            if y.dtype.kind == "O":
                y = y.astype(_sorted_labels(y).dtype)
            labels, counts = np.unique(y, return_counts=True)
            info["labels"], info["counts"] = labels, counts
        else:
            info["one_hot"] = bool((y.sum(axis=1) == 1).all())
            info["counts"] = y.sum(axis=0)
            info["indicator"] = bool(np.isin(y, (0, 1)).all())
        info["head"] = None
    else:
        info["head"] = y[:2]
    return info


def combine_summaries(infos, output, loss, task):
    """(Y sample, classes, per-class counts) for building the model from the summaries.

    Mirrors ``Targets.from_y`` on the whole Y: regression if any partition is, classes the
    sorted union of the partitions' labels.
    """
    infos = [i for i in infos if i["task"] is not None]
    if not infos:
        raise ValueError("Y has no rows")
    if len({(i["ndim"], i["cols"]) for i in infos}) > 1:
        raise ValueError("Y's partitions have different shapes: "
                         f"{sorted({(i['ndim'], i['cols']) for i in infos})}")
    kind = task or ("regression" if any(i["task"] == "regression" for i in infos)
                    else "classification")
    if kind == "regression":
        head = next(i["head"] for i in infos if i["head"] is not None) if any(
            i["head"] is not None for i in infos) else None
        if head is None:  # partitions looked like labels but another was regression
            first = infos[0]
            head = np.zeros((2,) if first["ndim"] == 1 else (2, first["cols"]))
        return np.asarray(head, dtype=np.float64), None, None
    if "labels" in infos[0]:
        labels = np.concatenate([i["labels"] for i in infos])
        classes, where = np.unique(labels, return_inverse=True)
        counts = np.zeros(len(classes))
        np.add.at(counts, where, np.concatenate([i["counts"] for i in infos]))
        return None, classes, counts
    if not all(i["indicator"] for i in infos):
        raise ValueError("2-D classification targets must be 0/1: one-hot rows (one class "
                         "each) or a multi-label indicator")
    k = infos[0]["cols"]
    counts = np.sum([i["counts"] for i in infos], axis=0).astype(np.float64)
    if all(i["one_hot"] for i in infos):
        return np.eye(k), None, counts
    return np.vstack([np.eye(k), np.zeros((1, k))]), None, counts


def per_class_weights(model, counts):
    """The class weights as one factor per class (or None), from the whole data's counts.

    ``'balanced'`` is N / (n_classes N_c) with the counts of all partitions: the rule of
    ``Targets.class_weights``, which the single-machine fit uses too.
    """
    if model.class_weight is None:
        return None
    return model.targets.class_weights(model.class_weight, counts)


# -- on the workers ---------------------------------------------------------------------------
def _weights(sw, n, dtype, name="sample_weight"):
    """A partition's weights, checked as ``check_sample_weight`` does except that a partition
    may sum to zero (the whole data's sum is checked on the client)."""
    if sw is None:
        return None
    sw = np.asarray(sw.to_numpy() if hasattr(sw, "to_numpy") else sw)
    if sw.dtype.kind == "b":
        raise TypeError(f"{name} must hold numbers (one weight per sample), got booleans")
    if sw.ndim != 1 or sw.shape[0] != n:
        raise ValueError(f"{name} has a partition of shape {sw.shape}, its X partition {n} "
                         "rows: they must hold the same rows")
    sw = np.ascontiguousarray(sw, dtype=dtype)
    check_finite(sw, name)
    if (sw < 0).any():
        raise ValueError(f"{name} must be non-negative")
    return sw


def check_same_rows(n_x, n_y):
    """Refuse a partition whose X and Y hold different row counts, saying how to avoid it."""
    if n_y != n_x:
        raise ValueError(
            f"a partition of X has {n_x} rows but its Y partition {n_y}: X and Y must hold the "
            "same rows partition by partition. Two selections of one DataFrame (df[features] "
            "and df['label'] read from Parquet) can be cut into partitions differently; pass "
            "the frame and the label column's name instead: mlpcore.dask.fit(df, 'label')")


def prepare(model, xb, yb, swb, per_class, split=None):
    """Partition p as the engine reads it: ``(X_p, Y_p, w_p)`` (on the worker holding it).

    ``model._inputs`` and ``model._encode`` are the single-machine checks and conversions
    (columns matched by name, dtype, scaling, target encoding); the class weights come
    resolved from the whole data (``per_class``).

    ``split = (fraction, entropy, p)`` holds out a validation part of the partition
    (stratified by class, drawn from its own random stream): the result is then
    ``((X_p, Y_p, w_p), (Xv_p, Yv_p, wv_p))``.
    """
    n = len(xb)
    if yb is None:
        raise ValueError("Y is missing")
    check_same_rows(n, len(yb))
    if n == 0:
        empty = (np.empty((0, model.n_features), model.dtype),
                 np.empty((0, model.n_outputs), model.dtype), None)
        return empty if split is None else (empty, empty)
    X = model._inputs(xb)
    yv = yb.to_numpy() if hasattr(yb, "to_numpy") else yb
    Ym = model._encode(yv, n)
    sw = _weights(swb, n, model.dtype)
    if per_class is not None:
        w = per_class[model.targets.class_index_of_rows(Ym)]
        sw = np.ascontiguousarray(w if sw is None else w * sw, dtype=model.dtype)
    if split is None:
        return X, Ym, sw
    from mlpcore._splitting import validation_split

    fraction, entropy, p = split
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(p,)))
    labels = model.targets.labels_for_stratification(Ym)
    train, val = validation_split(n, fraction, rng, labels)

    def take(rows):
        return (np.ascontiguousarray(X[rows]), np.ascontiguousarray(Ym[rows]),
                None if sw is None else np.ascontiguousarray(sw[rows]))

    return take(train), take(val)


def part_stats(part):
    """(rows, sum of weights) of a prepared partition."""
    X, _, sw = part
    return len(X), float(len(X) if sw is None else np.sum(sw, dtype=np.float64))


def column_sums(xb, frame):
    """Per-column (count, sum, min, max) of a raw partition, in float64."""
    A = np.asarray(xb.to_numpy() if frame else xb, dtype=np.float64)
    if A.shape[0] == 0:
        return 0, np.zeros(A.shape[1]), np.full(A.shape[1], np.inf), np.full(A.shape[1],
                                                                              -np.inf)
    return A.shape[0], A.sum(axis=0), A.min(axis=0), A.max(axis=0)


def column_squares(xb, frame, mean):
    A = np.asarray(xb.to_numpy() if frame else xb, dtype=np.float64)
    return ((A - mean) ** 2).sum(axis=0)


def head(xb, rows=1000):
    return xb.iloc[:rows] if hasattr(xb, "iloc") else np.asarray(xb[:rows])


def is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
