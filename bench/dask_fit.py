"""Per-iteration time of training over a Dask cluster, next to one process.

    python bench/dask_fit.py                 # W1 shape (60,000 x 784, 784-128-10), 4 partitions
    python bench/dask_fit.py --quick         # 12,000 rows: a minute
    python bench/dask_fit.py --partitions 8 --iterations 8 --dtype float32
    python bench/dask_fit.py --repeats 9 --skip-averaging

Rows: L-BFGS and full-batch gradient descent (SGD rule) per iteration, and mini-batch model
averaging (W2 shape, batch 256, one averaging per epoch) per epoch, for

* ``mlpcore.fit(n_threads=1)`` in this process (the data gathered),
* ``mlpcore.dask.fit`` on ``LocalCluster(n_workers=W, threads_per_worker=1)``, W = 1 and 2
  (each task limits BLAS to one thread).

Both clusters run side by side for the whole run, and each of ``--repeats`` rounds times
the three set-ups one after another (in a rotating order), so the ratios of one round share
the machine's load; the table gives the medians over the rounds.

The data are generated on the workers (``dask.array.random``: X uniform in [0, 1), random
labels), so no array travels from the client. An iteration's time is the median gap
between the driver's callbacks after the first (warm-up) one. It also measures the
constants of the cost model in bench/README.md: Dask's overhead per task (a round of
no-op tasks), the time to send and reduce a parameter vector, and the engine's time per
row (from the single-process run). Markdown on stdout.
"""

import argparse
import os
import platform
import sys
import time

import numpy as np


def _timed_callback(stamps):
    def callback(epoch, model, logs):
        stamps.append(time.perf_counter())
    return callback


def per_iteration(stamps):
    gaps = np.diff(stamps)
    return float(np.median(gaps[1:] if len(gaps) > 2 else gaps))


def make_data(N, D, K, chunks, dtype, seed=0):
    import dask.array as da

    rs = da.random.default_rng(seed)
    X = rs.random((N, D), chunks=(chunks, D)).astype(dtype)
    y = rs.integers(0, K, size=N, chunks=chunks)
    return X, y


def overheads(client, n_params, dtype):
    """(seconds per no-op task, seconds to submit a task carrying theta and gather a
    gradient-sized result, per byte)."""
    def noop(x):
        return x

    futures = client.map(noop, range(400), pure=False)
    client.gather(futures)
    started = time.perf_counter()
    for _ in range(3):
        client.gather(client.map(noop, range(400), pure=False))
    per_task = (time.perf_counter() - started) / 1200
    theta = np.zeros(n_params, dtype=dtype)

    def echo(t):
        return t.astype(np.float64)

    client.gather(client.submit(echo, theta, pure=False))
    started = time.perf_counter()
    for _ in range(10):
        client.gather(client.submit(echo, theta, pure=False))
    roundtrip = (time.perf_counter() - started) / 10
    return per_task, roundtrip


