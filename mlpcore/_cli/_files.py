"""Reading data and model files and writing models, with the command's error messages."""

import os

import mlpcore
from mlpcore._cli._errors import CLIError, cannot_write


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


def load_data(path, **kwargs):
    """``(X, y, info)`` from a CSV, NPZ or IDX file: :func:`mlpcore.datasets._files.load_dataset`.

    Parameters
    ----------
    path : str
    **kwargs
        ``load_dataset``'s keywords (target, labels, require_target, task).
    """
    from mlpcore.datasets._files import load_dataset

    _require_file(path, "no such file", "a data file")
    labels = kwargs.get("labels")
    if labels is not None and not os.path.exists(labels):
        raise CLIError(f"no such file: {labels}")
    return load_dataset(path, **kwargs)


def check_features(model, X, data_path, info, target):
    """Raise CLIError unless X has as many columns as the model has inputs.

    One column too many in a CSV read without --target is most likely the target column,
    and the message says so.
    """
    if X.shape[1] == model.n_features:
        return
    hint = ""
    if info["format"] == "csv" and target is None and X.shape[1] == model.n_features + 1:
        hint = "; if one column is the target, name it with --target"
    raise CLIError(f"{data_path} has {X.shape[1]} feature columns but the model takes "
                   f"{model.n_features}{hint}")


def save_model(model, path):
    """``model.save(path)``, an unwritable path reported as a CLIError."""
    try:
        model.save(path)
    except OSError as exc:
        raise cannot_write(path, exc, "the model") from None
