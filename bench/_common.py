"""What the benchmark runs: workloads, modes, the shared data and starting weights, timing.

Imported by ``run.py`` (the driver, which never imports NumPy's peers) and by ``_worker.py``
(one fresh process per implementation and thread count). Nothing here imports a peer
library; NumPy is imported lazily so the driver can set thread variables first.
"""

import os
import statistics
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Settings shared by every epoch benchmark: softmax + cross-entropy, sigmoid hidden units,
# plain SGD (no momentum, no L2), this learning rate, the gradient being the batch mean.
LEARNING_RATE = 0.01
HIDDEN_ACTIVATION = "sigmoid"
DATA_SEED = 1234
INIT_SEED = 4321

# Workloads: network, sample count, batch sizes (None = the whole data set, one step per epoch).
# "S" is the batch-size sweep for the samples-per-second plot (784-128-10, float64 only).
WORKLOADS = {
    "W1": dict(D=784, hidden=(128,), K=10, N=60_000, batches=(None,),
               title="784-128-10, N=60k, full batch"),
    "W2": dict(D=784, hidden=(128,), K=10, N=60_000, batches=(64, 256),
               title="784-128-10, N=60k, mini-batch"),
    "W3": dict(D=784, hidden=(128,), K=10, N=10_000, batches=(1,),
               title="784-128-10, N=10k, per-sample SGD"),
    "W4": dict(D=2, hidden=(16,), K=2, N=1_000, batches=(1, 32),
               title="2-16-2, N=1k"),
    "W5": dict(D=256, hidden=(512, 512, 512), K=10, N=20_000, batches=(128,),
               title="256-512-512-512-10, N=20k"),
    "S": dict(D=784, hidden=(128,), K=10, N=10_000, batches=(8, 32, 128, 1024),
              title="784-128-10, N=10k, batch sweep (plot)"),
}
EPOCH_WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
PLOT_BATCHES = (1, 8, 32, 64, 128, 256, 1024, None)

# Implementations of an epoch, in table order. "floor" is the GEMM floor (SciPy's BLAS only).
EPOCH_IMPLS = ("floor", "mlpcore", "mlpcore.fit", "numpy", "sklearn", "torch", "jax-step",
               "jax-scan")
# Which worker process measures which rows (an implementation = one fresh process).
PROCESS_OF = {"floor": "floor", "mlpcore": "mlpcore", "mlpcore.fit": "mlpcore",
              "numpy": "numpy", "sklearn": "sklearn", "torch": "torch",
              "jax-step": "jax-step", "jax-scan": "jax-scan"}
# The module each process needs; a process whose module is missing is skipped with a note.
REQUIRES = {"floor": "scipy", "mlpcore": "mlpcore", "numpy": "numpy", "sklearn": "sklearn",
            "torch": "torch", "jax-step": "jax", "jax-scan": "jax"}

# Modes. rounds: the whole list of processes runs this many times, interleaved, and each row's
# figure is the median over all rounds' repeats (so a noisy minute hurts every implementation
# alike, not the one that happened to run then). n: samples per workload when not the
# workload's own N (times are then scaled per sample to N, and marked); slow_subset caps the
# samples the slow peers run at batch <= slow_batch (also scaled). threads: BLAS thread
# counts; more_threads_*: what runs with more than one thread (a second thread only matters
# for batches of 64 and more).
MODES = {
    "full": dict(rounds=2, repeats=3, warmup=1, threads=(1, 2), dtypes=("float64", "float32"),
                 n={},
                 slow_subset=2_000, slow_batch=8, micro_seconds=0.05, micro_repeats=7,
                 isolate="workload", more_threads_workloads=EPOCH_WORKLOADS,
                 more_threads_dtypes=("float64", "float32"), extras_threads=(1, 2),
                 memory_impls=("mlpcore", "numpy", "sklearn", "torch"),
                 memory_cases=("W1", "big")),
    "quick": dict(rounds=1, repeats=3, warmup=1, threads=(1, 2), dtypes=("float64", "float32"),
                  n={"W1": 2048, "W2": 2048, "W3": 500, "W4": 1000, "W5": 1024, "S": 1024},
                  slow_subset=128, slow_batch=8, micro_seconds=0.01, micro_repeats=5,
                  isolate="process", more_threads_workloads=("W1", "W5"),
                  more_threads_dtypes=("float64",), more_threads_skip=("sklearn",),
                  extras_threads=(1,), memory_impls=("mlpcore",), memory_cases=("W1", "big")),
    "smoke": dict(rounds=1, repeats=2, warmup=1, threads=(1,), dtypes=("float64", "float32"),
                  n={"W1": 512, "W2": 512, "W3": 64, "W4": 128, "W5": 256, "S": 256},
                  slow_subset=32, slow_batch=8, micro_seconds=0.001, micro_repeats=2,
                  isolate="process", more_threads_workloads=(), more_threads_dtypes=(),
                  extras_threads=(1,), memory_impls=("mlpcore",),
                  memory_cases=("W1-smoke", "big-smoke")),
}
# Implementations that are slow per sample at small batches (Python loop per batch).
SLOW_PEERS = ("numpy", "sklearn", "torch", "jax-step")


