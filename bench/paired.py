"""Engine epochs on 1 thread and on 2, in tight pairs, each pair between two probes of
whether the machine had a second core free at that moment.

    python bench/paired.py [--workloads W3,W5] [--dtypes float32,float64] [--pairs 25]
                           [--rows N] [--tuner]

On a shared machine the 2-thread speed-up of an engine is only defined for the moments
when a second core is free. Each pair runs one epoch on 1 thread and one on 2 threads (the
team forced: tuner off, unless --tuner), in alternating order, and brackets them with the
"GEMM 2 streams / 1" probe of bench/threads.py (two threads each running their own
single-threaded product of the workload's first layer, against one thread running both: ~2
with a free second core, ~1 without). The report gives the median 2t / 1t over all pairs and
over the pairs whose two probes both reached --free (default 1.6), with the load average
and CPU pressure before and after. BLAS is held at one thread, as during a fit. ``--rows``
trains each epoch on the first N rows only (in a new random order each time): shorter epochs,
so that more pairs fall inside the moments a core is free.
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402
from threads import CASES, C_machine, gemm_scaling  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default="W3")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--pairs", type=int, default=25)
    p.add_argument("--free", type=float, default=1.6)
    p.add_argument("--rows", type=int, default=None, help="rows per epoch (default: N)")
    p.add_argument("--tuner", action="store_true", help="2 threads as shipped (tuner on)")
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    from mlpcore import _engine as E

    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for name in args.workloads.split(","):
            w, batch = CASES[name]
            sizes = C.sizes_of(w)
            n = args.rows or C.WORKLOADS[w]["N"]
            for dtype in args.dtypes.split(","):
                X, _, Y = C.make_data(w, n, dtype)
                Ws, bs = C.make_init(sizes, dtype)
                net = E.Network(sizes, E.HIDDEN_ACTIVATIONS[C.HIDDEN_ACTIVATION],
                                E.OUTPUT_ACTIVATIONS["softmax"], E.LOSSES["cross_entropy"])
                b = n if batch is None else batch
                rng = np.random.default_rng(0)
                state = {}
                for threads in (1, 2):
                    theta = np.empty(net.n_params, dtype=dtype)
                    for (wsl, bsl), W, bias in zip(net.layer_slices(), Ws, bs):
                        theta[wsl] = W.ravel()
                        theta[bsl] = bias
                    state[threads] = (theta, E.Workspace(net, min(b, E.CHUNK_ROWS), dtype))

                def epoch(threads):
                    theta, ws = state[threads]
                    order = rng.permutation(n) if b < n else None
                    E.set_num_threads(threads)
                    E._set_tuning(args.tuner)
                    t0 = time.perf_counter()
                    E.train_epoch(net, ws, theta, X, Y, None, order, b, "sgd", C.LEARNING_RATE)
                    dt = time.perf_counter() - t0
                    E.set_num_threads(1)
                    E._set_tuning(True)
                    return dt

                rows_b = min(b, E.CHUNK_ROWS)
                epoch(1)
                epoch(2)  # warm-up
                start = (os.getloadavg()[0], C.cpu_pressure())
                pairs = []
                probe = gemm_scaling(sizes, rows_b, dtype, seconds=0.1)
                for i in range(args.pairs):
                    first = (1, 2) if i % 2 == 0 else (2, 1)
                    t = {k: epoch(k) for k in first}
                    after = gemm_scaling(sizes, rows_b, dtype, seconds=0.1)
                    pairs.append((t[1], t[2], min(probe, after)))
                    probe = after
                end = (os.getloadavg()[0], C.cpu_pressure())
                one = np.array([q[0] for q in pairs]) * 1e3
                two = np.array([q[1] for q in pairs]) * 1e3
                free = np.array([q[2] >= args.free for q in pairs])
                rows.append(dict(name=name, dtype=dtype, one=one, two=two, free=free,
                                 probes=np.array([q[2] for q in pairs]), start=start, end=end))
                print(f"  {name} {dtype}: 1t {np.median(one):.1f} 2t {np.median(two):.1f} ms; "
                      f"{free.sum()}/{len(free)} pairs with a free core", file=sys.stderr,
                      flush=True)
    print(report(rows, args))


def report(rows, args):
    what = "as shipped (tuner on)" if args.tuner else "team forced (tuner off)"
    of_rows = f" of {args.rows} rows" if args.rows else ""
    lines = [f"Machine: {C_machine()}. BLAS: SciPy's OpenBLAS at 1 thread inside the engine. "
             f"{args.pairs} pairs of epochs (1 thread, 2 threads {what}) per row, ms per "
             f"epoch{of_rows}; a pair counts as 'free' when the GEMM 2-streams/1 probes before and "
             f"after it both reached {args.free}.", "",
             "| workload | dtype | 1 thread | 2 threads | 2t / 1t (median of pair ratios) | "
             "free pairs | 1 thread, free | 2 threads, free | 2t / 1t, free | "
             "probe median | load avg | CPU pressure |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["one"] / r["two"]
        f = r["free"]
        if f.any():
            free = (f"{np.median(r['one'][f]):.0f} | {np.median(r['two'][f]):.0f} | "
                    f"{np.median(ratio[f]):.2f}x")
        else:
            free = "– | – | –"
        lines.append(
            f"| {r['name']} | {r['dtype']} | {np.median(r['one']):.0f} | "
            f"{np.median(r['two']):.0f} | {np.median(ratio):.2f}x | {f.sum()}/{len(f)} | "
            f"{free} | {np.median(r['probes']):.2f} | {r['start'][0]:.1f} → {r['end'][0]:.1f}"
            f" | {_pct(r['start'][1])} → {_pct(r['end'][1])} |")
    return "\n".join(lines)


def _pct(p):
    return "?" if p is None else f"{p:.0f}%"


if __name__ == "__main__":
    main()
