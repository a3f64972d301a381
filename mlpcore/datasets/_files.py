"""Reading training data from files: CSV with a header row, NumPy .npz, MNIST IDX.

These are the readers behind the command line (``mlpcore train``, ``predict``, ``evaluate``)
and are usable on their own. Every malformed input raises ``ValueError`` with a message that
names the file and, for CSV, the line and the column.
"""

import csv
import gzip
import io
import os
import re
import zipfile

import numpy as np

from mlpcore.datasets._idx import GZIP_MAGIC, load_idx

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_NPY_MAGIC = b"\x93NUMPY"
# '5,8' or '-1.234,5': a number written with a decimal comma.
_DECIMAL_COMMA = re.compile(r"[+-]?(\d{1,3}(\.\d{3})+|\d*),\d+([eE][+-]?\d+)?")


def _not_a_number(cell):
    """"'5,8' is not a number", with a hint when the cell looks like a decimal comma."""
    text = f"{cell!r} is not a number"
    if _DECIMAL_COMMA.fullmatch(cell.strip()):
        text += "; is the decimal separator a comma? write decimal points (5.8)"
    return text
_TASKS = ("auto", "classification", "regression")


def _check_task(task):
    if task not in _TASKS:
        raise ValueError(f"task must be one of {', '.join(_TASKS)}, got {task!r}")


