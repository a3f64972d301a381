"""Sparse (CSR) input: mlpcore against scikit-learn and against its own dense path (issue 16).

    python bench/sparse.py            # the table (~10 min on 2 shared cores) and the plot
    python bench/sparse.py --smoke    # a few seconds: tiny sizes, every row once (CI)
    python bench/sparse.py --no-plot  # the table only
    python bench/sparse.py --plot-only [-o bench/sparse_nnz.png]

Problems (TF-IDF-like CSR: each row has exactly ``nnz`` distinct random columns, positive
values drawn from an exponential, every row L2-normalised; random labels over 10 classes;
float64, int32 indices):

  big    20,000 x 50,000, 100 nonzeros per row, network 50,000-128-10 (the issue's problem;
         its dense form would be 8 GB)
  small  20,000 x 10,000, 100 nonzeros per row, network 10,000-128-10 (dense: 1.6 GB, fits)

Every fit: sigmoid (logistic) hidden units, softmax + cross-entropy, learning rate 0.01
(also for Adam), no L2 unless the row says so, no momentum, shuffled every epoch.

What a row times (``us/sample`` = wall time of the timed call / samples it trained on):

  mlpcore rows   ``model.fit_more(X, y, epochs=1)`` on a model built by ``mlpcore.fit`` (one
                 epoch, the warm-up): one full epoch of the public API, input checks included.
  sklearn rows   ``MLPClassifier.partial_fit(X[s], y[s])`` on a model whose first partial_fit
                 (the warm-up, ``classes`` given) ran on another slice: one pass over the slice
                 ``s`` in batches of ``batch_size``. At batch 1 scikit-learn takes ~0.1 s per
                 sample, so its slice is a few hundred rows (``n`` in the table), not the epoch.

All rows of a table run side by side: each repeat runs every row once, in turn, so a noisy
minute on the shared machine hurts every row alike; the figure is the median of the repeats.
One thread: the process is pinned to one CPU (``--cpu``, before NumPy starts its BLAS) and
``threadpool_limits(1)`` holds every BLAS at one thread; mlpcore gets ``n_threads=1``.

The plot (``bench/sparse_nnz.png``): mlpcore's sparse SGD time per sample against the
nonzeros per row (10 to 1,000) at two widths (10,000 and 200,000 features): the engine's
epoch (``_engine.train_epoch``, as fit drives it) at batch 1 and 200, and ``fit_more``'s
epoch at batch 1 (which adds the Python layer's per-call work, some of it O(parameters)).
``--plot-only`` runs just this sweep.

Results: the markdown report on stdout, JSON to ``bench/results/sparse.json``
(``sparse-smoke.json`` for ``--smoke``) and to ``--json PATH``.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

K = 10
HIDDEN = (128,)
LR = 0.01
SEED = 0

PROBLEMS = {
    "full": {"big": dict(N=20_000, D=50_000, nnz=100), "small": dict(N=20_000, D=10_000, nnz=100)},
    "smoke": {"big": dict(N=600, D=3_000, nnz=20), "small": dict(N=600, D=500, nnz=20)},
}
# Rows scikit-learn trains on per timed call (its own slice), by batch size.
SKLEARN_N = {"full": {1: 300, 200: 20_000}, "smoke": {1: 10, 200: 400}}
REPEATS = {"full": 3, "smoke": 1}
PLOT = {
    "full": dict(N=5_000, nnz=(10, 30, 100, 300, 1000), widths=(10_000, 200_000), repeats=3),
    "smoke": dict(N=400, nnz=(10, 30), widths=(1_000, 4_000), repeats=1),
}

# The targets of issue 16 (ratio = the other's time / mlpcore sparse's time).
TARGETS = {"sklearn b1": 1000.0, "dense b1": 20.0, "sklearn b200": 10.0, "adam b200": 2.0}


# -- data ---------------------------------------------------------------------------------------

def make_csr(n, d, nnz, seed=1234, dtype="float64"):
    """n x d CSR, exactly nnz distinct random columns per row (sorted), positive values,
    rows L2-normalised; random labels 0..K-1. The same arguments give the same matrix."""
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng([seed, n, d, nnz])
    cols = np.sort(rng.integers(0, d, size=(n, nnz), dtype=np.int64), axis=1)
    while True:  # redraw duplicates until every row has nnz distinct columns
        dup = np.zeros(cols.shape, dtype=bool)
        dup[:, 1:] = cols[:, 1:] == cols[:, :-1]
        if not dup.any():
            break
        cols[dup] = rng.integers(0, d, size=int(dup.sum()))
        cols.sort(axis=1)
    vals = rng.exponential(1.0, size=(n, nnz)) + 1e-3
    vals /= np.sqrt((vals * vals).sum(axis=1, keepdims=True))
    X = sp.csr_matrix((vals.ravel().astype(dtype), cols.ravel().astype(np.int32),
                       np.arange(0, n * nnz + 1, nnz, dtype=np.int32)), shape=(n, d))
    X.has_sorted_indices = True
    y = rng.integers(0, K, size=n)
    return X, y


# -- what each row runs -------------------------------------------------------------------------

def mlpcore_case(X, y, batch, optimizer="sgd", alpha=0.0):
    """A function training one epoch of mlpcore on (X, y) (after a warm-up fit); its samples."""
    import warnings

    import mlpcore

    with warnings.catch_warnings():
        # random columns at a few rows: the (expected) FeatureScaleWarning of sparse X
        warnings.simplefilter("ignore", mlpcore.FeatureScaleWarning)
        model = mlpcore.fit(X, y, hidden=HIDDEN, activation="sigmoid", batch_size=batch,
                            epochs=1, learning_rate=LR, optimizer=optimizer, alpha=alpha,
                            seed=SEED, n_threads=1)

    def run():
        model.fit_more(X, y, epochs=1)
    return run, X.shape[0]


def sklearn_case(X, y, batch, n, solver="sgd"):
    """A function making one partial_fit pass of scikit-learn over n rows of (X, y)."""
    import warnings

    from sklearn.neural_network import MLPClassifier

    n = min(n, X.shape[0])
    kw = dict(momentum=0.0, nesterovs_momentum=False) if solver == "sgd" else {}
    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, activation="logistic", solver=solver,
                        alpha=0.0, batch_size=batch, learning_rate_init=LR,
                        learning_rate="constant", shuffle=True, random_state=SEED, **kw)
    # Warm-up (builds the model): a pass over other rows than the timed slice when there are.
    w0 = n if X.shape[0] >= n + min(n, 200) else 0
    w1 = w0 + min(n, 200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X[w0:w1], y[w0:w1], classes=list(range(K)))
    Xs, ys = X[:n], y[:n]

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.partial_fit(Xs, ys)
    return run, n


def measure_side_by_side(cases, repeats, log):
    """Each repeat runs every case once, in turn; wall and CPU seconds of every run."""
    for c in cases:
        c["walls"], c["cpus"] = [], []
    for rep in range(repeats):
        for c in cases:
            c0, t0 = time.process_time(), time.perf_counter()
            c["run"]()
            wall = time.perf_counter() - t0
            c["walls"].append(wall)
            c["cpus"].append(time.process_time() - c0)
            log(f"  repeat {rep + 1}/{repeats} {c['id']}: {wall:.3f} s "
                f"({wall / c['n'] * 1e6:.1f} us/sample)")
    for c in cases:
        c.pop("run")
        wall = statistics.median(c["walls"])
        c["us_per_sample"] = wall / c["n"] * 1e6
        c["cpu_us_per_sample"] = statistics.median(c["cpus"]) / c["n"] * 1e6
        c["cpu_util"] = sum(c["cpus"]) / max(sum(c["walls"]), 1e-12)
    return cases


def table_cases(mode, have_sklearn, log):
    """Build every row of the table (warm-ups included); returns the list of cases."""
    cases = []

    def add(id_, problem, impl, layout, batch, optimizer, run_n, note=""):
        run, n = run_n
        cases.append(dict(id=id_, problem=problem, impl=impl, layout=layout, batch=batch,
                          optimizer=optimizer, n=n, note=note, run=run))

    for name in ("big", "small"):
        p = PROBLEMS[mode][name]
        log(f"building {name}: {p['N']} x {p['D']} CSR, {p['nnz']} nonzeros per row")
        X, y = make_csr(p["N"], p["D"], p["nnz"])
        p_meta = dict(p, csr_mb=(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 1e6,
                      dense_mb=p["N"] * p["D"] * 8 / 1e6)
        PROBLEMS[mode][name] = p_meta
        if name == "big":
            if have_sklearn:
                add("sklearn sgd b1", name, "sklearn", "sparse", 1, "sgd",
                    sklearn_case(X, y, 1, SKLEARN_N[mode][1]))
            add("mlpcore sgd b1", name, "mlpcore", "sparse", 1, "sgd", mlpcore_case(X, y, 1))
            add("mlpcore sgd b1 L2", name, "mlpcore", "sparse", 1, "sgd",
                mlpcore_case(X, y, 1, alpha=1e-4), note="alpha=1e-4")
            if have_sklearn:
                add("sklearn sgd b200", name, "sklearn", "sparse", 200, "sgd",
                    sklearn_case(X, y, 200, SKLEARN_N[mode][200]))
            add("mlpcore sgd b200", name, "mlpcore", "sparse", 200, "sgd",
                mlpcore_case(X, y, 200))
            add("mlpcore sgd b200 L2", name, "mlpcore", "sparse", 200, "sgd",
                mlpcore_case(X, y, 200, alpha=1e-4), note="alpha=1e-4")
            if have_sklearn:
                add("sklearn adam b200", name, "sklearn", "sparse", 200, "adam",
                    sklearn_case(X, y, 200, SKLEARN_N[mode][200], solver="adam"))
            add("mlpcore adam b200", name, "mlpcore", "sparse", 200, "adam",
                mlpcore_case(X, y, 200, optimizer="adam"))
        else:
            add("small mlpcore sgd b1", name, "mlpcore", "sparse", 1, "sgd", mlpcore_case(X, y, 1))
            add("small mlpcore sgd b200", name, "mlpcore", "sparse", 200, "sgd",
                mlpcore_case(X, y, 200))
            import numpy as np
            Xd = np.ascontiguousarray(X.toarray())
            add("small mlpcore dense sgd b1", name, "mlpcore", "dense", 1, "sgd",
                mlpcore_case(Xd, y, 1))
            add("small mlpcore dense sgd b200", name, "mlpcore", "dense", 200, "sgd",
                mlpcore_case(Xd, y, 200))
    return cases


def ratios(cases):
    """The issue's ratios: the other row's time per sample / mlpcore sparse's."""
    by = {c["id"]: c["us_per_sample"] for c in cases}
    by_cpu = {c["id"]: c["cpu_us_per_sample"] for c in cases}
    pairs = [("sklearn b1", "sklearn sgd b1", "mlpcore sgd b1",
              "scikit-learn SGD batch 1 / mlpcore sparse SGD batch 1 (big)"),
             ("dense b1", "small mlpcore dense sgd b1", "small mlpcore sgd b1",
              "mlpcore dense SGD batch 1 / mlpcore sparse SGD batch 1 (small)"),
             ("sklearn b200", "sklearn sgd b200", "mlpcore sgd b200",
              "scikit-learn SGD batch 200 / mlpcore sparse SGD batch 200 (big)"),
             ("adam b200", "sklearn adam b200", "mlpcore adam b200",
              "scikit-learn Adam batch 200 / mlpcore sparse Adam batch 200 (big)")]
    out = []
    for key, num, den, what in pairs:
        if num in by and den in by:
            r = by[num] / by[den]
            out.append(dict(key=key, what=what, ratio=r, cpu_ratio=by_cpu[num] / by_cpu[den],
                            target=TARGETS[key], met=r >= TARGETS[key]))
    extra = [("dense b200", "small mlpcore dense sgd b200", "small mlpcore sgd b200",
              "mlpcore dense SGD batch 200 / mlpcore sparse SGD batch 200 (small)")]
    for key, num, den, what in extra:
        if num in by and den in by:
            out.append(dict(key=key, what=what, ratio=by[num] / by[den],
                            cpu_ratio=by_cpu[num] / by_cpu[den], target=None, met=None))
    return out


