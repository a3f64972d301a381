"""Model files: a model's state turned into bytes and back, without pickle.

The model decides what its state is (:meth:`mlpcore.MLP.get_state` gives plain arrays and
JSON-able metadata; :meth:`mlpcore.MLP.from_state` rebuilds a model and checks that the
pieces fit together). This module only writes that state safely and reads it back from
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

These names are :data:`KNOWN_MEMBERS` (``optimizer_state_<i>`` for ``i`` below 100); a new
member must be added there (and to ``_KNOWN_MEMBER``) to be read. Other members are skipped:
their data is never read and they are not passed to the model; of another ``*.npy`` member
only the ``.npy`` header (a few hundred bytes) is checked, as every member's is.

Versions
--------
``version`` is raised whenever a change would make older readers misread a file. Readers
refuse files whose ``format`` is not ``mlpcore-model`` and versions newer than they know
(asking for an upgrade); every older version stays loadable (``tests/data`` keeps a
version-1 file that the tests load).

What loading checks
-------------------
Everything in the file is untrusted, and memory and time stay bounded by the file's size.
The zip directory is checked before any member is read: at most :data:`MAX_MEMBERS`
entries (the count the end record announces, and a directory of at most 1 KiB per allowed
entry, both checked before the directory is parsed), no name twice, and every entry's local
header and data inside the file and overlapping no other entry's (a crafted zip whose
thousands of entries all point at one stored member would otherwise be read thousands of
times). Each member's ``.npy`` header is read first and its declared size compared with the
bytes actually present, so no allocation is ever driven by a size the file merely claims;
compressed members, object arrays and unknown ``.npy`` versions are refused; the zip CRC of
every array read is verified. The metadata must have the right types; the parameter vector
must have exactly the length the layer sizes imply (checked before the network is built),
its dtype, and finite values. Any failure raises ValueError naming the file and the
problem.

How saving writes
-----------------
:func:`save_state` takes a path or a binary file object (``io.BytesIO``, an ``open(...,
"wb")`` file; it is written from its current position and left open). At a path it never
loses what is there:

* A new file, or an existing regular file, is written atomically: to a temporary file in
  the same folder, flushed to disk, then renamed over the target, so a crash or a kill
  mid-save leaves the previous file intact. The new file keeps the old one's permission
  bits (and, when saving as root, its owner).
* Through a symbolic link (also a dangling one), the link's target is written, atomically
  in the target's folder; the link stays a link.
* A file without write permission is refused with :class:`PermissionError`, also for
  root, who could otherwise replace it: no write bit at all means "do not overwrite".
* A file with several hard links is refused with an :class:`OSError` (``errno.EMLINK``):
  replacing it would break the links (the other names would keep the old model) and
  writing it in place would not be atomic. Remove the other links or save elsewhere.
* A path that is neither a regular file nor a directory (a FIFO, a character or block
  device such as ``/dev/null``) is opened and written in place, as a shell's ``>``
  redirection would; it is never removed or replaced. A FIFO's write waits for a reader.
* A directory raises :class:`IsADirectoryError`.

The temporary file is named ``.<target name>.mlpcore-save-<16 hex digits>.tmp`` and held
under an exclusive ``flock`` while it is written (where the system has ``fcntl``). One left
behind by a killed save is removed by the next save to the same path; one still locked (a
save in progress in another process) is left alone. Every error raised by a save names the
path the caller gave, never the temporary file.
"""

import errno
import hashlib
import io
import json
import math
import os
import re
import secrets
import stat
import struct
import zipfile
from collections import namedtuple

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: an open file cannot be deleted there, which is lock enough
    fcntl = None

FORMAT_NAME = "mlpcore-model"
FORMAT_VERSION = 1
#: Members :func:`load_state` reads; ``optimizer_state_<i>`` is matched by pattern.
KNOWN_MEMBERS = ("meta", "theta", "classes", "optimizer_state_<i>", "input_shift",
                 "input_scale")
#: More zip entries than this and the file is refused before any member is read.
MAX_MEMBERS = 64

