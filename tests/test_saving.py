"""Saving never loses what is at the path; loading is bounded by the file's size.

``save`` at a path: through a symbolic link it writes the target (atomically, in the target's
folder); a read-only file is refused with PermissionError (root included); a hard-linked file
is refused; a FIFO or a device is written in place, never replaced; a killed save's temporary
file is recognisable and removed by the next save to the path; errors name the caller's path.
``save`` and ``load`` take binary file objects. ``load`` refuses zip directories crafted to
make one stored member count many times, and never reads members it does not know. The
rules are in ``mlpcore/_persistence.py`` ("How saving writes", "What loading checks").

Root runs these tests: FIFOs are made with ``os.mkfifo`` in tmp_path, and ``/dev/null`` is
only looked at (``os.stat`` and the side-effect-free ``_persistence._destination``), never
written.
"""

import errno
import io
import os
import re
import stat
import struct
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

import mlpcore
from _helpers import archive, members_of
from mlpcore import _cli, _persistence

try:
    import fcntl
except ImportError:
    fcntl = None

RNG = np.random.default_rng(7)
X = RNG.normal(size=(30, 4))
Y = np.array(["a", "b", "c"])[RNG.integers(0, 3, 30)]
TEMPORARY = re.compile(r"\.model\.npz\.mlpcore-save-[0-9a-f]{16}\.tmp\Z")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_posix = pytest.mark.skipif(os.name != "posix", reason="POSIX file types")


