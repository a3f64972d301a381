"""mlpcore.dask: training over a Dask cluster gives the single-machine result.

The module starts one ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``
shared by its tests and closes it at the end. The exact ways (full-batch gradient descent
with every update rule, L-BFGS) are compared with ``mlpcore.fit`` on the gathered data, and
with themselves on another worker count and another partitioning, in the way PyTorch's DDP
tests compare with a full-batch base model.
"""

import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
import dask.array as da  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import pandas as pd  # noqa: E402

import mlpcore  # noqa: E402
import mlpcore.dask  # noqa: E402

RULES = ["sgd", "momentum", "nesterov", "adam"]


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    c = distributed.Client(cluster, timeout=60)
    try:
        yield c
    finally:
        c.close(timeout=30)
        cluster.close(timeout=30)


def data(n=500, d=6, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (classes > 2) * (X[:, 2] > 0.8)
    return X, y


def dask_xy(X, y, rows, cols=None):
    return (da.from_array(X, chunks=(rows, cols or X.shape[1])), da.from_array(y, chunks=rows))


# -- exact ways -------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", RULES)
def test_full_batch_gd_equals_single_machine_fit_float64(client, rule):
    X, y = data()
    sw = np.random.default_rng(1).uniform(0.5, 2, len(y))
    kw = dict(hidden=(8,), optimizer=rule, batch_size=None, epochs=20, seed=2, alpha=0.01,
              learning_rate=0.05 if rule == "adam" else 0.5, sample_weight=sw)
    ref = mlpcore.fit(X, y, **kw)
    Xd, yd = dask_xy(X, y, 130, 4)  # 4 row partitions; column chunks merged
    kw["sample_weight"] = da.from_array(sw, chunks=130)
    model = mlpcore.dask.fit(Xd, yd, client=client, **kw)
    assert isinstance(model, mlpcore.MLP)
    np.testing.assert_allclose(model._theta, ref._theta, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.history["loss"], ref.history["loss"], rtol=1e-10)
    for a, b in zip(model.optimizer.state, ref.optimizer.state):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    assert model.optimizer.t == ref.optimizer.t == 20
    assert model.samples_seen == ref.samples_seen


def test_lbfgs_equals_single_machine_fit_float64(client):
    X, y = data(seed=3)
    kw = dict(hidden=(6,), optimizer="lbfgs", epochs=40, seed=4, alpha=0.05)
    ref = mlpcore.fit(X, y, **kw)
    model = mlpcore.dask.fit(*dask_xy(X, y, 97), client=client, **kw)
    assert len(model.history["loss"]) == len(ref.history["loss"])
    np.testing.assert_allclose(model._theta, ref._theta, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.history["loss"], ref.history["loss"], rtol=1e-10)
    assert model.training_result.stop_reason == ref.training_result.stop_reason


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_float32_within_float32_rounding(client, optimizer):
    X, y = data(seed=5)
    kw = dict(hidden=(8,), optimizer=optimizer, epochs=10, seed=6, dtype="float32")
    if optimizer != "lbfgs":
        kw.update(batch_size=None, learning_rate=0.01)
    ref = mlpcore.fit(X, y, **kw)
    model = mlpcore.dask.fit(*dask_xy(X.astype(np.float32), y, 120), client=client, **kw)
    assert model.dtype == np.float32
    np.testing.assert_allclose(model._theta, ref._theta, rtol=0, atol=5e-5)
    np.testing.assert_allclose(model.history["loss"], ref.history["loss"], rtol=1e-5)


def test_same_result_with_one_and_two_workers_and_other_partitionings(client):
    X, y = data(seed=7)
    kw = dict(hidden=(5,), optimizer="lbfgs", epochs=15, seed=8)
    two = mlpcore.dask.fit(*dask_xy(X, y, 100), client=client, **kw)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as one_client:
        one = mlpcore.dask.fit(*dask_xy(X, y, 100), client=one_client, **kw)
    # Same partitions: the same sums in the same order, whichever worker computed them.
    np.testing.assert_array_equal(one._theta, two._theta)
    for rows in (500, 37, 251, (100, 0, 400)):  # an empty partition too
        other = mlpcore.dask.fit(*dask_xy(X, y, rows), client=client, **kw)
        np.testing.assert_allclose(other._theta, two._theta, rtol=0, atol=1e-10)


def test_divergence_is_handled_as_on_one_machine(client):
    rng = np.random.default_rng(31)
    X = rng.normal(size=(300, 3)) * 10
    y = X @ [1.0, -2.0, 3.0]
    kw = dict(hidden=(4,), activation="relu", batch_size=None, learning_rate=10.0, epochs=30,
              seed=32)
    with pytest.warns(mlpcore.TrainingDivergedWarning) as ref_warnings:
        ref = mlpcore.fit(X, y, **kw)
    with pytest.warns(mlpcore.TrainingDivergedWarning) as warnings:
        model = mlpcore.dask.fit(*dask_xy(X, y, 80), client=client, **kw)
    assert str(warnings[0].message) == str(ref_warnings[0].message)
    assert model.training_result.stop_reason == "diverged"
    assert len(model.history["loss"]) == len(ref.history["loss"]) < 30
    np.testing.assert_allclose(model._theta, ref._theta, rtol=1e-10)
    assert np.isfinite(model._theta).all()


@pytest.mark.parametrize("optimizer", ["momentum", "lbfgs"])
def test_ctrl_c_keeps_the_last_completed_iteration(client, optimizer):
    X, y = data(n=3000, seed=33)
    kw = dict(hidden=(16,), optimizer=optimizer, seed=34)
    if optimizer != "lbfgs":
        kw.update(batch_size=None)

    def interrupt_soon(epoch, model, logs):
        if epoch == 3:  # SIGINT a moment later, most likely inside the next iteration
            threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT)).start()

    with pytest.warns(mlpcore.TrainingInterruptedWarning):
        model = mlpcore.dask.fit(*dask_xy(X, y, 750), client=client, epochs=40,
                                 callback=interrupt_soon, **kw)
    done = len(model.history["loss"])
    assert 3 <= done < 40
    assert model.training_result.stop_reason == "interrupted"
    # The parameters are those of the iterations the history records.
    ref = mlpcore.fit(X, y, epochs=done, **kw)
    np.testing.assert_allclose(model._theta, ref._theta, rtol=0, atol=1e-10)
    assert model.optimizer.t == ref.optimizer.t == done
    # Nothing is left running on the cluster (a task already executing finishes first).
    deadline = time.monotonic() + 20
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(client.processing().values())


