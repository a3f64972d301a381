"""The data readers: embedded digits, MNIST IDX files, CSV and NPZ."""

import gzip
import struct

import numpy as np
import pytest

from mlpcore.datasets import load_csv, load_digits, load_idx, load_npz, read_idx
from mlpcore.datasets._files import detect_format, load_dataset


# -- digits ---------------------------------------------------------------------------------
def test_load_digits_shape_values_and_class_counts():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert y.shape == (1797,)
    assert X.min() == 0 and X.max() == 16
    assert np.array_equal(X, np.round(X))
    assert set(np.unique(y)) == set(range(10))
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_load_digits_images_and_dtype():
    X, y, images = load_digits(dtype=np.float32, return_images=True)
    assert X.dtype == np.float32 and images.shape == (1797, 8, 8)
    assert np.array_equal(images.reshape(1797, 64), X)


# -- IDX ------------------------------------------------------------------------------------
def idx_bytes(array, code=0x08, dims=None):
    """An IDX file's bytes, built by hand: magic, dims, then the data."""
    array = np.asarray(array, dtype=np.uint8)
    dims = array.shape if dims is None else dims
    header = struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    return header + array.tobytes()


def write(path, data, compress=False):
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture
def mnist_like(rng):
    images = rng.integers(0, 256, size=(7, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    return images, labels


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_plain_and_gzip(tmp_path, mnist_like, compress):
    images, labels = mnist_like
    ip = write(tmp_path / "images-idx3-ubyte", idx_bytes(images), compress)
    lp = write(tmp_path / "labels-idx1-ubyte", idx_bytes(labels), compress)
    X, y = load_idx(ip, lp)
    assert X.shape == (7, 12) and X.dtype == np.float64
    assert np.array_equal(X, images.reshape(7, 12))
    assert y.dtype == np.int64 and np.array_equal(y, labels)
    X32, none = load_idx(ip, dtype=np.float32)
    assert none is None and X32.dtype == np.float32


def test_gzip_is_detected_by_content_not_name(tmp_path, mnist_like):
    images, _ = mnist_like
    path = write(tmp_path / "images.idx", idx_bytes(images), compress=True)  # no .gz suffix
    assert np.array_equal(read_idx(path), images)
    plain = write(tmp_path / "plain.gz", idx_bytes(images))  # .gz suffix, not compressed
    assert np.array_equal(read_idx(plain), images)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\x01" + b[1:], "magic number"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "element type 0x0d"),
    (lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\x00", "trailing bytes"),
    (lambda b: b[:3], "shorter than the 4-byte magic"),
    (lambda b: b[:9], "ends inside the header"),
    (lambda b: b"", "shorter than the 4-byte magic"),
])
def test_malformed_idx_raises_clear_valueerror(tmp_path, mnist_like, mutate, message, compress):
    images, _ = mnist_like
    path = write(tmp_path / "bad", mutate(idx_bytes(images)), compress)
    with pytest.raises(ValueError, match=message):
        read_idx(path)


def test_idx_header_sizes_must_match_file_length(tmp_path, mnist_like):
    images, _ = mnist_like
    # The header claims 8 images of 4x3 but the file holds 7.
    path = write(tmp_path / "bad", idx_bytes(images, dims=(8, 4, 3)))
    with pytest.raises(ValueError, match=r"8x4x3 = 96 bytes.*only 84 follow"):
        read_idx(path)


def test_corrupt_gzip_is_a_valueerror(tmp_path, mnist_like):
    images, _ = mnist_like
    data = gzip.compress(idx_bytes(images))
    path = write(tmp_path / "bad.gz", data[:12] + b"garbage" * 5)
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(path)


def test_load_idx_checks_dimensions_and_counts(tmp_path, mnist_like):
    images, labels = mnist_like
    ip = write(tmp_path / "i", idx_bytes(images))
    lp = write(tmp_path / "l", idx_bytes(labels))
    short = write(tmp_path / "s", idx_bytes(labels[:5]))
    with pytest.raises(ValueError, match="7 images but .* 5 labels"):
        load_idx(ip, short)
    with pytest.raises(ValueError, match="has 1.*labels file"):
        load_idx(lp, lp)
    with pytest.raises(ValueError, match="has 3.*images file"):
        load_idx(ip, ip)
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "missing", lp)


# -- CSV ------------------------------------------------------------------------------------
def test_load_csv_with_string_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a, b ,label\n1,2.5,cat\n\n3,-4e1,dog\n5,6,cat\n")
    X, y, names = load_csv(path, "label")
    assert names == ["a", "b"]
    assert X.tolist() == [[1, 2.5], [3, -40], [5, 6]]
    assert y.tolist() == ["cat", "dog", "cat"] and y.dtype.kind == "U"