def digits_accuracy(client, epochs=30, partitions=4, batch=32):
    """Held-out accuracy on the digits split (80/20, seeded) after the same epochs: one
    process, and model averaging over ``partitions`` partitions (one averaging per epoch)."""
    import dask.array as da

    import mlpcore
    import mlpcore.dask
    from mlpcore.datasets import load_digits

    X, y = load_digits()
    order = np.random.default_rng(0).permutation(len(X))
    cut = int(0.8 * len(X))
    tr, te = order[:cut], order[cut:]
    kw = dict(hidden=(64,), optimizer="adam", learning_rate=0.01, batch_size=batch,
              epochs=epochs, seed=2)
    one = mlpcore.fit(X[tr], y[tr], n_threads=1, **kw).score(X[te], y[te])
    rows = -(-cut // partitions)
    avg = mlpcore.dask.fit(da.from_array(X[tr], chunks=(rows, 64)), y[tr], client=client,
                           **kw).score(X[te], y[te])
    return one, avg


_EVALUATIONS = []  # (wall, partition compute summed, workers) of every cluster evaluation


def _record_evaluations():
    """Record every distributed loss-and-gradient's wall time and partition compute (what
    verbose prints), to split an iteration into compute and Dask's overhead."""
    from mlpcore.dask import _methods

    original = _methods.Cluster.loss_gradient

    def recorded(self, theta, network, n_threads):
        result = original(self, theta, network, n_threads)
        if not hasattr(self, "bench_workers"):  # once per fit: not inside the iterations
            self.bench_workers = len(self.client.scheduler_info(n_workers=-1)["workers"])
        _EVALUATIONS.append((self.wall_seconds, self.compute_seconds, self.bench_workers))
        return result

    _methods.Cluster.loss_gradient = recorded


def _time_fit(fit, X, y, kw):
    """Seconds per iteration (median gap between callbacks after the first) of one fit."""
    stamps = []
    start = time.perf_counter()
    fit(X, y, callback=_timed_callback(stamps), **kw)
    stamps.insert(0, start)
    return per_iteration(stamps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5,
                        help="rounds of (one process, 1 worker, 2 workers), side by side")
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--skip-averaging", action="store_true")
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    import mlpcore
    import mlpcore.dask

    _record_evaluations()

    N = 12_000 if args.quick else 60_000
    D, hidden, K = 784, (128,), 10
    chunks = -(-N // args.partitions)
    n_params = (D + 1) * hidden[0] + (hidden[0] + 1) * K
    consts = {}
    common = dict(hidden=hidden, seed=1, dtype=args.dtype, output="softmax")
    ways = {
        "L-BFGS (per iteration)": dict(optimizer="lbfgs", epochs=args.iterations, tol=0.0),
        "full-batch GD (per iteration)": dict(optimizer="sgd", batch_size=None,
                                              learning_rate=0.01, epochs=args.iterations),
    }
    if not args.skip_averaging:
        ways["averaging, batch 256 (per epoch)"] = dict(optimizer="sgd", batch_size=256,
                                                        learning_rate=0.01, epochs=3)
    setups = ("one process", "1 worker", "2 workers")
    times = {name: {s: [] for s in setups} for name in ways}
    loads = [os.getloadavg()[0]]
    # Both clusters live side by side (the idle one costs next to nothing), and every round
    # times the three set-ups one after another in a rotating order: the machine's load
    # drifts over minutes, and the ratios of one round share it.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as c1, Client(c1, set_as_default=False) as one, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=":0") as c2, \
            Client(c2, set_as_default=False) as two:
        clients = {"1 worker": one, "2 workers": two}
        data = {s: make_data(N, D, K, chunks, args.dtype) for s in clients}
        Xn, yn = one.compute(list(data["1 worker"]), sync=True)
        consts["task"], consts["roundtrip"] = overheads(two, n_params, args.dtype)
        for r in range(args.repeats):
            order = setups[r % 3:] + setups[:r % 3]
            for name, kw in ways.items():
                for setup in order:
                    if setup == "one process":
                        t = _time_fit(mlpcore.fit, Xn, yn, dict(n_threads=1, **common, **kw))
                    else:
                        X, y = data[setup]
                        t = _time_fit(mlpcore.dask.fit, X, y,
                                      dict(client=clients[setup], **common, **kw))
                    times[name][setup].append(t)
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1}/{args.repeats} done, load average {loads[-1]:.2f}",
                  file=sys.stderr, flush=True)
        del Xn, yn
        consts["digits"] = digits_accuracy(two) if not args.skip_averaging else None
    print(f"# mlpcore.dask: time per iteration, {N:,} x {D} ({args.dtype}), 784-128-10, "
          f"{args.partitions} partitions, {args.repeats} rounds side by side\n")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average (1 min) {min(loads):.2f}-{max(loads):.2f} during the run (shared "
          "with other work: the numbers are noisy); Python {}.{}".format(*sys.version_info[:2]))
    print()
    print("Medians over the rounds; a ratio is the median of the rounds' ratios (min-max).\n")
    print("| way | one process (n_threads=1) | 1 worker | 2 workers | 1 worker / one process "
          "| 1 worker / 2 workers |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for name, r in times.items():
        one_p, w1, w2 = (np.array(r[s]) for s in setups)
        slower, faster = w1 / one_p, w1 / w2
        rows[name] = {"one process": float(np.median(one_p)), "1 worker": float(np.median(w1)),
                      "2 workers": float(np.median(w2)),
                      "1 worker / one process": float(np.median(slower)),
                      "1 worker / 2 workers": float(np.median(faster))}
        print(f"| {name} | {np.median(one_p) * 1e3:.0f} ms | {np.median(w1) * 1e3:.0f} ms | "
              f"{np.median(w2) * 1e3:.0f} ms | {np.median(slower):.2f} ({slower.min():.2f}-"
              f"{slower.max():.2f}) | {np.median(faster):.2f} ({faster.min():.2f}-"
              f"{faster.max():.2f}) |")
    print()
    print("Per distributed evaluation (loss and gradient), medians: wall time, partition "
          "compute divided by the workers, and the rest (Dask's overhead: scheduling, theta "
          "out, gradients back, waiting for the slower worker).\n")
    print("| workers | evaluations | wall | compute / workers | rest |")
    print("|---|---|---|---|---|")
    for w in (1, 2):
        ev = np.array([(wall, comp / n) for wall, comp, n in _EVALUATIONS if n == w])
        if len(ev):
            print(f"| {w} | {len(ev)} | {np.median(ev[:, 0]) * 1e3:.0f} ms | "
                  f"{np.median(ev[:, 1]) * 1e3:.0f} ms | "
                  f"{np.median(ev[:, 0] - ev[:, 1]) * 1e3:.0f} ms |")
    print()
    print("Per round: the load average (1 min) after it, and 1 worker / 2 workers.\n")
    print("| round | load | " + " | ".join(ways) + " |")
    print("|---|---|" + "---|" * len(ways))
    for r in range(args.repeats):
        ratios = [times[name]["1 worker"][r] / times[name]["2 workers"][r] for name in ways]
        print(f"| {r + 1} | {loads[r + 1]:.2f} | " + " | ".join(f"{x:.2f}" for x in ratios)
              + " |")
    print()
    gd = rows["full-batch GD (per iteration)"]["one process"]
    print(f"cost-model constants: engine {gd / N * 1e6:.2f} us per row per loss-and-gradient "
          f"(784-128-10, one thread); Dask {consts['task'] * 1e3:.2f} ms per task; "
          f"a task carrying theta ({n_params * np.dtype(args.dtype).itemsize / 1e6:.2f} MB) "
          f"and returning a gradient: {consts['roundtrip'] * 1e3:.1f} ms")
    if consts["digits"] is not None:
        one_acc, avg = consts["digits"]
        print(f"digits (80/20 split), adam, batch 32, 30 epochs, 4 partitions averaged once "
              f"per epoch: held-out accuracy {avg:.2%} vs {one_acc:.2%} in one process "
              f"({(avg - one_acc) * 100:+.1f} points)")
    return rows, consts


if __name__ == "__main__":
    main()