def test_verbose_reports_compute_communication_and_bytes(client, capsys):
    X, y = data(seed=35)
    mlpcore.dask.fit(*dask_xy(X, y, 125), client=client, hidden=(5,), batch_size=None,
                     epochs=2, verbose=True)
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out
    n_params = (6 + 1) * 5 + (5 + 1) * 3
    # theta once to the scheduler and once to each of the 2 workers, not once per partition
    assert f"{3 * n_params * 8 / 1e6:.4f} MB sent (the parameters" in out
    assert "communication and scheduling" in out


class RecordingClient:
    """The module's client, recording what each ``submit`` carries."""

    def __init__(self, client):
        self._client, self.submitted = client, []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def submit(self, fn, *args, **kwargs):
        self.submitted.append((getattr(fn, "__name__", repr(fn)), args))
        return self._client.submit(fn, *args, **kwargs)


@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
def test_theta_travels_once_per_round_not_once_per_partition(client, optimizer):
    X, y = data(seed=44)
    kw = dict(hidden=(5,), optimizer=optimizer, epochs=4, seed=45)
    if optimizer != "lbfgs":
        kw.update(batch_size=None, learning_rate=0.5)
    recording = RecordingClient(client)
    model = mlpcore.dask.fit(*dask_xy(X, y, 100), client=recording, **kw)  # 5 partitions
    n_params = model.n_params

    def carries_theta(args):
        return any(isinstance(a, np.ndarray) and a.shape == (n_params,) for a in args)

    rounds = [args for name, args in recording.submitted if carries_theta(args)]
    partition_tasks = [args for name, args in recording.submitted
                       if name in ("part_loss_gradient", "part_loss")]
    assert len(partition_tasks) == 5 * len(rounds) >= 5 * 4
    assert not any(carries_theta(args) for args in partition_tasks)
    assert all(isinstance(args[1], distributed.Future) for args in partition_tasks)
    ref = mlpcore.fit(X, y, **kw)
    np.testing.assert_allclose(model._theta, ref._theta, rtol=0, atol=1e-10)


