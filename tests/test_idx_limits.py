"""IDX files whose header claims more than they hold, or more than memory holds.

A header is only a claim: ``read_idx``/``load_idx`` (and ``mlpcore train``) must compare it
with the data really present, and with the memory available, before allocating anything
the size of the data. See "What reading checks" in ``mlpcore/datasets/_idx.py``.
"""

import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from mlpcore import _cli
from mlpcore.datasets import _idx, load_idx, read_idx

MiB = 2**20


def header(*dims):
    return struct.pack(f">BBBB{len(dims)}I", 0, 0, 0x08, len(dims), *dims)


def gzipped(head, n_zeros, tail=b""):
    """gzip of ``head`` + ``n_zeros`` zero bytes + ``tail``, built without holding the zeros."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [c.compress(head)]
    block = bytes(MiB)
    left = n_zeros
    while left:
        k = min(left, len(block))
        parts.append(c.compress(block[:k]))
        left -= k
    parts.append(c.compress(tail))
    parts.append(c.flush())
    return b"".join(parts)


def peak_while(call):
    """(exception raised or result, peak bytes traced) of ``call()``."""
    tracemalloc.start()
    try:
        try:
            outcome = call()
        except ValueError as exc:
            outcome = exc
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_small_gzip_declaring_a_gigabyte_it_does_not_hold_allocates_nothing_large(tmp_path):
    # The file: 20000 x 224 x 224 declared (1 GB), here with 40 MB of data behind it
    # (a 39 kB file). The old reader gathered the 40 MB before finding the file short.
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(gzipped(header(20000, 224, 224), 40_000_000))
    assert path.stat().st_size < MiB
    for reader in (read_idx, load_idx):
        outcome, peak = peak_while(lambda reader=reader: reader(path))
        assert isinstance(outcome, ValueError), outcome
        assert "20000x224x224 = 1003520000 bytes" in str(outcome)
        assert "only 40000000 follow" in str(outcome) and str(path) in str(outcome)
        assert peak < 16 * MiB, f"{reader.__name__}: {peak} bytes allocated"


def test_a_plain_file_declaring_more_than_it_holds_is_refused_before_reading(tmp_path):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(header(20000, 224, 224) + bytes(40_000_000))
    outcome, peak = peak_while(lambda: read_idx(path))
    assert isinstance(outcome, ValueError) and "only 40000000 follow" in str(outcome)
    assert peak < 4 * MiB, f"{peak} bytes allocated"


def test_a_size_no_memory_can_hold_is_refused_with_a_clear_message(tmp_path):
    # 8 dimensions of 2**32 - 1: about 1e77 bytes declared, in a 60-byte gzip file.
    path = tmp_path / "huge.gz"
    path.write_bytes(gzipped(header(*[2**32 - 1] * 8), 100))
    with pytest.raises(ValueError, match=r"will not fit in the .* of memory available") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_a_gzip_bomb_that_really_holds_its_size_is_refused_when_it_will_not_fit(tmp_path,
                                                                                monkeypatch):
    # 500 x 224 x 224 zero pixels really present (25 MB, a 25 kB file): as float64 X that is
    # 25 MB + 201 MB, as float32 25 MB + 100 MB. With 160 MiB available float64 must be
    # refused before any decompression, float32 loads.
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzipped(header(500, 224, 224), 500 * 224 * 224))
    assert path.stat().st_size < MiB
    monkeypatch.setattr(_idx, "_available_memory", lambda: 160 * MiB, raising=False)
    outcome, peak = peak_while(lambda: load_idx(path))
    assert isinstance(outcome, ValueError), "a float64 X of 201 MB was built in 160 MiB"
    assert "will not fit" in str(outcome) and "as float64" in str(outcome)
    assert "dtype=np.float32" in str(outcome)
    assert peak < 4 * MiB, f"{peak} bytes allocated before refusing"
    X, y = load_idx(path, dtype=np.float32)
    assert X.shape == (500, 224 * 224) and X.dtype == np.float32 and not X.any()
    assert read_idx(path).shape == (500, 224, 224)  # the uint8 pixels alone fit too
    monkeypatch.undo()
    assert 0 < _idx._available_memory() <= np.iinfo(np.intp).max  # the real one: a number


def test_trailing_data_inflating_to_gigabytes_is_not_decompressed(tmp_path):
    # Declares 10 bytes, inflates to 200 MB: reading stops one byte past the declared size.
    path = tmp_path / "trailing.gz"
    path.write_bytes(gzipped(header(10), 200_000_000))
    outcome, peak = peak_while(lambda: read_idx(path))
    assert isinstance(outcome, ValueError) and "trailing bytes" in str(outcome)
    assert peak < 4 * MiB


def test_mlpcore_train_refuses_the_file_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images.gz").write_bytes(gzipped(header(*[2**32 - 1] * 3), 100))  # N x rows x cols
    (tmp_path / "labels").write_bytes(header(3) + bytes(3))
    status = _cli.main(["train", "images.gz", "--labels", "labels", "--epochs", "1"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("mlpcore: error: images.gz: the header announces") and \
        "will not fit in the" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "model.npz").exists()