_KNOWN_MEMBER = re.compile(
    r"(?:meta|theta|classes|optimizer_state_[0-9]{1,2}|input_shift|input_scale)\Z")
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # the zip local file header, 30 bytes
_LOCAL_MAGIC = b"PK\x03\x04"
_END_RECORD = struct.Struct("<4s4H2LH")  # end of central directory, 22 bytes
_END_MAGIC = b"PK\x05\x06"
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory, 56 bytes
_ZIP64_END_MAGIC = b"PK\x06\x06"
_ZIP64_MAGIC = b"PK\x06\x07"  # zip64 end of central directory locator, 20 bytes
_ZIP64_LOCATOR_SIZE = 20
# A directory entry is 46 bytes plus its name and extra fields: 1 KiB each is generous.
_MAX_DIRECTORY_BYTES = MAX_MEMBERS * 1024
_TEMPORARY_TAG = ".mlpcore-save-"
_TEMPORARY_SUFFIX = ".tmp"
_TOKEN_DIGITS = 16
_HEX = frozenset("0123456789abcdef")


# -- saving ----------------------------------------------------------------------------------

def save_state(meta, arrays, path):
    """Write a model state to ``path`` without ever losing what is there.

    The rules (atomic replacement, symbolic links, read-only files, hard links, FIFOs and
    devices, leftover temporary files) are in this module's "How saving writes" section.

    Parameters
    ----------
    meta : dict
        JSON-able metadata; the format marker and version are added here.
    arrays : dict of str to ndarray
        The members besides ``meta``.
    path : str, bytes, os.PathLike or binary file object
        Where to write. A file object (anything with ``write`` that is not a text file) is
        written from its current position, flushed, and left open.

    Raises
    ------
    TypeError
        ``path`` is neither a path nor a binary file object.
    PermissionError
        The file at ``path`` has no write permission (refused even for root).
    IsADirectoryError
        ``path`` is a directory.
    OSError
        The file has several hard links (``errno.EMLINK``), or the write failed; the
        message names ``path``, never the temporary file.
    """
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **meta}
    members = {"meta": np.frombuffer(json.dumps(meta, default=_json_scalar).encode("utf-8"),
                                     dtype=np.uint8), **arrays}
    if not isinstance(path, (str, bytes, os.PathLike)):
        _require_binary_file(path, "write")
        np.savez(path, **members)
        flush = getattr(path, "flush", None)
        if flush is not None:
            flush()
        return
    user_path = os.fsdecode(os.fspath(path))
    try:
        destination = _destination(user_path)
        if destination.in_place:
            with open(destination.path, "wb") as f:
                np.savez(f, **members)
        else:
            _replace_atomically(members, destination.path, destination.stat)
    except OSError as exc:
        raise _naming(exc, user_path) from None