def test_partitions_are_spread_evenly_over_the_workers(client, monkeypatch):
    # Dask often computes 3 of 4 partitions on one worker; every iteration would then wait
    # for it. Here all 4 start on one worker; 2 are copied to the other, contents unchanged.
    first, second = sorted(client.scheduler_info(n_workers=-1)["workers"])
    blocks = [np.full((10 + p, 3), float(p)) for p in range(4)]
    parts = client.scatter(blocks, workers=[first])
    # No default client: the client given is the only one used (a fit's may not be default).
    monkeypatch.setattr(distributed.client, "_get_global_client", lambda: None)
    copies = mlpcore.dask._balance(client, parts, [len(b) for b in blocks])
    monkeypatch.undo()
    assert copies == {second: [1, 0]}  # the smallest two (the largest stay where they are)
    who = client.who_has(parts)
    assert [sorted(who[f.key]) for f in parts] == [sorted([first, second])] * 2 + [[first]] * 2
    for block, got in zip(blocks, client.gather(parts)):
        np.testing.assert_array_equal(got, block)
    # Already even: nothing is copied.
    assert mlpcore.dask._balance(client, parts, [10, 11, 12, 13]) == {}
    even = client.scatter(blocks[:2], workers=[first]) + client.scatter(blocks[2:],
                                                                        workers=[second])
    assert mlpcore.dask._balance(client, even, [10, 11, 12, 13]) == {}


def test_scaling_class_weight_and_validation_data_as_on_one_machine(client):
    X, y = data(seed=9)
    X[:, 1] *= 100.0
    Xv, yv = data(n=120, seed=10)
    kw = dict(hidden=(6,), optimizer="momentum", batch_size=None, epochs=8, seed=11,
              scale="standard", class_weight="balanced")
    ref = mlpcore.fit(X, y, validation_data=(Xv, yv), **kw)
    model = mlpcore.dask.fit(*dask_xy(X, y, 140), client=client,
                             validation_data=dask_xy(Xv, yv, 60), **kw)
    np.testing.assert_allclose(model.scaling.shift, ref.scaling.shift, rtol=1e-12)
    np.testing.assert_allclose(model.scaling.scale, ref.scaling.scale, rtol=1e-12)
    np.testing.assert_allclose(model._theta, ref._theta, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.history["val_loss"], ref.history["val_loss"], rtol=1e-10)
    assert model.history["val_score"] == ref.history["val_score"]


def test_early_stopping_holds_out_rows_within_partitions(client):
    X, y = data(n=800, seed=12)
    model = mlpcore.dask.fit(*dask_xy(X, y, 200), client=client, hidden=(6,),
                             batch_size=None, optimizer="adam", learning_rate=0.05,
                             epochs=300, seed=13, early_stopping=True, n_iter_no_change=5,
                             tol=1e-3)
    assert len(model.history["val_loss"]) == len(model.history["loss"]) < 300
    assert model.training_result.stop_reason == "plateau"
    # 10 % of every partition's 200 rows held out: 720 training rows per epoch.
    assert model.samples_seen == 720 * len(model.history["loss"])


