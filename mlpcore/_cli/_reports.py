"""Scoring a trained model on labelled data, as lines of text (digits and evaluate)."""

import math

import numpy as np


def confusion_matrix(y_true, y_pred, labels):
    """Counts of (true label, predicted label) pairs, rows and columns in ``labels`` order.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (N,)
    labels : list
        Every label in ``y_true`` and ``y_pred``.

    Returns
    -------
    ndarray of int64, shape (len(labels), len(labels))
    """
    index = {label: i for i, label in enumerate(labels)}
    M = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        M[index[t], index[p]] += 1
    return M


def format_confusion_matrix(M, labels, truth="true", pred="predicted"):
    """The matrix as aligned text, with the labels as row and column headers."""
    names = [str(label) for label in labels]
    cell = max(max(len(n) for n in names), len(str(int(M.max()) if M.size else 0))) + 1
    cell = max(cell, 4)
    row_head = max(max(len(n) for n in names), len(truth))
    lines = [f"{truth:>{row_head}} \\ {pred}",
             " " * row_head + "  " + "".join(f"{n:>{cell}}" for n in names)]
    for name, row in zip(names, M):
        lines.append(f"{name:>{row_head}}  " + "".join(f"{int(v):>{cell}}" for v in row))
    return "\n".join(lines)


def _as_comparable(values, classes):
    """Labels in a form that compares with the model's classes (text vs numbers).

    A CSV column of digits is read as integers, while a model trained on text labels
    holds strings (and the other way round).
    """
    values = np.asarray(values)
    if classes.dtype.kind in "U" and values.dtype.kind not in "U":
        return values.astype(str)
    if classes.dtype.kind in "iub" and values.dtype.kind == "U":
        try:
            return values.astype(np.int64)
        except ValueError:
            return values
    return values


def classification_report(model, X, y):
    """Lines: accuracy, loss (if the labels are all known) and the confusion matrix.

    Labels the model was not trained on count as errors and get their own confusion-matrix
    rows, so the accuracy is computed here rather than by ``model.score``, which refuses
    them.

    Parameters
    ----------
    model : mlpcore.MLP
        A classifier.
    X : ndarray of shape (N, D)
    y : ndarray of shape (N,) or (N, K)
        Labels, or one-hot rows for a model trained on one-hot targets.

    Returns
    -------
    list of str
    """
    pred = model.predict(X)
    truth = np.asarray(y)
    if getattr(model.targets, "one_hot", False) and truth.ndim == 2:
        truth = np.argmax(truth, axis=1)
    truth = _as_comparable(truth.reshape(len(pred)), model.classes)
    correct = int(np.sum(pred == truth))
    lines = [f"accuracy {correct / len(pred):.2%} ({correct} of {len(pred)} correct)"]
    known = np.isin(truth, model.classes)
    if known.all():
        lines.append(f"loss ({model.loss_name}) {model.loss(X, truth):.4f}")
    else:
        lines.append(f"{int((~known).sum())} rows have labels the model was not trained on")
    labels = list(model.classes.tolist())
    for label in np.unique(truth).tolist():
        if label not in labels:
            labels.append(label)
    lines.append("confusion matrix (rows: true label, columns: predicted label):")
    lines.append(format_confusion_matrix(confusion_matrix(truth, pred, labels), labels))
    return lines


def regression_report(model, X, y):
    """Lines: R^2 (``model.score``), mean squared, root mean squared and mean absolute error.

    Parameters
    ----------
    model : mlpcore.MLP
        A regressor.
    X : ndarray of shape (N, D)
    y : ndarray of shape (N,) or (N, K)

    Returns
    -------
    list of str
    """
    pred = np.asarray(model.predict(X), dtype=np.float64)
    truth = np.asarray(y, dtype=np.float64).reshape(pred.shape)
    err = pred - truth
    mse = float(np.mean(err ** 2))
    return [f"R^2 {model.score(X, y):.4f}",
            f"mean squared error {mse:.6g}",
            f"root mean squared error {math.sqrt(mse):.6g}",
            f"mean absolute error {float(np.mean(np.abs(err))):.6g}",
            f"({len(pred)} rows)"]