# -- the plot -----------------------------------------------------------------------------------

def engine_case(X, y, batch):
    """One epoch of the engine's train_epoch on CSR X, as fit drives it (plain SGD, a fresh
    permutation per epoch, one workspace), without the Python layer's per-epoch work."""
    import numpy as np

    from mlpcore import _engine as E

    n, d = X.shape
    net = E.Network((d, *HIDDEN, K), E.HIDDEN_ACTIVATIONS["sigmoid"],
                    E.OUTPUT_ACTIVATIONS["softmax"], E.LOSSES["cross_entropy"])
    Ws, bs = C.make_init(net.sizes, "float64")
    theta = np.empty(net.n_params)
    for (wsl, bsl), W, b in zip(net.layer_slices(), Ws, bs):
        theta[wsl] = W.ravel()
        theta[bsl] = b
    Y = np.zeros((n, K))
    Y[np.arange(n), y] = 1
    ws = E.Workspace(net, min(batch, E.CHUNK_ROWS), "float64", True)
    rng = np.random.default_rng(SEED)
    E.set_num_threads(1)

    def run():
        E.train_epoch(net, ws, theta, X, Y, None, rng.permutation(n), batch, "sgd", LR)
    run()  # warm-up
    return run, n


def nnz_sweep(mode, log):
    """mlpcore sparse SGD µs/sample against nonzeros per row, batch 1 and 200, two widths:
    the engine's epoch (train_epoch), and the public API's (fit_more) at batch 1."""
    cfg = PLOT[mode]
    points = []
    for width in cfg["widths"]:
        for nnz in cfg["nnz"]:
            X, y = make_csr(cfg["N"], width, min(nnz, width))
            cases = []
            for batch in (1, 200):
                run, n = engine_case(X, y, min(batch, cfg["N"]))
                cases.append(dict(id=f"D={width} nnz={nnz} b{batch} engine", width=width,
                                  nnz=nnz, batch=batch, api="engine", n=n, run=run))
            run, n = mlpcore_case(X, y, 1)
            cases.append(dict(id=f"D={width} nnz={nnz} b1 fit_more", width=width, nnz=nnz,
                              batch=1, api="fit_more", n=n, run=run))
            points += measure_side_by_side(cases, cfg["repeats"], log)
    return points