# -- the model returned, DataFrames, prediction -------------------------------------------
def test_dataframe_input_keeps_feature_names_and_predicts_block_by_block(client):
    X, y = data(seed=14)
    cols = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=cols).assign(label=np.array(["a", "b", "c"])[y])
    ddf = dd.from_pandas(frame, npartitions=3)
    kw = dict(hidden=(6,), optimizer="lbfgs", epochs=12, seed=15)
    model = mlpcore.dask.fit(ddf, "label", client=client, **kw)
    ref = mlpcore.fit(frame[cols], frame["label"], **kw)
    assert model.feature_names == cols
    assert model.classes.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(model._theta, ref._theta, rtol=0, atol=1e-10)
    # Series Y with the same partitions: the same model.
    same = mlpcore.dask.fit(ddf[cols], ddf["label"], client=client, **kw)
    np.testing.assert_array_equal(same._theta, model._theta)
    # Columns matched by name when predicting (reordered frame).
    features = ddf[cols[::-1]]
    labels = mlpcore.dask.predict(model, features)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), ref.predict(frame[cols]))
    with pytest.warns(mlpcore.FeatureNamesWarning, match="taken by position"):
        proba = mlpcore.dask.predict_proba(model, da.from_array(X, chunks=(100, 6)))
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.compute(), ref.predict_proba(frame[cols]), rtol=1e-12)
    acc = mlpcore.dask.score(model, ddf[cols], ddf["label"], client=client)
    assert acc == pytest.approx(ref.score(frame[cols], frame["label"]), abs=1e-12)


def test_regression_score_and_lazy_predict(client):
    rng = np.random.default_rng(16)
    X = rng.normal(size=(400, 4))
    Y = np.c_[X[:, 0] - 2 * X[:, 1], np.sin(X[:, 2])]
    model = mlpcore.dask.fit(da.from_array(X, chunks=(90, 4)), da.from_array(Y, chunks=(90, 2)),
                             client=client, hidden=(8,), activation="tanh", optimizer="lbfgs",
                             epochs=30, seed=17)
    assert model.targets.task == "regression"
    pred = mlpcore.dask.predict(model, da.from_array(X, chunks=(90, 4)))
    assert pred.shape == (400, 2)
    np.testing.assert_allclose(pred.compute(), model.predict(X), rtol=1e-12)
    r2 = mlpcore.dask.score(model, da.from_array(X, chunks=(90, 4)),
                            da.from_array(Y, chunks=(90, 2)), client=client)
    assert r2 == pytest.approx(model.score(X, Y), abs=1e-9)
    assert r2 > 0.5


def test_model_pickles_and_saves_as_an_ordinary_model(client, tmp_path):
    X, y = data(seed=18)
    model = mlpcore.dask.fit(*dask_xy(X, y, 150), client=client, hidden=(4,),
                             optimizer="lbfgs", epochs=5, seed=19)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.predict(X), model.predict(X))
    model.save(tmp_path / "m.npz")
    loaded = mlpcore.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.forward(X), model.forward(X))


def test_persist_false_reads_partitions_at_every_pass_with_the_same_result(client):
    X, y = data(seed=20)
    kw = dict(hidden=(5,), optimizer="sgd", batch_size=None, epochs=6, seed=21)
    kept = mlpcore.dask.fit(*dask_xy(X, y, 125), client=client, **kw)
    reread = mlpcore.dask.fit(*dask_xy(X, y, 125), client=client, persist=False, **kw)
    np.testing.assert_array_equal(kept._theta, reread._theta)


def test_shuffle_moves_rows_across_partitions_and_full_batch_does_not_care(client):
    X, y = data(seed=36)
    y = np.sort(y)  # sorted by label: every partition one class without a shuffle
    kw = dict(hidden=(5,), optimizer="nesterov", batch_size=None, epochs=5, seed=37)
    ref = mlpcore.fit(X, y, **kw)
    model = mlpcore.dask.fit(*dask_xy(X, y, 125), client=client, shuffle=True, **kw)
    np.testing.assert_allclose(model._theta, ref._theta, rtol=0, atol=1e-10)
    Xs, ys, _ = mlpcore.dask._shuffle(*dask_xy(X, y, 125), None, 37)
    first = ys.blocks[0].compute()
    assert len(np.unique(first)) > 1 and len(first) == 125
    np.testing.assert_array_equal(np.sort(ys.compute()), y)
    frame = dd.from_pandas(pd.DataFrame(X, columns=list("abcdef")).assign(t=y), npartitions=4)
    framed = mlpcore.dask.fit(frame, "t", client=client, shuffle=True, **kw)
    np.testing.assert_allclose(framed._theta, ref._theta, rtol=0, atol=1e-10)
    shuffled, _, _ = mlpcore.dask._shuffle(frame, "t", None, 37)
    parts = [p["t"].nunique() for p in shuffled.to_delayed()]
    assert max(dask.compute(*parts)) > 1


