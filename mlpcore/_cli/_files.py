"""Reading data and model files and writing models, with the command's error messages."""

import os

import scipy.sparse

import mlpcore
from mlpcore._cli._errors import EXIT_USAGE, CLIError, cannot_write
from mlpcore._cli._sparse_files import (SVMLIGHT_SUFFIXES, has_svmlight_name, is_sparse_npz,
                                        load_labels, load_sparse_npz, load_svmlight,
                                        svmlight_targets)

# --format's choices: 'auto' (from the content, or svmlight for the svmlight file names).
DATA_FORMATS = ("auto", "svmlight")


def _require_file(path, missing, kind):
    """Raise CLIError ``"<missing>: path"`` or ``"path is a directory, not <kind>"``."""
    if not os.path.exists(path):
        raise CLIError(f"{missing}: {path}")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not {kind}")


def load_model(path):
    """The model saved at ``path`` (:func:`mlpcore.load`)."""
    _require_file(path, "no such model file", "a model file")
    return mlpcore.load(path)


def add_index_column_option(parser):
    """--index-column: a CSV's first column is a row index (pandas' ``df.to_csv()``)."""
    parser.add_argument("--index-column", action="store_true",
                        help="CSV: the first column is a row index, as pandas' df.to_csv() "
                             "writes it; leave it out of the features")


def add_data_format_options(parser):
    """--format and --zero-based: reading svmlight/libsvm text files."""
    parser.add_argument("--format", choices=DATA_FORMATS, default="auto",
                        help="DATA's format: auto (default) recognises CSV, NPZ (dense, or "
                             "sparse as scipy.sparse.save_npz writes it) and IDX from the "
                             f"content, and svmlight/libsvm text from the names "
                             f"{', '.join('*' + s for s in SVMLIGHT_SUFFIXES)}; svmlight "
                             "reads DATA as svmlight text whatever its name")
    parser.add_argument("--zero-based", action="store_true",
                        help="svmlight: feature indices count from 0 (default: from 1, as "
                             "libsvm writes them)")


def data_format(path, forced="auto"):
    """DATA's format: 'svmlight', 'sparse npz', or the dense readers' 'csv', 'npz', 'npy', 'idx'.

    Parameters
    ----------
    path : str
        An existing file.
    forced : {'auto', 'svmlight'}
        The --format option.

    Returns
    -------
    str
    """
    from mlpcore.datasets._files import detect_format

    if forced == "svmlight" or (forced == "auto" and has_svmlight_name(path)):
        return "svmlight"
    fmt = detect_format(path)
    if fmt == "npz" and is_sparse_npz(path):
        return "sparse npz"
    return fmt


def is_sparse_data(path, forced="auto"):
    """Whether DATA is a sparse file (svmlight text or a sparse .npz), read as CSR.

    Cheap (it reads the first bytes, or an archive's table of contents), so usage errors
    that depend on it come before the data is read.

    Raises
    ------
    CLIError
        A missing file or a directory.
    """
    _require_file(path, "no such file", "a data file")
    return data_format(path, forced) in ("svmlight", "sparse npz")


def _refuse_options(path, fmt, kwargs):
    """Usage errors for options that do not fit DATA's format (CLIError, exit status 2)."""
    if fmt == "npy":
        return  # load_dataset refuses a single array, saying how to write a data file
    labels = kwargs.get("labels")
    # Where each format keeps its targets: said when an option asks for them elsewhere.
    targets_in = {"csv": "name its label column with --target COLUMN",
                  "npz": "an .npz holds arrays X and y",
                  "idx": "give IDX labels with --labels",
                  "sparse npz": "give its labels with --labels FILE",
                  "svmlight": "its labels are each line's first field"}
    kind = {"csv": "a CSV", "npz": "a dense NPZ", "idx": "an IDX", "sparse npz": "a sparse NPZ",
            "svmlight": "a svmlight/libsvm"}[fmt]
    if labels is not None and fmt not in ("idx", "sparse npz"):
        if fmt == "csv":
            from mlpcore.datasets._files import looks_like_text

            if not looks_like_text(path):
                return  # load_dataset says that it is not an IDX file
        raise CLIError(f"--labels applies to IDX image files, Zarr arrays and sparse .npz "
                       f"archives, and "
                       f"{path} is {kind} file ({targets_in[fmt]})", EXIT_USAGE)
    for flag, given in (("--target", kwargs.get("target")),
                        ("--index-column", kwargs.get("index_column"))):
        if given and fmt != "csv":
            raise CLIError(f"{flag} applies to CSV files, and {path} is {kind} file "
                           f"({targets_in[fmt]})", EXIT_USAGE)
    if kwargs.get("zero_based") and fmt != "svmlight":
        raise CLIError(f"--zero-based applies to svmlight/libsvm files, and {path} is {kind} "
                       "file (name it *.svm, or pass --format svmlight)", EXIT_USAGE)