def sizes_of(workload):
    w = WORKLOADS[workload]
    return (w["D"], *w["hidden"], w["K"])


def n_samples(workload, mode):
    """Samples of the workload's data set in this mode."""
    return MODES[mode]["n"].get(workload, WORKLOADS[workload]["N"])


def batch_label(batch):
    return "full" if batch is None else str(batch)


def case_id(workload, batch, dtype):
    return f"{workload}/b{batch_label(batch)}/{dtype}"


def make_data(workload, n, dtype):
    """Synthetic MNIST-shaped data: X uniform in [0, 1), random integer labels, one-hot Y.

    The same (workload, n, dtype) gives the same arrays in every process.
    """
    import numpy as np

    w = WORKLOADS[workload]
    rng = np.random.default_rng([DATA_SEED, w["D"], w["K"]])
    X = rng.random((n, w["D"]), dtype=np.float64).astype(dtype, copy=False)
    y = rng.integers(0, w["K"], size=n)
    Y = np.zeros((n, w["K"]), dtype=dtype)
    Y[np.arange(n), y] = 1
    return np.ascontiguousarray(X), y, Y


def make_init(sizes, dtype):
    """Shared starting weights: Glorot-uniform (factor 2 for sigmoid), drawn in float64.

    Returns (Ws, bs) with W_l of shape (fan_in, fan_out) and b_l of shape (fan_out,).
    """
    import numpy as np

    rng = np.random.default_rng([INIT_SEED, *sizes])
    Ws, bs = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = np.sqrt(2.0 * 6.0 / (fan_in + fan_out))
        Ws.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
        bs.append(rng.uniform(-bound, bound, fan_out).astype(dtype))
    return Ws, bs


def timed_runs(fn, repeats, warmup):
    """Call fn() warmup times untimed, then repeats times; wall and CPU seconds of each."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus


def per_call_seconds(fn, target_seconds, repeats):
    """Median seconds per call of a fast fn: calls are looped so each repeat lasts ~target."""
    fn()
    n, t = 1, 0.0
    while True:  # calibrate the loop count
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= target_seconds / 2 or n >= 1 << 20:
            break
        n *= 2
    n = max(1, int(n * target_seconds / max(t, 1e-9)))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times), n


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def cpu_pressure():
    """The kernel's CPU pressure (share of time some task waited for a CPU, last 10 s), or None."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def finalize_epoch_row(row):
    """Fill the figures of an epoch row from its raw times (median over all repeats).

    times_ms are the wall times of epochs over n_timed samples; ms_per_epoch is scaled per
    sample to the workload's N. A GEMM-floor row subtracts its Python call overhead
    (overhead_ms per timed epoch) and keeps the raw figure as raw_ms.
    """
    n, N = row["n_timed"], row["n_nominal"]
    med = median(row["times_ms"]) / 1e3
    cpu = median(row["cpu_times_ms"]) / 1e3
    if "overhead_ms" in row:
        row["raw_ms"] = med * 1e3 * N / n
        med = max(med - row["overhead_ms"] / 1e3, 0.0)
        cpu = max(cpu - row["overhead_ms"] / 1e3, 0.0)
    row.update(us_per_sample=med / n * 1e6, ms_per_epoch=med / n * N * 1e3, scaled=n != N,
               cpu_ms_per_epoch=cpu / n * N * 1e3,
               cpu_util=sum(row["cpu_times_ms"]) / max(sum(row["times_ms"]), 1e-12))
    return row