# -- stochastic ways ------------------------------------------------------------------------
def test_model_averaging_with_partitions_read_at_every_pass(client):
    X, y = data(seed=38)
    kw = dict(hidden=(5,), optimizer="adam", batch_size=16, epochs=4, seed=39)
    for every in (1, 2):
        kept = mlpcore.dask.fit(*dask_xy(X, y, 125), client=client, sync_every=every, **kw)
        reread = mlpcore.dask.fit(*dask_xy(X, y, 125), client=client, sync_every=every,
                                  persist=False, **kw)
        np.testing.assert_array_equal(kept._theta, reread._theta)
        assert kept.history["loss"] == reread.history["loss"]


@pytest.mark.parametrize("rule,sync_every", [("sgd", 1), ("adam", 1), ("momentum", 2)])
def test_one_partition_model_averaging_is_exactly_single_machine_fit(client, rule, sync_every):
    X, y = data(seed=22)
    kw = dict(hidden=(6,), optimizer=rule, batch_size=32, epochs=5, seed=23)
    ref = mlpcore.fit(X, y, **kw)
    model = mlpcore.dask.fit(*dask_xy(X, y, len(X)), client=client, sync_every=sync_every,
                             **kw)
    np.testing.assert_array_equal(model._theta, ref._theta)
    assert model.history["loss"] == ref.history["loss"]
    assert model.optimizer.t == ref.optimizer.t
    for a, b in zip(model.optimizer.state, ref.optimizer.state):
        np.testing.assert_array_equal(a, b)
    # The random stream went on as on one machine: training further agrees too.
    assert model._rng.bit_generator.state == ref._rng.bit_generator.state


@pytest.mark.parametrize("sync_every", [1, 0.5, 3])
def test_model_averaging_over_partitions_learns_like_one_machine(client, sync_every):
    X, y = data(n=1200, seed=24, classes=2)
    Xt, yt = data(n=600, seed=25, classes=2)
    kw = dict(hidden=(10,), optimizer="adam", learning_rate=0.01, batch_size=32, epochs=20,
              seed=26)
    ref = mlpcore.fit(X, y, **kw)
    model = mlpcore.dask.fit(*dask_xy(X, y, 300), client=client, sync_every=sync_every, **kw)
    assert len(model.history["loss"]) == 20
    assert model.history["loss"][-1] < 0.5 * model.history["loss"][0]
    # Held-out accuracy within 1.5 points of one machine after the same epochs.
    assert abs(model.score(Xt, yt) - ref.score(Xt, yt)) <= 0.015
    assert not np.array_equal(model._theta, ref._theta)  # it is averaging, not one chain


def test_sync_every_refused_when_not_a_whole_number_of_epochs_or_an_inverse(client):
    X, y = data()
    with pytest.raises(ValueError, match="sync_every"):
        mlpcore.dask.fit(*dask_xy(X, y, 250), client=client, batch_size=32, epochs=1,
                         sync_every=1.5)
    with pytest.raises(ValueError, match="sync_every"):
        mlpcore.dask.fit(*dask_xy(X, y, 250), client=client, batch_size=32, epochs=1,
                         sync_every=0)