def draw(points, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.6))
    styles = {(1, "engine"): "o-", (200, "engine"): "s--", (1, "fit_more"): "^:"}
    what = {"engine": "engine epoch", "fit_more": "fit_more, per-call costs included"}
    colors = {}
    for w in sorted({p["width"] for p in points}):
        for b, api in styles:
            ps = sorted((p for p in points if p["width"] == w and p["batch"] == b
                         and p.get("api", "engine") == api), key=lambda p: p["nnz"])
            if not ps:
                continue
            line, = ax.plot([p["nnz"] for p in ps], [p["us_per_sample"] for p in ps],
                            styles[b, api], color=colors.get(w),
                            label=f"{w:,} features, batch {b} ({what[api]})")
            colors[w] = line.get_color()
    xs = sorted({p["nnz"] for p in points})
    ref = [p for p in points if p["batch"] == 1 and p["nnz"] == xs[-1]
           and p.get("api", "engine") == "engine"]
    if ref:
        y1 = min(p["us_per_sample"] for p in ref)
        ax.plot(xs, [y1 * x / xs[-1] for x in xs], ":", color="grey",
                label="proportional to nonzeros")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("nonzeros per row")
    ax.set_ylabel("µs per sample (one epoch, median)")
    ax.set_title("mlpcore, sparse (CSR) input, plain SGD, D-128-10, 1 thread")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- conditions ---------------------------------------------------------------------------------

