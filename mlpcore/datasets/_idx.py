"""Reader for the IDX files MNIST and its relatives (Fashion-MNIST, KMNIST, EMNIST) ship in.

Format (as the MNIST database's "FILE FORMATS" section describes it)
--------------------------------------------------------------------
Big-endian throughout::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 unsigned byte (the only one this reader accepts; MNIST
                uses nothing else), 0x09 signed byte, 0x0B short, 0x0C int, 0x0D float,
                0x0E double
    byte  3     number of dimensions d
    4 * d       each dimension as an unsigned 32-bit integer
    ...         the data, prod(dims) elements, C order

An images file has d = 3 (N, rows, cols), a labels file d = 1 (N,). Files may be gzipped
(detected by the gzip magic bytes 0x1f 0x8b, whatever the file name).

What reading checks
-------------------
A header is only a claim, so nothing is allocated by it until the data is known to be there
and to fit in memory:

1. The header is read and checked (magic bytes, element type, 1 to 8 dimensions).
2. The declared size is compared with the data present: a plain file's length is known
   from the file system; a gzipped stream is decompressed once in 1 MiB chunks that are
   counted and dropped, stopping one byte past the declared size (so a small file that
   inflates to gigabytes costs time, never memory). Missing or trailing bytes raise
   ValueError.
3. The memory the result needs (the uint8 pixels, plus the converted X for
   :func:`load_idx`) is compared with the memory available (``MemAvailable`` and the
   cgroup limit on Linux, physical memory elsewhere, the address space everywhere); a size
   that will not fit raises ValueError saying how much is needed and available. For a
   gzipped stream this check comes first, before any decompression.
4. Only then is one array of exactly the declared size allocated and filled chunk by chunk.
"""

import gzip
import math
import os
import stat
import struct
import sys
import zlib

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
UNSIGNED_BYTE = 0x08
_TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short (int16)",
               0x0C: "int (int32)", 0x0D: "float (float32)", 0x0E: "double (float64)"}
# No real IDX file has more; a larger count means the bytes are not an IDX header.
_MAX_DIMS = 8
_CHUNK = 1 << 20


def _read_exact(stream, n):
    """Read up to ``n`` bytes (fewer only at the end of the stream); ``n`` is small."""
    chunks, remaining = [], n
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _count_up_to(stream, limit):
    """How many bytes ``stream`` still holds, counting at most ``limit``; nothing is kept."""
    total = 0
    while total < limit:
        chunk = stream.read(min(_CHUNK, limit - total))
        if not chunk:
            break
        total += len(chunk)
    return total


def _read_into(stream, out):
    """Fill the uint8 array ``out`` from ``stream`` chunk by chunk; the bytes read."""
    view = memoryview(out).cast("B")
    filled = 0
    while filled < len(view):
        n = stream.readinto(view[filled:filled + _CHUNK])
        if not n:
            break
        filled += n
    return filled


def _available_memory():
    """The bytes of memory this process can still allocate, as far as the system tells.

    The smallest of: ``MemAvailable`` from ``/proc/meminfo`` (or the physical memory where
    there is no ``/proc``), what the process's cgroup (v2) limit leaves, and the address
    space (``sys.maxsize``).

    Returns
    -------
    int
    """
    limits = [sys.maxsize]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if len(limits) == 1:
        try:
            limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            pass
    try:
        with open("/proc/self/cgroup") as f:
            relative = next(line.split(":", 2)[2].strip() for line in f
                            if line.startswith("0::"))
        folder = os.path.join("/sys/fs/cgroup", relative.lstrip("/"))
        with open(os.path.join(folder, "memory.max")) as f:
            limit = f.read().strip()
        if limit != "max":
            with open(os.path.join(folder, "memory.current")) as f:
                limits.append(max(int(limit) - int(f.read()), 0))
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return min(limits)