# -- bad input ---------------------------------------------------------------------------------
def test_bad_input_gets_a_clear_error(client):
    X, y = data()
    Xd = da.from_array(X, chunks=(100, 6))
    with pytest.raises(ValueError, match=r"Y's row partitions .* do not line up"):
        mlpcore.dask.fit(Xd, da.from_array(y, chunks=120), client=client, epochs=1)
    with pytest.raises(ValueError, match="sample_weight's row partitions"):
        mlpcore.dask.fit(Xd, da.from_array(y, chunks=100), client=client, epochs=1,
                         sample_weight=da.ones(len(y), chunks=50))
    with pytest.raises(ValueError, match="unknown chunk sizes.*compute_chunk_sizes"):
        mlpcore.dask.fit(Xd[Xd[:, 0] > 0], y, client=client, epochs=1)
    frame = dd.from_pandas(pd.DataFrame(X, columns=list("abcdef")), npartitions=2)
    with pytest.raises(ValueError, match="target column 'label' is not in X"):
        mlpcore.dask.fit(frame, "label", client=client, epochs=1)
    with pytest.raises(TypeError, match="X must be a dask array or a dask DataFrame"):
        mlpcore.dask.fit(X, y, client=client, epochs=1)
    with pytest.raises(ValueError, match="Y has 400 rows, X 500"):
        mlpcore.dask.fit(Xd, y[:400], client=client, epochs=1)
    with pytest.raises(ValueError, match="sample_weight must have a positive sum"):
        mlpcore.dask.fit(Xd, y, client=client, epochs=1, batch_size=None,
                         sample_weight=np.zeros(len(y)))
    # A Series Y cut into partitions other than X's (as two selections of one Parquet
    # frame can be): the error says to pass the label column's name.
    ys = pd.Series(y)
    uneven = dd.concat([dd.from_pandas(ys[:100], npartitions=1),
                        dd.from_pandas(ys[100:], npartitions=1)])
    with pytest.raises(ValueError,
                       match=r"250 rows but its Y partition (100|400).*fit\(df, 'label'\)"):
        mlpcore.dask.fit(frame, uneven, client=client, epochs=1)


# -- files ---------------------------------------------------------------------------------------
def test_parquet_and_zarr_inputs(client, tmp_path):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("pyarrow")
    X, y = data(seed=27)
    cols = [f"x{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=cols).assign(label=y)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_parquet(tmp_path / f"part{i}.parquet")
    kw = dict(hidden=(5,), optimizer="lbfgs", epochs=10, seed=28)
    ref = mlpcore.fit(frame[cols], frame["label"], **kw)
    ddf = dd.read_parquet(str(tmp_path / "*.parquet"))
    from_parquet = mlpcore.dask.fit(ddf, "label", client=client, **kw)
    np.testing.assert_allclose(from_parquet._theta, ref._theta, rtol=0, atol=1e-10)
    assert from_parquet.feature_names == cols

    store = str(tmp_path / "x.zarr")
    da.from_array(X, chunks=(128, 6)).to_zarr(store)
    Xz = da.from_zarr(store)
    assert Xz.numblocks[0] == 4
    from_zarr = mlpcore.dask.fit(Xz, y, client=client, **kw)
    ref_plain = mlpcore.fit(X, y, **kw)
    np.testing.assert_allclose(from_zarr._theta, ref_plain._theta, rtol=0, atol=1e-10)
    assert zarr is not None


# -- faults -----------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_worker_killed_mid_fit_does_not_stop_training_and_changes_nothing(client, optimizer):
    X, y = data(n=2000, seed=29)
    kw = dict(hidden=(8,), optimizer=optimizer, epochs=12, seed=30, tol=0.0)
    if optimizer != "lbfgs":
        kw.update(learning_rate=0.02, batch_size=None)
    clean = mlpcore.dask.fit(*dask_xy(X, y, 250), client=client, **kw)
    killed = []

    def kill_a_worker(epoch, model, logs):
        if epoch == 4 and not killed:
            pids = client.run(os.getpid)
            victim = sorted(pids.values())[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            time.sleep(0.5)  # let the next iteration find the worker gone

    faulty = mlpcore.dask.fit(*dask_xy(X, y, 250), client=client, callback=kill_a_worker, **kw)
    assert killed
    assert len(faulty.history["loss"]) == 12
    np.testing.assert_array_equal(faulty._theta, clean._theta)
    assert faulty.history["loss"] == clean.history["loss"]
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


def test_weighted_model_averaging_on_one_partition_is_the_single_machine_rule(client):
    # mlpcore's weight rule on the cluster: the weights scaled to mean 1 over the training
    # set (here 1e6:1 weights at batch size 1, where the old rule cancelled them).
    X, y = data(n=120, seed=21)
    sw = np.where(np.arange(len(y)) % 4 == 0, 1e6, 1.0)
    kw = dict(hidden=(5,), batch_size=1, epochs=2, seed=22, learning_rate=0.01, alpha=0.01,
              sample_weight=sw)
    ref = mlpcore.fit(X, y, **kw)
    kw["sample_weight"] = da.from_array(sw, chunks=len(y))
    model = mlpcore.dask.fit(*dask_xy(X, y, len(y)), client=client, **kw)
    np.testing.assert_allclose(model._theta, ref._theta, rtol=1e-9, atol=1e-11)
    plain = mlpcore.fit(X, y, **{**kw, "sample_weight": None})
    assert np.abs(ref._theta - plain._theta).max() > 1e-3


# -- the command line: Parquet and Zarr DATA ------------------------------------------------
def _stores(tmp_path, X, y, n_parts=3, labels=None):
    """A folder of Parquet files (features x0.., column 'label': ``labels``, default y) and
    two Zarr arrays (X, y)."""
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("pyarrow")
    cols = [f"x{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=cols).assign(label=y if labels is None else labels)
    (tmp_path / "pq").mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(frame)), n_parts)):
        frame.iloc[part].to_parquet(tmp_path / "pq" / f"part{i}.parquet")
    zarr.create_array(str(tmp_path / "X.zarr"), data=X, chunks=(128, X.shape[1]))
    zarr.create_array(str(tmp_path / "y.zarr"), data=y, chunks=(128,))
    return tmp_path / "pq", tmp_path / "X.zarr", tmp_path / "y.zarr", cols