def _json_scalar(value):
    """JSON for the NumPy scalars a setting may hold (``batch_size=np.int64(32)``)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _require_binary_file(file, operation):
    """Raise TypeError unless ``file`` is a binary file object that can ``operation``."""
    if isinstance(file, io.TextIOBase):
        mode = "wb" if operation == "write" else "rb"
        raise TypeError(f"path must be a path or a binary file object; {file!r} is a text "
                        f"file (open it with mode {mode!r})")
    if not callable(getattr(file, operation, None)):
        raise TypeError(f"path must be a str, bytes, os.PathLike or a binary file object "
                        f"with a {operation}() method, not {type(file).__name__}")


_Destination = namedtuple("_Destination", "path in_place stat")


def _destination(path):
    """Where and how a save to ``path`` writes, or the error that refuses it.

    Only looks (``stat``, ``realpath``, ``access``); writes nothing.

    Returns
    -------
    _Destination
        ``path``: the file to write (a symbolic link's target, resolved); ``in_place``: True
        to open and write it as it is (FIFOs, devices), False to replace it atomically;
        ``stat``: the existing file's ``os.stat_result``, or None if there is none.

    Raises
    ------
    PermissionError, IsADirectoryError, OSError
        See :func:`save_state`.
    """
    try:
        st = os.stat(path)  # follows symbolic links
    except FileNotFoundError:
        # Nothing there (or a dangling link): the new file goes where the link points.
        return _Destination(os.path.realpath(path), False, None)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not st.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise PermissionError(
            errno.EACCES, "Permission denied: the file is read-only, and mlpcore does not "
            "replace a file without write permission (even as root)", path)
    if not stat.S_ISREG(st.st_mode):
        return _Destination(path, True, st)  # a FIFO or a device: written, never replaced
    real = os.path.realpath(path)
    try:
        real_st = os.stat(real)
    except OSError:
        real_st = None
    if real_st is None or (real_st.st_dev, real_st.st_ino) != (st.st_dev, st.st_ino):
        # A path no folder entry names (e.g. /proc/self/fd/N of a deleted file).
        return _Destination(path, True, st)
    if st.st_nlink > 1:
        raise OSError(
            errno.EMLINK, f"the file has {st.st_nlink} hard links; mlpcore neither breaks "
            "them by replacing it nor writes it in place non-atomically (remove the other "
            "links, or save to another path)", path)
    return _Destination(real, False, st)


def _replace_atomically(members, path, old):
    """Write ``members`` to a temporary file beside ``path``, then rename it over ``path``."""
    directory, name = os.path.split(path)
    prefix = _temporary_prefix(name)
    _remove_stale_temporaries(directory, prefix)
    fd, tmp = _create_temporary(directory, prefix, old)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **members)
            f.flush()
            os.fsync(f.fileno())
            if fcntl is not None:
                # Renamed while still open and locked, so no other save takes it for stale.
                os.replace(tmp, path)
        if fcntl is None:
            os.replace(tmp, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(tmp)
        raise
    _sync_directory(directory)


def _temporary_prefix(name):
    """``.<name>.mlpcore-save-``: the fixed start of every temporary file for ``name``.

    A name too long to extend is shortened to its start and a hash of the whole.
    """
    if len(os.fsencode(name)) > 120:
        name = name[:30] + "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return f".{name}{_TEMPORARY_TAG}"


def _is_temporary(entry, prefix):
    token = entry[len(prefix):-len(_TEMPORARY_SUFFIX)]
    return (entry.startswith(prefix) and entry.endswith(_TEMPORARY_SUFFIX)
            and len(token) == _TOKEN_DIGITS and set(token) <= _HEX)


def _create_temporary(directory, prefix, old):
    """A new, locked file ``<directory>/<prefix><hex>.tmp`` opened for writing: ``(fd, name)``.

    Created with the usual permissions (0o666 less the umask), or those of the file being
    replaced (``old``, a stat result), so that the rename does not change who can read the
    model.
    """
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_CLOEXEC", 0))
    while True:
        tmp = os.path.join(directory, f"{prefix}{secrets.token_hex(_TOKEN_DIGITS // 2)}"
                                      f"{_TEMPORARY_SUFFIX}")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        if _lock_new(fd, tmp):
            break
        os.close(fd)  # another save removed it before we locked it: take a new name
    if old is not None:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            with _suppress_oserror():
                os.fchown(fd, old.st_uid, old.st_gid)
        with _suppress_oserror():
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
    return fd, tmp


def _lock_new(fd, tmp):
    """Lock the new temporary file; False if it was removed before the lock was taken."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while another save checks it
    except OSError:
        return True  # no locks on this file system: nothing can be told apart anyway
    try:
        now = os.lstat(tmp)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def _remove_stale_temporaries(directory, prefix):
    """Remove the temporary files of earlier saves to this name that no save holds any more."""
    try:
        with os.scandir(directory or ".") as it:
            entries = [e for e in it if _is_temporary(e.name, prefix)]
    except OSError:
        return
    for entry in entries:
        with _suppress_oserror():
            if entry.is_file(follow_symlinks=False):
                _remove_if_abandoned(entry.path)


def _remove_if_abandoned(path):
    if fcntl is None:
        os.unlink(path)  # fails (and is skipped) while the writing process has it open
        return
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags | os.O_NONBLOCK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # a save in progress holds it (or locks do not work here: keep it)
        held, now = os.fstat(fd), os.lstat(path)
        if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
            os.unlink(path)
    finally:
        os.close(fd)


def _sync_directory(directory):
    """Make the rename durable (POSIX); best effort."""
    if os.name != "posix":
        return
    with _suppress_oserror():
        fd = os.open(directory or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _naming(exc, path):
    """``exc`` as an error of the same kind that names ``path`` (the caller's), and only it."""
    if exc.filename == path and exc.filename2 is None:
        return exc
    if exc.errno is not None:
        return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), path)
    detail = str(exc) or type(exc).__name__
    for name in (exc.filename, exc.filename2):
        if name is not None:
            detail = detail.replace(os.fsdecode(name), path)
    try:
        return type(exc)(f"{path}: {detail}")
    except TypeError:
        return OSError(f"{path}: {detail}")