def test_load_csv_target_typing(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x,t\n1,1\n2,0\n3,2\n")
    assert load_csv(path, "t")[1].dtype == np.int64
    assert load_csv(path, "t", task="regression")[1].dtype == np.float64
    path.write_text("x,t\n1,1.0\n2,0.5\n")
    assert load_csv(path, "t")[1].dtype == np.float64  # fractional: regression by default
    assert load_csv(path, "t", task="classification")[1].tolist() == ["1.0", "0.5"]
    path.write_text("x,t\n1,1.0\n2,0.0\n")
    assert load_csv(path, "t", task="classification")[1].tolist() == [1, 0]
    path.write_text("x,t\n1,a\n2,b\n")
    with pytest.raises(ValueError, match="line 2 .*column 't'.*not a number; regression"):
        load_csv(path, "t", task="regression")


def test_load_csv_without_target_and_other_delimiters(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("\ufeffa;b\n1;2\n3;4\n", encoding="utf-8")  # BOM, semicolons
    X, y, names = load_csv(path)
    assert names == ["a", "b"] and y is None and X.tolist() == [[1, 2], [3, 4]]
    gz = tmp_path / "d.csv.gz"
    gz.write_bytes(gzip.compress(b"a\tb\tc\n1\t2\t0\n"))
    X, y, names = load_csv(gz, "c")
    assert X.tolist() == [[1, 2]] and y.tolist() == [0]


@pytest.mark.parametrize("text, target, message", [
    ("a,b,y\n1,2,0\n3,oops,1\n", "y", r"line 3 \(data row 2\), column 'b': 'oops' is not a number"),
    ("a,b,y\n1,,0\n", "y", r"line 2 \(data row 1\), column 'b': empty cell"),
    ("a,b,y\n1,nan,0\n", "y", r"column 'b': 'nan' is not a finite number"),
    ("a,b,y\n1,2,0\n1,2\n", "y", "line 3: 2 fields, but the header has 3"),
    ("a,b,y\n1,2,0\n", "label", r"no column named 'label'; the columns are 'a', 'b', 'y'"),
    ("a,a,y\n1,2,0\n", "y", "names column 'a' twice"),
    ("a,,y\n1,2,0\n", "y", "column 2 of the header has no name"),
    ("a,b,y\n", "y", "no data rows"),
    ("", "y", "empty file"),
    ("y\n1\n", "y", "no feature columns"),
    ("a,y\n1,\n", "y", "empty target cell"),
])
def test_malformed_csv_messages(tmp_path, text, target, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_csv(path, target)


def test_csv_that_is_not_text(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,b\n\xff\xfe\x00\x01\n")
    with pytest.raises(ValueError, match="not a UTF-8 text file"):
        load_csv(path)


# -- NPZ ------------------------------------------------------------------------------------
def test_load_npz(tmp_path, rng):
    X = rng.normal(size=(5, 2, 3))
    y = np.arange(5)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    Xl, yl = load_npz(tmp_path / "d.npz")
    assert Xl.shape == (5, 6) and np.array_equal(yl, y)
    np.savez(tmp_path / "noy.npz", X=X)
    assert load_npz(tmp_path / "noy.npz", require_y=False)[1] is None
    with pytest.raises(ValueError, match="no array named 'y'"):
        load_npz(tmp_path / "noy.npz")
    np.savez(tmp_path / "nox.npz", data=X)
    with pytest.raises(ValueError, match="no array named 'X' .*holds data"):
        load_npz(tmp_path / "nox.npz")
    np.savez(tmp_path / "rows.npz", X=X, y=y[:4])
    with pytest.raises(ValueError, match="X has 5 rows but y has 4"):
        load_npz(tmp_path / "rows.npz")
    np.savez(tmp_path / "flat.npz", X=np.arange(3), y=y[:3])
    with pytest.raises(ValueError, match="2-D"):
        load_npz(tmp_path / "flat.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_npz(tmp_path / "junk.npz")


# -- format detection -----------------------------------------------------------------------
def test_detect_format_and_load_dataset(tmp_path, mnist_like):
    images, labels = mnist_like
    ip = write(tmp_path / "i.gz", idx_bytes(images), compress=True)
    lp = write(tmp_path / "l", idx_bytes(labels))
    np.savez(tmp_path / "d.npz", X=np.ones((2, 2)), y=[0, 1])
    (tmp_path / "d.csv").write_text("a,y\n1,0\n2,1\n")
    assert detect_format(ip) == "idx" and detect_format(lp) == "idx"
    assert detect_format(tmp_path / "d.npz") == "npz"
    assert detect_format(tmp_path / "d.csv") == "csv"
    X, y, info = load_dataset(ip, labels=lp)
    assert info["format"] == "idx" and X.shape == (7, 12) and len(y) == 7
    with pytest.raises(ValueError, match="--labels"):
        load_dataset(ip)
    with pytest.raises(ValueError, match="--target"):
        load_dataset(tmp_path / "d.npz", target="y")
    with pytest.raises(ValueError, match=r"name the target column with --target \(the columns "
                                         r"are 'a', 'y'\)"):
        load_dataset(tmp_path / "d.csv")
    X, y, info = load_dataset(tmp_path / "d.csv", target="y")
    assert info["feature_names"] == ["a"] and y.tolist() == [0, 1]
