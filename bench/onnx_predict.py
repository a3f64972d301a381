"""Prediction throughput: the exported ONNX graph under onnxruntime against ``MLP.predict``
and scikit-learn's ``MLPClassifier.predict``, on one thread.

A 784-128-10 classifier (sigmoid hidden units, softmax output) with the same weights in all
three; batches of 1 and 1,000 rows; float32 and float64. Every figure is the median of
several rounds in which the implementations take turns (and the best round beside it).
BLAS is limited to one thread (threadpoolctl, both OpenBLAS copies) and onnxruntime runs
with one intra-op and one inter-op thread.

    python bench/onnx_predict.py            # about a minute
    python bench/onnx_predict.py --quick    # fewer repeats
    python bench/onnx_predict.py --json out.json

Needs ``pip install "mlpcore[onnx,sklearn]"``.
"""

import argparse
import json
import platform
import statistics
import time
import warnings

import numpy as np

SIZES = (784, 128, 10)
BATCHES = (1, 1000)


def timed(cases, seconds, repeats):
    """``{name: (median, best)}`` seconds per call of each function in ``cases``.

    The functions take turns: each of ``repeats`` rounds times every function over about
    ``seconds``, so a burst of other work on a shared machine slows all of them alike; the
    best round is the figure least disturbed by it.
    """
    calls = {}
    for name, fn in cases.items():
        fn()  # warm up (allocations, lazy initialisation)
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 4:
            fn()
            n += 1
        calls[name] = max(1, n * 4)
    per_call = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            per_call[name].append((time.perf_counter() - t0) / calls[name])
    return {name: (statistics.median(t), min(t)) for name, t in per_call.items()}


def models(dtype):
    """The same 784-128-10 network as an mlpcore model, its ONNX session and scikit-learn's."""
    import onnxruntime as ort
    from sklearn.neural_network import MLPClassifier

    import mlpcore

    rng = np.random.default_rng(0)
    X = rng.random((300, SIZES[0])).astype(dtype)
    y = rng.integers(0, SIZES[-1], 300)
    model = mlpcore.fit(X, y, hidden=SIZES[1:-1], activation="sigmoid", epochs=1, seed=0,
                        dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = MLPClassifier(hidden_layer_sizes=SIZES[1:-1], activation="logistic",
                           max_iter=1).fit(X, y)
    sk.coefs_ = [w.copy() for w in model.weights]
    sk.intercepts_ = [b.copy() for b in model.biases]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model.to_onnx(dtype=dtype).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return model, session, sk


def run(seconds, repeats):
    from threadpoolctl import threadpool_info, threadpool_limits

    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for dtype in (np.float32, np.float64):
            model, session, sk = models(dtype)
            X = np.random.default_rng(1).random((max(BATCHES), SIZES[0])).astype(dtype)
            for batch in BATCHES:
                Xb = X[:batch]
                # Same answers first: a benchmark of different results measures nothing.
                label, proba = session.run(None, {"X": Xb})
                assert (label == model.predict(Xb)).all()
                assert (sk.predict(Xb) == model.predict(Xb)).all()
                np.testing.assert_allclose(proba, model.predict_proba(Xb), atol=1e-5)
                cases = {
                    "onnxruntime run": lambda: session.run(None, {"X": Xb}),
                    "onnxruntime label only": lambda: session.run(["label"], {"X": Xb}),
                    "mlpcore predict": lambda: model.predict(Xb),
                    "mlpcore predict_proba": lambda: model.predict_proba(Xb),
                    "scikit-learn predict": lambda: sk.predict(Xb),
                }
                for name, (median, best) in timed(cases, seconds, repeats).items():
                    rows.append(dict(dtype=np.dtype(dtype).name, batch=batch, impl=name,
                                     us_per_call=median * 1e6, best_us_per_call=best * 1e6,
                                     rows_per_s=batch / median))
        info = [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "filepath")}
                for d in threadpool_info()]
    return rows, info


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--smoke", action="store_true",
                        help="a few calls each: checks that the benchmark runs (for the tests)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    seconds, repeats = (0.001, 1) if args.smoke else (0.1, 3) if args.quick else (0.4, 7)

    import onnxruntime
    import sklearn

    import mlpcore

    rows, info = run(seconds, repeats)
    machine = f"{platform.processor() or platform.machine()}, {platform.system()}"
    try:
        with open("/proc/cpuinfo") as f:
            machine = next(line.split(":", 1)[1].strip() for line in f
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"machine: {machine}; mlpcore {mlpcore.__version__}, onnxruntime "
          f"{onnxruntime.__version__}, scikit-learn {sklearn.__version__}, numpy "
          f"{np.__version__}; one thread")
    print(f"network {'-'.join(map(str, SIZES))}, sigmoid hidden, softmax output\n")
    print("| dtype | batch | implementation | µs per call (median) | best | rows per second |")
    print("|---|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['dtype']} | {r['batch']} | {r['impl']} | {r['us_per_call']:.1f} | "
              f"{r['best_us_per_call']:.1f} | {r['rows_per_s']:,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "rows": rows, "threadpool_info": info}, f, indent=1)


if __name__ == "__main__":
    main()