class _suppress_oserror:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return exc_type is not None and issubclass(exc_type, OSError)


# -- loading ---------------------------------------------------------------------------------

def _fail(path, why):
    raise ValueError(f"{path!s} is not a readable mlpcore model file: {why}")


def load_state(path, rebuild):
    """Read the model file at ``path`` and return ``rebuild(meta, arrays)``.

    Parameters
    ----------
    path : str, bytes, os.PathLike or binary file object
        A file object (``io.BytesIO``, an ``open(..., "rb")`` file) must hold the archive up
        to its end; it is left open.
    rebuild : callable
        ``rebuild(meta, arrays)`` makes the model (:meth:`mlpcore.MLP.from_state`); the
        errors it raises for inconsistent contents are reported as this file's.

    Raises
    ------
    TypeError
        ``path`` is neither a path nor a binary file object.
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not an mlpcore model, is truncated or corrupted, has inconsistent
        contents, or comes from a newer format version than this mlpcore reads.
    """
    if isinstance(path, (str, bytes, os.PathLike)):
        name = os.fsdecode(os.fspath(path))
        with open(path, "rb") as f:
            return _load_from(f, name, rebuild)
    _require_binary_file(path, "read")
    given = getattr(path, "name", None)
    name = (os.fsdecode(given) if isinstance(given, (str, bytes))
            else f"the {type(path).__name__} object")
    return _load_from(path, name, rebuild)


def _load_from(f, path, rebuild):
    seekable = getattr(f, "seekable", None)
    if not (callable(seekable) and seekable()):
        f = io.BytesIO(f.read())  # a pipe or FIFO: zip needs to seek
    try:
        members = _read_members(f)
    except MemoryError:
        raise
    except Exception as exc:  # anything the container parsing raises means a bad file
        _fail(path, str(exc) if type(exc) is ValueError else f"{type(exc).__name__}: {exc}")
    if "meta" not in members or "theta" not in members:
        _fail(path, "missing the 'meta' or 'theta' member")
    try:
        meta = json.loads(members.pop("meta").tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, a 5,000-digit number
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


def _read_members(f):
    """The known ``.npy`` members of the zip archive in ``f`` as arrays, keyed without ``.npy``.

    Unlike :func:`numpy.load`, which allocates whatever shape a member's header declares
    before reading it, every declared size is checked against the member's real length
    first, and the zip directory is checked (:func:`_check_directory`) before any member is
    read: memory use and time are bounded by the size of the file. Members not in
    :data:`KNOWN_MEMBERS` are not read beyond their ``.npy`` header. The arrays are
    read-only.
    """
    size = f.seek(0, os.SEEK_END)
    _check_end_record(f, size)
    archive = zipfile.ZipFile(f)
    infos = archive.infolist()
    _check_directory(f, infos, min(getattr(archive, "start_dir", size), size))
    members = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            continue
        name = info.filename[:-4]
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"member {name!r} is compressed; mlpcore model files are "
                             "uncompressed archives")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
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
            if not _KNOWN_MEMBER.match(name):
                continue  # skipped: its data is never read
            data = member.read(nbytes)
            if len(data) != nbytes:
                raise ValueError(f"member {name!r} is truncated")
            while member.read(65536):  # read to the end, which makes zipfile check the CRC
                pass
        array = np.frombuffer(data, dtype=dtype, count=count)
        members[name] = (array.reshape(shape[::-1]).T if fortran_order
                         else array.reshape(shape))
    return members