def _same_model(a, b, atol=1e-10):
    for wa, wb in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_allclose(wb, wa, rtol=0, atol=atol)


def test_cli_trains_parquet_and_zarr_on_the_cluster_as_in_memory(client, cli, tmp_path):
    X, y = data(n=450, seed=40)
    labels = np.array(["a", "b", "c"])[y]
    pq, xz, yz, cols = _stores(tmp_path, X, y, labels=labels)  # Zarr's labels: 0, 1, 2
    common = ["--hidden", "5", "--optimizer", "lbfgs", "--epochs", "15", "--seed", "3",
              "--validation-split", "none", "-q"]
    cluster = ["--scheduler", client.scheduler.address]
    runs = {}
    for name, data_args in (("parquet", [pq, "--target", "label"]),
                            ("zarr", [xz, "--labels", yz])):
        for where, extra in (("memory", []), ("cluster", cluster)):
            out = tmp_path / f"{name}-{where}.npz"
            proc = cli("train", *data_args, *common, *extra, "-o", out)
            assert proc.returncode == 0, proc.stderr
            runs[name, where] = (mlpcore.load(out), proc.stdout)
    memory, cluster_model = runs["parquet", "memory"][0], runs["parquet", "cluster"][0]
    assert "(Parquet), 450 rows, 6 features" in runs["parquet", "memory"][1]
    assert "read on the cluster: 3 partitions, 2 workers" in runs["parquet", "cluster"][1]
    assert "read on the cluster: 4 partitions" in runs["zarr", "cluster"][1]
    # The cluster's model is the one-process model: same scaling folded, same features.
    _same_model(memory, cluster_model)
    assert memory.feature_names == cluster_model.feature_names == cols
    assert memory.classes.tolist() == cluster_model.classes.tolist() == ["a", "b", "c"]
    assert cluster_model.scaling is None  # folded into the first layer
    _same_model(runs["zarr", "memory"][0], runs["zarr", "cluster"][0])
    assert runs["zarr", "cluster"][0].classes.tolist() == [0, 1, 2]
    # Both trained the same network on the same rows: Parquet's and Zarr's agree too.
    _same_model(memory, runs["zarr", "cluster"][0])
    Xs = (X - X.mean(0)) / X.std(0)
    ref = mlpcore.fit(Xs, labels, hidden=(5,), optimizer="lbfgs", epochs=15, seed=3)
    np.testing.assert_allclose(memory.predict_proba(pd.DataFrame(X, columns=cols)),
                               ref.predict_proba(Xs), rtol=0, atol=1e-9)


