"""What the targets mean: classification labels or regression values, and their encoding.

``Targets.from_y`` decides the task from Y, as documented in :func:`mlpcore.fit`:

* 1-D integers, booleans or strings (or an (N, 1) column of them): classification over the
  sorted unique labels, encoded one-hot;
* 2-D 0/1 rows with exactly one 1 (one-hot): classification over the K columns;
* anything else numeric: regression on the values as given.
"""

import numpy as np

from mlpcore._validation import _as_numeric_array, check_finite


def _as_array(a, name):
    """``np.asarray(a)``, with conversion failures (ragged lists, ...) naming the argument."""
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
    if y.dtype.kind == "O":
        kinds = {type(v) for v in y.ravel()[:1000]}
        return all(issubclass(k, (str, int, np.integer, bool, np.bool_)) for k in kinds)
    return False


def _is_one_hot(y):
    if y.ndim != 2 or y.shape[1] < 2 or y.dtype.kind not in "biuf":
        return False
    return bool(np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all())


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
    ndim : int
        Dimensions of Y as given (regression on 1-D targets predicts 1-D values).
    """

    def __init__(self, task, classes, n_outputs, one_hot=False, single_sigmoid=False, ndim=2):
        self.task = task
        self.classes = classes
        self.n_outputs = n_outputs
        self.one_hot = one_hot
        self.single_sigmoid = single_sigmoid
        self.ndim = ndim

    @classmethod
    def from_y(cls, Y, output, classes=None):
        """Infer the task from Y; ``output`` (if given) may shape the encoding.

        With exactly two classes and ``output='sigmoid'`` the network gets one output unit,
        P(y = classes[1]), like the tutorial's XOR network and scikit-learn's binary MLP.
        ``classes`` (for ``partial_fit``) lists every label that can occur, when the first
        Y may not show them all.
        """
        if classes is not None:
            Y = _as_array(classes, "classes")
            if Y.ndim != 1 or not _is_label_array(Y):
                raise ValueError("classes must be a 1-D array of labels (integers, booleans "
                                 "or strings)")
        y = _as_array(Y, "Y")
        if y.ndim == 2 and y.shape[1] == 1 and _is_label_array(y):
            y = y.ravel()
        if y.ndim == 1 and _is_label_array(y):
            if y.dtype.kind == "O":
                try:
                    classes = np.unique(y)
                except TypeError:
                    raise TypeError(
                        "labels in Y must all be of one kind (all str or all int)") from None
                classes = classes.astype(str if isinstance(classes[0], str) else np.int64)
            else:
                classes = np.unique(y)
            if len(classes) < 2:
                raise ValueError(f"classification needs at least two classes, Y has {len(classes)}")
            single = len(classes) == 2 and output == "sigmoid"
            return cls("classification", classes, 1 if single else len(classes),
                       single_sigmoid=single, ndim=1)
        if _is_one_hot(y):
            return cls("classification", np.arange(y.shape[1]), y.shape[1], one_hot=True, ndim=2)
        y = _as_numeric_array(y, "Y")
        if y.ndim not in (1, 2):
            raise ValueError(f"Y must be 1-D or 2-D, got {y.ndim}-D")
        return cls("regression", None, 1 if y.ndim == 1 else y.shape[1], ndim=y.ndim)

    def encode(self, Y, dtype, n_samples):
        """Return Y as the (N, K) C-contiguous target matrix the engine trains on."""
        if self.task == "regression":
            y = _as_numeric_array(Y, "Y")
            if y.ndim == 1:
                y = y.reshape(-1, 1)
            if y.ndim != 2:
                raise ValueError(f"Y must be 1-D or 2-D, got {y.ndim}-D")
            if y.shape[0] != n_samples:
                raise ValueError(f"X has {n_samples} samples but Y has {y.shape[0]}")
            if y.shape[1] != self.n_outputs:
                raise ValueError(f"Y has {y.shape[1]} columns, the model {self.n_outputs} outputs")
            y = np.ascontiguousarray(y, dtype=dtype)
            check_finite(y, "Y")
            return y
        y = _as_array(Y, "Y")
        if y.ndim == 0:
            raise ValueError("Y must be 1-D class labels or 2-D one-hot rows, got a scalar")
        if y.shape[0] != n_samples:
            raise ValueError(f"X has {n_samples} samples but Y has {y.shape[0]}")
        if self.one_hot:
            if not _is_one_hot(y) or y.shape[1] != self.n_outputs:
                raise ValueError(f"Y must be one-hot rows over {self.n_outputs} columns")
            return np.ascontiguousarray(y, dtype=dtype)
        y = y.ravel() if (y.ndim == 2 and y.shape[1] == 1) else y
        if y.ndim != 1:
            raise ValueError(f"Y must be 1-D class labels, got shape {y.shape}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("Y contains NaN or infinity")
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
        if output == "softmax":
            return A
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
        return self.classes[np.argmax(A, axis=1)]

    def class_index_of_rows(self, Ym):
        """Class index of each row of an encoded target matrix (classification)."""
        if self.single_sigmoid:
            return (Ym[:, 0] > 0.5).astype(np.intp)
        return np.argmax(Ym, axis=1)

    def labels_for_stratification(self, Ym):
        """Per-row class for a stratified split, or None (regression, multi-output targets)."""
        return self.class_index_of_rows(Ym) if self.task == "classification" else None

    def apply_class_weight(self, class_weight, Ym, sw, dtype):
        """Multiply per-sample weights by the weight of each sample's class.

        ``'balanced'`` weighs class c by N / (n_classes * N_c), as scikit-learn does; a dict
        maps labels to weights (labels not in it weigh 1).
        """
        if self.task != "classification":
            raise ValueError("class_weight is only for classification")
        idx = self.class_index_of_rows(Ym)
        n_classes = len(self.classes)
        if class_weight == "balanced":
            counts = np.bincount(idx, minlength=n_classes).astype(np.float64)
            per_class = np.where(counts > 0, len(idx) / (n_classes * np.maximum(counts, 1)), 0)
        else:
            per_class = np.ones(n_classes)
            for label, weight in class_weight.items():
                pos = np.flatnonzero(self.classes == np.asarray(label, dtype=self.classes.dtype))
                if len(pos) == 0:
                    raise ValueError(f"class_weight names label {label!r}, which is not one of "
                                     f"the classes {self.classes.tolist()}")
                if not (np.isfinite(weight) and weight >= 0):
                    raise ValueError(f"class_weight[{label!r}] must be a non-negative number")
                per_class[pos[0]] = weight
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
                "single_sigmoid": self.single_sigmoid, "ndim": self.ndim}

    @classmethod
    def from_dict(cls, d, classes):
        """The inverse of :meth:`to_dict`, checked (it may come from an untrusted file).

        Raises
        ------
        ValueError
            An unknown task, malformed fields, or classes that are not at least two sorted
            unique labels matching the output width.
        """
        task = d["task"]
        if task == "classification":
            if classes is None or classes.ndim != 1 or classes.dtype.kind not in "biuUS":
                raise ValueError("classification model without valid classes")
            if len(classes) < 2 or not (classes[1:] > classes[:-1]).all():
                raise ValueError("classes must be at least two sorted, unique labels")
            classes = np.array(classes, copy=True)
        elif task == "regression":
            classes = None
        else:
            raise ValueError(f"unknown task {task!r}")
        n_outputs, ndim = d["n_outputs"], d["ndim"]
        flags = (d["one_hot"], d["single_sigmoid"])
        if not (isinstance(n_outputs, int) and not isinstance(n_outputs, bool) and n_outputs >= 1
                and ndim in (1, 2) and type(ndim) is int
                and all(isinstance(f, bool) for f in flags)):
            raise ValueError(f"malformed targets {d!r}")
        targets = cls(task, classes, n_outputs, one_hot=flags[0], single_sigmoid=flags[1],
                      ndim=ndim)
        if classes is not None and len(classes) != (2 if targets.single_sigmoid else n_outputs):
            raise ValueError("number of classes does not match the output width")
        return targets
