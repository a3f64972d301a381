"""Threads: fits release the GIL, concurrent fits of different models give the weights they
give one after the other, predict is safe from many threads, and BLAS thread limits are
honoured and restored.

A single model must not be trained from two threads at once (it owns one set of work
buffers); everything here uses one model per training thread.
"""

import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import mlpcore
from mlpcore import _engine

RNG = np.random.default_rng(7)
X = RNG.normal(size=(3000, 20))
Y = (X[:, :3] @ [1.0, -1.0, 0.5] > 0).astype(int) + (X[:, 3] > 1)

# Different update rules, batch sizes (per-sample, small and large mini-batches, full batch),
# dtypes and L-BFGS, so concurrent fits exercise every engine path and both BLAS defaults.
CONFIGS = [
    dict(hidden=(16,), epochs=3, seed=1, batch_size=32),
    dict(hidden=(16, 8), epochs=3, seed=2, batch_size=128, optimizer="adam"),
    dict(hidden=(12,), epochs=1, seed=3, batch_size=1, optimizer="momentum"),
    dict(hidden=(8,), epochs=5, seed=4, batch_size=None, dtype=np.float32),
    dict(hidden=(8,), epochs=10, seed=5, optimizer="lbfgs"),
]


def params(model):
    return [p.copy() for p in model.weights + model.biases]


def run_in_threads(functions):
    """Run the functions at the same time (a barrier releases them together); return results."""
    results = [None] * len(functions)
    errors = []
    barrier = threading.Barrier(len(functions))

    def worker(i):
        try:
            barrier.wait()
            results[i] = functions[i]()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(functions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def blas_thread_counts():
    return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})


def test_concurrent_fits_give_the_sequential_weights():
    sequential = [params(mlpcore.fit(X, Y, **c)) for c in CONFIGS]
    for _ in range(2):
        concurrent = run_in_threads([lambda c=c: params(mlpcore.fit(X, Y, **c))
                                     for c in CONFIGS])
        for got, expected in zip(concurrent, sequential):
            for a, b in zip(got, expected):
                assert np.array_equal(a, b)


def test_the_same_settings_in_many_threads_give_identical_models():
    settings = CONFIGS[0]
    expected = params(mlpcore.fit(X, Y, **settings))
    for got in run_in_threads([lambda: params(mlpcore.fit(X, Y, **settings))] * 4):
        for a, b in zip(got, expected):
            assert np.array_equal(a, b)


def test_fit_releases_the_gil():
    Xb = RNG.normal(size=(12_000, 64))
    yb = (Xb[:, 0] > 0).astype(int)
    ticks = []
    stop = threading.Event()

    def ticker():  # pure Python: it can only run while no other thread holds the GIL
        while not stop.is_set():
            ticks.append(time.perf_counter())

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        time.sleep(0.02)
        started = time.perf_counter()
        mlpcore.fit(Xb, yb, hidden=(64,), epochs=1, batch_size=16, seed=0)
        ended = time.perf_counter()
    finally:
        stop.set()
        thread.join()
    during = np.array([t for t in ticks if started <= t <= ended])
    duration = ended - started
    # The epoch is one call into the engine; holding the GIL through it would freeze the
    # ticker for all of it. Released, the ticker only waits for brief GIL hand-overs.
    assert len(during) > 100
    longest_gap = np.diff(np.concatenate([[started], during, [ended]])).max()
    assert longest_gap < 0.5 * duration, (longest_gap, duration)


def test_predict_from_many_threads_is_safe_and_exact():
    model = mlpcore.fit(X, Y, **CONFIGS[1])
    chunks = [RNG.normal(size=(n, 20)) for n in (1, 7, 500, 5000)]
    expected = [model.predict_proba(c) for c in chunks]

    def predict_all():
        return [[model.predict_proba(c) for c in chunks] for _ in range(5)]

    for result in run_in_threads([predict_all] * 4):
        for repeat in result:
            for got, want in zip(repeat, expected):
                assert np.array_equal(got, want)


def test_predict_while_another_model_trains():
    trained = mlpcore.fit(X, Y, **CONFIGS[0])
    expected = trained.predict(X)
    results = run_in_threads([
        lambda: [np.array_equal(trained.predict(X), expected) for _ in range(20)],
        lambda: params(mlpcore.fit(X, Y, **CONFIGS[1])),
    ])
    assert all(results[0])


def test_overlapping_fits_restore_the_blas_thread_count():
    before = blas_thread_counts()

    def long_fit():
        return mlpcore.fit(X, Y, hidden=(16,), epochs=8, batch_size=16, seed=0)

    def short_fit_starting_later():
        time.sleep(0.05)
        return mlpcore.fit(X, Y, hidden=(16,), epochs=1, batch_size=16, seed=0)

    run_in_threads([long_fit, short_fit_starting_later])
    run_in_threads([short_fit_starting_later, long_fit])
    assert blas_thread_counts() == before


@pytest.mark.parametrize("n_threads", [1, 2])
def test_n_threads_goes_to_the_engine_and_blas_stays_single_threaded(n_threads):
    # n_threads is all of the engine's parallelism: its own threads, each calling BLAS on one
    # thread, so BLAS is held at 1 for the fit whatever n_threads is.
    seen = []
    mlpcore.fit(X, Y, hidden=(8,), epochs=2, batch_size=256, n_threads=n_threads, seed=0,
                callback=lambda epoch, model, logs: seen.append(
                    (blas_thread_counts(), _engine.get_num_threads())))
    assert seen == [([1], n_threads)] * 2
    assert _engine.get_num_threads() == 1  # restored after the fit


def test_threadpoolctl_limits_around_fit_are_respected():
    seen = []
    with threadpool_limits(limits=1, user_api="blas"):
        mlpcore.fit(X, Y, hidden=(8,), epochs=1, batch_size=256, seed=0,
                    callback=lambda epoch, model, logs: seen.append(blas_thread_counts()))
    assert seen == [[1]]
