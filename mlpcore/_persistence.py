"""Model files: a model's state turned into bytes and back, without pickle.

The model decides what its state is (:meth:`mlpcore.MLP.get_state` gives plain arrays and
JSON-able metadata; :meth:`mlpcore.MLP.from_state` rebuilds a model and checks that the
pieces fit together). This module only writes that state atomically and reads it back from
an untrusted file, and it imports nothing else from mlpcore.

File format (version 1)
-----------------------
An uncompressed NumPy ``.npz`` archive (a zip of ``.npy`` arrays, as :func:`numpy.savez`
writes). :func:`load_state` parses it itself and never unpickles anything, so loading a file can
never execute code. Its members:

``meta``
    uint8 array holding UTF-8 JSON: ``{"format": "mlpcore-model", "version": 1,
    "config": {...the settings of MLP(...)...}, "sizes": [...], "output", "loss", "dtype",
    "targets": {...}, "history": {...}, "optimizer_t": int, "schedule_state": {...},
    "samples_seen": int, "rng_state": {...}, "feature_names": [str, ...] or null}``.
    ``feature_names`` (the column names of a DataFrame trained on) came after the first
    version-1 files and may be missing (no names); ``targets`` may hold ``multilabel`` and
    ``config`` ``task`` and ``scale`` (missing: False, None, None). Callables
    (``callback``, a callable ``schedule``) are not saved: a loaded model has no callback
    and a 'constant' schedule.
``theta``
    The flat parameter vector (float32 or float64): W_1 row-major, b_1, W_2, b_2, ...;
    its length is sum_l (sizes[l] + 1) * sizes[l+1].
``classes``
    Class labels (classification only), sorted and unique: a numeric or fixed-width
    unicode array.
``optimizer_state_0``, ``optimizer_state_1``
    Optimizer state (velocities, Adam moments) when present, so training can resume.
``input_shift``, ``input_scale``
    float64 vectors of the inputs' scaling, for a model with ``scale=`` set.

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


def save_state(meta, arrays, path):
    """Write a model state to ``path`` atomically (a temporary file beside it, then rename).

    Parameters
    ----------
    meta : dict
        JSON-able metadata; the format marker and version are added here.
    arrays : dict of str to ndarray
        The members besides ``meta``.
    path : str or os.PathLike
    """
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **meta}
    members = {"meta": np.frombuffer(json.dumps(meta, default=_json_scalar).encode("utf-8"),
                                     dtype=np.uint8), **arrays}
    path = os.fspath(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **members)
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


def load_state(path, rebuild):
    """Read the model file at ``path`` and return ``rebuild(meta, arrays)``.

    Parameters
    ----------
    path : str or os.PathLike
    rebuild : callable
        ``rebuild(meta, arrays)`` makes the model (:meth:`mlpcore.MLP.from_state`); the
        errors it raises for inconsistent contents are reported as this file's.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not an mlpcore model, is truncated or corrupted, has inconsistent
        contents, or comes from a newer format version than this mlpcore reads.
    """
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
        meta = json.loads(members.pop("meta").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        _fail(path, f"unreadable metadata ({type(exc).__name__}: {exc})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        _fail(path, "no mlpcore-model format marker")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        _fail(path, f"bad format version {version!r} (versions are integers from 1)")
    if version > FORMAT_VERSION:
        _fail(path, f"format version {version} is newer than this mlpcore reads "
                    f"({FORMAT_VERSION}); upgrade mlpcore")
    try:
        return rebuild(meta, members)
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