def _open_text(path):
    """Open a text file, transparently decompressing gzip (detected by its magic bytes)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == GZIP_MAGIC:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _delimiter(header_line):
    """The most frequent of ',', ';' and tab in the header line (',' if none occurs)."""
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def _labels_from_strings(values, task, where):
    """Typed labels from the target column's text.

    Integers give int64 labels; other numbers give float64 (regression under ``task='auto'``,
    as :func:`mlpcore.fit` decides from the dtype); anything else gives string labels.
    ``task='classification'`` turns whole-number floats into int64 and other numbers into
    strings; ``task='regression'`` requires numbers.
    """
    try:
        as_int = np.array([int(v) for v in values], dtype=np.int64)
    except (ValueError, OverflowError):
        as_int = None
    if as_int is not None:
        return as_int.astype(np.float64) if task == "regression" else as_int
    try:
        as_float = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        as_float = None
    if as_float is not None:
        if not np.isfinite(as_float).all():
            bad = int(np.flatnonzero(~np.isfinite(as_float))[0])
            raise ValueError(f"{where(bad)}: target {values[bad]!r} is not a finite number")
        if task == "classification":
            if np.all(as_float == np.round(as_float)):
                return as_float.astype(np.int64)
            return np.array(values, dtype=str)
        return as_float
    if task == "regression":
        for i, v in enumerate(values):
            try:
                float(v)
            except ValueError:
                raise ValueError(
                    f"{where(i)}: target {_not_a_number(v)}; regression needs numeric "
                    "targets") from None
    return np.array(values, dtype=str)


def load_csv(path, target=None, *, task="auto", index_column=False):
    """Read a CSV file with a header row into numeric features and (optionally) targets.

    Parameters
    ----------
    path : str or os.PathLike
        A text file (UTF-8, optionally gzipped) whose first line names the columns. The
        delimiter is the most frequent of ``,``, ``;`` and tab in that line. Blank lines
        are skipped.
    target : str, optional
        Name of the column holding the labels (classification) or values (regression).
        None: every column is a feature and ``y`` is None.
    task : {'auto', 'classification', 'regression'}, default 'auto'
        How to type the target column. 'auto': integers become int64 class labels, other
        numbers float64 values (regression), anything else string labels.
        'classification': whole numbers become int64 labels and everything else string
        labels. 'regression': the column must be numeric; float64.
    index_column : bool, default False
        The first column is a row index (as pandas' ``df.to_csv()`` writes it, often with an
        empty header cell): it is left out.

    Returns
    -------
    X : ndarray of shape (N, D), float64
        Every column except ``target``, in file order.
    y : ndarray of shape (N,) or None
    feature_names : list of str
        The D feature column names.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Empty file, duplicate or missing column names, ``target`` not among the columns, a
        line with the wrong number of fields, an empty cell, or a feature cell that is not a
        finite number (the message names the line and the column).

    Examples
    --------
    >>> from mlpcore.datasets import load_csv
    >>> X, y, names = load_csv("iris.csv", target="species")   # doctest: +SKIP
    """
    _check_task(task)
    name = os.fspath(path)
    try:
        with _open_text(path) as f:
            header_line = f.readline()
            if not header_line.strip():
                raise ValueError(f"{name}: empty file, or the first line (the header) is blank")
            delimiter = _delimiter(header_line)
            f.seek(0)
            reader = csv.reader(f, delimiter=delimiter)
            header = [h.strip() for h in next(reader)]
            rows, lines = [], []
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise ValueError(
                        f"{name}, line {reader.line_num}: {len(row)} fields, but the header "
                        f"has {len(header)} columns")
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") \
            from None
    except csv.Error as exc:
        raise ValueError(f"{name}: not a readable CSV file ({exc})") from None
    except (EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"{name}: corrupt gzip data ({exc})") from None
    if index_column:
        if len(header) < 2:
            raise ValueError(f"{name}: only one column, so no index column to leave out")
        header, rows = header[1:], [row[1:] for row in rows]
    for i, h in enumerate(header):
        if not h:
            hint = (": an index column (as df.to_csv() writes)? drop it (df.to_csv(index=False)) "
                    "or pass --index-column (index_column=True)" if i == 0 else "")
            raise ValueError(f"{name}: column {i + 1} of the header has no name{hint}")
    seen = set()
    for h in header:
        if h in seen:
            raise ValueError(f"{name}: the header names column {h!r} twice")
        seen.add(h)
    if not rows:
        raise ValueError(f"{name}: no data rows after the header")

    if target is not None and target not in header:
        shown = ", ".join(repr(h) for h in header[:12]) + (", ..." if len(header) > 12 else "")
        raise ValueError(f"{name}: no column named {target!r}; the columns are {shown}")
    t = header.index(target) if target is not None else None
    feature_cols = [j for j in range(len(header)) if j != t]
    if not feature_cols:
        raise ValueError(f"{name}: no feature columns besides the target {target!r}")
    feature_names = [header[j] for j in feature_cols]

    def where(i, j=None):
        col = header[t] if j is None else header[j]
        return f"{name}, line {lines[i]} (data row {i + 1}), column {col!r}"

    cells = [[row[j] for j in feature_cols] for row in rows]
    try:
        X = np.array(cells, dtype=np.float64)  # NumPy parses the strings (fast path)
    except ValueError:
        X = None
    if X is None or not np.isfinite(X).all():
        X = np.empty((len(cells), len(feature_cols)))
        for i, row in enumerate(cells):  # slow path: parse cell by cell, name the first bad one
            for k, cell in enumerate(row):
                text = cell.strip()
                if not text:
                    raise ValueError(f"{where(i, feature_cols[k])}: empty cell (missing "
                                     "values are not supported)")
                try:
                    value = float(text)
                except ValueError:
                    raise ValueError(f"{where(i, feature_cols[k])}: {_not_a_number(cell)} "
                                     "(feature columns must be numeric)") from None
                if not np.isfinite(value):
                    raise ValueError(f"{where(i, feature_cols[k])}: {cell!r} is not a finite "
                                     "number")
                X[i, k] = value
    y = None
    if t is not None:
        values = [row[t].strip() for row in rows]
        for i, v in enumerate(values):
            if not v:
                raise ValueError(f"{where(i)}: empty target cell")
        y = _labels_from_strings(values, task, where)
    return X, y, feature_names


def load_npz(path, *, require_y=True):
    """Read features ``X`` and targets ``y`` from a NumPy ``.npz`` archive.

    Parameters
    ----------
    path : str or os.PathLike
        An archive written by ``numpy.savez(path, X=X, y=y)`` (or ``savez_compressed``).
        It is read with ``allow_pickle=False``: object arrays are refused.
    require_y : bool, default True
        Raise if there is no ``y`` array; otherwise return ``y = None`` then.

    Returns
    -------
    X : ndarray of shape (N, D)
        ``X`` as stored (numeric); more than 2 dimensions are flattened to (N, -1), so a
        stack of images works as is.
    y : ndarray of shape (N,) or (N, K), or None

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Not an .npz archive, no ``X`` (or no ``y`` when required), non-numeric or 0-/1-D
        ``X``, or ``X`` and ``y`` with different numbers of rows.
    """
    name = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{name}: not an .npz archive (a single .npy array?)")
        with archive:
            files = list(archive.files)
            if "X" not in files:
                raise ValueError(f"{name}: no array named 'X' (the archive holds "
                                 f"{', '.join(files) or 'nothing'}); expected arrays X and y")
            X = archive["X"]
            y = archive["y"] if "y" in files else None
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{name}: not a readable .npz archive ({exc})") from None
    except ValueError as exc:
        if str(exc).startswith(name):
            raise
        raise ValueError(f"{name}: not a readable .npz archive ({exc})") from None
    if y is None and require_y:
        raise ValueError(f"{name}: no array named 'y' (the archive holds {', '.join(files)}); "
                         "expected arrays X and y")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name}: X must hold numbers, it has dtype {X.dtype}")
    if X.ndim < 2:
        raise ValueError(f"{name}: X must be 2-D (samples x features), it has shape {X.shape}")
    if X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    if y is not None:
        if y.ndim == 0 or y.ndim > 2:
            raise ValueError(f"{name}: y must be 1-D (or 2-D), it has shape {y.shape}")
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"{name}: X has {X.shape[0]} rows but y has {y.shape[0]}")
    for label, a in (("X", X), ("y", y)):
        if a is not None and a.dtype.kind == "f":
            bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                n_bad = int(bad.sum())
                raise ValueError(f"{name}: {label} holds NaN or infinity in row {row} (counting "
                                 f"from 0; {n_bad} row{'s' if n_bad > 1 else ''} in all)")
    return X, y


def looks_like_text(path, size=4096):
    """Whether the first ``size`` bytes of ``path`` (decompressed if gzipped) are UTF-8 text."""
    with open(path, "rb") as f:
        head = f.read(2)
    try:
        with (gzip.open(path, "rb") if head == GZIP_MAGIC else open(path, "rb")) as f:
            data = f.read(size)
    except (OSError, EOFError):
        return False
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(data) - 3  # a character cut by the end of the sample
    return True


def _magic_hex(path):
    """The first 4 bytes (decompressed if gzipped) as 0x........, for messages."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == GZIP_MAGIC:
        try:
            with gzip.open(path, "rb") as g:
                head = g.read(4)
        except (OSError, EOFError):
            pass
    return "0x" + head.hex()