def file_bytes(model, folder):
    path = folder / "saved.npz"
    model.save(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two small classifiers that predict differently, and the first one's file bytes."""
    first = mlpcore.fit(X, Y, hidden=(5,), optimizer="adam", learning_rate=0.01, epochs=2,
                        seed=0)
    second = mlpcore.fit(X, Y, hidden=(3,), epochs=1, seed=1)
    return first, second, file_bytes(first, tmp_path_factory.mktemp("models"))


def same_model(model, other):
    return (model.sizes == other.sizes
            and np.array_equal(model.predict_proba(X), other.predict_proba(X)))


# -- symbolic links ---------------------------------------------------------------------------

@needs_posix
def test_saving_through_a_symlink_writes_its_target_atomically_in_the_targets_folder(
        tmp_path, models, monkeypatch):
    first, second, _ = models
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "real" / "model.npz"
    link = tmp_path / "links" / "model.npz"
    first.save(target)
    os.chmod(target, 0o640)
    link.symlink_to(target)
    renames = []
    replace = os.replace

    def spy(src, dst, **kwargs):
        renames.append((os.fspath(src), os.fspath(dst)))
        return replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", spy)
    second.save(link)
    monkeypatch.undo()
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert same_model(mlpcore.load(target), second)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert len(renames) == 1
    src, dst = renames[0]
    assert os.path.dirname(src) == str(tmp_path / "real") and dst == str(target)
    assert sorted(os.listdir(tmp_path / "real")) == ["model.npz"]
    assert sorted(os.listdir(tmp_path / "links")) == ["model.npz"]


@needs_posix
def test_saving_through_a_dangling_symlink_creates_its_target(tmp_path, models):
    link = tmp_path / "model.npz"
    (tmp_path / "store").mkdir()
    link.symlink_to(tmp_path / "store" / "new.npz")
    models[0].save(link)
    assert link.is_symlink()
    assert same_model(mlpcore.load(tmp_path / "store" / "new.npz"), models[0])


@needs_posix
def test_a_symlink_loop_is_an_oserror_naming_the_path(tmp_path, models):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(OSError) as info:
        models[0].save(a)
    assert info.value.errno == errno.ELOOP and info.value.filename == str(a)
    assert a.is_symlink() and b.is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["a.npz", "b.npz"]


# -- read-only files, hard links, directories ---------------------------------------------------

@pytest.mark.parametrize("mode", [0o444, 0o400, 0o000])
def test_a_read_only_file_is_refused_with_permission_error_even_as_root(tmp_path, models,
                                                                         mode):
    path = tmp_path / "model.npz"
    path.write_bytes(models[2])
    os.chmod(path, mode)
    try:
        with pytest.raises(PermissionError, match="read-only") as info:
            models[1].save(path)
        assert info.value.filename == str(path)
        assert stat.S_IMODE(path.stat().st_mode) == mode
        os.chmod(path, 0o600)
        assert path.read_bytes() == models[2]
        assert os.listdir(tmp_path) == ["model.npz"]
    finally:
        os.chmod(path, 0o600)


@needs_posix
def test_a_read_only_target_behind_a_symlink_is_refused_naming_the_link(tmp_path, models):
    target, link = tmp_path / "target.npz", tmp_path / "link.npz"
    target.write_bytes(models[2])
    os.chmod(target, 0o444)
    link.symlink_to(target)
    with pytest.raises(PermissionError) as info:
        models[1].save(link)
    assert info.value.filename == str(link)
    assert target.read_bytes() == models[2]


@needs_posix
def test_a_hard_linked_file_is_refused_and_both_names_keep_their_file(tmp_path, models):
    # The rule chosen: refuse. Replacing would break the link (the other name keeps the old
    # model), writing in place would not be atomic.
    path, other = tmp_path / "model.npz", tmp_path / "backup.npz"
    path.write_bytes(models[2])
    os.link(path, other)
    with pytest.raises(OSError, match="2 hard links") as info:
        models[1].save(path)
    assert info.value.errno == errno.EMLINK and info.value.filename == str(path)
    assert os.path.samefile(path, other) and path.stat().st_nlink == 2
    assert path.read_bytes() == models[2]
    assert sorted(os.listdir(tmp_path)) == ["backup.npz", "model.npz"]
    other.unlink()  # once the link is gone, the save goes through
    models[1].save(path)
    assert same_model(mlpcore.load(path), models[1])


def test_a_directory_is_an_is_a_directory_error_naming_it(tmp_path, models):
    folder = tmp_path / "model.npz"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        models[0].save(folder)
    assert info.value.filename == str(folder) and folder.is_dir()
    assert os.listdir(tmp_path) == ["model.npz"]


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a file to another owner")
def test_saving_as_root_keeps_the_owner_of_the_file_it_replaces(tmp_path, models):
    path = tmp_path / "model.npz"
    path.write_bytes(models[2])
    os.chown(path, 12345, 23456)
    models[1].save(path)
    assert (path.stat().st_uid, path.stat().st_gid) == (12345, 23456)
    assert same_model(mlpcore.load(path), models[1])


# -- FIFOs and devices ----------------------------------------------------------------------

def read_fifo_during(fifo, action, timeout=60):
    """Run ``action`` in a thread while reading ``fifo``; (bytes read, errors of action)."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so the writer's open returns
    done, errors = threading.Event(), []

    def run():
        try:
            action()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:  # a writer, nothing written yet
                time.sleep(0.005)
                continue
            if chunk:
                chunks.append(chunk)
            elif done.is_set():  # no writer any more, and the save has returned
                break
            else:
                time.sleep(0.005)
    finally:
        os.close(fd)
    thread.join(5)
    return b"".join(chunks), errors


@needs_posix
def test_a_fifo_is_written_in_place_never_replaced(tmp_path, models):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    data, errors = read_fifo_during(fifo, lambda: models[0].save(fifo))
    assert not errors, errors
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced by a regular file"
    assert os.listdir(tmp_path) == ["model.npz"]
    assert same_model(mlpcore.load(io.BytesIO(data)), models[0])  # a streamed zip loads


@needs_posix
def test_a_device_is_written_in_place_looked_at_only(tmp_path):
    # /dev/null is only looked at: _destination stats and resolves, it writes nothing.
    before = os.lstat("/dev/null")
    destination = _persistence._destination("/dev/null")
    assert destination.in_place and destination.path == "/dev/null"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert _persistence._destination(str(fifo)).in_place
    regular = tmp_path / "model.npz"
    regular.write_bytes(b"old")
    assert not _persistence._destination(str(regular)).in_place
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev, after.st_mode) == (
        before.st_ino, before.st_rdev, before.st_mode)


# -- temporary files ------------------------------------------------------------------------

KILLED_SAVE = """
import os, signal, sys
import numpy as np
import mlpcore

model = mlpcore.fit(np.eye(4), [0, 1, 0, 1], hidden=(3,), epochs=1, seed=0)
savez = np.savez

def write_then_die(f, **members):
    savez(f, **members)  # the whole model is in the temporary file, not yet renamed
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

np.savez = write_then_die
model.save(sys.argv[1])
"""


@pytest.mark.skipif(not hasattr(os, "kill") or os.name != "posix", reason="needs SIGKILL")
def test_a_killed_save_leaves_a_recognisable_temporary_that_the_next_save_removes(
        tmp_path, models):
    path = tmp_path / "model.npz"
    path.write_bytes(models[2])
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path)], timeout=120,
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert path.read_bytes() == models[2]  # the old model survives the kill
    left = sorted(set(os.listdir(tmp_path)) - {"model.npz"})
    assert len(left) == 1 and TEMPORARY.match(left[0]), left
    assert (tmp_path / left[0]).stat().st_size > 1000  # as large as a model
    models[1].save(path)
    assert os.listdir(tmp_path) == ["model.npz"]
    assert same_model(mlpcore.load(path), models[1])


def test_only_abandoned_temporaries_of_that_path_are_removed(tmp_path, models):
    path = tmp_path / "model.npz"
    stale = tmp_path / ".model.npz.mlpcore-save-0123456789abcdef.tmp"
    keep = [tmp_path / ".other.npz.mlpcore-save-0123456789abcdef.tmp",  # another target
            tmp_path / ".model.npz.mlpcore-save-not-hex-digits!.tmp",
            tmp_path / ".model.npz.mlpcore-save-0123456789abcdef.tmp.bak",
            tmp_path / "model.npz.mlpcore-save-0123456789abcdef.tmp",  # no leading dot
            tmp_path / "notes.txt"]
    for p in [stale, *keep]:
        p.write_bytes(b"x" * 100)
    held = tmp_path / ".model.npz.mlpcore-save-fedcba9876543210.tmp"
    held.write_bytes(b"y" * 100)
    with open(held, "rb") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # as a save in progress holds its file
        models[0].save(path)
    assert not stale.exists()
    assert all(p.exists() for p in keep)
    if fcntl is not None:
        assert held.read_bytes() == b"y" * 100
    assert same_model(mlpcore.load(path), models[0])


def test_the_temporary_file_is_named_after_the_target(tmp_path, models, monkeypatch):
    names = []
    replace = os.replace

    def spy(src, dst, **kwargs):
        names.append(os.path.basename(src))
        return replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", spy)
    models[0].save(tmp_path / "model.npz")
    long_name = "m" * 250 + ".npz"  # too long to extend: shortened with a hash
    models[0].save(tmp_path / long_name)
    assert TEMPORARY.match(names[0]), names
    assert names[1].startswith(".mmm") and len(names[1].encode()) < 255, names
    assert sorted(os.listdir(tmp_path)) == sorted(["model.npz", long_name])


# -- errors name the caller's path ------------------------------------------------------------

@pytest.mark.parametrize("failure", ["create", "savez", "fsync", "replace"])
def test_a_failed_save_names_the_callers_path_never_the_temporary(tmp_path, models,
                                                                   monkeypatch, failure):
    path = tmp_path / "model.npz"
    path.write_bytes(models[2])

    def fail(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", *[a for a in args if isinstance(a, str)])

    def no_space(f, **members):
        f.write(b"PK\x03\x04")
        raise OSError(errno.ENOSPC, "No space left on device")

    if failure == "create":
        open_ = os.open

        def create(name, flags, *args, **kwargs):
            if flags & os.O_CREAT:
                raise PermissionError(errno.EACCES, "Permission denied", name)
            return open_(name, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", create)
    elif failure == "savez":
        monkeypatch.setattr(np, "savez", no_space)
    else:
        monkeypatch.setattr(os, failure, fail)
    with pytest.raises(OSError) as info:
        models[1].save(path)
    monkeypatch.undo()
    exc = info.value
    assert exc.filename == str(path) and exc.filename2 is None, (exc.filename, exc.filename2)
    assert ".tmp" not in str(exc) and "mlpcore-save" not in str(exc), str(exc)
    assert path.read_bytes() == models[2] and os.listdir(tmp_path) == ["model.npz"]


def test_a_missing_folder_is_a_file_not_found_error_naming_the_path(tmp_path, models):
    path = tmp_path / "no such folder" / "model.npz"
    with pytest.raises(FileNotFoundError) as info:
        models[0].save(path)
    assert info.value.filename == str(path) and ".tmp" not in str(info.value)


def test_the_command_line_refuses_a_read_only_output_in_one_line(tmp_path, models, capsys,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("data.csv", "w") as f:
        f.write("a,b,c,d,label\n")
        for row, label in zip(X, Y):
            f.write(",".join(f"{v:.4f}" for v in row) + f",{label}\n")
    (tmp_path / "ro.npz").write_bytes(models[2])
    os.chmod("ro.npz", 0o444)
    status = _cli.main(["train", "data.csv", "--target", "label", "--hidden", "3",
                        "--epochs", "1", "-o", "ro.npz"])
    err = capsys.readouterr().err
    os.chmod("ro.npz", 0o600)
    assert status == 1, err
    assert err.startswith("mlpcore: error: cannot write the model to ro.npz: ") and \
        "read-only" in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "ro.npz").read_bytes() == models[2]


# -- file objects ---------------------------------------------------------------------------

def test_save_and_load_take_binary_file_objects(tmp_path, models):
    first = models[0]
    buffer = io.BytesIO()
    first.save(buffer)
    assert not buffer.closed and buffer.tell() == len(buffer.getvalue()) > 0
    assert same_model(mlpcore.load(io.BytesIO(buffer.getvalue())), first)
    buffer.seek(0)
    assert same_model(mlpcore.MLP.load(buffer), first) and not buffer.closed
    with open(tmp_path / "model.npz", "wb") as f:
        first.save(f)
        assert not f.closed
    with open(tmp_path / "model.npz", "rb") as f:
        assert same_model(mlpcore.load(f), first)
    with pytest.raises(ValueError, match=r"^the BytesIO object is not a readable mlpcore"):
        mlpcore.load(io.BytesIO(b"not a model"))
    with open(tmp_path / "junk.npz", "wb") as f:
        f.write(b"junk")
    with open(tmp_path / "junk.npz", "rb") as f, pytest.raises(
            ValueError, match=re.escape(str(tmp_path / "junk.npz"))):
        mlpcore.load(f)


def test_text_files_and_other_objects_are_type_errors_naming_path(tmp_path, models):
    for bad in (io.StringIO(), 3, None, [1]):
        with pytest.raises(TypeError, match=r"path must be"):
            models[0].save(bad)
    for bad in (io.StringIO("text"), 3, None):
        with pytest.raises(TypeError, match=r"path must be"):
            mlpcore.load(bad)
    assert os.listdir(tmp_path) == []


# -- loading: crafted zip directories ---------------------------------------------------------

class CountingReader(io.BytesIO):
    """A BytesIO that counts the bytes read from it."""

    def __init__(self, data):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n=-1):
        data = super().read(n)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer):
        n = super().readinto(buffer)
        self.bytes_read += n
        return n


_EOCD = struct.Struct("<4s4H2LH")


def split_zip(raw):
    """(bytes before the central directory, {name: central-directory record})."""
    eocd = _EOCD.unpack_from(raw, raw.rindex(b"PK\x05\x06"))
    size, offset = eocd[5], eocd[6]
    records, pos = {}, offset
    while pos < offset + size:
        n, m, k = struct.unpack_from("<3H", raw, pos + 28)
        name = raw[pos + 46:pos + 46 + n].decode()
        records[name] = raw[pos:pos + 46 + n + m + k]
        pos += 46 + n + m + k
    return raw[:offset], records


def join_zip(body, records):
    directory = b"".join(records)
    return body + directory + _EOCD.pack(b"PK\x05\x06", 0, 0, len(records), len(records),
                                         len(directory), len(body), 0)


def at_offset(record, offset):
    """A central-directory record pointing at the local header at ``offset``."""
    return record[:42] + struct.pack("<L", offset) + record[46:]


@pytest.fixture(scope="module")
def big_model_file(tmp_path_factory):
    """A model file whose theta is 2.1 MB (266,755 float64 parameters)."""
    model = mlpcore.fit(X, Y, hidden=(512, 512), epochs=1, seed=0)
    return file_bytes(model, tmp_path_factory.mktemp("big")), model


def test_thousands_of_entries_pointing_at_one_member_are_refused_quickly(tmp_path,
                                                                         big_model_file):
    # The file: 4,000 directory entries, all the stored theta. Read entry by entry
    # it is 4,000 x 2.1 MB (22 s before); it must be refused (or loaded) in well under a
    # second, reading about the directory only.
    raw, model = big_model_file
    body, records = split_zip(raw)
    others = [records[name] for name in records if name != "theta.npy"]
    crafted = join_zip(body, others + [records["theta.npy"]] * 4000)
    count = len(others) + 4000
    path = tmp_path / "crafted.npz"
    path.write_bytes(crafted)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"crafted\.npz is not a readable mlpcore model file: "
                                         rf"the archive has {count} members"):
        mlpcore.load(path)
    assert time.perf_counter() - start < 2.0
    reader = CountingReader(crafted)
    with pytest.raises(ValueError, match=f"{count} members"):
        mlpcore.load(reader)
    theta_bytes = model.n_params * 8
    assert reader.bytes_read < len(crafted) - theta_bytes + 64 * 1024, reader.bytes_read


def test_a_directory_longer_than_its_announced_count_is_refused_before_it_is_parsed(
        tmp_path, models):
    # The end record says 3 entries; the directory holds 50,003, which a zip reader parses
    # one by one whatever the count says (about a second here).
    _, _, raw = models
    body, records = split_zip(raw)
    directory = [*records.values()] + [records["meta.npy"]] * 50_000
    crafted = bytearray(join_zip(body, directory))
    struct.pack_into("<2H", crafted, len(crafted) - _EOCD.size + 8, 3, 3)
    path = tmp_path / "long.npz"
    path.write_bytes(crafted)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"the archive's directory takes \d+ bytes"):
        mlpcore.load(path)
    assert time.perf_counter() - start < 0.5


def test_directory_entries_that_overlap_are_refused(tmp_path, big_model_file):
    raw, _ = big_model_file
    body, records = split_zip(raw)
    # Twice the same local header, under the member count limit.
    path = tmp_path / "twice.npz"
    path.write_bytes(join_zip(body, [*records.values(), records["theta.npy"]]))
    with pytest.raises(ValueError, match="'theta.npy' appears more than once"):
        mlpcore.load(path)
    # A member hidden inside the stored data of another: theta's local entry (header and
    # data) is the content of 'padding.bin', and the directory also lists it at that place.
    members = members_of(raw)
    theta_zip = archive({"theta.npy": members.pop("theta.npy")})
    theta_body, theta_records = split_zip(theta_zip)
    nested = archive({**members, "padding.bin": theta_body})
    body, records = split_zip(nested)
    inner = body.index(theta_body)
    crafted = join_zip(body, [*records.values(), at_offset(theta_records["theta.npy"], inner)])
    with zipfile.ZipFile(io.BytesIO(crafted)) as z:  # a zip reader takes it as it is
        assert z.read("theta.npy") == members_of(raw)["theta.npy"]
    path = tmp_path / "nested.npz"
    path.write_bytes(crafted)
    with pytest.raises(ValueError, match="'padding.bin' and 'theta.npy' overlap"):
        mlpcore.load(path)


def test_unknown_members_are_skipped_without_being_read(tmp_path, models):
    first, _, raw = models
    notes = io.BytesIO()
    np.save(notes, np.zeros(2_500_000))  # a valid 20 MB array mlpcore does not know
    crafted = bytearray(archive({**members_of(raw), "notes.npy": notes.getvalue(),
                                "blob.bin": bytes(20_000_000)}))
    with zipfile.ZipFile(io.BytesIO(crafted)) as z:
        info = z.getinfo("notes.npy")
    data_end = info.header_offset + 30 + len("notes.npy") + info.compress_size
    crafted[data_end - 1] ^= 0xFF  # its CRC fails: not read, so nobody can tell
    crafted = bytes(crafted)
    with zipfile.ZipFile(io.BytesIO(crafted)) as z, pytest.raises(zipfile.BadZipFile):
        z.read("notes.npy")
    path = tmp_path / "extra.npz"
    path.write_bytes(crafted)
    assert same_model(mlpcore.load(path), first)
    reader = CountingReader(crafted)
    assert same_model(mlpcore.load(reader), first)
    assert reader.bytes_read < len(raw) + 64 * 1024, reader.bytes_read


def test_member_counts_up_to_the_limit_load_and_beyond_it_are_refused(tmp_path, models):
    first, _, raw = models
    limit = 64  # _persistence.MAX_MEMBERS, checked below
    members = members_of(raw)
    fill = {f"note{i}.txt": b"n" for i in range(limit - len(members))}
    path = tmp_path / "many.npz"
    path.write_bytes(archive({**members, **fill}))
    assert same_model(mlpcore.load(path), first)
    fill["one-too-many.txt"] = b"n"
    path.write_bytes(archive({**members, **fill}))
    with pytest.raises(ValueError, match=f"{limit + 1} members; a model file has at most "
                                         f"{limit}"):
        mlpcore.load(path)
    assert _persistence.MAX_MEMBERS == limit


def test_every_member_a_model_writes_is_one_the_loader_reads(tmp_path):
    # Unknown members are skipped, so a member added to get_state must be added to
    # _persistence's known members too, or it would silently not load.
    model = mlpcore.fit(X * 1000, Y, hidden=(4,), optimizer="adam", epochs=1, seed=0,
                        scale="standard")
    _, arrays = model.get_state()
    assert {"theta", "classes", "optimizer_state_0", "input_shift"} <= set(arrays)
    unread = [name for name in ["meta", *arrays] if not _persistence._KNOWN_MEMBER.match(name)]
    assert not unread, f"members the loader skips: {unread}"
    model.save(tmp_path / "model.npz")
    loaded = mlpcore.load(tmp_path / "model.npz")
    assert np.array_equal(loaded.predict_proba(X * 1000), model.predict_proba(X * 1000))
