"""Saving and loading models, without pickle.

File format (version 1)
-----------------------
An uncompressed NumPy ``.npz`` archive (a zip of ``.npy`` arrays, as :func:`numpy.savez`
writes). :func:`load` parses it itself and never unpickles anything, so loading a file can
never execute code. Its members:

``meta``
    uint8 array holding UTF-8 JSON: ``{"format": "mlpcore-model", "version": 1,
    "config": {...the settings of MLP(...)...}, "sizes": [...], "output", "loss", "dtype",
    "targets": {...}, "history": {...}, "optimizer_t": int, "schedule_state": {...},
    "samples_seen": int, "rng_state": {...}}``. Callables (``callback``, a callable
    ``schedule``) are not saved: a loaded model has no callback and a 'constant' schedule.
``theta``
    The flat parameter vector (float32 or float64): W_1 row-major, b_1, W_2, b_2, ...;
    its length is sum_l (sizes[l] + 1) * sizes[l+1].
``classes``
    Class labels (classification only), sorted and unique: a numeric or fixed-width
    unicode array.
``optimizer_state_0``, ``optimizer_state_1``
    Optimizer state (velocities, Adam moments) when present, so training can resume.

Members other than these are ignored.

Versions
--------
``version`` is raised whenever a change would make older readers misread a file. Readers
refuse files whose ``format`` is not ``mlpcore-model`` and versions newer than they know
(asking for an upgrade); every older version stays loadable (``tests/data`` keeps a
version-1 file that the tests load).

What loading checks
-------------------
Everything in the file is untrusted. Each member's ``.npy`` header is read first and its
declared size compared with the bytes actually present, so no allocation is ever driven by
a size the file merely claims; compressed members, object arrays and unknown ``.npy``
versions are refused; the zip CRC of every array read is verified. The metadata must have the
right types; the parameter vector must have exactly the length the layer sizes imply (checked
before the network is built), its dtype, and finite values. Any failure raises ValueError
naming the file and the problem.
"""

import io
import json
import math
import os
import secrets
import stat
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
        "meta": np.frombuffer(json.dumps(meta, default=_json_scalar).encode("utf-8"),
                              dtype=np.uint8),
        "theta": model._theta,
    }
    if model.targets.classes is not None:
        arrays["classes"] = np.asarray(model.targets.classes)
    for i, s in enumerate(model.optimizer.state):
        arrays[f"optimizer_state_{i}"] = s
    path = os.fspath(path)
    fd, tmp = _create_temporary(path)
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


