"""What the targets mean: classification labels or regression values, and their encoding.

``Targets.from_y`` decides the task, as documented in :func:`mlpcore.fit`:

* ``task=`` given: it decides ('classification' or 'regression').
* An explicit regression output or loss decides next: ``output='exp'``, ``loss='poisson'``
  or ``output='identity'`` means regression, whatever the values look like (Poisson counts
  are integers, and still not classes).
* Otherwise 1-D integers, booleans or strings (or an (N, 1) column of them) mean
  classification over the sorted unique labels, encoded one-hot; a 2-D 0/1 matrix whose
  every row holds exactly one 1 means classification over its K columns (one-hot), unless
  ``output='sigmoid'``; any other 2-D 0/1 matrix (a row with no 1 or several), or any 0/1
  matrix with ``output='sigmoid'``, means multi-label classification: K independent yes/no
  labels; anything else numeric means regression on the values as given.

A model trained on one-hot rows also takes 1-D labels (column indices), as its ``predict``
returns, wherever it takes targets.
"""

import numpy as np
import scipy.sparse

from mlpcore._validation import _as_numeric_array, check_finite

TASKS = ("classification", "regression")


def _as_array(a, name):
    """``np.asarray(a)``, with conversion failures (ragged lists, ...) naming the argument."""
    if scipy.sparse.issparse(a):  # np.asarray would make it a 0-D object array
        raise TypeError(f"{name} is a sparse matrix; targets must be a dense array "
                        f"({name}.toarray())")
    if np.ma.isMaskedArray(a) and np.ma.is_masked(a):
        raise ValueError(f"{name} is a masked array with masked entries; fill them or drop "
                         "those rows")
    try:
        return np.asarray(a)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc


def _is_label_array(y):
    if y.dtype.kind in "biuUS":
        return True
    if y.dtype.kind == "O":  # every element: a float after many labels must not slip by
        kinds = {type(v) for v in y.ravel()}
        return all(issubclass(k, (str, int, np.integer, bool, np.bool_)) for k in kinds)
    return False


def _is_indicator(y):
    """A 2-D matrix of at least two columns holding only 0 and 1."""
    return (y.ndim == 2 and y.shape[1] >= 2 and y.dtype.kind in "biuf"
            and bool(np.isin(y, (0, 1)).all()))


def _is_one_hot(y):
    return _is_indicator(y) and bool((y.sum(axis=1) == 1).all())


def infer_task(y, output=None, loss=None):
    """The task ``Targets.from_y`` gives Y when ``task`` is not given (see the module)."""
    if output in ("exp", "identity") or loss == "poisson":
        return "regression"
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim == 1 and y.dtype.kind == "O":
        _check_one_kind(y)
    if (y.ndim == 1 and _is_label_array(y)) or _is_indicator(y):
        return "classification"
    return "regression"


