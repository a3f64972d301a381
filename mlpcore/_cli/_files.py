"""Reading data and model files and writing models, with the command's error messages."""

import os

import mlpcore
from mlpcore._cli._errors import EXIT_USAGE, CLIError, cannot_write


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


def load_data(path, **kwargs):
    """``(X, y, info)`` from a CSV, NPZ or IDX file: :func:`mlpcore.datasets._files.load_dataset`.

    Parameters
    ----------
    path : str
    **kwargs
        ``load_dataset``'s keywords (target, labels, require_target, task, index_column).

    Raises
    ------
    CLIError
        A missing file; a usage error for --labels with a CSV file (a CSV names its label
        column with --target) and for --target or --index-column with NPZ or IDX files.
    """
    from mlpcore.datasets._files import detect_format, load_dataset, looks_like_text

    _require_file(path, "no such file", "a data file")
    labels = kwargs.get("labels")
    fmt = detect_format(path)
    if labels is not None and fmt == "csv" and looks_like_text(path):
        raise CLIError(f"--labels applies to IDX image files and Zarr arrays, and {path} is a "
                       "CSV file: name its label column with --target COLUMN", EXIT_USAGE)
    if fmt in ("npz", "idx"):
        for flag, given in (("--target", kwargs.get("target")),
                            ("--index-column", kwargs.get("index_column"))):
            if given:
                hint = (" (an .npz holds arrays X and y)" if fmt == "npz" else
                        " (give IDX labels with --labels)")
                raise CLIError(f"{flag} applies to CSV files, and {path} is an "
                               f"{fmt.upper()} file{hint}", EXIT_USAGE)
    if labels is not None and not os.path.exists(labels):
        raise CLIError(f"no such file: {labels}")
    return load_dataset(path, **kwargs)


def check_features(model, X, data_path, info, target):
    """X with the columns the model takes, in its order; CLIError if it cannot have them.

    A CSV's columns are matched to a model's ``feature_names`` by header name, in any order;
    missing or unknown ones are an error naming them. Other files, and models without
    names, are taken by position and must have the model's column count.
    One column too many in a CSV read without --target is most likely the target column,
    and the message says so.
    """
    names, wanted = info.get("feature_names"), getattr(model, "feature_names", None)
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


def save_model(model, path):
    """``model.save(path)``, an unwritable path reported as a CLIError."""
    try:
        model.save(path)
    except OSError as exc:
        raise cannot_write(path, exc, "the model") from None
