"""Training on a busy machine: mlpcore's default threads against n_threads=1, with a
co-tenant process holding one core.

    python bench/contention.py [--workloads W1,W2/64,W2/256,W3,L-BFGS] [--repeats 3]
                               [--dtype float64] [--no-cotenant]

The co-tenant is a pure-Python spin loop pinned to the last CPU (``taskset``-style, with
``os.sched_setaffinity``), started before the measurements and killed after them. Each case
runs ``mlpcore.fit`` with the default thread count and with ``n_threads=1`` alternately, in
this process, ``--repeats`` times; the report gives the medians and their ratio. Without a
co-tenant (``--no-cotenant``) the same rows show what the default threads gain on the idle
machine. Prints a markdown table; speed is never asserted anywhere.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

SPIN = "import os, sys\nos.sched_setaffinity(0, {%d})\nwhile True:\n    pass\n"

# name: (workload, fit keyword arguments, epochs)
CASES = {
    "W1": ("W1", dict(batch_size=None, optimizer="sgd"), 3),
    "W2/64": ("W2", dict(batch_size=64, optimizer="sgd"), 1),
    "W2/256": ("W2", dict(batch_size=256, optimizer="sgd"), 1),
    "W3": ("W3", dict(batch_size=1, optimizer="sgd"), 1),
    "L-BFGS": ("W1", dict(optimizer="lbfgs"), 5),
}


def start_cotenant():
    cpu = sorted(os.sched_getaffinity(0))[-1]
    proc = subprocess.Popen([sys.executable, "-c", SPIN % cpu])
    time.sleep(0.5)  # let it start spinning
    return proc, cpu


def fit_seconds(X, y, sizes, kwargs, epochs, dtype, n_threads):
    import mlpcore

    if kwargs.get("optimizer") != "lbfgs":
        kwargs = dict(kwargs, learning_rate=C.LEARNING_RATE)
    t0 = time.perf_counter()
    mlpcore.fit(X, y, hidden=sizes[1:-1], activation=C.HIDDEN_ACTIVATION, epochs=epochs,
                seed=0, dtype=dtype, n_threads=n_threads, **kwargs)
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default=",".join(CASES))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", default="float64")
    p.add_argument("--no-cotenant", action="store_true")
    args = p.parse_args(argv)
    from mlpcore._threads import available_cpus

    rows = []
    cotenant = None
    if not args.no_cotenant:
        cotenant, cpu = start_cotenant()
    try:
        for name in args.workloads.split(","):
            w, kwargs, epochs = CASES[name]
            sizes = C.sizes_of(w)
            X, y, _ = C.make_data(w, C.WORKLOADS[w]["N"], args.dtype)
            fit_seconds(X[:2000], y[:2000], sizes, kwargs, 1, args.dtype, None)  # warm-up
            times = {None: [], 1: []}
            pressure = C.cpu_pressure()
            for _ in range(args.repeats):
                for n_threads in (None, 1):  # alternately, so both see the same machine
                    times[n_threads].append(fit_seconds(X, y, sizes, kwargs, epochs,
                                                        args.dtype, n_threads))
            d, o = statistics.median(times[None]), statistics.median(times[1])
            rows.append((name, epochs, d, o, pressure, C.cpu_pressure()))
            print(f"  {name}: default {d:.3f} s, n_threads=1 {o:.3f} s", file=sys.stderr,
                  flush=True)
    finally:
        if cotenant is not None:
            cotenant.kill()
            cotenant.wait()
    what = ("a pure-Python spin loop pinned to CPU %d" % cpu if cotenant is not None
            else "no co-tenant")
    print(f"Co-tenant: {what}; {available_cpus()} CPUs; dtype {args.dtype}; median of "
          f"{args.repeats} alternating fits per row; CPU pressure (some avg10) at the start and "
          "end of each row.\n")
    print("| case | epochs | default threads s | n_threads=1 s | default / 1 thread | "
          "CPU pressure |")
    print("|---|---|---|---|---|---|")
    for name, epochs, d, o, p0, p1 in rows:
        print(f"| {name} | {epochs} | {d:.3f} | {o:.3f} | {d / o:.2f}x | "
              f"{_fmt_pressure(p0)} → {_fmt_pressure(p1)} |")


def _fmt_pressure(p):
    return "?" if p is None else f"{p:.0f}%"


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
