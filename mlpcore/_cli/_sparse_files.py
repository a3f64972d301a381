"""Sparse data files for the command line: svmlight/libsvm text and scipy's sparse .npz.

Both are read into a ``scipy.sparse`` CSR matrix that stays sparse through training,
prediction and evaluation. The svmlight reader is written with NumPy alone (scikit-learn is
an optional extra): the whole file is tokenised and parsed with vectorised operations, and
only when that finds something wrong is it read again line by line, to name the first bad
line in the error.
"""

import gzip
import os
import re
import warnings
import zipfile

import numpy as np
import scipy.sparse

from mlpcore.datasets._files import _labels_from_strings, _open_text, _retype, detect_format
from mlpcore.datasets._idx import GZIP_MAGIC

# File names read as svmlight/libsvm text (also with .gz after them).
SVMLIGHT_SUFFIXES = (".svm", ".svmlight", ".libsvm")
# The arrays scipy.sparse.save_npz writes in every format (plus indices and indptr, or row
# and col, or offsets); a dense data .npz holds X instead.
_SPARSE_NPZ_KEYS = ("format", "shape", "data")

_COMMENT = re.compile(rb"#[^\n]*")
_UTF8_BOM = b"\xef\xbb\xbf"
# Feature indices are stored as int32 when they fit (scipy's default), so keep them there.
_MAX_INDEX = np.iinfo(np.int32).max - 1
# Whole-number labels up to this size are exact in float64 and become int64 class labels.
_EXACT_INT = 2.0 ** 53


