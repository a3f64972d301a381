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
(detected by the gzip magic bytes 0x1f 0x8b, whatever the file name). The header is checked
before the data is read, and decompression stops one byte past the size the header
announces, so a corrupt or hostile file can neither make the reader allocate more than the
header claims nor pass with trailing or missing bytes.
"""

import gzip
import os
import struct
import zlib

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
UNSIGNED_BYTE = 0x08
_TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short (int16)",
               0x0C: "int (int32)", 0x0D: "float (float32)", 0x0E: "double (float64)"}
# No real IDX file has more; a larger count means the bytes are not an IDX header.
_MAX_DIMS = 8


def _open(path):
    """Open ``path`` for binary reading, decompressing if it starts with the gzip magic."""
    f = open(path, "rb")
    try:
        magic = f.read(2)
        f.seek(0)
        if magic == GZIP_MAGIC:
            return gzip.GzipFile(fileobj=f, mode="rb"), f, True
    except BaseException:
        f.close()
        raise
    return f, f, False


def _read_exact(stream, n):
    """Read up to ``n`` bytes (fewer only at the end of the stream)."""
    chunks, remaining = [], n
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


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
        type other than 0x08 (unsigned byte), no dimensions (or not ``ndim``), or a data
        size that does not match the dimensions (truncated file or trailing bytes); or a
        corrupt gzip stream.
    """
    expected_ndim = ndim
    name = os.fspath(path)
    stream, raw, compressed = _open(path)
    what = f"{name} is not a valid IDX file"
    try:
        try:
            head = _read_exact(stream, 4)
            if len(head) < 4:
                raise ValueError(f"{what}: {len(head)} bytes, shorter than the 4-byte magic number")
            if head[0] != 0 or head[1] != 0:
                raise ValueError(
                    f"{what}: magic number starts with 0x{head[0]:02x} 0x{head[1]:02x}, "
                    "expected 0x00 0x00")
            code, ndim = head[2], head[3]
            if code != UNSIGNED_BYTE:
                kind = _TYPE_NAMES.get(code, "unknown")
                raise ValueError(
                    f"{what}: element type 0x{code:02x} ({kind}); only 0x08 (unsigned byte), "
                    "the type MNIST uses, is supported")
            if ndim == 0 or ndim > _MAX_DIMS:
                raise ValueError(f"{what}: {ndim} dimensions in the header (expected 1 to "
                                 f"{_MAX_DIMS})")
            if expected_ndim is not None and ndim != expected_ndim:
                raise ValueError(_wrong_ndim(name, head, expected_ndim))
            dim_bytes = _read_exact(stream, 4 * ndim)
            if len(dim_bytes) < 4 * ndim:
                raise ValueError(f"{what}: the header announces {ndim} dimensions but the "
                                 "file ends inside the header")
            dims = struct.unpack(f">{ndim}I", dim_bytes)
            size = 1
            for d in dims:
                size *= d
            data = _read_exact(stream, size + 1)  # one more byte to detect trailing data
        except (OSError, EOFError, zlib.error) as exc:
            if not compressed:
                raise
            raise ValueError(f"{name}: corrupt gzip data ({exc})") from None
    finally:
        stream.close()
        if raw is not stream:
            raw.close()
    header_size = 4 + 4 * ndim
    shape = "x".join(str(d) for d in dims)
    if len(data) < size:
        raise ValueError(
            f"{what}: the header announces {shape} = {size} bytes of data after the "
            f"{header_size}-byte header, but only {len(data)} follow (truncated file?)")
    if len(data) > size:
        raise ValueError(
            f"{what}: the header announces {shape} = {size} bytes of data after the "
            f"{header_size}-byte header, but the file holds more (trailing bytes)")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


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
        dimensions or the labels file 1, or their sample counts differ.

    Examples
    --------
    >>> from mlpcore.datasets import load_idx
    >>> X, y = load_idx("train-images-idx3-ubyte.gz",
    ...                 "train-labels-idx1-ubyte.gz")      # doctest: +SKIP
    >>> X.shape, y.shape                                  # doctest: +SKIP
    ((60000, 784), (60000,))
    """
    images = read_idx(images_path, ndim=3)
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
    labels = read_idx(labels_path, ndim=1)
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