def _json_scalar(value):
    """JSON for the NumPy scalars a setting may hold (``batch_size=np.int64(32)``)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _create_temporary(path):
    """A new file beside ``path``, opened for writing: ``(fd, name)``.

    Created with the usual permissions (0o666 less the umask), or those of the file being
    replaced, so that the atomic rename does not change who can read the model.
    """
    directory = os.path.dirname(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".mlpcore-{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return fd, tmp
    with _suppress_oserror():
        os.chmod(tmp, mode)
    return fd, tmp


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
        members = _read_members(raw)
    except MemoryError:
        raise
    except Exception as exc:  # anything the container parsing raises means a bad file
        _fail(path, str(exc) if type(exc) is ValueError else f"{type(exc).__name__}: {exc}")
    if "meta" not in members or "theta" not in members:
        _fail(path, "missing the 'meta' or 'theta' member")
    try:
        meta = json.loads(members["meta"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        _fail(path, f"unreadable metadata ({type(exc).__name__}: {exc})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        _fail(path, "no mlpcore-model format marker")
    version = meta.get("version")
    if not _is_int(version) or version < 1:
        _fail(path, f"bad format version {version!r} (versions are integers from 1)")
    if version > FORMAT_VERSION:
        _fail(path, f"format version {version} is newer than this mlpcore reads "
                    f"({FORMAT_VERSION}); upgrade mlpcore")
    try:
        return _build_model(meta, members, MLP, Targets, OPTIMIZERS)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError,
            ArithmeticError) as exc:
        _fail(path, f"inconsistent contents ({type(exc).__name__}: {exc})")


def _read_members(raw):
    """The ``.npy`` members of the zip archive ``raw`` as arrays, keyed by name without ``.npy``.

    Unlike :func:`numpy.load`, which allocates whatever shape a member's header declares
    before reading it, every declared size is checked against the member's real length
    first: memory use is bounded by the size of the file. The arrays are read-only views.
    """
    archive = zipfile.ZipFile(io.BytesIO(raw))
    members = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        name = info.filename[:-4]
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"member {name!r} is compressed; mlpcore model files are "
                             "uncompressed archives")
        if info.file_size > len(raw):
            raise ValueError(f"member {name!r} claims {info.file_size} bytes, more than the "
                             f"{len(raw)}-byte file holds")
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"member {name!r} has unsupported .npy version {version}")
            if any(n < 0 for n in shape):
                raise ValueError(f"member {name!r} has a negative dimension in {shape}")
            if dtype.hasobject:
                raise ValueError(f"member {name!r} holds Python objects, which mlpcore never "
                                 "loads")
            count = math.prod(shape)
            nbytes = count * dtype.itemsize
            if nbytes > info.file_size:
                raise ValueError(f"member {name!r} claims shape {shape} of {dtype} "
                                 f"({nbytes} bytes) but holds {info.file_size} bytes")
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise ValueError(f"member {name!r} is truncated")
            while f.read(65536):  # read to the end, which makes zipfile check the CRC
                pass
        array = np.frombuffer(data, dtype=dtype, count=count)
        members[name] = (array.reshape(shape[::-1]).T if fortran_order
                         else array.reshape(shape))
    return members


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _count(meta, key, maximum=2**62):
    """``meta[key]``, which must be an integer in [0, maximum]."""
    value = meta[key]
    if not _is_int(value) or not 0 <= value <= maximum:
        raise ValueError(f"{key} must be an integer in [0, {maximum}], got {value!r}")
    return value


def _build_model(meta, members, MLP, Targets, OPTIMIZERS):
    from mlpcore import _engine
    from mlpcore._base import HIDDEN_ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS
    from mlpcore._schedules import Schedule
    from mlpcore._training import Trainer

    # Sizes and the parameter vector first: nothing below may be sized by unchecked claims.
    sizes = meta["sizes"]
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(_is_int(s) and s >= 1 for s in sizes)):
        raise ValueError(f"sizes must be a list of at least two positive integers, got {sizes!r}")
    n_params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    theta = members["theta"]
    if theta.shape != (n_params,):
        raise ValueError(f"theta has shape {theta.shape}, but layer sizes {sizes} need "
                         f"({n_params},)")
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

    if meta["dtype"] not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {meta['dtype']!r}")
    dtype = np.dtype(meta["dtype"])
    if len(sizes) != len(model.hidden) + 2 or tuple(sizes[1:-1]) != model.hidden:
        raise ValueError("layer sizes do not match the settings")
    t = meta["targets"]
    classes = members.get("classes")
    if t["task"] == "classification":
        if classes is None or classes.ndim != 1 or classes.dtype.kind not in "biuUS":
            raise ValueError("classification model without valid classes")
        if len(classes) < 2 or not (classes[1:] > classes[:-1]).all():
            raise ValueError("classes must be at least two sorted, unique labels")
    elif t["task"] == "regression":
        classes = None
    else:
        raise ValueError(f"unknown task {t['task']!r}")
    if not (_is_int(t["n_outputs"]) and _is_int(t["ndim"]) and t["ndim"] in (1, 2)
            and all(isinstance(t[k], bool) for k in ("one_hot", "single_sigmoid"))):
        raise ValueError(f"malformed targets {t!r}")
    targets = Targets(t["task"], classes, t["n_outputs"], one_hot=t["one_hot"],
                      single_sigmoid=t["single_sigmoid"], ndim=t["ndim"])
    if targets.n_outputs != sizes[-1]:
        raise ValueError("output width does not match the targets")
    if classes is not None and len(classes) != (2 if targets.single_sigmoid else sizes[-1]):
        raise ValueError("number of classes does not match the output width")
    output, loss = meta["output"], meta["loss"]
    model.dtype, model.targets, model.output, model.loss_name = dtype, targets, output, loss
    model._network = _engine.Network(sizes, HIDDEN_ACTIVATIONS[model.activation],
                                      OUTPUT_ACTIVATIONS[output], LOSSES[loss])
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
    optimizer.t = _count(meta, "optimizer_t")
    model._schedule = Schedule(model.schedule, optimizer.learning_rate or 1.0, model.power_t)
    model._schedule.set_state(meta["schedule_state"])
    if not (math.isfinite(model._schedule.current) and model._schedule.current > 0):
        raise ValueError(f"schedule state {meta['schedule_state']!r} is not a positive rate")
    model.history = {str(k): [float(v) for v in vals] for k, vals in meta["history"].items()}
    model.samples_seen = _count(meta, "samples_seen")
    model._rng = np.random.default_rng()
    model._rng.bit_generator.state = meta["rng_state"]
    model._trainer = Trainer(model)
    return model