class Targets:
    """How a model's outputs map to the user's targets.

    Attributes
    ----------
    task : {'classification', 'regression'}
    classes : ndarray or None
        Sorted class labels (classification).
    n_outputs : int
        K, the width of the output layer.
    one_hot : bool
        Classification from one-hot rows: predictions are column indices.
    single_sigmoid : bool
        Two classes with one sigmoid output giving P(classes[1]).
    multilabel : bool
        K independent 0/1 labels (a 0/1 indicator matrix): ``classes`` are the column
        indices; predictions are 0/1 rows.
    ndim : int
        Dimensions of Y as given (regression on 1-D targets predicts 1-D values).
    """

    def __init__(self, task, classes, n_outputs, one_hot=False, single_sigmoid=False, ndim=2,
                 multilabel=False):
        self.task = task
        self.classes = classes
        self.n_outputs = n_outputs
        self.one_hot = one_hot
        self.single_sigmoid = single_sigmoid
        self.multilabel = multilabel
        self.ndim = ndim

    @classmethod
    def from_y(cls, Y, output=None, loss=None, task=None, classes=None):
        """Decide the task and encoding from Y (see the module docstring).

        With exactly two classes and ``output='sigmoid'`` the network gets one output unit,
        P(y = classes[1]), like the tutorial's XOR network and scikit-learn's binary MLP.
        ``classes`` (for ``partial_fit``) lists every label that can occur, when the first
        Y may not show them all.

        Parameters
        ----------
        Y : array-like
        output, loss : str or None
            The output activation and loss asked for (canonical names), or None.
        task : {'classification', 'regression'} or None
            None: inferred.
        classes : array-like, optional
        """
        if task is not None and task not in TASKS:
            raise ValueError(f"task must be 'classification', 'regression' or None, got "
                             f"{task!r}")
        if classes is not None:
            Y = _as_array(classes, "classes")
            if Y.ndim != 1 or not (_is_label_array(Y) or Y.dtype.kind == "f"):
                raise ValueError("classes must be a 1-D array of labels (integers, booleans, "
                                 "strings, or numbers with task='classification')")
            task = task or "classification"
        y = _as_array(Y, "Y")
        if y.ndim == 0:
            raise ValueError("Y must be 1-D or 2-D, got 0-D (a scalar)")
        task = task or infer_task(y, output, loss)
        if task == "regression":
            y = _as_numeric_array(y, "Y")
            if y.ndim not in (1, 2):
                raise ValueError(f"Y must be 1-D or 2-D, got {y.ndim}-D")
            if y.ndim == 2 and y.shape[1] == 0:
                raise ValueError("Y has no columns: shape (N, 0)")
            return cls("regression", None, 1 if y.ndim == 1 else y.shape[1], ndim=y.ndim)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim == 2:
            if not _is_indicator(y):
                raise ValueError(
                    "2-D classification targets must be 0/1: one-hot rows (one class each) or "
                    f"a multi-label indicator; got shape {y.shape} with other values")
            if _is_one_hot(y) and output != "sigmoid":
                return cls("classification", np.arange(y.shape[1]), y.shape[1], one_hot=True,
                           ndim=2)
            return cls("classification", np.arange(y.shape[1]), y.shape[1], ndim=2,
                       multilabel=True)
        if y.ndim != 1:
            raise ValueError(f"Y must be 1-D or 2-D, got {y.ndim}-D")
        classes = _sorted_labels(y)
        if len(classes) < 2:
            raise ValueError(f"classification needs at least two classes, Y has {len(classes)}")
        single = len(classes) == 2 and output == "sigmoid"
        return cls("classification", classes, 1 if single else len(classes),
                   single_sigmoid=single, ndim=1)

    def encode(self, Y, dtype, n_samples, name="Y"):
        """Return Y as the (N, K) C-contiguous target matrix the engine trains on."""
        if self.task == "regression":
            y = _as_numeric_array(Y, name)
            if y.ndim == 1:
                y = y.reshape(-1, 1)
            if y.ndim != 2:
                raise ValueError(f"{name} must be 1-D or 2-D, got {y.ndim}-D")
            if y.shape[0] != n_samples:
                raise ValueError(f"X has {n_samples} samples but Y has {y.shape[0]}"
                                 + ("" if name == "Y" else f" ({name})"))
            if y.shape[1] != self.n_outputs:
                raise ValueError(f"{name} has {y.shape[1]} columns, the model "
                                 f"{self.n_outputs} outputs")
            y = np.ascontiguousarray(y, dtype=dtype)
            check_finite(y, name)
            return y
        y = _as_array(Y, name)
        if y.ndim == 0:
            raise ValueError(f"{name} must be 1-D class labels or 2-D 0/1 rows, got a scalar")
        if y.shape[0] != n_samples:
            raise ValueError(f"X has {n_samples} samples but Y has {y.shape[0]}"
                                 + ("" if name == "Y" else f" ({name})"))
        if self.multilabel:
            if not _is_indicator(y) or y.shape[1] != self.n_outputs:
                raise ValueError(f"{name} must be 0/1 label rows over {self.n_outputs} columns "
                                 f"(multi-label), got shape {y.shape}")
            return np.ascontiguousarray(y, dtype=dtype)
        if self.one_hot and y.ndim == 2 and y.shape[1] != 1:
            if not _is_one_hot(y) or y.shape[1] != self.n_outputs:
                raise ValueError(f"{name} must be one-hot rows over {self.n_outputs} columns, or "
                                 "1-D labels (column indices)")
            return np.ascontiguousarray(y, dtype=dtype)
        y = y.ravel() if (y.ndim == 2 and y.shape[1] == 1) else y
        if y.ndim != 1:
            raise ValueError(f"{name} must be 1-D class labels, got shape {y.shape}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or infinity")
        idx = self.class_indices(y)
        if self.single_sigmoid:
            return np.ascontiguousarray(idx.reshape(-1, 1), dtype=dtype)
        onehot = np.zeros((n_samples, self.n_outputs), dtype=dtype)
        onehot[np.arange(n_samples), idx] = 1
        return onehot

    def class_indices(self, y):
        """Position of each label in ``classes``; unseen labels raise ValueError."""
        y = np.asarray(y)
        if y.dtype.kind == "O" and self.classes.dtype.kind == "U":
            y = y.astype(str)
        idx = np.searchsorted(self.classes, y)
        idx = np.clip(idx, 0, len(self.classes) - 1)
        unseen = self.classes[idx] != y
        if np.any(unseen):
            raise ValueError(
                f"Y contains labels not seen in training: {np.unique(y[unseen])[:5].tolist()}; "
                f"known classes are {self.classes.tolist()[:20]}"
            )
        return idx

    def probabilities(self, A, output):
        """Class probabilities (rows summing to 1) from the output activations A.

        softmax: A itself; one sigmoid unit: [1 - p, p]; several sigmoid units: each row
        divided by its sum; identity outputs: negative values clipped to 0, then normalised
        (a row of zeros becomes uniform).
        """
        if self.single_sigmoid:
            p = A[:, 0]
            return np.column_stack([1 - p, p])
        if output == "softmax" or self.multilabel:
            return A  # multi-label: each column its own probability
        P = np.clip(A, 0, None) if output == "identity" else A.copy()
        total = P.sum(axis=1, keepdims=True)
        empty = total[:, 0] <= 0
        P[empty] = 1.0
        total[empty] = P.shape[1]
        return P / total

    def decode(self, A, output):
        """Predictions from the output activations: labels, or values shaped like Y."""
        if self.task == "regression":
            return A[:, 0].copy() if self.ndim == 1 else A
        if self.single_sigmoid:
            return self.classes[(A[:, 0] > 0.5).astype(np.intp)]
        if self.multilabel:
            return (A > 0.5).astype(np.int64)
        return self.classes.take(A.argmax(axis=1))

    def class_index_of_rows(self, Ym):
        """Class index of each row of an encoded target matrix (classification)."""
        if self.single_sigmoid:
            return (Ym[:, 0] > 0.5).astype(np.intp)
        return np.argmax(Ym, axis=1)

    def labels_for_stratification(self, Ym):
        """Per-row class for a stratified split, or None (regression, multi-label)."""
        if self.task != "classification" or self.multilabel:
            return None
        return self.class_index_of_rows(Ym)

    def class_weights(self, class_weight, counts):
        """The weight of each class: ``'balanced'`` is N / (n_classes * N_c), as in
        scikit-learn, from the per-class sample ``counts``; a dict maps labels to weights
        (labels not in it weigh 1).

        Raises
        ------
        ValueError
            Not single-label classification, or a label that is not one of the classes.
        """
        if self.task != "classification" or self.multilabel:
            raise ValueError("class_weight is only for (single-label) classification")
        n_classes = len(self.classes)
        if class_weight == "balanced":
            counts = np.asarray(counts, dtype=np.float64)
            return np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0)
        per_class = np.ones(n_classes)
        for label, weight in class_weight.items():
            try:
                pos = np.flatnonzero(self.classes == np.asarray(label, dtype=self.classes.dtype))
            except (TypeError, ValueError, OverflowError):
                pos = []
            if len(pos) == 0:
                raise ValueError(f"class_weight names label {label!r}, which is not one of "
                                 f"the classes {self.classes.tolist()}")
            if not (np.isfinite(weight) and weight >= 0):
                raise ValueError(f"class_weight[{label!r}] must be a non-negative number")
            per_class[pos[0]] = weight
        return per_class

    def apply_class_weight(self, class_weight, Ym, sw, dtype):
        """Multiply per-sample weights by the weight of each sample's class.

        ``'balanced'`` weighs class c by N / (n_classes * N_c), as scikit-learn does; a dict
        maps labels to weights (labels not in it weigh 1).
        """
        idx = self.class_index_of_rows(Ym)
        per_class = self.class_weights(class_weight,
                                       np.bincount(idx, minlength=len(self.classes)))
        w = per_class[idx]
        if sw is not None:
            w = w * sw
        if not w.sum() > 0:
            raise ValueError("class and sample weights leave no sample with positive weight")
        return np.ascontiguousarray(w, dtype=dtype)

    def score(self, A, Ym, sw=None):
        """Accuracy (classification) or R^2 averaged over outputs (regression).

        A are output activations, Ym the encoded targets, sw optional sample weights.
        """
        if self.multilabel:  # subset accuracy: every label of a row right
            hits = ((A > 0.5) == (Ym > 0.5)).all(axis=1)
            return float(np.average(hits, weights=sw))
        if self.task == "classification":
            if self.single_sigmoid:
                pred = (A[:, 0] > 0.5).astype(np.intp)
            else:
                pred = np.argmax(A, axis=1)
            return float(np.average(pred == self.class_index_of_rows(Ym), weights=sw))
        Y = Ym.astype(np.float64)
        P = A.astype(np.float64)
        ss_res = np.average((Y - P) ** 2, axis=0, weights=sw)
        ss_tot = np.average((Y - np.average(Y, axis=0, weights=sw)) ** 2, axis=0, weights=sw)
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                      np.where(ss_res > 0, 0.0, 1.0))
        return float(np.mean(r2))

    def to_dict(self):
        """The encoding as JSON values (the classes travel separately, as an array)."""
        return {"task": self.task, "n_outputs": self.n_outputs, "one_hot": self.one_hot,
                "single_sigmoid": self.single_sigmoid, "multilabel": self.multilabel,
                "ndim": self.ndim}

    @classmethod
    def from_dict(cls, d, classes, numeric_labels=False):
        """The inverse of :meth:`to_dict`, checked (it may come from an untrusted file).

        ``numeric_labels``: the model was told ``task='classification'``, so its classes may
        be real numbers (0.0, 1.0, 2.0); otherwise only integers, booleans and strings.

        Raises
        ------
        ValueError
            An unknown task, malformed fields, or classes that are not at least two sorted
            unique labels matching the output width.
        """
        task = d["task"]
        if task == "classification":
            kinds = "biufUS" if numeric_labels else "biuUS"
            if classes is None or classes.ndim != 1 or classes.dtype.kind not in kinds:
                raise ValueError("classification model without valid classes (real-valued "
                                 "classes need task='classification')")
            if len(classes) < 2 or not (classes[1:] > classes[:-1]).all():
                raise ValueError("classes must be at least two sorted, unique labels")
            classes = np.array(classes, copy=True)
        elif task == "regression":
            classes = None
        else:
            raise ValueError(f"unknown task {task!r}")
        n_outputs, ndim = d["n_outputs"], d["ndim"]
        flags = (d["one_hot"], d["single_sigmoid"], d.get("multilabel", False))
        if not (isinstance(n_outputs, int) and not isinstance(n_outputs, bool) and n_outputs >= 1
                and ndim in (1, 2) and type(ndim) is int
                and all(isinstance(f, bool) for f in flags)):
            raise ValueError(f"malformed targets {d!r}")
        if sum(flags) > 1:
            raise ValueError(f"malformed targets {d!r}: one_hot, single_sigmoid and multilabel "
                             "exclude each other")
        targets = cls(task, classes, n_outputs, one_hot=flags[0], single_sigmoid=flags[1],
                      ndim=ndim, multilabel=flags[2])
        if classes is not None and len(classes) != (2 if targets.single_sigmoid else n_outputs):
            raise ValueError("number of classes does not match the output width")
        return targets


def _check_one_kind(y):
    """Refuse an object Y mixing labels (str, int, bool) with other values, naming the first."""
    label = (str, int, np.integer, bool, np.bool_)
    first = isinstance(y[0], label)
    for i, v in enumerate(y):
        if isinstance(v, label) != first:
            raise TypeError(f"Y mixes labels and other values: Y[0] is {y[0]!r} but Y[{i}] is "
                            f"{v!r} ({type(v).__name__}); give one kind of label, or numbers")


def _sorted_labels(y):
    """The sorted unique labels of a 1-D Y (object arrays of one kind of label included)."""
    if y.dtype.kind == "O":
        try:
            classes = np.unique(y)
        except TypeError:
            raise TypeError("labels in Y must all be of one kind (all str or all int)") from None
        if isinstance(classes[0], str):
            return classes.astype(str)
        if any(not -2**63 <= int(c) < 2**63 for c in (classes[0], classes[-1])):
            raise ValueError(f"Y holds labels beyond 64-bit integers ({classes[-1]!r}); "
                             "give them as strings")
        return classes.astype(np.int64)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("Y contains NaN or infinity")
    if y.dtype.kind == "c":
        raise TypeError(f"Y has complex dtype {y.dtype}; labels must be real")
    return np.unique(y)
