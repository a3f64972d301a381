"""Peak memory of a fit, each measurement in a fresh process.

    python bench/memory.py                      # mlpcore on both cases, a markdown table
    python bench/memory.py --impls mlpcore,sklearn --cases W1 --json out.json

What is measured: the data (X, integer labels y) is created first; then, just before the
fit, the resident set size (RSS) is read and the kernel's peak-RSS mark is reset to it
(``/proc/self/clear_refs``, Linux); after the fit the peak (``VmHWM``) is read. The figure is
peak minus that RSS: the memory the fit itself needed, X already in memory. Where the peak
mark cannot be reset, a thread samples RSS every millisecond instead (the method is reported).
The ratio divides it by (bytes of X + bytes of the parameters).

A tiny warm-up fit (the same implementation on 320 rows) runs first, so one-time costs (BLAS
buffers, lazily loaded code) are not counted. ``bench/memory_big.py`` measures the big case
for mlpcore alone and prints 1 + this ratio.

Cases:
  W1   N=60,000 x 784 float64, 784-128-10, full batch (one gradient step), 1 epoch
  big  N=1,000,000 x 100 float32, 100-64-10 (10 classes), batch 256, 1 epoch
(``W1-smoke`` and ``big-smoke``: the same with 2,000 and 20,000 rows, for --smoke.)

Implementations: mlpcore (``mlpcore.fit``), numpy (tests/reference.py train_epoch, one-hot
encoding included), sklearn (MLPClassifier(solver='sgd').fit with max_iter=1), torch
(tensors sharing X's memory, the same loop as the speed benchmark).
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

CASES = {
    "W1": dict(N=60_000, D=784, hidden=(128,), K=10, dtype="float64", batch=None),
    "big": dict(N=1_000_000, D=100, hidden=(64,), K=10, dtype="float32", batch=256),
    "W1-smoke": dict(N=2_000, D=784, hidden=(128,), K=10, dtype="float64", batch=None),
    "big-smoke": dict(N=20_000, D=100, hidden=(64,), K=10, dtype="float32", batch=256),
}
IMPLS = ("mlpcore", "numpy", "sklearn", "torch")
REQUIRES = {"mlpcore": "mlpcore", "numpy": "numpy", "sklearn": "sklearn", "torch": "torch"}


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _rss_kb():
    return _status_kb("VmRSS")


class PeakTracker:
    """Peak RSS from now on: the kernel's VmHWM after a reset, else a 1 ms sampling thread."""

    def __init__(self):
        self.method = None
        self._stop = None

    def start(self):
        self.base = _rss_kb()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak-RSS mark to the current RSS (Linux >= 4.0)
            if _status_kb("VmHWM") <= self.base + 1024:
                self.method = "VmHWM after clear_refs"
                return
        except OSError:
            pass
        self.method = "RSS sampled every 1 ms"
        self.peak = self.base
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, _rss_kb())
                time.sleep(0.001)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def stop(self):
        if self._stop is None:
            return max(_status_kb("VmHWM"), _rss_kb())
        self._stop.set()
        self._thread.join()
        return max(self.peak, _rss_kb())


