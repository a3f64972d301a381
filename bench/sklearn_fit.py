"""Fit time of mlpcore.sklearn.MLPClassifier against scikit-learn's MLPClassifier.

Same data, same parameters, same random_state (so both train the very same weights), side
by side in one run; every figure is the median of several timed fits, each implementation
in a fresh process with the BLAS thread count pinned by threadpoolctl.

    python bench/sklearn_fit.py            # full run
    python bench/sklearn_fit.py --quick    # fewer samples and repeats
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

CASES = [
    # name, data, solver, batch_size, epochs
    ("digits sgd b1", "digits", "sgd", 1, 5),
    ("digits adam b1", "digits", "adam", 1, 5),
    ("digits sgd b32", "digits", "sgd", 32, 20),
    ("digits sgd b200", "digits", "sgd", 200, 50),
    ("digits adam b200", "digits", "adam", 200, 50),
    ("mnist-like sgd b1", "mnist", "sgd", 1, 1),
    ("mnist-like sgd b32", "mnist", "sgd", 32, 3),
    ("mnist-like sgd b200", "mnist", "sgd", 200, 5),
    ("mnist-like adam b200", "mnist", "adam", 200, 5),
]


def load(data, quick):
    import numpy as np

    if data == "digits":
        from mlpcore.datasets import load_digits

        X, y = load_digits()
        return X / 16, y
    rng = np.random.default_rng(0)
    n = 3000 if quick else 10000
    X = rng.random((n, 784))
    y = rng.integers(0, 10, n)
    return X, y


def worker(args):
    """Time fits of one implementation in this (fresh) process; print JSON."""
    import warnings

    from threadpoolctl import threadpool_info, threadpool_limits

    if args.impl == "mlpcore":
        from mlpcore.sklearn import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    X, y = load(args.data, args.quick)
    params = dict(hidden_layer_sizes=(100,), solver=args.solver, batch_size=args.batch,
                  max_iter=args.epochs, n_iter_no_change=float("inf"), random_state=0,
                  learning_rate_init=0.01 if args.solver == "sgd" else 0.001)
    times = []
    with threadpool_limits(limits=args.threads, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier(**{**params, "max_iter": 1}).fit(X[:200], y[:200])  # warm-up
        for _ in range(args.repeats):
            start = time.perf_counter()
            clf = MLPClassifier(**params).fit(X, y)
            times.append(time.perf_counter() - start)
        blas = [{k: i.get(k) for k in ("internal_api", "version", "architecture",
                                        "num_threads", "filepath")} for i in threadpool_info()]
    print(json.dumps({"times": times, "loss": clf.loss_, "n_iter": clf.n_iter_,
                      "blas": blas}))


def run(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                       "sklearn_fit.json"))
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 3
    rows = []
    blas = None
    for name, data, solver, batch, epochs in CASES:
        result = {}
        for impl in ("mlpcore", "sklearn"):
            cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--data", data,
                   "--solver", solver, "--batch", str(batch), "--epochs", str(epochs),
                   "--threads", str(args.threads), "--repeats", str(repeats)]
            if args.quick:
                cmd.append("--quick")
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            result[impl] = json.loads(out.stdout.strip().splitlines()[-1])
            blas = blas or result[impl]["blas"]
        ours = statistics.median(result["mlpcore"]["times"])
        theirs = statistics.median(result["sklearn"]["times"])
        same = abs(result["mlpcore"]["loss"] - result["sklearn"]["loss"]) <= 1e-6 * abs(
            result["sklearn"]["loss"])
        rows.append({"case": name, "epochs": epochs, "mlpcore_s": ours, "sklearn_s": theirs,
                     "speedup": theirs / ours, "same_loss": same})
        print(f"{name:22s} mlpcore {ours:8.3f} s  scikit-learn {theirs:8.3f} s  "
              f"x{theirs / ours:6.1f}  same loss: {same}", flush=True)
    print()
    print("| case | epochs | mlpcore (s) | scikit-learn (s) | speed-up |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['epochs']} | {r['mlpcore_s']:.3f} | {r['sklearn_s']:.3f} | "
              f"{r['speedup']:.1f}x |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"rows": rows, "threads": args.threads, "quick": args.quick, "blas": blas,
                   "machine": platform.machine(), "processor": platform.processor(),
                   "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE",
                                                          "OPENBLAS_L2_SIZE")}}, f, indent=1)
    print(f"\nBLAS: {blas}\nwritten to {args.out}")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        p = argparse.ArgumentParser()
        for flag in ("--impl", "--data", "--solver"):
            p.add_argument(flag)
        for flag in ("--batch", "--epochs", "--threads", "--repeats"):
            p.add_argument(flag, type=int)
        p.add_argument("--quick", action="store_true")
        p.add_argument("--worker", action="store_true")
        worker(p.parse_args())
    else:
        run()
