"""Saving and loading models, without pickle.

File format (version 1)
-----------------------
A NumPy ``.npz`` archive (a zip of ``.npy`` arrays), read with ``allow_pickle=False`` so
that loading a file can never execute code. Its members:

``meta``
    uint8 array holding UTF-8 JSON: ``{"format": "mlpcore-model", "version": 1,
    "config": {...the settings of MLP(...)...}, "sizes": [...], "output", "loss", "dtype",
    "targets": {...}, "history": {...}, "optimizer_t": int, "schedule_state": {...},
    "samples_seen": int, "rng_state": {...}}``. Callables (``callback``, a callable
    ``schedule``) are not saved: a loaded model has no callback and a 'constant' schedule.
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
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": model.get_config(),
        "sizes": list(model.sizes),
        "output": model.output,
        "loss": model.loss_name,
        "dtype": model.dtype.name,
        "targets": model.targets.to_dict(),
        "history": {k: [float(v) for v in vals] for k, vals in model.history.items()},
        "optimizer_t": model.optimizer.t,
        "schedule_state": model._schedule.get_state(),
        "samples_seen": model.samples_seen,
        "rng_state": model._rng.bit_generator.state,
    }
    arrays = {
        "meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
        "theta": model._theta,
    }
    if model.targets.classes is not None:
        arrays["classes"] = np.asarray(model.targets.classes)
    for i, s in enumerate(model.optimizer.state):
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
    from mlpcore import _engine
    from mlpcore._base import HIDDEN_ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS
    from mlpcore._schedules import Schedule
    from mlpcore._training import Trainer

    config = dict(meta["config"])
    opt = config.pop("optimizer")
    optimizer = OPTIMIZERS[opt["name"]](**opt["config"])
    cw = config.get("class_weight")
    if isinstance(cw, list):
        config["class_weight"] = {k: v for k, v in cw}
    if config.get("n_iter_no_change") is None:
        config["n_iter_no_change"] = float("inf")
    if config.get("schedule") is None:
        config["schedule"] = "constant"
    monitor = config.pop("monitor", "val_loss")
    model = MLP(optimizer=optimizer, **config)
    model.monitor = monitor
    optimizer = model.optimizer  # MLP keeps its own copy of the settings

    dtype = np.dtype(meta["dtype"])
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype {dtype}")
    sizes = [int(s) for s in meta["sizes"]]
    if len(sizes) != len(model.hidden) + 2 or tuple(sizes[1:-1]) != model.hidden:
        raise ValueError("layer sizes do not match the settings")
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
    output, loss = meta["output"], meta["loss"]
    model.dtype, model.targets, model.output, model.loss_name = dtype, targets, output, loss
    model._network = _engine.Network(sizes, HIDDEN_ACTIVATIONS[model.activation],
                                      OUTPUT_ACTIVATIONS[output], LOSSES[loss])
    theta = members["theta"]
    if theta.dtype != dtype or theta.shape != (model._network.n_params,):
        raise ValueError(f"theta has shape {theta.shape} and dtype {theta.dtype}, expected "
                         f"({model._network.n_params},) {dtype}")
    if not np.isfinite(theta).all():
        raise ValueError("parameters contain NaN or infinity")
    model._theta = theta.copy()
    for i in range(optimizer.n_state):
        s = members[f"optimizer_state_{i}"]
        if s.dtype != dtype or s.shape != theta.shape:
            raise ValueError("optimizer state does not match the parameters")
        optimizer.state.append(s.copy())
    optimizer.t = int(meta["optimizer_t"])
    model._schedule = Schedule(model.schedule, optimizer.learning_rate or 1.0, model.power_t)
    model._schedule.set_state(meta["schedule_state"])
    model.history = {str(k): [float(v) for v in vals] for k, vals in meta["history"].items()}
    model.samples_seen = int(meta["samples_seen"])
    model._rng = np.random.default_rng()
    model._rng.bit_generator.state = meta["rng_state"]
    model._trainer = Trainer(model)
    return model
