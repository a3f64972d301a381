"""mlpcore's engine on 1 thread against 2, side by side in one process, with the machine's
own 2-thread GEMM scaling next to it.

    python bench/threads.py [--workloads W1,W2/64,W2/256,W3,W5] [--repeats 5] [--dtypes ...]

For every workload and dtype, epochs (the engine's train_epoch, as mlpcore.fit drives it)
alternate between three settings, so all see the same machine: 1 thread; 2 threads as
shipped (the tuner chooses, pass by pass, one thread or the team by measured speed); 2 threads
with the team forced (tuner off: what the split passes do when they get the cores). Medians
of ``--repeats`` epochs after a warm-up. BLAS is held at one thread, as during a fit.

"GEMM 2 streams / 1" is measured before each row: two threads each running its own
single-threaded sgemm/dgemm (the forward product of the workload) against one thread running
both in turn. It bounds what any two-thread code can gain on the machine at that moment: on an
idle 2-core machine it is about 2; with another process on one core, about 1.

Per-phase costs (1 thread, µs per batch): the forward pass, the loss gradient (forward +
backprop), and the rest of a training step, for the projections in bench/README.md.
"""

import argparse
import os
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

CASES = {"W1": ("W1", None), "W2/64": ("W2", 64), "W2/256": ("W2", 256), "W3": ("W3", 1),
         "W5": ("W5", 128)}


def gemm_scaling(sizes, rows, dtype, seconds=0.3):
    from scipy.linalg import blas

    gemm = blas.sgemm if dtype == "float32" else blas.dgemm
    rows = max(rows, 64)
    A = np.random.default_rng(0).random((rows, sizes[0])).astype(dtype)
    B = np.random.default_rng(1).random((sizes[0], sizes[1])).astype(dtype)
    gemm(1.0, B.T, A.T)
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds / 4:
        gemm(1.0, B.T, A.T)
        n += 1

    def work():
        for _ in range(n):
            gemm(1.0, B.T, A.T)

    t0 = time.perf_counter()
    work()
    work()
    one = time.perf_counter() - t0
    threads = [threading.Thread(target=work) for _ in range(2)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return one / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default=",".join(CASES))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtypes", default="float32,float64")
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    from mlpcore import _engine as E

    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for name in args.workloads.split(","):
            w, batch = CASES[name]
            sizes = C.sizes_of(w)
            n = C.WORKLOADS[w]["N"]
            for dtype in args.dtypes.split(","):
                X, _, Y = C.make_data(w, n, dtype)
                Ws, bs = C.make_init(sizes, dtype)
                net = E.Network(sizes, E.HIDDEN_ACTIVATIONS[C.HIDDEN_ACTIVATION],
                                E.OUTPUT_ACTIVATIONS["softmax"], E.LOSSES["cross_entropy"])
                b = n if batch is None else batch
                rng = np.random.default_rng(0)
                settings = {"1": (1, True), "2": (2, True), "2 forced": (2, False)}
                state = {}
                for key in settings:
                    theta = np.empty(net.n_params, dtype=dtype)
                    for (wsl, bsl), W, bias in zip(net.layer_slices(), Ws, bs):
                        theta[wsl] = W.ravel()
                        theta[bsl] = bias
                    state[key] = (theta, E.Workspace(net, min(b, E.CHUNK_ROWS), dtype))

                def epoch(key):
                    threads, tuning = settings[key]
                    theta, ws = state[key]
                    order = rng.permutation(n) if b < n else None
                    E.set_num_threads(threads)
                    E._set_tuning(tuning)
                    t0 = time.perf_counter()
                    E.train_epoch(net, ws, theta, X, Y, None, order, b, "sgd", C.LEARNING_RATE)
                    dt = time.perf_counter() - t0
                    E.set_num_threads(1)
                    E._set_tuning(True)
                    return dt

                scaling = gemm_scaling(sizes, min(b, E.CHUNK_ROWS), dtype)
                pressure = C.cpu_pressure()
                times = {k: [] for k in settings}
                for key in settings:
                    epoch(key)  # warm-up
                for _ in range(args.repeats):
                    for key in settings:
                        times[key].append(epoch(key))
                med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
                tuner = E._tuner_state(state["2"][1])
                phases = per_phase(E, net, X, Y, b, dtype) if b > 1 else None
                rows.append(dict(name=name, dtype=dtype, scaling=scaling, pressure=pressure,
                                 tuner=tuner, phases=phases, **med))
                print(f"  {name} {dtype}: 1t {med['1']:.1f}  2t {med['2']:.1f}  2t forced "
                      f"{med['2 forced']:.1f} ms; GEMM 2/1 {scaling:.2f}", file=sys.stderr,
                      flush=True)
    print(report(rows, args.repeats))


def per_phase(E, net, X, Y, b, dtype, reps=20):
    """µs per batch of b rows, 1 thread: forward; forward + backprop (loss_gradient)."""
    rows = min(b, E.CHUNK_ROWS)
    Xb, Yb = np.ascontiguousarray(X[:rows]), np.ascontiguousarray(Y[:rows])
    theta = np.random.default_rng(0).standard_normal(net.n_params).astype(dtype) * 0.05
    out = np.empty((rows, Y.shape[1]), dtype=dtype)
    grad = np.empty_like(theta)
    ws = E.Workspace(net, rows, dtype)

    def best(fn):
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts)) * 1e6

    fwd = best(lambda: E.forward(net, theta, Xb, out))
    grad_us = best(lambda: E.loss_gradient(net, theta, Xb, Yb, None, 0.0, grad, ws))
    return dict(rows=rows, forward_us=fwd, gradient_us=grad_us)


def report(rows, repeats):
    cpu = C_machine()
    lines = [f"Machine: {cpu}. BLAS: SciPy's OpenBLAS at 1 thread inside the engine. Median of "
             f"{repeats} alternating epochs per setting, ms per epoch.", "",
             "| workload | dtype | 1 thread | 2 threads | 2t / 1t | 2 threads, team forced | "
             "forced / 1t | tuner chose | GEMM 2 streams / 1 | CPU pressure |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['dtype']} | {r['1']:.0f} | {r['2']:.0f} | "
            f"{r['1'] / r['2']:.2f}x | "
            f"{r['2 forced']:.0f} | {r['1'] / r['2 forced']:.2f}x | {r['tuner']['choice']} "
            f"({r['tuner']['passes_team']} team / {r['tuner']['passes_one']} one) | "
            f"{r['scaling']:.2f} | {_pct(r['pressure'])} |")
    lines += ["", "Per-phase costs, 1 thread (µs per pass of `rows` rows):", "",
              "| workload | dtype | rows | forward | forward + backprop (gradient) |",
              "|---|---|---|---|---|"]
    for r in rows:
        ph = r["phases"]
        if ph:
            lines.append(f"| {r['name']} | {r['dtype']} | {ph['rows']} | {ph['forward_us']:.0f} | "
                         f"{ph['gradient_us']:.0f} |")
    return "\n".join(lines)


def _pct(p):
    return "?" if p is None else f"{p:.0f}%"


def C_machine():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} CPUs"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs"


if __name__ == "__main__":
    main()
