"""Saving, loading, pickling and copying models.

* ``save``/``load``, ``pickle`` and ``copy.deepcopy`` all go through ``MLP.get_state`` and
  ``MLP.from_state``: a copy predicts the same, holds the same training state, and resumes
  training bit-identically.
* The model file format: documented members, versions, no code execution, a fuzzed loader,
  and atomic writes. ``mlpcore.load`` must give either a working model or a ValueError
  naming the file, whatever the bytes: truncated, flipped, swapped, or metadata edited to
  claim absurd sizes (which must not be allocated). See ``mlpcore/_persistence.py`` for the
  format.
"""

import copy
import io
import json
import multiprocessing.reduction
import os
import pathlib
import pickle
import stat
import tempfile
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlpcore
from _helpers import classification_data as data
from _helpers import archive, members_of, same_weights
from mlpcore import _persistence


DATA = pathlib.Path(__file__).parent / "data"
RNG = np.random.default_rng(99)
X = RNG.normal(size=(30, 4))
Y = np.array(["x", "y", "z"])[RNG.integers(0, 3, 30)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(path, bytes, model) of a small classifier with Adam state."""
    model = mlpcore.fit(X, Y, hidden=(5,), optimizer="adam", learning_rate=0.01, epochs=2,
                        seed=0)
    path = tmp_path_factory.mktemp("saved") / "model.npz"
    model.save(path)
    return path, path.read_bytes(), model


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype.hasobject)
    return buffer.getvalue()


def meta_of(raw):
    data = members_of(raw)["meta.npy"]
    return json.loads(np.load(io.BytesIO(data)).tobytes())


def with_meta(raw, meta):
    members = members_of(raw)
    members["meta.npy"] = npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return archive(members)


def load_bytes(tmp_path, raw, name="fuzz.npz"):
    path = tmp_path / name
    path.write_bytes(raw)
    return mlpcore.load(path)


def load_outcome(tmp_path, raw):
    """'ok' for a working model, 'refused' for a clean ValueError; anything else fails."""
    try:
        model = load_bytes(tmp_path, raw)
    except ValueError as exc:
        assert "not a readable mlpcore model file" in str(exc)
        return "refused"
    out = model.forward(X[:, :model.n_features] if model.n_features <= 4 else
                        np.zeros((3, model.n_features)))
    assert np.isfinite(out).all()
    model.predict(np.zeros((2, model.n_features)))
    return "ok"


# -- saving and loading -------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path, rng):
    X = rng.normal(size=(40, 3))
    y = np.array(["a", "b"])[rng.integers(0, 2, 40)]
    model = mlpcore.fit(X, y, hidden=(6, 4), activation="relu", epochs=4, seed=0,
                        optimizer="adam", learning_rate=0.01)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = mlpcore.load(path)
    assert repr(loaded) == repr(model)
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.predict(X).tolist() == model.predict(X).tolist()
    assert loaded.history == model.history
    assert loaded.optimizer.t == model.optimizer.t
    for a, b in zip(loaded.optimizer.state, model.optimizer.state):
        assert np.array_equal(a, b)


def test_save_load_regression_float32(tmp_path, rng):
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = X.sum(axis=1)
    model = mlpcore.fit(X, y, hidden=(6,), epochs=2, seed=0)
    model.save(tmp_path / "m")
    loaded = mlpcore.load(tmp_path / "m")
    assert loaded.dtype == np.float32
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_fit_more_after_save_and_load_continues_exactly(rng, tmp_path):
    X, y = data(rng)
    kw = dict(hidden=(8,), optimizer="adam", batch_size=16, seed=5, schedule="invscaling")
    whole = mlpcore.fit(X, y, epochs=6, **kw)
    part = mlpcore.fit(X, y, epochs=2, **kw)
    part.save(tmp_path / "m.npz")
    resumed = mlpcore.load(tmp_path / "m.npz").fit_more(X, y, epochs=4)
    assert same_weights(whole, resumed)


def test_settings_holding_numpy_scalars_can_be_saved(tmp_path):
    model = mlpcore.fit(X, Y, hidden=(np.int64(3),), batch_size=np.int64(8),
                        n_iter_no_change=np.int32(4), class_weight={"x": np.float32(2.0)},
                        alpha=np.float32(0.01), epochs=np.int64(1), seed=np.int64(1))
    model.save(tmp_path / "m.npz")
    loaded = mlpcore.load(tmp_path / "m.npz")
    assert loaded.batch_size == 8 and loaded.class_weight == {"x": 2.0}
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_load_refuses_foreign_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a readable mlpcore model"):
        mlpcore.load(bad)
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(ValueError, match="mlpcore model"):
        mlpcore.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        mlpcore.load(tmp_path / "missing.npz")


# -- pickle, deepcopy and the state pair --------------------------------------------------------

def out_of_band(model):
    """Pickle protocol 5 with the arrays handed over as out-of-band buffers (as
    multiprocessing-style transports and cluster schedulers send them)."""
    buffers = []
    payload = pickle.dumps(model, protocol=5, buffer_callback=buffers.append)
    return pickle.loads(payload, buffers=buffers)


def state_through_json(model):
    """The state pair with its metadata through JSON, as a model file stores it."""
    meta, arrays = model.get_state()
    return mlpcore.MLP.from_state(json.loads(json.dumps(meta)),
                                  {k: a.copy() for k, a in arrays.items()})


COPIES = {
    "pickle": lambda m: pickle.loads(pickle.dumps(m)),
    "pickle protocol 5": lambda m: pickle.loads(pickle.dumps(m, protocol=5)),
    "multiprocessing": lambda m: pickle.loads(
        multiprocessing.reduction.ForkingPickler.dumps(m, protocol=5)),
    "out-of-band buffers": out_of_band,
    "deepcopy": copy.deepcopy,
    "state pair": lambda m: mlpcore.MLP.from_state(*m.get_state()),
    "state pair through json": state_through_json,
}

# Every way of training, with shuffling on: the copy must carry the optimizer state, the
# schedule and the random stream (shuffling order, validation split) to resume exactly.
TRAINING = {
    "sgd": dict(optimizer="sgd", batch_size=16),
    "sgd invscaling, validation split": dict(optimizer="sgd", batch_size=16,
                                             schedule="invscaling", validation_fraction=0.2),
    "momentum": dict(optimizer="momentum", batch_size=16),
    "nesterov": dict(optimizer="nesterov", batch_size=16),
    "adam": dict(optimizer="adam", batch_size=16),
    "adam per sample": dict(optimizer="adam", batch_size=1),
    "lbfgs": dict(optimizer="lbfgs"),
}


def fitted(rng, settings):
    X, y = data(rng)
    model = mlpcore.fit(X, y, hidden=(8,), epochs=3, shuffle=True, seed=5, **settings)
    return model, X, y


def assert_same_state(copied, model):
    """Same predictions, parameters, optimizer state, schedule, random stream and history,
    held in arrays of the copy's own."""
    assert type(copied) is type(model) and repr(copied) == repr(model)
    assert copied.get_config() == model.get_config()
    assert copied.dtype == model.dtype
    assert np.array_equal(copied.predict_proba(X_PROBE), model.predict_proba(X_PROBE))
    assert np.array_equal(copied.predict(X_PROBE), model.predict(X_PROBE))
    assert np.array_equal(copied._theta, model._theta)
    assert not np.shares_memory(copied._theta, model._theta)
    assert copied.optimizer.rule == model.optimizer.rule
    assert copied.optimizer.get_config() == model.optimizer.get_config()
    assert copied.optimizer.t == model.optimizer.t
    assert len(copied.optimizer.state) == len(model.optimizer.state)
    for a, b in zip(copied.optimizer.state, model.optimizer.state):
        assert np.array_equal(a, b) and not np.shares_memory(a, b)
    assert copied._schedule.get_state() == model._schedule.get_state()
    assert copied._rng.bit_generator.state == model._rng.bit_generator.state
    assert copied.samples_seen == model.samples_seen
    assert_same_history(copied.history, model.history)


def assert_same_history(a, b):
    assert set(a) == set(b)
    for key in b:  # NaN learning rates (L-BFGS) compare equal here
        np.testing.assert_array_equal(a[key], b[key])


X_PROBE = np.random.default_rng(3).normal(size=(25, 4))


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("training", list(TRAINING))
def test_a_copy_holds_the_whole_state(rng, training, how):
    model, _, _ = fitted(rng, TRAINING[training])
    assert_same_state(COPIES[how](model), model)


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("training", list(TRAINING))
def test_a_copy_resumes_training_bit_identically(rng, training, how):
    model, X, y = fitted(rng, TRAINING[training])
    copied = COPIES[how](model)
    model.fit_more(X, y, epochs=3)
    copied.fit_more(X, y, epochs=3)
    assert same_weights(copied, model)
    assert_same_state(copied, model)
    assert model.optimizer.t > 3 and len(model.history["loss"]) == 6


@pytest.mark.parametrize("how", list(COPIES))
def test_an_untrained_model_copies_its_settings(rng, how):
    X, y = data(rng)
    model = mlpcore.MLP((6, 3), activation="tanh", optimizer=mlpcore.Adam(learning_rate=0.01),
                        batch_size=8, epochs=2, seed=11, schedule="invscaling", alpha=1e-3)
    copied = COPIES[how](model)
    assert repr(copied) == repr(model) and copied.get_config() == model.get_config()
    with pytest.raises(mlpcore.NotFittedError):
        copied.predict(X)
    assert same_weights(copied.fit(X, y), model.fit(X, y))


def keep_going(epoch, model, logs):
    """A callback defined at module level: pickle stores it by reference."""
    return True


def test_copies_keep_the_callback_schedule_and_init(rng):
    X, y = data(rng)
    calls = []

    def callback(epoch, model, logs):
        calls.append(epoch)

    def schedule(epoch):
        return 0.1 / (1 + epoch)

    init = mlpcore.MLP((5,), seed=2)
    init.build(X, y)
    init = (init.weights, init.biases)
    model = mlpcore.fit(X, y, hidden=(5,), epochs=2, callback=callback, schedule=schedule,
                        init=init)
    copied = copy.deepcopy(model)
    assert copied.callback is callback and copied.schedule is schedule
    for a, b in zip(copied.init[0] + copied.init[1], init[0] + init[1]):
        assert np.array_equal(a, b)
    calls.clear()
    copied.fit_more(X, y, epochs=2)
    assert calls == [3, 4]
    model.fit_more(X, y, epochs=2)
    assert same_weights(copied, model)
    assert copied.history["lr"] == pytest.approx([0.1, 0.05, 0.1 / 3, 0.025])

    pickled = pickle.loads(pickle.dumps(mlpcore.fit(X, y, hidden=(5,), epochs=1,
                                                    callback=keep_going)))
    assert pickled.callback is keep_going


def test_get_state_and_from_state_round_trip(rng):
    model, X, y = fitted(rng, TRAINING["adam"])
    meta, arrays = model.get_state()
    json.dumps(meta)  # plain JSON values only: raises otherwise
    assert set(arrays) == {"theta", "classes", "optimizer_state_0", "optimizer_state_1"}
    assert arrays["theta"] is model._theta  # the model's own arrays, not copies
    rebuilt = mlpcore.MLP.from_state(meta, arrays)
    assert_same_state(rebuilt, model)
    meta2, arrays2 = rebuilt.get_state()
    assert json.dumps(meta2, sort_keys=True) == json.dumps(meta, sort_keys=True)
    assert set(arrays2) == set(arrays)
    for key in arrays:
        assert np.array_equal(arrays2[key], arrays[key])
    untrained = mlpcore.MLP((4,), optimizer="nesterov", seed=1)
    meta, arrays = untrained.get_state()
    assert arrays == {} and set(meta) == {"config"}
    again = mlpcore.MLP.from_state(meta, arrays)
    assert again.get_config() == untrained.get_config() and again._network is None


# -- the format ---------------------------------------------------------------------------------

def test_file_is_an_uncompressed_npz_with_the_documented_members(saved):
    path, raw, model = saved
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
    assert {i.filename for i in infos} == {"meta.npy", "theta.npy", "classes.npy",
                                           "optimizer_state_0.npy", "optimizer_state_1.npy"}
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
    meta = meta_of(raw)
    assert meta["format"] == "mlpcore-model" and meta["version"] == _persistence.FORMAT_VERSION
    assert set(meta) == {"format", "version", "config", "sizes", "output", "loss", "dtype",
                         "targets", "history", "optimizer_t", "schedule_state", "samples_seen",
                         "rng_state", "feature_names"}
    theta = np.load(io.BytesIO(members_of(raw)["theta.npy"]))
    sizes = meta["sizes"]
    assert len(theta) == sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    assert np.array_equal(theta, np.concatenate(
        [np.concatenate([W.ravel(), b]) for W, b in zip(model.weights, model.biases)]))
    for name in ("meta", "theta", "classes", "optimizer_state_0", "sizes", "version"):
        assert name in _persistence.__doc__


def test_a_version_1_file_still_loads_and_predicts_the_same():
    # tests/data/model_v1.npz was written by mlpcore 0.1.0 (format version 1): a tanh 4-5-3-3
    # classifier over labels 'ant', 'bee', 'cat', trained with Adam and a validation split.
    # It must never be regenerated: it is what keeps old files loadable.
    model = mlpcore.load(DATA / "model_v1.npz")
    expected = np.load(DATA / "model_v1_expected.npz")
    assert model.sizes == (4, 5, 3, 3) and model.classes.tolist() == ["ant", "bee", "cat"]
    assert model.optimizer.rule == "adam" and len(model.optimizer.state) == 2
    assert set(model.history) == {"loss", "lr", "val_loss", "val_score"}
    np.testing.assert_array_equal(model.predict_proba(expected["X"]), expected["proba"])
    assert model.predict(expected["X"]).tolist() == expected["labels"].tolist()
    more_X, more_y = np.tile(expected["X"], (4, 1)), np.tile(expected["labels"], 4)
    model.fit_more(more_X, more_y, epochs=1)  # and it can keep training
    assert len(model.history["loss"]) == 4


@pytest.mark.parametrize("version,match", [
    (2, r"format version 2 is newer than this mlpcore reads \(1\); upgrade mlpcore"),
    (10**6, r"newer than this mlpcore reads"),
    (0, r"bad format version 0"),
    (-1, r"bad format version -1"),
    ("1", r"bad format version '1'"),
    (True, r"bad format version True"),
    (None, r"bad format version None"),
])
def test_versions_it_cannot_read_say_why(tmp_path, saved, version, match):
    meta = meta_of(saved[1])
    meta["version"] = version
    with pytest.raises(ValueError, match=match):
        load_bytes(tmp_path, with_meta(saved[1], meta))


def test_loading_never_unpickles(tmp_path, saved, monkeypatch):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    members = members_of(saved[1])
    members["theta.npy"] = npy(np.array([Payload()], dtype=object))
    with pytest.raises(ValueError, match="holds Python objects"):
        load_bytes(tmp_path, archive(members))
    assert not marker.exists()

    def forbidden(*args, **kwargs):
        raise AssertionError("load must not unpickle")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert load_bytes(tmp_path, saved[1]).sizes == saved[2].sizes


def test_foreign_and_empty_files_are_refused(tmp_path):
    cases = {
        "empty": b"",
        "text": b"hello",
        "npy": npy(np.arange(4.0)),
        "zip without arrays": archive({"readme.txt": b"hi"}),
        "other npz": archive({"a.npy": npy(np.arange(3))}),
        "meta not json": archive({"meta.npy": npy(np.frombuffer(b"{no", np.uint8)),
                                  "theta.npy": npy(np.zeros(3))}),
        "meta a list": archive({"meta.npy": npy(np.frombuffer(b"[1]", np.uint8)),
                                "theta.npy": npy(np.zeros(3))}),
        "deeply nested meta": archive({
            "meta.npy": npy(np.frombuffer(b"[" * 100_000 + b"]" * 100_000, np.uint8)),
            "theta.npy": npy(np.zeros(3))}),
    }
    for name, raw in cases.items():
        with pytest.raises(ValueError, match="not a readable mlpcore model file"):
            load_bytes(tmp_path, raw, name=f"{name}.npz")


def test_compressed_archives_are_refused(tmp_path, saved):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members_of(saved[1]).items():
            z.writestr(name, data)
    with pytest.raises(ValueError, match="compressed"):
        load_bytes(tmp_path, buffer.getvalue())


# -- fuzzing ------------------------------------------------------------------------------------

def test_truncated_files_are_refused(tmp_path, saved):
    raw = saved[1]
    cuts = sorted(set(np.linspace(0, len(raw) - 1, 60).astype(int)) | set(range(len(raw) - 40,
                                                                                 len(raw))))
    for n in cuts:
        with pytest.raises(ValueError, match="not a readable mlpcore model file"):
            load_bytes(tmp_path, raw[:n])


def test_flipped_bytes_give_a_clean_error_or_a_working_model(tmp_path, saved):
    raw = saved[1]
    rng = np.random.default_rng(0)
    outcomes = []
    for _ in range(300):
        mutated = bytearray(raw)
        for pos in rng.integers(0, len(raw), rng.integers(1, 4)):
            mutated[pos] ^= 1 << int(rng.integers(0, 8))
        outcomes.append(load_outcome(tmp_path, bytes(mutated)))
    assert "refused" in outcomes  # the zip CRCs catch changed array data


def test_swapped_members_give_a_clean_error_or_a_working_model(tmp_path, saved):
    members = members_of(saved[1])
    names = list(members)
    for a in names:
        for b in names:
            if a < b:
                swapped = dict(members)
                swapped[a], swapped[b] = members[b], members[a]
                load_outcome(tmp_path, archive(swapped))
        dropped = {k: v for k, v in members.items() if k != a}
        load_outcome(tmp_path, archive(dropped))
    # a member replaced by another dtype, shape or layout
    theta = np.load(io.BytesIO(members["theta.npy"]))
    for bad in (theta.astype(np.float32), theta.astype(">f8"), theta[:-1], theta.reshape(1, -1),
                np.where(np.arange(len(theta)) == 2, np.nan, theta), theta.astype(str)):
        swapped = dict(members, **{"theta.npy": npy(bad)})
        assert load_outcome(tmp_path, archive(swapped)) == "refused"


def _meta_edits(meta):
    """(name, edited meta) pairs: wrong types, negative and absurd sizes, missing keys."""
    def edit(path, value):
        m = json.loads(json.dumps(meta))
        target = m
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return m

    sizes = meta["sizes"]
    yield "sizes terabytes", edit(["sizes"], [10**12, 10**6, sizes[-1]])
    yield "sizes 2**62 (would wrap)", edit(["sizes"], [2**62, 4, sizes[-1]])
    yield "sizes 2**64", edit(["sizes"], [2**64, 2**64, sizes[-1]])
    yield "sizes negative", edit(["sizes"], [-sizes[0]] + sizes[1:])
    yield "sizes zero", edit(["sizes"], [0] + sizes[1:])
    yield "sizes float", edit(["sizes"], [sizes[0] + 0.5] + sizes[1:])
    yield "sizes bool", edit(["sizes"], [True] + sizes[1:])
    yield "sizes string", edit(["sizes"], "4,5,3")
    yield "sizes one layer", edit(["sizes"], sizes[:1])
    yield "hidden terabytes", edit(["config", "hidden"], [10**12])
    m = edit(["config", "hidden"], [10**12])
    m["sizes"] = [sizes[0], 10**12, sizes[-1]]
    yield "hidden and sizes terabytes", m
    yield "hidden negative", edit(["config", "hidden"], [-5])
    yield "hidden string", edit(["config", "hidden"], "5")
    for key in ("config", "sizes", "output", "loss", "dtype", "targets", "history",
                "optimizer_t", "schedule_state", "samples_seen", "rng_state"):
        yield f"missing {key}", edit([key], KeyError)
        yield f"{key} null", edit([key], None)
        yield f"{key} a list", edit([key], [1, 2])
    for key in ("task", "n_outputs", "one_hot", "single_sigmoid", "ndim"):
        yield f"missing targets.{key}", edit(["targets", key], KeyError)
        yield f"targets.{key} string", edit(["targets", key], "x")
    yield "n_outputs huge", edit(["targets", "n_outputs"], 10**15)
    yield "task unknown", edit(["targets", "task"], "ranking")
    yield "optimizer_t negative", edit(["optimizer_t"], -1)
    yield "optimizer_t huge", edit(["optimizer_t"], 10**30)
    yield "optimizer_t float", edit(["optimizer_t"], 1.5)
    yield "samples_seen negative", edit(["samples_seen"], -10)
    yield "schedule rate NaN", edit(["schedule_state", "current"], float("nan"))
    yield "schedule rate negative", edit(["schedule_state", "current"], -1.0)
    yield "rng state out of range", edit(["rng_state", "state", "state"], -1)
    yield "rng state huge", edit(["rng_state", "state", "inc"], 2**300)
    yield "dtype object", edit(["dtype"], "object")
    yield "dtype huge subarray", edit(["dtype"], "(1000000000000,)f8")
    yield "output unknown", edit(["output"], "softplus")
    yield "loss unknown", edit(["loss"], "hinge")
    yield "optimizer unknown", edit(["config", "optimizer", "name"], "rmsprop")
    yield "optimizer config list", edit(["config", "optimizer", "config"], [1])
    yield "optimizer lr negative", edit(["config", "optimizer", "config", "learning_rate"], -1)
    yield "unknown setting", edit(["config", "evil"], "os.system('echo hi')")
    yield "epochs zero", edit(["config", "epochs"], 0)
    yield "history values", edit(["history", "loss"], ["x"])
    yield "history nested", edit(["history", "loss"], [[1.0]])


def test_edited_metadata_gives_a_clean_error_and_allocates_nothing_large(tmp_path, saved):
    raw = saved[1]
    tracemalloc.start()
    try:
        for name, meta in _meta_edits(meta_of(raw)):
            tracemalloc.reset_peak()
            outcome = load_outcome(tmp_path, with_meta(raw, meta))
            peak = tracemalloc.get_traced_memory()[1]
            assert peak < 20 * 2**20, f"{name}: {peak} bytes allocated"
            if name.startswith(("sizes", "hidden", "missing", "n_outputs", "optimizer_t",
                                "samples_seen", "schedule", "rng", "dtype")):
                assert outcome == "refused", name
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("shape", [(10**12,), (10**6, 10**6), (2**40, 2**40), (-1,)])
def test_members_claiming_huge_arrays_are_refused_before_allocating(tmp_path, saved, shape):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    for member in ("theta.npy", "optimizer_state_0.npy", "extra.npy"):
        members = dict(members_of(saved[1]), **{member: header.getvalue() + b"\0" * 64})
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match=r"claims shape|negative dimension"):
                load_bytes(tmp_path, archive(members))
            assert tracemalloc.get_traced_memory()[1] < 20 * 2**20
        finally:
            tracemalloc.stop()