def detect_format(path):
    """Guess a data file's format from its first bytes: 'npz', 'npy', 'idx' or 'csv'.

    Zip archives are .npz; ``\\x93NUMPY`` starts a single .npy array; IDX files start with
    two zero bytes (after gzip decompression, if gzipped); anything else is treated as CSV
    text.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The path cannot be opened.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    if head in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC):
        return "npz"
    if head == _NPY_MAGIC[:4]:
        return "npy"
    if head[:2] == GZIP_MAGIC:
        try:
            with gzip.open(path, "rb") as g:
                head = g.read(4)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{os.fspath(path)}: corrupt gzip data ({exc})") from None
    if len(head) >= 3 and head[0] == 0 and head[1] == 0:
        return "idx"
    return "csv"


def load_dataset(path, *, target=None, labels=None, require_target=True, task="auto",
                 index_column=False):
    """Load features and targets from a CSV, NPZ or IDX file, whichever ``path`` is.

    Parameters
    ----------
    path : str or os.PathLike
        CSV with a header row, ``.npz`` with arrays ``X`` and ``y``, or an IDX images file;
        the format is detected from the content (:func:`detect_format`).
    target : str, optional
        CSV only: the target column (dropped from the features when present).
    labels : str or os.PathLike, optional
        IDX only: the labels file.
    require_target : bool, default True
        Raise if no targets can be found (CSV without ``target``, NPZ without ``y``, IDX
        without ``labels``); otherwise return ``y = None``.
    task : {'auto', 'classification', 'regression'}
        How to type CSV target columns (see :func:`load_csv`).
    index_column : bool, default False
        CSV only: the first column is a row index to leave out (see :func:`load_csv`).

    Returns
    -------
    X : ndarray of shape (N, D)
    y : ndarray or None
    info : dict
        ``format`` ('csv', 'npz' or 'idx') and ``feature_names`` (CSV only, else None).

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ValueError
        A malformed file, a missing target, or an option that does not fit the format.
    """
    fmt = detect_format(path)
    name = os.fspath(path)
    if fmt == "npy":
        raise ValueError(f"{name} is a single NumPy array (.npy); a data file holds features "
                         "and targets together: numpy.savez('data.npz', X=X, y=y) writes one "
                         "(y may be left out for predictions)")
    if fmt != "csv" and target is not None:
        raise ValueError(f"{name} is an {fmt.upper()} file; --target names a column of a CSV "
                         "file" + (" (an .npz holds arrays X and y)" if fmt == "npz" else
                                   " (give IDX labels with --labels)"))
    if fmt != "idx" and labels is not None:
        if fmt == "csv" and not looks_like_text(path):
            raise ValueError(f"{name} is not an IDX file: its magic number is "
                             f"{_magic_hex(path)}, and an IDX images file starts with "
                             "0x00000803 (unsigned bytes, 3 dimensions)")
        raise ValueError(f"{name} is a {fmt.upper()} file; --labels is for IDX image files")
    if fmt == "csv":
        if target is None and require_target:
            with _open_text(path) as f:
                first = f.readline()
            columns = [c.strip() for c in first.strip().split(_delimiter(first))]
            shown = ", ".join(repr(c) for c in columns[:12])
            shown += ", ..." if len(columns) > 12 else ""
            raise ValueError(f"{name}: name the target column with --target (the columns are "
                             f"{shown})")
        X, y, names = load_csv(path, target, task=task, index_column=index_column)
        return X, y, {"format": "csv", "feature_names": names}
    if fmt == "npz":
        X, y = load_npz(path, require_y=require_target)
    else:
        if labels is None and require_target:
            raise ValueError(f"{name} is an IDX images file; give its labels with --labels FILE")
        X, y = load_idx(path, labels)
    if y is not None and task != "auto":
        y = _retype(y, task, name)
    return X, y, {"format": fmt, "feature_names": None}


def _retype(y, task, name):
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise ValueError(f"{name}: y holds {y.dtype} values; regression needs numbers")
        return y.astype(np.float64)
    if y.dtype.kind == "f" and y.ndim == 1:
        if not np.all(y == np.round(y)):
            raise ValueError(f"{name}: y holds fractional values; classification needs labels")
        return y.astype(np.int64)
    return y
