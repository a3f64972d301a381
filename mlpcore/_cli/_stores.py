"""Parquet files or folders and Zarr arrays as ``mlpcore train`` data.

Read into memory (NumPy arrays, for :func:`mlpcore.fit`) or, with --workers/--scheduler,
lazily as dask collections that :func:`mlpcore.dask.fit` reads partition by partition on the
workers. A Parquet file or folder names its label column with --target, as a CSV does; a
Zarr array (a 2-D feature array) takes its targets from another Zarr array given with
--labels, as an IDX images file does.

Reading Parquet needs pandas and pyarrow, Zarr needs zarr, and the lazy forms dask: all in
``pip install "mlpcore[dask]"``.
"""

import os

import numpy as np

from mlpcore._cli._errors import EXIT_USAGE, CLIError

INSTALL = 'pip install "mlpcore[dask]"'
FORMATS = {"parquet": "Parquet", "zarr": "Zarr"}


def _is_parquet_file(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False


def _zarr_node(path):
    """'array', 'group' or None: what the Zarr (v2 or v3) metadata in folder ``path`` says."""
    if os.path.isfile(os.path.join(path, ".zarray")):
        return "array"
    if os.path.isfile(os.path.join(path, ".zgroup")):
        return "group"
    meta = os.path.join(path, "zarr.json")
    if os.path.isfile(meta):
        import json

        try:
            with open(meta) as f:
                kind = json.load(f).get("node_type")
        except (OSError, ValueError):
            return None
        return kind if kind in ("array", "group") else None
    return None


def store_format(path):
    """'parquet' (a Parquet file, or a folder of them), 'zarr' (a Zarr array or group) or
    None (anything else: a CSV, NPZ or IDX file, or a path that does not exist).

    Parameters
    ----------
    path : str

    Returns
    -------
    str or None
    """
    if os.path.isfile(path):
        return "parquet" if _is_parquet_file(path) else None
    if not os.path.isdir(path):
        return None
    if _zarr_node(path) is not None:
        return "zarr"
    for root, _, files in os.walk(path):
        for name in files:
            if name in ("_metadata", "_common_metadata") or name.endswith((".parquet", ".parq")):
                return "parquet"
            if not name.startswith((".", "_")) and _is_parquet_file(os.path.join(root, name)):
                return "parquet"
    return None


def _need(module, what):
    """Import ``module``; CLIError naming what needs it and the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise CLIError(f"{what} needs {module.split('.')[0]}: {INSTALL}") from None


def check_options(path, fmt, *, target, labels, index_column):
    """Refuse the options that do not fit a Parquet or Zarr DATA, before reading anything.

    Raises
    ------
    CLIError
        A usage error naming the option: --labels or --index-column with Parquet, --target
        with Zarr, a Zarr DATA without --labels, a Zarr group instead of an array.
    """
    if index_column:
        raise CLIError(f"--index-column applies to CSV files, and {path} is a "
                       f"{FORMATS[fmt]} {'array' if fmt == 'zarr' else 'file'}", EXIT_USAGE)
    if fmt == "parquet":
        if labels is not None:
            raise CLIError(f"--labels applies to IDX image files and Zarr arrays, and {path} is "
                           "Parquet: name its label column with --target COLUMN", EXIT_USAGE)
        return
    if _zarr_node(path) == "group":
        raise CLIError(f"{path} is a Zarr group; give the path of the feature array in it "
                       "(and --labels the path of the label array)")
    if target is not None:
        raise CLIError(f"--target names a column of a CSV or Parquet file, and {path} is a "
                       "Zarr array: give its targets with --labels ARRAY", EXIT_USAGE)
    if labels is None:
        raise CLIError(f"{path} is a Zarr array of features; give its targets with --labels "
                       "ARRAY (a Zarr array with one row per sample)", EXIT_USAGE)
    if not os.path.exists(labels):
        raise CLIError(f"--labels: no such Zarr array: {labels}")
    if _zarr_node(labels) != "array":
        raise CLIError(f"--labels {labels} is not a Zarr array (with a Zarr DATA the labels "
                       "are a Zarr array too)")


def _columns_shown(columns):
    shown = ", ".join(repr(c) for c in columns[:12])
    return shown + (", ..." if len(columns) > 12 else "")


def _parquet_columns(path, columns, dtypes, target):
    """The feature column names; CLIError for a missing or absent target, or features that
    are not numbers."""
    columns = [str(c) for c in columns]
    if target is None:
        raise CLIError(f"{path}: name the target column with --target (the columns are "
                       f"{_columns_shown(columns)})", EXIT_USAGE)
    if target not in columns:
        raise CLIError(f"--target {target}: {path} has no column {target!r} (its columns are "
                       f"{_columns_shown(columns)})")
    features = [c for c in columns if c != target]
    if not features:
        raise CLIError(f"{path} has no feature columns besides the target {target!r}")
    bad = [c for c, t in zip(columns, dtypes) if c != target and _kind(t) not in "biuf"]
    if bad:
        raise CLIError(f"{path}: feature columns must hold numbers; {_columns_shown(bad)} "
                       f"do{'es' if len(bad) == 1 else ''} not")
    return features


def _kind(dtype):
    """A NumPy or pandas dtype's kind character ('O' for pandas' string and object types)."""
    kind = getattr(dtype, "kind", None)
    return kind if isinstance(kind, str) else "O"


def features_dtype(dtypes):
    """float32 when every feature column is float32 (fit then trains in float32), else float64."""
    return np.float32 if all(_kind(t) == "f" and getattr(t, "itemsize", 0) == 4
                             for t in dtypes) else np.float64


def _labels_of(values, task, path):
    """A target column as fit takes it: numbers, or text labels as an object array."""
    from mlpcore.datasets._files import _retype

    y = np.asarray(values)
    if y.dtype.kind not in "biufO":
        y = y.astype(object)  # categorical, string and other pandas dtypes: labels
    if task != "auto":
        try:
            y = _retype(y, task, path)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    return y


def _zarr_arrays(path, labels):
    """The feature and label arrays (zarr.Array, not read): CLIError for a wrong shape or a
    row count that does not match."""
    zarr = _need("zarr", f"reading the Zarr array {path}")
    X = zarr.open_array(path, mode="r")
    Y = zarr.open_array(labels, mode="r")
    if X.ndim != 2:
        raise CLIError(f"{path} must be a 2-D Zarr array (samples x features), got shape "
                       f"{X.shape}")
    if Y.ndim not in (1, 2):
        raise CLIError(f"--labels {labels} must be a 1-D or 2-D Zarr array, got shape {Y.shape}")
    if Y.shape[0] != X.shape[0]:
        raise CLIError(f"--labels {labels} has {Y.shape[0]} rows but {path} has {X.shape[0]}: "
                       "they must hold one row per sample")
    return X, Y


def load_store(path, fmt, *, target, labels, task):
    """``(X, y, info)`` of a Parquet or Zarr DATA, read into memory (for :func:`mlpcore.fit`).

    Parameters
    ----------
    path : str
    fmt : {'parquet', 'zarr'}
    target : str or None
        Parquet: the label column (taken out of the features).
    labels : str or None
        Zarr: the path of the label array.
    task : {'auto', 'classification', 'regression'}

    Returns
    -------
    X : ndarray (N, D), float64 (float32 if the data are)
    y : ndarray
    info : dict
        ``format`` and ``feature_names`` (the Parquet column names; None for Zarr).

    Raises
    ------
    CLIError
        A missing optional dependency, a missing target column, non-numeric features, a
        label array of another row count.
    """
    if fmt == "parquet":
        pd = _need("pandas", f"reading the Parquet data {path}")
        _need("pyarrow", f"reading the Parquet data {path}")
        frame = pd.read_parquet(path)
        features = _parquet_columns(path, list(frame.columns), list(frame.dtypes), target)
        frame.columns = [str(c) for c in frame.columns]
        dtype = features_dtype(frame[features].dtypes)
        X = np.ascontiguousarray(frame[features].to_numpy(dtype=dtype))
        return X, _labels_of(frame[target], task, path), {"format": "parquet",
                                                          "feature_names": features}
    Xz, Yz = _zarr_arrays(path, labels)
    X = np.asarray(Xz[...])
    if X.dtype.kind not in "biuf":
        raise CLIError(f"{path} holds {X.dtype} values; features must be numbers")
    X = X.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=False)
    return X, _labels_of(Yz[...], task, labels), {"format": "zarr", "feature_names": None}


class LazyData:
    """A Parquet or Zarr DATA as dask collections, for :func:`mlpcore.dask.fit`.

    Attributes
    ----------
    X : dask.dataframe.DataFrame or dask.array.Array
        Parquet: the whole frame, the target column included (Y names it); Zarr: the
        features, chunked by rows.
    Y : str or dask.array.Array
        Parquet: the target column's name; Zarr: the labels, in X's row chunks.
    n_features : int
    feature_names : list of str or None
    format : {'parquet', 'zarr'}
    """

    def __init__(self, X, Y, n_features, feature_names, fmt):
        self.X, self.Y, self.n_features = X, Y, n_features
        self.feature_names, self.format = feature_names, fmt

    @property
    def partitions(self):
        return self.X.npartitions if self.format == "parquet" else self.X.numblocks[0]

    def rows(self):
        """The number of rows (a pass over the partitions' lengths for Parquet)."""
        return int(len(self.X)) if self.format == "parquet" else int(self.X.shape[0])

    def target_blocks(self):
        """The targets, one delayed block per partition."""
        if self.format == "parquet":
            return list(self.X[self.Y].to_delayed())
        return list(self.Y.to_delayed().ravel())

    def split(self, fraction, seed):
        """(training part, held-out part) with about ``fraction`` of the rows held out at
        random (not stratified), partition by partition, both LazyData."""
        if self.format == "parquet":
            train, val = self.X.random_split([1 - fraction, fraction], random_state=seed)
            return self._with(train, self.Y), self._with(val, self.Y)
        held = np.random.default_rng(seed).random(self.X.shape[0]) < fraction
        return (self._with(self.X[~held], self.Y[~held]),
                self._with(self.X[held], self.Y[held]))

    def _with(self, X, Y):
        if self.format == "zarr":
            Y = Y.rechunk({0: X.chunks[0]})
        return LazyData(X, Y, self.n_features, self.feature_names, self.format)

    def with_targets(self, fn):
        """The same data with the targets mapped by ``fn`` (lazily, block by block)."""
        if self.format == "parquet":
            return LazyData(self.X.assign(**{self.Y: fn(self.X[self.Y])}), self.Y,
                            self.n_features, self.feature_names, self.format)
        return LazyData(self.X, fn(self.Y), self.n_features, self.feature_names, self.format)

    def target_moments(self):
        """(mean, standard deviation) of the targets per column, float64 arrays."""
        import dask

        if self.format == "parquet":
            Y = self.X[self.Y].astype(np.float64)
            mean, std = dask.compute(Y.mean(), Y.std(ddof=0))
        else:
            Y = self.Y.astype(np.float64)
            mean, std = dask.compute(Y.mean(axis=0), Y.std(axis=0))
        return np.atleast_1d(np.asarray(mean, np.float64)), np.atleast_1d(
            np.asarray(std, np.float64))

    def gather(self, task):
        """(X, y) in memory: the features (a pandas DataFrame for Parquet, else a NumPy
        array) and the targets as fit takes them."""
        import dask

        if self.format == "parquet":  # the features as a DataFrame: matched by name
            frame = self.X.compute()
            return frame[self.feature_names], _labels_of(frame[self.Y], task,
                                                         "the held-out rows")
        X, Y = dask.compute(self.X, self.Y)
        return X, _labels_of(Y, task, "the held-out rows")


def open_lazily(path, fmt, *, target, labels, task, workers):
    """A Parquet or Zarr DATA as :class:`LazyData`, nothing read but metadata.

    With fewer partitions than ``workers`` the rows are re-cut into two partitions per
    worker, so every worker has work.

    Raises
    ------
    CLIError
        As :func:`load_store`, and for a missing dask.
    """
    if fmt == "parquet":
        _need("pyarrow", f"reading the Parquet data {path}")
        dd = _need("dask.dataframe", f"reading {path} on a Dask cluster")
        frame = dd.read_parquet(path)
        features = _parquet_columns(path, list(frame.columns), list(frame.dtypes), target)
        if not all(isinstance(c, str) for c in frame.columns):
            frame = frame.rename(columns=str)
        if workers and frame.npartitions < workers:
            frame = frame.repartition(npartitions=2 * workers)
        return LazyData(frame, target, len(features), features, fmt)
    da = _need("dask.array", f"reading {path} on a Dask cluster")
    Xz, Yz = _zarr_arrays(path, labels)
    if np.dtype(Xz.dtype).kind not in "biuf":
        raise CLIError(f"{path} holds {Xz.dtype} values; features must be numbers")
    X = da.from_zarr(path)
    if workers and X.numblocks[0] < workers:
        X = X.rechunk({0: -(-X.shape[0] // (2 * workers)), 1: -1})
    Y = da.from_zarr(labels).rechunk({0: X.chunks[0]})
    return LazyData(X, Y, X.shape[1], None, fmt)