def test_inconsistent_classes_are_refused(tmp_path, saved):
    members = members_of(saved[1])
    for classes in (np.array(["z", "y", "x"]), np.array(["x", "x", "z"]), np.array(["x", "y"]),
                    np.zeros((3, 1)), np.array([1.5, 2.5, 3.5])):
        edited = dict(members, **{"classes.npy": npy(classes)})
        with pytest.raises(ValueError, match="classes"):
            load_bytes(tmp_path, archive(edited))


def _model_file():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    model = mlpcore.fit(X, rng.integers(0, 3, 20), hidden=(4,), epochs=1, seed=0,
                        optimizer="momentum")
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as d:
        model.save(f"{d}/m.npz")
        with open(f"{d}/m.npz", "rb") as f:
            buffer.write(f.read())
    return buffer.getvalue()


MODEL_FILE = _model_file()


@given(st.lists(st.tuples(st.integers(0, len(MODEL_FILE) - 1), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.one_of(st.none(), st.integers(0, len(MODEL_FILE))))
def test_load_of_mutated_files_is_a_model_or_a_clean_error(edits, cut):
    raw = bytearray(MODEL_FILE)
    for pos, value in edits:
        raw[pos] = value
    raw = bytes(raw[:cut] if cut is not None else raw)
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/m.npz", "wb") as f:
            f.write(raw)
        try:
            model = mlpcore.load(f"{d}/m.npz")
        except ValueError as exc:
            assert "not a readable mlpcore model file" in str(exc)
            return
    assert np.isfinite(model.forward(np.zeros((2, model.n_features)))).all()
    with zipfile.ZipFile(io.BytesIO(raw)) as z:  # only bytes outside the arrays changed
        assert z.testzip() is None


# -- writing ------------------------------------------------------------------------------------

def _only_the_model_file(directory):
    return sorted(os.listdir(directory)) == ["model.npz"]


@pytest.mark.parametrize("failure", ["savez", "fsync", "replace", "interrupt"])
def test_a_failed_save_leaves_the_old_file_intact(tmp_path, saved, monkeypatch, failure):
    path = tmp_path / "model.npz"
    path.write_bytes(saved[1])
    other = mlpcore.fit(X, Y, hidden=(2,), epochs=1, seed=5)

    def savez_halfway(f, **arrays):
        f.write(b"PK\x03\x04 partial archive")
        raise OSError("disk full")

    def interrupted(f, **arrays):
        f.write(b"PK")
        raise KeyboardInterrupt

    def fail(*args, **kwargs):
        raise OSError("simulated failure")

    if failure == "savez":
        monkeypatch.setattr(np, "savez", savez_halfway)
    elif failure == "interrupt":
        monkeypatch.setattr(np, "savez", interrupted)
    elif failure == "fsync":
        monkeypatch.setattr(os, "fsync", fail)
    else:
        monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KeyboardInterrupt if failure == "interrupt" else OSError):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == saved[1]
    assert _only_the_model_file(tmp_path)  # no temporary file left behind
    assert mlpcore.load(path).sizes == saved[2].sizes


def test_save_replaces_the_file_whole_and_keeps_normal_permissions(tmp_path, saved):
    path = tmp_path / "model.npz"
    saved[2].save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    os.chmod(path, 0o600)
    other = mlpcore.fit(X, Y, hidden=(2,), epochs=1, seed=5)
    other.save(path)  # overwrite: the new model, the old file's permissions
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert mlpcore.load(path).sizes == other.sizes
    assert _only_the_model_file(tmp_path)


def test_save_to_a_missing_directory_fails_cleanly(tmp_path, saved):
    with pytest.raises(FileNotFoundError):
        saved[2].save(tmp_path / "missing" / "model.npz")
    assert os.listdir(tmp_path) == []