def _human(n):
    """``n`` bytes as text: '1 GB', '25.1 MB', '3 bytes'."""
    for unit, scale in (("EB", 10**18), ("PB", 10**15), ("TB", 10**12), ("GB", 10**9),
                        ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _read_idx(path, converted_itemsize=0, converted_dtype=None, expected_ndim=None):
    """:func:`read_idx`, refusing a result that with ``converted_itemsize`` more bytes per
    element (the array the caller converts it to) would not fit in memory."""
    name = os.fspath(path)
    what = f"{name} is not a valid IDX file"
    with open(path, "rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            try:
                dims = _read_header(stream, what, name, expected_ndim)
                header_size = 4 + 4 * len(dims)
                size = math.prod(dims)
                if compressed:
                    _check_memory(name, dims, size, converted_itemsize, converted_dtype)
                    present = _count_up_to(stream, size + 1)  # +1 to detect trailing data
                else:
                    st = os.fstat(raw.fileno())
                    present = (st.st_size - header_size if stat.S_ISREG(st.st_mode)
                               else _count_up_to(stream, size + 1))
                _check_length(what, dims, header_size, size, present)
                if not compressed:
                    _check_memory(name, dims, size, converted_itemsize, converted_dtype)
                raw.seek(0)
                if compressed:  # the second pass, now that the size is known to be right
                    stream.close()
                    stream = gzip.GzipFile(fileobj=raw, mode="rb")
                _read_exact(stream, header_size)
                data = np.empty(size, dtype=np.uint8)
                if _read_into(stream, data) != size or stream.read(1):
                    raise ValueError(f"{name} changed while it was being read")
            except (OSError, EOFError, zlib.error) as exc:
                if not compressed:
                    raise
                raise ValueError(f"{name}: corrupt gzip data ({exc})") from None
        finally:
            if stream is not raw:
                stream.close()
    return data.reshape(dims)


def _read_header(stream, what, name, expected_ndim=None):
    """The dimensions in an IDX header, checked (``expected_ndim``: 3 for images, 1 for
    labels, None for any)."""
    head = _read_exact(stream, 4)
    if len(head) < 4:
        raise ValueError(f"{what}: {len(head)} bytes, shorter than the 4-byte magic number")
    if head[0] != 0 or head[1] != 0:
        raise ValueError(f"{what}: magic number starts with 0x{head[0]:02x} 0x{head[1]:02x}, "
                         "expected 0x00 0x00")
    code, ndim = head[2], head[3]
    if code != UNSIGNED_BYTE:
        kind = _TYPE_NAMES.get(code, "unknown")
        raise ValueError(f"{what}: element type 0x{code:02x} ({kind}); only 0x08 (unsigned "
                         "byte), the type MNIST uses, is supported")
    if ndim == 0 or ndim > _MAX_DIMS:
        raise ValueError(f"{what}: {ndim} dimensions in the header (expected 1 to "
                         f"{_MAX_DIMS})")
    if expected_ndim is not None and ndim != expected_ndim:
        raise ValueError(_wrong_ndim(name, head, expected_ndim))
    dim_bytes = _read_exact(stream, 4 * ndim)
    if len(dim_bytes) < 4 * ndim:
        raise ValueError(f"{what}: the header announces {ndim} dimensions but the file ends "
                         "inside the header")
    return struct.unpack(f">{ndim}I", dim_bytes)


def _check_length(what, dims, header_size, size, present):
    shape = "x".join(str(d) for d in dims)
    if present < size:
        raise ValueError(
            f"{what}: the header announces {shape} = {size} bytes of data after the "
            f"{header_size}-byte header, but only {present} follow (truncated file?)")
    if present > size:
        raise ValueError(
            f"{what}: the header announces {shape} = {size} bytes of data after the "
            f"{header_size}-byte header, but the file holds more (trailing bytes)")


def _check_memory(name, dims, size, converted_itemsize, converted_dtype):
    """Raise ValueError if the data, and its conversion, would not fit in memory."""
    need = size * (1 + converted_itemsize)
    available = _available_memory()
    if need <= available:
        return
    shape = "x".join(str(d) for d in dims)
    as_what = (f" and {_human(size * converted_itemsize)} more as {converted_dtype}"
               if converted_itemsize else "")
    hint = ("; load it with dtype=np.float32, or on a machine with more memory"
            if converted_itemsize > 4 and size * 5 <= available else "")
    raise ValueError(
        f"{name}: the header announces {shape} = {size} bytes ({_human(size)}) of data"
        f"{as_what}, which will not fit in the {_human(available)} of memory available"
        f"{hint}")


def read_idx(path, *, ndim=None):
    """Read one IDX file (plain or gzipped) into a uint8 array shaped as its header says.

    Parameters
    ----------
    path : str or os.PathLike
        An IDX file, e.g. ``train-images-idx3-ubyte`` or ``train-labels-idx1-ubyte.gz``.
        Compression is detected from the content, not the name.
    ndim : int, optional
        The number of dimensions the file must have (3 for images, 1 for labels), checked
        against the magic number before any data is read.

    Returns
    -------
    ndarray of uint8
        Shape ``dims`` from the header: (N, rows, cols) for images, (N,) for labels.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a well-formed unsigned-byte IDX file: wrong magic bytes, an element
        type other than 0x08 (unsigned byte), no dimensions, or a data size that does not
        match the dimensions (truncated file or trailing bytes); a corrupt gzip stream; or
        a declared size that will not fit in the memory available. Nothing the size of the
        data is allocated before these checks (see the module's "What reading checks").
    """
    return _read_idx(path, expected_ndim=ndim)


_KINDS = {3: ("images", "(N, rows, cols)", "labels"), 1: ("labels", "(N,)", "images")}


def _wrong_ndim(name, head, expected):
    """'an IDX images file has 3 dimensions ..., this one has 1 (is it a labels file?)'."""
    kind, shape, other = _KINDS[expected]
    got = head[3]
    hint = f": is it {'an' if other == 'images' else 'a'} {other} file?" if got in _KINDS else ""
    return (f"{name}: an IDX {kind} file has {expected} dimension{'s' if expected > 1 else ''} "
            f"{shape}, magic number 0x000008{expected:02x}; this one has {got} (magic number "
            f"0x{head.hex()}{hint})")


def load_idx(images_path, labels_path=None, *, dtype=np.float64):
    """Load an MNIST-style IDX image file and, optionally, its labels.

    Parameters
    ----------
    images_path : str or os.PathLike
        IDX file of images, 3 dimensions (N, rows, cols), unsigned bytes; plain or gzipped
        (e.g. ``train-images-idx3-ubyte.gz``).
    labels_path : str or os.PathLike, optional
        IDX file of labels, 1 dimension (N,), unsigned bytes. None: return only X and
        ``y = None``.
    dtype : numpy dtype, default float64
        dtype of X. Pixel values are kept as they are (0..255); pass ``np.float32`` to halve
        the memory (mlpcore then also trains in float32).

    Returns
    -------
    X : ndarray of shape (N, rows * cols)
        One flattened image per row, pixel values 0..255.
    y : ndarray of shape (N,) of int64, or None
        The labels.

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ValueError
        A file is malformed (see :func:`read_idx`), the images file does not have 3
        dimensions or the labels file 1, their sample counts differ, or the images would
        not fit in memory as ``dtype`` (the pixels and X together are checked against the
        memory available before either is allocated).

    Examples
    --------
    >>> from mlpcore.datasets import load_idx
    >>> X, y = load_idx("train-images-idx3-ubyte.gz",
    ...                 "train-labels-idx1-ubyte.gz")      # doctest: +SKIP
    >>> X.shape, y.shape                                  # doctest: +SKIP
    ((60000, 784), (60000,))
    """
    dtype = np.dtype(dtype)
    images = _read_idx(images_path, dtype.itemsize, dtype.name, expected_ndim=3)
    if images.shape[0] == 0:
        raise ValueError(f"{os.fspath(images_path)}: the header announces 0 images "
                         f"({'x'.join(map(str, images.shape))}): the file holds no data")
    if images.ndim != 3:
        hint = " (is it a labels file?)" if images.ndim == 1 else ""
        raise ValueError(
            f"{os.fspath(images_path)}: an IDX images file has 3 dimensions (N, rows, cols), "
            f"this one has {images.ndim}{hint}")
    X = images.reshape(images.shape[0], -1).astype(dtype)
    if labels_path is None:
        return X, None
    labels = _read_idx(labels_path, np.dtype(np.int64).itemsize, "int64", expected_ndim=1)
    if labels.ndim != 1:
        hint = " (is it an images file?)" if labels.ndim == 3 else ""
        raise ValueError(
            f"{os.fspath(labels_path)}: an IDX labels file has 1 dimension (N,), this one "
            f"has {labels.ndim}{hint}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{os.fspath(images_path)} holds {images.shape[0]} images but "
            f"{os.fspath(labels_path)} holds {labels.shape[0]} labels")
    return X, labels.astype(np.int64)
