"""Peak memory of ``mlpcore.fit`` on a large float32 data set, relative to the data's size.

Usage::

    python bench/memory_big.py                  # 1,000,000 x 100 float32, 10 classes
    python bench/memory_big.py --task regression
    python bench/memory_big.py --rows 200000    # a quicker run

X is generated straight into a preallocated float32 array (no float64 temporary), so the
process's resident set just before the fit is the interpreter, the libraries and X. The fit
(hidden (64,), batch_size=256, epochs=1, shuffled) is then measured two ways, and the larger
figure reported:

* the kernel's high-water mark (``VmHWM``), reset just before the call through
  ``/proc/self/clear_refs`` (Linux), read after it;
* a thread polling ``psutil.Process().memory_info().rss`` every millisecond.

The printed ratio is ``(peak extra + X + parameters) / (X + parameters)``, where "peak extra"
is the peak RSS during the fit minus the RSS just before it. By default a tiny warm-up fit
runs first, so that one-time costs (BLAS thread buffers, lazily loaded code) are not counted
as memory the fit needs per data set; ``--cold`` skips it.
"""

import argparse
import threading
import time

import numpy as np
import psutil

import mlpcore

MiB = 1024 * 1024


def _read_status(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_high_water_mark():
    """Reset VmHWM to the current RSS (Linux >= 4.0). Returns True if it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _read_status("VmHWM") is not None
    except OSError:
        return False


class _Poller(threading.Thread):
    def __init__(self, interval=0.001):
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def stop(self):
        self.done.set()
        self.join()
        self.peak = max(self.peak, self.process.memory_info().rss)
        return self.peak


def make_data(rows, cols, task, seed=0):
    """float32 X (rows x cols) filled in place, and 10-class labels or a float32 target."""
    rng = np.random.default_rng(seed)
    X = np.empty((rows, cols), dtype=np.float32)
    step = 65536
    for start in range(0, rows, step):
        rng.standard_normal(out=X[start:start + step], dtype=np.float32)
    w = rng.standard_normal(cols).astype(np.float32)
    score = X @ w  # one float32 column
    if task == "classification":
        edges = np.quantile(score, np.linspace(0, 1, 11)[1:-1])
        y = np.searchsorted(edges, score).astype(np.int64)
    else:
        y = score
    return X, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--task", choices=("classification", "regression"),
                        default="classification")
    parser.add_argument("--cold", action="store_true", help="no warm-up fit before measuring")
    args = parser.parse_args(argv)
    settings = dict(hidden=(64,), batch_size=256, epochs=1, seed=0)

    X, y = make_data(args.rows, args.cols, args.task)
    if not args.cold:
        mlpcore.fit(X[:1024].copy(), y[:1024].copy(), **settings)

    process = psutil.Process()
    before = process.memory_info().rss
    hwm_ok = _reset_high_water_mark()
    poller = _Poller()
    poller.start()
    started = time.perf_counter()
    model = mlpcore.fit(X, y, **settings)
    elapsed = time.perf_counter() - started
    polled_peak = poller.stop()
    hwm_peak = _read_status("VmHWM") if hwm_ok else None
    peak = max(polled_peak, hwm_peak or 0)

    x_bytes = X.nbytes
    p_bytes = model.n_params * model.dtype.itemsize
    extra = max(peak - before, 0)
    ratio = (extra + x_bytes + p_bytes) / (x_bytes + p_bytes)
    print(f"data: X {args.rows} x {args.cols} float32 = {x_bytes / MiB:.1f} MiB, "
          f"y {y.dtype} = {y.nbytes / MiB:.1f} MiB, task {args.task}; "
          f"model {model.sizes}, {model.n_params} params = {p_bytes / 1024:.1f} KiB")
    print(f"fit: hidden (64,), batch_size=256, epochs=1, {elapsed:.2f} s, "
          f"{'cold' if args.cold else 'after a warm-up fit'}")
    print(f"RSS before fit {before / MiB:.1f} MiB; peak during fit {peak / MiB:.1f} MiB "
          f"(high-water mark {'n/a' if hwm_peak is None else f'{hwm_peak / MiB:.1f} MiB'}, "
          f"polled {polled_peak / MiB:.1f} MiB); peak extra {extra / MiB:.1f} MiB")
    print(f"ratio (peak extra + X + params) / (X + params) = {ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