def machine():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def conditions():
    import numpy
    import scipy
    from threadpoolctl import threadpool_info

    import mlpcore

    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer",
            "filepath")
    versions = dict(python=platform.python_version(), numpy=numpy.__version__,
                    scipy=scipy.__version__, mlpcore=mlpcore.__version__)
    try:
        import sklearn
        versions["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    try:
        commit = subprocess.run(["git", "-C", C.ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return dict(machine=machine(), cpus=os.cpu_count(),
                affinity=sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else None,
                blas=[{k: v for k, v in d.items() if k in keep} for d in threadpool_info()],
                env={k: v for k, v in os.environ.items()
                     if k.startswith("OPENBLAS_") or k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
                versions=versions, commit=commit)


# -- report -------------------------------------------------------------------------------------

def report(result):
    cond = result["conditions"]
    blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')} "
                     f"({b.get('num_threads')} threads, {os.path.basename(b.get('filepath', ''))})"
                     for b in cond["blas"])
    la0, la1 = result["loadavg_start"], result["loadavg_end"]
    lines = [f"Machine: {cond['machine']}, {cond['cpus']} CPUs (process pinned to "
             f"{cond['affinity']}); BLAS (threadpoolctl, held at 1 thread): {blas}; "
             f"OPENBLAS_*/OMP env: {cond['env'] or 'none set'}; "
             f"{', '.join(f'{k} {v}' for k, v in cond['versions'].items())}; "
             f"commit {cond['commit']}.",
             f"Load average {la0[0]:.2f} / {la0[1]:.2f} / {la0[2]:.2f} at start, "
             f"{la1[0]:.2f} / {la1[1]:.2f} / {la1[2]:.2f} at end; CPU pressure "
             f"{_pct(result['pressure_start'])} -> {_pct(result['pressure_end'])}; "
             f"median of {result['repeats']} side-by-side repeats; {result['seconds']:.0f} s.",
             ""]
    probs = result["problems"]
    for name, p in probs.items():
        lines.append(f"- {name}: {p['N']:,} x {p['D']:,} CSR, {p['nnz']} nonzeros per row "
                     f"({p.get('csr_mb', 0):.0f} MB as CSR, {p.get('dense_mb', 0):,.0f} MB "
                     f"dense), network {p['D']:,}-128-10")
    lines += ["", "| problem | implementation | input | batch | optimizer | samples timed | "
              "µs / sample | CPU µs / sample | CPU / wall |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in result["table"]:
        impl = c["impl"] + (f" ({c['note']})" if c["note"] else "")
        lines.append(f"| {c['problem']} | {impl} | {c['layout']} | {c['batch']} | "
                     f"{c['optimizer']} | {c['n']:,} | {_fmt(c['us_per_sample'])} | "
                     f"{_fmt(c['cpu_us_per_sample'])} | "
                     f"{c['cpu_util']:.2f} |")
    lines += ["", "| ratio | measured (wall) | on CPU time | target | met (wall) |",
              "|---|---|---|---|---|"]
    for r in result["ratios"]:
        tgt = f">= {r['target']:,.0f}x" if r["target"] else "-"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['what']} | {r['ratio']:,.1f}x | {r['cpu_ratio']:,.1f}x | {tgt} | "
                     f"{met} |")
    if result.get("sweep"):
        lines += ["", "nnz sweep (mlpcore sparse SGD, µs / sample, median of "
                  f"{PLOT[result['mode']]['repeats']}, {PLOT[result['mode']]['N']:,} rows; "
                  "engine = train_epoch, fit_more = the public API's epoch):", "",
                  "| features | nonzeros per row | engine, batch 1 | engine, batch 200 | "
                  "fit_more, batch 1 |", "|---|---|---|---|---|"]
        sw = {(p["width"], p["nnz"], p["batch"], p.get("api", "engine")): p["us_per_sample"]
              for p in result["sweep"]}
        for w, nnz in sorted({(p["width"], p["nnz"]) for p in result["sweep"]}):
            lines.append(f"| {w:,} | {nnz:,} | {_fmt(sw.get((w, nnz, 1, 'engine')))} | "
                         f"{_fmt(sw.get((w, nnz, 200, 'engine')))} | "
                         f"{_fmt(sw.get((w, nnz, 1, 'fit_more')))} |")
    return "\n".join(lines)


def _fmt(x):
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _pct(p):
    return "?" if p is None else f"{p:.0f}%"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (CI)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--no-plot", action="store_true", help="skip the nnz sweep and the plot")
    p.add_argument("--plot-only", action="store_true", help="only the nnz sweep and the plot")
    p.add_argument("-o", "--plot-out", default=None,
                   help="where the plot goes (default bench/sparse_nnz.png; with --smoke "
                        "bench/results/sparse_nnz-smoke.png)")
    p.add_argument("--json", default=None, help="also write the JSON here")
    p.add_argument("--cpu", type=int, default=0, help="pin to this CPU (-1: do not pin)")
    p.add_argument("--no-sklearn", action="store_true")
    args = p.parse_args(argv)
    mode = "smoke" if args.smoke else "full"
    repeats = args.repeats or REPEATS[mode]
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})  # before NumPy/OpenBLAS start any thread pool

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    import importlib.util

    from threadpoolctl import threadpool_limits

    have_sklearn = not args.no_sklearn and importlib.util.find_spec("sklearn") is not None
    t_start = time.perf_counter()
    result = dict(mode=mode, date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  repeats=repeats, loadavg_start=os.getloadavg(),
                  pressure_start=C.cpu_pressure(), problems=PROBLEMS[mode], table=[],
                  ratios=[], sweep=[], skipped=[] if have_sklearn else ["sklearn"])
    with threadpool_limits(limits=1):
        result["conditions"] = conditions()
        if not args.plot_only:
            cases = table_cases(mode, have_sklearn, log)
            result["table"] = measure_side_by_side(cases, repeats, log)
            result["ratios"] = ratios(result["table"])
        if not args.no_plot:
            result["sweep"] = nnz_sweep(mode, log)
    result["loadavg_end"] = os.getloadavg()
    result["pressure_end"] = C.cpu_pressure()
    result["seconds"] = time.perf_counter() - t_start
    if result["sweep"]:
        out = args.plot_out or (os.path.join(HERE, "results", "sparse_nnz-smoke.png")
                                if args.smoke else os.path.join(HERE, "sparse_nnz.png"))
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        draw(result["sweep"], out)
        result["plot"] = out
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    name = "sparse-smoke.json" if args.smoke else "sparse.json"
    for target in [os.path.join(HERE, "results", name)] + ([args.json] if args.json else []):
        with open(target, "w") as f:
            json.dump(result, f, indent=1, default=str)
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
