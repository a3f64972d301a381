"""Saving and loading models, without pickle.

File format (version 1)
-----------------------
A NumPy ``.npz`` archive (a zip of ``.npy`` arrays), read with ``allow_pickle=False`` so
that loading a file can never execute code. Its members:

``meta``
    uint8 array holding UTF-8 JSON: ``{"format": "mlpcore-model", "version": 1,
    "sizes": [...], "activation", "output", "loss", "dtype", "alpha", "targets": {...},
    "history": {...}, "optimizer": {"name": ..., "config": {...}, "t": ...} or null}``.
``theta``
    The flat parameter vector (float32 or float64): W_1 row-major, b_1, W_2, b_2, ...
``classes``
    Class labels (classification only), a numeric or fixed-width unicode array.
``optimizer_state_0``, ``optimizer_state_1``
    Optimizer state (velocities, Adam moments) when present, so training can resume.

Readers refuse files whose ``format`` is not ``mlpcore-model`` and versions newer than they
know; every older version stays loadable.
"""

import io
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT_NAME = "mlpcore-model"
FORMAT_VERSION = 1


def save_model(model, path):
    """Write ``model`` to ``path`` atomically (temporary file beside it, then rename)."""
    from mlpcore._optimizers import Optimizer

    opt = model.optimizer if isinstance(model.optimizer, Optimizer) else None
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "sizes": list(model.sizes),
        "activation": model.activation,
        "output": model.output,
        "loss": model.loss_name,
        "dtype": model.dtype.name,
        "alpha": model.alpha,
        "targets": model.targets.to_dict(),
        "history": {k: [float(v) for v in vals] for k, vals in model.history.items()},
        "optimizer": None if opt is None else {
            "name": opt.rule, "config": opt.get_config(), "t": opt.t},
    }
    arrays = {
        "meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
        "theta": model._theta,
    }
    if model.targets.classes is not None:
        arrays["classes"] = np.asarray(model.targets.classes)
    if opt is not None:
        for i, s in enumerate(opt.state):
            arrays[f"optimizer_state_{i}"] = s
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".mlpcore-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(tmp)
        raise


class _suppress_oserror:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return exc_type is not None and issubclass(exc_type, OSError)


def _fail(path, why):
    raise ValueError(f"{path!s} is not a readable mlpcore model file: {why}")


def load(path):
    """Load a model written by :meth:`MLP.save`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    MLP
        A model giving the same predictions as the one saved.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not an mlpcore model, is truncated or corrupted, or comes from a newer
        format version than this mlpcore reads.
    """
    from mlpcore._model import MLP
    from mlpcore._optimizers import OPTIMIZERS
    from mlpcore._targets import Targets

    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        archive = np.load(io.BytesIO(raw), allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            _fail(path, "not an .npz archive")
        with archive:
            members = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "mlpcore model file" in str(exc):
            raise
        _fail(path, exc)
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError, RuntimeError) as exc:
        _fail(path, f"{type(exc).__name__}: {exc}")
    if "meta" not in members or "theta" not in members:
        _fail(path, "missing the 'meta' or 'theta' member")
    try:
        meta = json.loads(members["meta"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(path, f"unreadable metadata ({exc})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        _fail(path, "no mlpcore-model format marker")
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        _fail(path, f"bad format version {version!r}")
    if version > FORMAT_VERSION:
        _fail(path, f"format version {version} is newer than this mlpcore reads "
                    f"({FORMAT_VERSION}); upgrade mlpcore")
    try:
        return _build_model(meta, members, MLP, Targets, OPTIMIZERS)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        _fail(path, f"inconsistent contents ({type(exc).__name__}: {exc})")


def _build_model(meta, members, MLP, Targets, OPTIMIZERS):
    dtype = np.dtype(meta["dtype"])
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype {dtype}")
    sizes = [int(s) for s in meta["sizes"]]
    t = meta["targets"]
    classes = members.get("classes")
    if t["task"] == "classification":
        if classes is None or classes.ndim != 1 or classes.dtype.kind not in "biuUS":
            raise ValueError("classification model without valid classes")
    else:
        classes = None
    targets = Targets(t["task"], classes, int(t["n_outputs"]), one_hot=bool(t["one_hot"]),
                      single_sigmoid=bool(t["single_sigmoid"]), ndim=int(t["ndim"]))
    if targets.n_outputs != sizes[-1]:
        raise ValueError("output width does not match the targets")
    if classes is not None and not targets.single_sigmoid and len(classes) != sizes[-1]:
        raise ValueError("number of classes does not match the output width")
    model = MLP(sizes, activation=meta["activation"], output=meta["output"], loss=meta["loss"],
                dtype=dtype, targets=targets, alpha=float(meta["alpha"]))
    theta = members["theta"]
    if theta.dtype != dtype or theta.shape != (model.n_params,):
        raise ValueError(f"theta has shape {theta.shape} and dtype {theta.dtype}, expected "
                         f"({model.n_params},) {dtype}")
    if not np.isfinite(theta).all():
        raise ValueError("parameters contain NaN or infinity")
    model._theta[:] = theta
    model.history = {str(k): [float(v) for v in vals] for k, vals in meta["history"].items()}
    opt_meta = meta.get("optimizer")
    if opt_meta is not None:
        opt = OPTIMIZERS[opt_meta["name"]](**opt_meta["config"])
        for i in range(opt.n_state):
            s = members[f"optimizer_state_{i}"]
            if s.dtype != dtype or s.shape != (model.n_params,):
                raise ValueError("optimizer state does not match the parameters")
            opt.state.append(s.copy())
        opt.t = int(opt_meta["t"])
        model.optimizer = opt
    return model