def _fit_function(impl, case, X, y):
    """A no-argument function doing one epoch of the case with ``impl`` from fresh weights."""
    import numpy as np

    lr, hidden, batch, K = C.LEARNING_RATE, case["hidden"], case["batch"], case["K"]
    if impl == "mlpcore":
        import mlpcore
        return lambda: mlpcore.fit(X, y, hidden=hidden, batch_size=batch, epochs=1,
                                   learning_rate=lr, seed=0, n_threads=1)
    sizes = (X.shape[1], *hidden, K)
    if impl == "numpy":
        sys.path.insert(0, os.path.join(C.ROOT, "tests"))
        import reference

        def run():
            Ws, bs = C.make_init(sizes, X.dtype)
            Y = np.zeros((len(y), K), dtype=X.dtype)
            Y[np.arange(len(y)), y] = 1
            n = len(X)
            order = None if batch is None else np.random.default_rng(0).permutation(n)
            return reference.train_epoch(Ws, bs, X, Y, C.HIDDEN_ACTIVATION, "softmax",
                                         "cross_entropy", batch or n, lr, order)
        return run
    if impl == "sklearn":
        import warnings
        from sklearn.neural_network import MLPClassifier

        def run():
            clf = MLPClassifier(hidden_layer_sizes=hidden, activation="logistic", solver="sgd",
                                alpha=0.0, batch_size=batch or len(X), learning_rate_init=lr,
                                momentum=0.0, nesterovs_momentum=False, max_iter=1,
                                random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return clf.fit(X, y)
        return run
    if impl == "torch":
        import torch

        torch.set_num_threads(1)

        def run():
            from _worker import Ctx, prepare_torch
            Ws, bs = C.make_init(sizes, X.dtype)
            ctx = Ctx(sizes, X, y, None, Ws, bs, batch, str(X.dtype), 1)
            epoch, _ = prepare_torch(ctx)
            epoch()
        return run
    raise ValueError(impl)


def measure(impl, case_name):
    """Run in this (fresh) process: build the data, then measure one fit. Returns a dict."""
    import numpy as np

    case = CASES[case_name]
    rng = np.random.default_rng(C.DATA_SEED)
    X = rng.random((case["N"], case["D"]), dtype=np.float32 if case["dtype"] == "float32"
                   else np.float64)
    y = rng.integers(0, case["K"], size=case["N"])
    sizes = (case["D"], *case["hidden"], case["K"])
    param_bytes = sum((i + 1) * o for i, o in zip(sizes[:-1], sizes[1:])) * X.itemsize
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        # A tiny warm-up fit first, so that one-time costs (BLAS buffers, lazily loaded code)
        # are not counted as memory the fit needs for this data.
        small = slice(0, min(len(X), 4 * case["K"] * 8))
        _fit_function(impl, dict(case, batch=None), X[small], y[small])()
        fit = _fit_function(impl, case, X, y)
        gc.collect()
        tracker = PeakTracker()
        tracker.start()
        t0 = time.perf_counter()
        result = fit()
        seconds = time.perf_counter() - t0
        peak = tracker.stop()
    del result
    extra = (peak - tracker.base) * 1024
    return dict(kind="memory", impl=impl, case=case_name, N=case["N"], D=case["D"],
                sizes=list(sizes), dtype=case["dtype"], batch=C.batch_label(case["batch"]),
                x_bytes=X.nbytes, param_bytes=param_bytes, rss_before_bytes=tracker.base * 1024,
                peak_rss_bytes=peak * 1024, fit_extra_bytes=extra,
                ratio_to_x_and_params=extra / (X.nbytes + param_bytes),
                fit_seconds=seconds, method=tracker.method)


def run_in_subprocess(impl, case_name, timeout=900):
    """measure() in a fresh interpreter; returns its dict, or one with an 'error'."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", impl, case_name]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(kind="memory", impl=impl, case=case_name, error=f"timeout {timeout} s")
    if proc.returncode != 0:
        return dict(kind="memory", impl=impl, case=case_name,
                    error=(proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def available(impl):
    import importlib.util
    return importlib.util.find_spec(REQUIRES[impl]) is not None


def table(rows):
    lines = ["| case | impl | X | params | RSS before fit | peak extra during fit | "
             "extra / (X + params) | fit s |",
             "|---|---|---|---|---|---|---|---|"]
    mb = 1 / 2**20
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['impl']} | – | – | – | error: {r['error']} "
                         "| – | – |")
            continue
        lines.append(
            f"| {r['case']} ({r['N']:,} x {r['D']} {r['dtype']}, batch {r['batch']}) | "
            f"{r['impl']} | {r['x_bytes'] * mb:.0f} MiB | {r['param_bytes'] * mb:.2f} MiB | "
            f"{r['rss_before_bytes'] * mb:.0f} MiB | {r['fit_extra_bytes'] * mb:.1f} MiB | "
            f"{r['ratio_to_x_and_params']:.3f} | {r['fit_seconds']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--child", nargs=2, metavar=("IMPL", "CASE"), help=argparse.SUPPRESS)
    p.add_argument("--impls", default="mlpcore", help=f"comma list of {', '.join(IMPLS)}")
    p.add_argument("--cases", default="W1,big", help=f"comma list of {', '.join(CASES)}")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*args.child)))
        return 0
    rows = []
    for case_name in args.cases.split(","):
        for impl in args.impls.split(","):
            if not available(impl):
                rows.append(dict(kind="memory", impl=impl, case=case_name,
                                 error=f"{REQUIRES[impl]} is not installed"))
                continue
            rows.append(run_in_subprocess(impl, case_name))
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