def load_data(path, *, fmt="auto", zero_based=False, n_features=None, **kwargs):
    """``(X, y, info)`` from a data file: CSV, NPZ, IDX, sparse NPZ or svmlight/libsvm text.

    Dense files are read by :func:`mlpcore.datasets._files.load_dataset`; sparse ones by
    :mod:`mlpcore._cli._sparse_files` into a CSR matrix, which stays sparse.

    Parameters
    ----------
    path : str
    fmt : {'auto', 'svmlight'}
        The --format option.
    zero_based : bool
        svmlight: indices count from 0 (--zero-based).
    n_features : int, optional
        svmlight: the column count to give X (a model's input width), if no index exceeds it.
    **kwargs
        ``load_dataset``'s keywords (target, labels, require_target, task, index_column);
        ``labels`` is also a sparse .npz's labels file.

    Returns
    -------
    X : ndarray or scipy.sparse CSR matrix
    y : ndarray or None
    info : dict
        ``format`` (the name shown in reports), ``feature_names`` (CSV only, else None) and
        ``sparse``.

    Raises
    ------
    CLIError
        A missing file; a usage error for an option that does not fit the format (--labels
        with a CSV, NPZ or svmlight file; --target or --index-column with anything but a
        CSV; --zero-based with anything but svmlight).
    """
    from mlpcore.datasets._files import load_dataset

    _require_file(path, "no such file", "a data file")
    fmt = data_format(path, fmt)
    _refuse_options(path, fmt, {**kwargs, "zero_based": zero_based})
    labels = kwargs.get("labels")
    if labels is not None:
        _require_file(labels, "no such file", "a labels file")
    task = kwargs.get("task", "auto")
    if fmt == "svmlight":
        X, y = load_svmlight(path, zero_based=zero_based, n_features=n_features)
        y = svmlight_targets(y, task, path)
    elif fmt == "sparse npz":
        X = load_sparse_npz(path)
        if labels is not None:
            y = load_labels(labels, X.shape[0], task=task, data_path=path)
        elif kwargs.get("require_target", True):
            raise CLIError(f"{path} is a sparse NPZ file (scipy.sparse.save_npz), which holds "
                           "no labels; give them with --labels FILE (a .npy array, or a text "
                           "file with one label per line)")
        else:
            y = None
    else:
        X, y, info = load_dataset(path, **kwargs)
        return X, y, {**info, "sparse": False}
    return X, y, {"format": fmt, "feature_names": None, "sparse": True}


def check_features(model, X, data_path, info, target):
    """X with the columns the model takes, in its order; CLIError if it cannot have them.

    A CSV's columns are matched to a model's ``feature_names`` by header name, in any order;
    missing or unknown ones are an error naming them. Other files, and models without
    names, are taken by position and must have the model's column count.
    One column too many in a CSV read without --target is most likely the target column,
    and the message says so.
    """
    names, wanted = info.get("feature_names"), getattr(model, "feature_names", None)
    if scipy.sparse.issparse(X):
        return _sparse_features(model, X, data_path, info)
    detail = ""
    if names is not None and wanted is not None:
        missing = [n for n in wanted if n not in names]
        unknown = [n for n in names if n not in wanted]
        if not missing and not unknown:
            return X[:, [names.index(n) for n in wanted]]
        detail = " (" + "; ".join(part for part in (
            f"no column {', '.join(map(repr, missing[:10]))}" if missing else "",
            f"unknown column {', '.join(map(repr, unknown[:10]))}" if unknown else "")
            if part) + ")"
        if len(names) == len(wanted):
            raise CLIError(f"{data_path}'s columns are not the model's features{detail}")
    if X.shape[1] == model.n_features:
        return X
    hint = ""
    if info["format"] == "csv" and target is None and X.shape[1] == model.n_features + 1:
        hint = "; if one column is the target, name it with --target"
    raise CLIError(f"{data_path} has {X.shape[1]} feature columns but the model takes "
                   f"{model.n_features}{hint}{detail}")


def _sparse_features(model, X, data_path, info):
    """Sparse X with the model's column count: fewer columns are padded with zero columns
    (an svmlight file's width is only its largest index), more are an error."""
    n, d = X.shape
    if d < model.n_features:
        X = X.tocsr()
        return type(X)((X.data, X.indices, X.indptr), shape=(n, model.n_features))
    if d > model.n_features:
        how = (" (its largest feature index)" if info["format"] == "svmlight" else "")
        raise CLIError(f"{data_path} has {d} feature columns{how} but the model takes "
                       f"{model.n_features}")
    return X


def save_model(model, path):
    """``model.save(path)``, an unwritable path reported as a CLIError."""
    try:
        model.save(path)
    except OSError as exc:
        raise cannot_write(path, exc, "the model") from None