def _check_end_record(f, size):
    """Refuse an archive whose end record announces too many entries or too long a directory.

    Read before :class:`zipfile.ZipFile` parses the directory (which takes time in
    proportion to its length, whatever count it announces), and found as zipfile finds it:
    the last 22 bytes if they are an end record without comment, else the last end-record
    signature in the final 64 KiB; with the zip64 end record just before it, if any.
    """
    f.seek(max(size - _END_RECORD.size, 0))
    last = f.read(_END_RECORD.size)
    if len(last) == _END_RECORD.size and last[:4] == _END_MAGIC and last[-2:] == b"\0\0":
        at = size - _END_RECORD.size
    else:
        tail_start = max(size - (1 << 16) - _END_RECORD.size, 0)
        f.seek(tail_start)
        found = f.read().rfind(_END_MAGIC)
        if found < 0 or size - (tail_start + found) < _END_RECORD.size:
            return  # not a zip: zipfile refuses it
        at = tail_start + found
    before = min(at, _ZIP64_LOCATOR_SIZE + _ZIP64_END_RECORD.size)
    f.seek(at - before)
    data = f.read(before + _END_RECORD.size)
    end = _END_RECORD.unpack_from(data, before)
    count, directory = end[4], end[5]
    if (before == _ZIP64_LOCATOR_SIZE + _ZIP64_END_RECORD.size
            and data[_ZIP64_END_RECORD.size:_ZIP64_END_RECORD.size + 4] == _ZIP64_MAGIC):
        end64 = _ZIP64_END_RECORD.unpack_from(data, 0)
        if end64[0] == _ZIP64_END_MAGIC:
            count, directory = end64[7], end64[8]
    if count > MAX_MEMBERS:
        raise ValueError(f"the archive has {count} members; a model file has at most "
                         f"{MAX_MEMBERS}")
    if directory > _MAX_DIRECTORY_BYTES:
        raise ValueError(f"the archive's directory takes {directory} bytes; a model file's "
                         f"takes at most {_MAX_DIRECTORY_BYTES}")


def _check_directory(f, infos, end):
    """Refuse a zip directory that could make reading cost more than the file's size.

    At most :data:`MAX_MEMBERS` entries; no name twice; every entry's local header and data
    lie before ``end`` (the central directory) and overlap no other entry's, so that no
    byte of the file is read for two members.
    """
    if len(infos) > MAX_MEMBERS:
        raise ValueError(f"the archive has {len(infos)} members; a model file has at most "
                         f"{MAX_MEMBERS}")
    seen = set()
    spans = []
    for info in infos:
        if info.filename in seen:
            raise ValueError(f"member {info.filename!r} appears more than once")
        seen.add(info.filename)
        if info.file_size > end or info.compress_size > end:
            raise ValueError(f"member {info.filename!r} claims {info.file_size} bytes, more "
                             f"than the {end}-byte archive holds")
        f.seek(info.header_offset)
        header = f.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_MAGIC:
            raise ValueError(f"member {info.filename!r} has no local header at offset "
                             f"{info.header_offset}")
        fields = _LOCAL_HEADER.unpack(header)
        start = info.header_offset
        stop = start + _LOCAL_HEADER.size + fields[-2] + fields[-1] + info.compress_size
        if stop > end:
            raise ValueError(f"member {info.filename!r} runs past the end of the archive's "
                             "data")
        spans.append((start, stop, info.filename))
    spans.sort()
    for (_, stop, first), (start, _, second) in zip(spans, spans[1:]):
        if start < stop:
            raise ValueError(f"members {first!r} and {second!r} overlap (a crafted archive: "
                             "each member of a model file has bytes of its own)")