def has_svmlight_name(path):
    """Whether ``path`` ends in .svm, .svmlight or .libsvm (optionally followed by .gz)."""
    name = os.fspath(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(SVMLIGHT_SUFFIXES)


def is_sparse_npz(path):
    """Whether the .npz archive at ``path`` was written by :func:`scipy.sparse.save_npz`.

    Such an archive holds arrays 'format', 'shape' and 'data' (and the format's index
    arrays); an archive with an array 'X' is a dense data file. An unreadable archive is
    not sparse here: the dense reader then reports what is wrong with it.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            files = set(archive.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError):
        return False
    return "X" not in files and all(key in files for key in _SPARSE_NPZ_KEYS)


def load_sparse_npz(path):
    """The matrix of a ``scipy.sparse.save_npz`` archive, as CSR.

    Parameters
    ----------
    path : str or os.PathLike
        Read with :func:`scipy.sparse.load_npz`, which never unpickles (object arrays are
        refused). CSC, COO, BSR and DIA archives are converted to CSR once.

    Returns
    -------
    scipy.sparse.csr_matrix or scipy.sparse.csr_array
        The matrix as stored (a sparse array stays an array), with real numeric values.

    Raises
    ------
    ValueError
        An unreadable archive, inconsistent index arrays, a shape that is not 2-D,
        non-numeric or complex values, or NaN or infinity (naming the row).
    """
    name = os.fspath(path)
    try:
        X = scipy.sparse.load_npz(path)
        if X.ndim != 2:
            raise ValueError(f"the matrix must be 2-D (samples x features), it has shape "
                             f"{X.shape}")
        X = X.tocsr()
        X.check_format(full_check=True)
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile,
            NotImplementedError) as exc:
        raise ValueError(f"{name}: not a readable sparse .npz archive ({exc})") from None
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name}: the sparse matrix must hold real numbers, it has dtype "
                         f"{X.dtype}")
    if X.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(X.data))
        if bad.size:
            row = int(np.searchsorted(X.indptr, bad[0], side="right")) - 1
            raise ValueError(f"{name}: the sparse matrix holds NaN or infinity in row {row} "
                             "(counting from 0)")
    return X


def load_labels(path, n_rows, *, task="auto", data_path="DATA"):
    """The labels of a sparse .npz's rows, from ``--labels PATH``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` array (1-D labels, or 2-D one-hot or multi-output rows; read with
        ``allow_pickle=False``), or a text file (UTF-8, optionally gzipped) with one label
        per line and no header; blank lines are skipped. Text labels are typed as a CSV's
        target column is: integers are class labels, other numbers regression values,
        anything else text labels.
    n_rows : int
        The data file's row count, which the labels must match.
    task : {'auto', 'classification', 'regression'}
        How to type the labels (``--task``).
    data_path : str
        The data file, for messages.

    Returns
    -------
    ndarray of shape (n_rows,) or (n_rows, K)

    Raises
    ------
    ValueError
        An unreadable or multi-column file, non-finite numbers, or a label count that is not
        ``n_rows``.
    """
    name = os.fspath(path)
    fmt = detect_format(path)
    if fmt == "npy":
        try:
            y = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"{name}: not a readable .npy array ({exc})") from None
        if y.ndim not in (1, 2) or y.dtype.kind not in "biufU":
            raise ValueError(f"{name}: labels must be a 1-D (or 2-D) array of numbers or "
                             f"text, it has shape {y.shape} and dtype {y.dtype}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            row = int(np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).all(axis=1))[0])
            raise ValueError(f"{name}: NaN or infinity in row {row} (counting from 0)")
        if task != "auto":
            y = _retype(y, task, name)
    elif fmt in ("npz", "idx"):
        raise ValueError(f"{name} is an {fmt.upper()} file; the labels of a sparse .npz are a "
                         ".npy array or a text file with one label per line")
    else:
        y = _labels_from_text(name, task)
    if len(y) != n_rows:
        hint = ""
        if len(y) == n_rows + 1 and y.dtype.kind == "U":
            hint = " (is the first line a header? the labels file has one label per line only)"
        raise ValueError(f"{name} holds {len(y)} labels but {data_path} has {n_rows} rows{hint}")
    return y


def _labels_from_text(name, task):
    """One label per non-blank line of a text file, typed by ``_labels_from_strings``."""
    values, lines = [], []
    try:
        with _open_text(name) as f:
            for number, line in enumerate(f, 1):
                text = line.strip()
                if not text:
                    continue
                if any(sep in text for sep in (",", ";", "\t")):
                    raise ValueError(f"{name}, line {number}: more than one field ({text[:40]!r}); "
                                     "the labels file holds one label per line")
                values.append(text)
                lines.append(number)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") \
            from None
    except (EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"{name}: corrupt gzip data ({exc})") from None
    if not values:
        raise ValueError(f"{name}: no labels (the file is empty)")
    return _labels_from_strings(values, task, lambda i: f"{name}, line {lines[i]}")


def svmlight_targets(y, task, name):
    """Typed svmlight labels: whole numbers are int64 class labels, others float64 values.

    Parameters
    ----------
    y : ndarray of float64, shape (N,)
        The labels as read (:func:`load_svmlight`).
    task : {'auto', 'classification', 'regression'}
        'auto' follows the CSV rule (integers: classification; fractional numbers:
        regression); 'regression' keeps float64 and 'classification' needs whole numbers.
    name : str
        The file, for messages.

    Returns
    -------
    ndarray of shape (N,), int64 or float64

    Raises
    ------
    ValueError
        Fractional labels with ``task='classification'``.
    """
    if task != "auto":
        return _retype(y, task, name)
    if np.all(y == np.round(y)) and np.all(np.abs(y) < _EXACT_INT):
        return y.astype(np.int64)
    return y


def _read_bytes(path):
    """The file's bytes, gunzipped if they start with gzip's magic, without a UTF-8 BOM."""
    name = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{name}: corrupt gzip data ({exc})") from None
    return data[len(_UTF8_BOM):] if data.startswith(_UTF8_BOM) else data


def load_svmlight(path, *, zero_based=False, n_features=None):
    """Read a svmlight/libsvm text file into a CSR matrix and its labels.

    Each non-blank line is ``label index:value index:value ... [# comment]``; a line with
    only a label is an all-zero row, and blank or comment-only lines are skipped. Indices
    may come in any order (they are sorted; a repeated index adds up, as in CSR).

    Parameters
    ----------
    path : str or os.PathLike
        The text file (optionally gzipped).
    zero_based : bool, default False
        Whether indices count from 0. By default they count from 1, as libsvm writes them,
        and an index 0 is an error.
    n_features : int, optional
        The column count to give X (a model's input width); by default the largest index
        decides. An index beyond it is an error.

    Returns
    -------
    X : scipy.sparse.csr_matrix of float64, shape (N, D)
    y : ndarray of float64, shape (N,)

    Raises
    ------
    ValueError
        No data lines, or a malformed line: the message names the file and the line (a
        label or value that is not a finite number, a field that is not ``index:value``, an
        index that is not a whole number in range, or a ``qid:`` field, which ranking
        files have and this reader refuses).
    """
    name = os.fspath(path)
    data = _read_bytes(path)
    if b"#" in data:
        data = _COMMENT.sub(b"", data)  # keeps the newlines, so line numbers stay right
    parsed = _parse_fast(data)
    if parsed is None:
        raise ValueError(_first_bad_line(data, name, zero_based))
    labels, index, values, row_of_pair, line_of_row, line_of_pair = parsed
    if labels.size == 0:
        raise ValueError(f"{name}: no data lines (a svmlight/libsvm line is 'label "
                         "index:value ...')")

    first = 0 if zero_based else 1
    problems = []  # (0-based line, message) of each kind of problem's first occurrence
    bad = np.flatnonzero(~np.isfinite(labels))
    if bad.size:
        problems.append((line_of_row[bad[0]], "the label is not a finite number"))
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        problems.append((line_of_pair[bad[0]], f"the value of feature index {index[bad[0]]} "
                                               f"is not a finite number ({values[bad[0]]})"))
    bad = np.flatnonzero((index < first) | (index > _MAX_INDEX))
    if bad.size:
        problems.append((line_of_pair[bad[0]], _bad_index_text(index[bad[0]], zero_based)))
    if problems:
        at, message = min(problems, key=lambda p: p[0])
        raise ValueError(f"{name}, line {int(at) + 1}: {message}")
    columns = index - first
    width = int(columns.max()) + 1 if columns.size else 0
    if n_features is not None:
        if width > n_features:
            bad = np.flatnonzero(columns >= n_features)[0]
            raise ValueError(f"{name}, line {int(line_of_pair[bad]) + 1}: feature index "
                             f"{int(index[bad])} is beyond the model's {n_features} features")
        width = n_features
    indptr = np.zeros(labels.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of_pair, minlength=labels.size), out=indptr[1:])
    index_dtype = np.int32 if max(width, columns.size) <= _MAX_INDEX else np.int64
    X = scipy.sparse.csr_matrix((values, columns.astype(index_dtype),
                                 indptr.astype(index_dtype)), shape=(labels.size, width))
    X.sum_duplicates()  # sorted indices, one entry per (row, column)
    return X, labels


def _bad_index_text(index, zero_based):
    """Why a feature index (a whole number) is refused."""
    if index == 0 and not zero_based:
        return ("feature index 0, but libsvm indices count from 1 (pass --zero-based for a "
                "file that counts from 0)")
    return f"feature index {int(index)} is beyond {_MAX_INDEX}, the largest supported"


def _parse_fast(data):
    """Tokenise and parse the whole (comment-free) text at once; None if anything is off.

    Tokens are runs of non-white bytes. The first token of a line is its label and every
    other one must be ``digits:value``. The indices are read from their digits with array
    arithmetic; then, with the indices and colons blanked out, NumPy parses the labels and
    values in one call, which must consume the whole text and find one number per field,
    so a field such as '1.2.3' or 'x' sends the file to the line-by-line reader.

    Returns
    -------
    tuple or None
        ``(labels, index, values, row_of_pair, line_of_row, line_of_pair)``: float64 labels
        (one per data line), int64 indices and float64 values (one per pair), each pair's
        row and the 0-based line numbers of the rows and the pairs.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    if not raw.size or (raw <= 32).all():
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(0), empty, np.zeros(0), empty, empty, empty
    space = np.ones(raw.size + 2, dtype=np.int8)
    space[1:-1] = raw <= 32  # white space, and control bytes (then refused as a field)
    step = np.diff(space)
    del space
    starts, ends = np.flatnonzero(step == -1), np.flatnonzero(step == 1)  # ends: exclusive
    del step
    line_of_token = np.searchsorted(np.flatnonzero(raw == ord("\n")), starts)
    first = np.ones(starts.size, dtype=bool)
    first[1:] = line_of_token[1:] != line_of_token[:-1]
    colons = np.flatnonzero(raw == ord(":"))
    token_of_colon = np.searchsorted(starts, colons, side="right") - 1
    if not np.array_equal(token_of_colon, np.flatnonzero(~first)):
        return None  # a pair field must have one colon, and a label none
    pair_starts = starts[token_of_colon]
    if (colons == pair_starts).any() or (colons == ends[token_of_colon] - 1).any():
        return None  # ':5' or '5:'
    digits = colons - pair_starts
    if digits.size and digits.max() > len(str(_MAX_INDEX)):
        return None
    index = np.zeros(colons.size, dtype=np.int64)
    for k in range(int(digits.max()) if digits.size else 0):
        digit = raw[np.minimum(pair_starts + k, raw.size - 1)].astype(np.int64) - ord("0")
        inside = digits > k
        if (inside & ((digit < 0) | (digit > 9))).any():
            return None
        index = np.where(inside, 10 * index + digit, index)
    # The labels and values only, for NumPy's number parser: blank 'index:' out.
    blank = np.zeros(raw.size + 1, dtype=np.int8)
    blank[pair_starts] = 1
    blank[colons + 1] = -1
    text = np.where(np.cumsum(blank[:-1], dtype=np.int8).view(bool), np.uint8(ord(" ")), raw)
    del blank
    with warnings.catch_warnings():
        # NumPy warns (and will raise) when it cannot read the text to its end.
        warnings.simplefilter("error", DeprecationWarning)
        try:
            numbers = np.fromstring(text.tobytes(), dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    if numbers.size != starts.size:
        return None
    row_of_token = np.cumsum(first) - 1
    return (numbers[first], index, numbers[~first], row_of_token[~first],
            line_of_token[first], line_of_token[~first])


def _number(text):
    """``float(text)`` for a field's bytes, refusing what NumPy's parser would refuse too."""
    if b"_" in text:
        raise ValueError(text)
    return float(text)


def _first_bad_line(data, name, zero_based):
    """The error message for the first malformed line of comment-free svmlight text."""
    for number, line in enumerate(data.split(b"\n"), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{name}, line {number}"

        def shown(field):
            return repr(field.decode("utf-8", "replace")[:40])

        try:
            label = _number(fields[0])
        except ValueError:
            if b":" in fields[0]:
                return (f"{where}: starts with {shown(fields[0])}, not a label (each line is "
                        "'label index:value index:value ...')")
            hint = "; multi-label lines are not supported" if b"," in fields[0] else ""
            return f"{where}: the label {shown(fields[0])} is not a number{hint}"
        if not np.isfinite(label):
            return f"{where}: the label is not a finite number"
        for field in fields[1:]:
            index_text, colon, value_text = field.partition(b":")
            if index_text.lower() == b"qid":
                return (f"{where}: {shown(field)} is a query id (ranking data), which is not "
                        "supported; remove the qid: fields")
            if not colon or b":" in value_text or not index_text or not value_text:
                return f"{where}: {shown(field)} is not index:value"
            if not index_text.isdigit():
                return (f"{where}: in {shown(field)}, the index is not a whole number "
                        "(digits only)")
            index = int(index_text)
            if not (0 if zero_based else 1) <= index <= _MAX_INDEX:
                return f"{where}: {_bad_index_text(index, zero_based)}"
            try:
                value = _number(value_text)
            except ValueError:
                return f"{where}: in {shown(field)}, the value is not a number"
            if not np.isfinite(value):
                return f"{where}: in {shown(field)}, the value is not a finite number"
    return f"{name}: not a readable svmlight/libsvm file"