def test_cli_on_the_cluster_holds_out_rows_and_standardises_regression_targets(client, cli,
                                                                               tmp_path):
    rng = np.random.default_rng(41)
    X = rng.normal(size=(600, 3)) * [1.0, 10.0, 100.0]
    y = X @ [1.0, -0.2, 0.03] * 50 + 1000.0
    pytest.importorskip("pyarrow")
    one_file = tmp_path / "houses.parquet"  # one file, one partition: re-cut for 2 workers
    pd.DataFrame(X, columns=["x0", "x1", "x2"]).assign(label=y).to_parquet(one_file)
    proc = cli("train", one_file, "--target", "label", "--hidden", "8", "--activation", "tanh",
               "--optimizer", "lbfgs", "--epochs", "60", "--seed", "4", "--validation-split",
               "0.2", "--scheduler", client.scheduler.address, "-q", "-o", tmp_path / "r.npz")
    assert proc.returncode == 0, proc.stderr
    assert "read on the cluster: 4 partitions, 2 workers" in proc.stdout
    assert "held out (at random within the partitions, not stratified" in proc.stdout
    assert "targets: standardised for training" in proc.stdout
    held = int(proc.stdout.split("validation: ")[1].split(" rows held out")[0])
    assert 60 < held < 180  # about 20 % of 600
    model = mlpcore.load(tmp_path / "r.npz")
    assert model.scaling is None and model.feature_names == ["x0", "x1", "x2"]
    # Raw features in, raw targets out: both scalings are folded into the saved weights.
    assert model.score(pd.DataFrame(X, columns=model.feature_names), y) > 0.99
    r2 = float(proc.stdout.split("validation R^2 ")[1].split()[0])
    assert r2 > 0.99


@pytest.mark.parametrize("where", ["memory", "cluster"])
def test_cli_parquet_and_zarr_errors_name_the_argument(client, cli, tmp_path, where):
    X, y = data(n=200, seed=42)
    pq, xz, yz, _ = _stores(tmp_path, X, y)
    import zarr

    zarr.create_array(str(tmp_path / "short.zarr"), data=y[:150], chunks=(50,))
    extra = ["--scheduler", client.scheduler.address] if where == "cluster" else []

    def error(*args):
        proc = cli("train", *args, "--epochs", "1", *extra)
        assert "model saved" not in proc.stdout
        return proc.returncode, proc.stderr

    status, err = error(pq, "--target", "nope")
    assert status == 1 and "--target nope: " in err and "has no column 'nope'" in err
    assert "'x0', 'x1'" in err  # the columns it does have
    status, err = error(pq)
    assert status == 2 and "name the target column with --target" in err
    status, err = error(xz, "--labels", tmp_path / "short.zarr")
    assert status == 1 and "has 150 rows but" in err and "has 200" in err
    assert "--labels" in err
    status, err = error(xz)
    assert status == 2 and "give its targets with --labels" in err
    status, err = error(pq, "--target", "label", "--labels", yz)
    assert status == 2 and "--labels applies to IDX image files and Zarr arrays" in err
    status, err = error(xz, "--labels", yz, "--target", "label")
    assert status == 2 and "--target names a column of a CSV or Parquet" in err
    status, err = error(xz, "--labels", tmp_path / "nowhere.zarr")
    assert status == 1 and "--labels: no such Zarr array" in err
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "s": ["p", "q", "r"], "t": [0, 1, 0]})
    frame.to_parquet(tmp_path / "text.parquet")
    status, err = error(tmp_path / "text.parquet", "--target", "t")
    assert status == 1 and "feature columns must hold numbers; 's' does not" in err


def test_cli_names_the_extra_when_an_optional_dependency_is_missing(cli, tmp_path,
                                                                    monkeypatch):
    import sys

    X, y = data(n=120, seed=43)
    pq, xz, yz, _ = _stores(tmp_path, X, y)
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr raises ImportError
    proc = cli("train", xz, "--labels", yz, "--epochs", "1")
    assert proc.returncode == 1
    assert "needs zarr: pip install \"mlpcore[dask]\"" in proc.stderr
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    proc = cli("train", pq, "--target", "label", "--epochs", "1")
    assert proc.returncode == 1
    assert "needs pyarrow: pip install \"mlpcore[dask]\"" in proc.stderr
    monkeypatch.setitem(sys.modules, "distributed", None)
    proc = cli("train", tmp_path / "pq", "--target", "label", "--workers", "2")
    assert proc.returncode == 2
    assert "--workers needs Dask: pip install \"mlpcore[dask]\"" in proc.stderr
