"""mlpcore's benchmark suite: one command, a markdown table, a JSON file.

    python bench/run.py --smoke        # seconds; tiny sizes; mlpcore, NumPy and the GEMM floor
    python bench/run.py --quick        # under 2 minutes; every installed peer, reduced N
    python bench/run.py                # the full run (about half an hour on 2 cores)
    python bench/run.py --check        # do all implementations agree after one epoch?
    python bench/run.py --plot         # also draw bench/samples_per_second.png

Every implementation runs in a fresh process (``bench/_worker.py``) with its thread count
pinned (1 and 2 threads); every figure is the median of several repeats after a warm-up.
Results go to ``bench/results/latest.json`` (``smoke.json`` for --smoke, ``check.json`` for
--check) and to ``--out PATH``. See bench/README.md for
what each row measures.
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

PROCESSES = ("floor", "mlpcore", "numpy", "sklearn", "torch", "jax-step", "jax-scan")
SMOKE_PROCESSES = ("floor", "mlpcore", "numpy")
CHECK_TOL_FLOAT64 = 1e-6
CHECK_TOL_FLOAT32 = 1e-4
TIMEOUT = {"smoke": 120, "quick": 600, "full": 3600}
ENV_REPORTED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def installed(module):
    return importlib.util.find_spec(module) is not None


def child_env(threads):
    """The environment of a worker: thread variables pinned, everything else (including
    OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE when set) passed through unchanged."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    if threads == 1:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run_worker(process, threads, mode, tasks, workloads=None, dtypes=None, check_out=None):
    cmd = [sys.executable, os.path.join(HERE, "_worker.py"), "--impl", process,
           "--threads", str(threads), "--mode", mode, "--tasks", ",".join(tasks)]
    if workloads:
        cmd += ["--workloads", ",".join(workloads)]
    if dtypes:
        cmd += ["--dtypes", ",".join(dtypes)]
    if check_out:
        cmd += ["--check-out", check_out]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(threads),
                              timeout=TIMEOUT[mode])
    except subprocess.TimeoutExpired:
        return dict(process=process, threads=threads, results=[],
                    errors=[f"{process} T={threads} {tasks} {workloads}: timed out after "
                            f"{TIMEOUT[mode]} s"])
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return dict(process=process, threads=threads, results=[],
                    errors=[f"{process} T={threads} {tasks} {workloads}: exit "
                            f"{proc.returncode}: {tail}"])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_seconds"] = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------------------------------
# Correctness check: every implementation's weights after one epoch vs the NumPy reference
# ---------------------------------------------------------------------------------------------

def run_check(processes, mode, dtypes, notes):
    """Run the check task in a fresh worker per implementation; compare (see compare_checks)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for process in processes:
            if process == "floor":
                continue
            path = os.path.join(tmp, f"{process}.npz")
            out = run_worker(process, 1, mode, ["check"], dtypes=dtypes, check_out=path)
            notes.extend(out.get("errors", []))
            paths.append(path)
        return compare_checks(paths)


def compare_checks(paths):
    """Max |weights - NumPy reference's| after one epoch, per implementation, case and dtype."""
    import numpy as np

    import _worker

    saved = {}
    for path in paths:
        if os.path.exists(path):
            with np.load(path) as d:
                saved.update({k: d[k] for k in d.files})
    rows = []
    for impl, case, dtype in sorted({tuple(k.split("|")[:3]) for k in saved}):
        if impl == "numpy":
            continue
        keys = [k for k in saved if k.startswith(f"{impl}|{case}|{dtype}|")]
        refs = [saved.get(f"numpy|{case}|{dtype}|{k.split('|')[3]}") for k in keys]
        if any(ref is None for ref in refs):
            continue
        worst = max(float(np.abs(saved[k] - ref).max()) for k, ref in zip(keys, refs))
        # The same difference relative to how far the reference moved from its start.
        Ws0, bs0 = C.make_init(_worker.CHECK_CASES[case]["sizes"], dtype)
        moved = max(max(float(np.abs(saved[f"numpy|{case}|{dtype}|W{i}"] - W0).max()),
                        float(np.abs(saved[f"numpy|{case}|{dtype}|b{i}"] - b0).max()))
                    for i, (W0, b0) in enumerate(zip(Ws0, bs0)))
        tol = CHECK_TOL_FLOAT64 if dtype == "float64" else CHECK_TOL_FLOAT32
        rows.append(dict(impl=impl, case=case, dtype=dtype, max_abs_diff=worst,
                         diff_over_change=worst / moved if moved else float("inf"),
                         reference_change=moved, tol=tol, ok=worst <= tol))
    return rows


def check_table(rows):
    lines = ["| implementation | case | dtype | max abs diff vs NumPy | diff / weight change "
             "| tolerance | ok |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['impl']} | {r['case']} | {r['dtype']} | {r['max_abs_diff']:.1e} | "
                     f"{r['diff_over_change']:.1e} | {r['tol']:.0e} | "
                     f"{'yes' if r['ok'] else '**NO**'} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

def fmt_ms(x):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def add_ratios(rows):
    """ratio_vs_mlpcore = this row's time / mlpcore's on the same case and threads."""
    base = {(r["workload"], r["batch"], r["dtype"], r["threads"]): r["ms_per_epoch"]
            for r in rows if r["impl"] == "mlpcore" and "ms_per_epoch" in r}
    for r in rows:
        b = base.get((r["workload"], r["batch"], r["dtype"], r["threads"]))
        if b and "ms_per_epoch" in r:
            r["ratio_vs_mlpcore"] = r["ms_per_epoch"] / b


def epoch_table(rows, threads, field):
    impls = [i for i in C.EPOCH_IMPLS if any(r["impl"] == i for r in rows)]
    cases = []
    for r in rows:
        key = (r["workload"], r["batch"], r["dtype"])
        if r["threads"] == threads and key not in cases:
            cases.append(key)
    order = {w: i for i, w in enumerate(C.WORKLOADS)}
    cases.sort(key=lambda k: (order[k[0]], 10**9 if k[1] == "full" else int(k[1]), k[2]))
    unit = {"ms_per_epoch": "ms per epoch (× mlpcore)", "us_per_sample": "µs per sample",
            "cpu_ms_per_epoch": "CPU ms per epoch"}[field]
    head = "| workload | batch | dtype | " + " | ".join(impls) + " |"
    lines = [f"{unit}, {threads} thread{'s' if threads > 1 else ''}:", "", head,
             "|" + "---|" * (3 + len(impls))]
    index = {(r["impl"], r["workload"], r["batch"], r["dtype"], r["threads"]): r for r in rows}
    for w, b, d in cases:
        cells = []
        for impl in impls:
            r = index.get((impl, w, b, d, threads))
            if r is None:
                cells.append("–")
            elif "error" in r:
                cells.append("error")
            else:
                v = r[field]
                overhead_bound = (impl == "floor" and r.get("raw_ms")
                                  and r["ms_per_epoch"] < 0.5 * r["raw_ms"])
                if v <= 0:
                    cell = "≈0"
                else:
                    cell = f"{v:.3g}" if field == "us_per_sample" else fmt_ms(v)
                if (field == "ms_per_epoch" and "ratio_vs_mlpcore" in r and impl != "mlpcore"
                        and not overhead_bound):
                    cell += f" ({r['ratio_vs_mlpcore']:.2f}×)"
                if r.get("scaled"):
                    cell += f" *{r['n_timed']}"
                if overhead_bound:
                    cell += " †"
                cells.append(cell)
        lines.append(f"| {w} | {b} | {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def micro_table(rows):
    ops = ("forward", "backprop", "forward+backprop", "update", "sgd step", "sgd step, in epoch",
           "adam step", "adam update")
    idx = {(r["impl"], r["op"], r["batch"], r["dtype"], r["threads"]): r["us"] for r in rows}
    keys = sorted({(r["dtype"], r["threads"]) for r in rows}, key=lambda k: (k[1], k[0]))
    lines = ["| op | batch | dtype | threads | mlpcore µs | NumPy µs | NumPy / mlpcore |",
             "|---|---|---|---|---|---|---|"]
    for d, t in keys:
        for op in ops:
            for b in (1, 32, 256):
                m = idx.get(("mlpcore", op, b, d, t))
                n = idx.get(("numpy", op, b, d, t))
                if m is None and n is None:
                    continue
                ratio = f"{n / m:.2f}" if m and n and m > 0 else "–"
                step = idx.get(("mlpcore", "sgd step", b, d, t))
                if op == "update" and m is not None and step and m < 0.05 * step:
                    # within the noise of a difference of two medians
                    m_cell, ratio = "≈0 (fused)", "–"
                elif m is not None and m < 0:
                    m_cell, ratio = "<0 (noise)", "–"   # a difference of two noisy medians
                else:
                    m_cell = "–" if m is None else f"{m:.2f}"
                n_cell = "–" if n is None else "<0 (noise)" if n < 0 else f"{n:.2f}"
                lines.append(f"| {op} | {b} | {d} | {t} | {m_cell} | {n_cell} | {ratio} |")
    return "\n".join(lines)


def adam_table(rows):
    lines = ["| dtype | threads | SGD ms/epoch | Adam ms/epoch | Adam / SGD | SGD µs/sample | "
             "Adam µs/sample | Adam update floor µs/sample | Adam / floor |",
             "|---|---|---|---|---|---|---|---|---|"]
    idx = {(r["rule"], r["dtype"], r["threads"]): r for r in rows}
    for d, t in sorted({(r["dtype"], r["threads"]) for r in rows}, key=lambda k: (k[1], k[0])):
        s, a = idx.get(("sgd", d, t)), idx.get(("adam", d, t))
        if not (s and a):
            continue
        f = idx.get(("adam floor", d, t))
        lines.append(f"| {d} | {t} | {fmt_ms(s['ms_per_epoch'])} | {fmt_ms(a['ms_per_epoch'])} | "
                     f"{a['ms_per_epoch'] / s['ms_per_epoch']:.2f} | "
                     f"{s['us_per_sample']:.2f} | {a['us_per_sample']:.2f} | "
                     + (f"{f['us_per_sample']:.2f} | "
                        f"{a['us_per_sample'] / f['us_per_sample']:.2f} |" if f else "– | – |"))
    return "\n".join(lines)


def scaling_table(rows):
    """2 threads against 1 for mlpcore, next to the 2-thread GEMM floor and the best peer."""
    idx = {(r["impl"], r["workload"], r["batch"], r["dtype"], r["threads"]): r for r in rows
           if "ms_per_epoch" in r}
    cases = sorted({(r["workload"], r["batch"], r["dtype"]) for r in rows
                    if r["impl"] == "mlpcore" and r["threads"] == 2},
                   key=lambda k: (list(C.WORKLOADS).index(k[0]),
                                  10**9 if k[1] == "full" else int(k[1]), k[2]))
    peers = [i for i in C.EPOCH_IMPLS if i not in ("mlpcore", "mlpcore.fit", "floor")]
    lines = ["| workload | batch | dtype | mlpcore 1 thread | 2 threads | 2t / 1t | "
             "2-thread GEMM floor | 2t / floor | best peer at 2 threads | peer / mlpcore 2t |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for w, b, d in cases:
        one = idx.get(("mlpcore", w, b, d, 1))
        two = idx.get(("mlpcore", w, b, d, 2))
        floor = idx.get(("floor", w, b, d, 2))
        best = min((idx[(p, w, b, d, 2)] for p in peers if (p, w, b, d, 2) in idx),
                   key=lambda r: r["ms_per_epoch"], default=None)
        cells = [fmt_ms(one["ms_per_epoch"]) if one else "–", fmt_ms(two["ms_per_epoch"]),
                 f"{one['ms_per_epoch'] / two['ms_per_epoch']:.2f}x" if one else "–",
                 fmt_ms(floor["ms_per_epoch"]) if floor else "–",
                 f"{two['ms_per_epoch'] / floor['ms_per_epoch']:.2f}x"
                 if floor and floor["ms_per_epoch"] > 0 else "–",
                 f"{best['impl']} {fmt_ms(best['ms_per_epoch'])}" if best else "–",
                 f"{best['ms_per_epoch'] / two['ms_per_epoch']:.2f}x" if best else "–"]
        lines.append(f"| {w} | {b} | {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def blas_table(workers):
    lines = ["| process | threads | library | internal_api | version | architecture | "
             "num_threads | filepath |", "|---|---|---|---|---|---|---|---|"]
    seen = set()
    for w in workers:
        for lib in w.get("blas", []):
            key = (w["process"], w["threads"], lib.get("filepath"))
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"| {w['process']} | {w['threads']} | {lib.get('prefix')} | "
                         f"{lib.get('internal_api')} | {lib.get('version')} | "
                         f"{lib.get('architecture')} | {lib.get('num_threads')} | "
                         f"{lib.get('filepath')} |")
    return "\n".join(lines)


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", C.ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", C.ROOT, "status", "--porcelain", "--", "src",
                                "mlpcore"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    from importlib import metadata
    versions = {}
    for dist in ("mlpcore", "numpy", "scipy", "threadpoolctl", "scikit-learn", "torch", "jax",
                 "jaxlib", "matplotlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(),
                platform=platform.platform(), git_commit=commit,
                engine_sources_modified=bool(dirty), versions=versions,
                env={k: os.environ.get(k) for k in ENV_REPORTED if k in os.environ},
                date=datetime.datetime.now().isoformat(timespec="seconds"))


# ---------------------------------------------------------------------------------------------

def plan(mode, processes, threads_list, dtypes, workloads):
    """[(process, threads, tasks, workloads, dtypes)] in the order they run."""
    m = C.MODES[mode]
    jobs = []
    for threads in threads_list:
        wl, dts = list(workloads), list(dtypes)
        if threads > 1:
            wl = [w for w in wl if w in m["more_threads_workloads"]]
            dts = [d for d in dts if d in m["more_threads_dtypes"]]
        elif mode != "smoke" and "S" not in wl and "W1" in wl and "float64" in dts:
            wl.append("S")  # the batch sweep for the plot: 1 thread, float64
        extras_here = threads in m["extras_threads"]
        for process in processes:
            if threads > 1 and process in m.get("more_threads_skip", ()):
                continue
            extra = []
            if extras_here and process in ("mlpcore", "numpy"):
                extra.append("micro")
            if extras_here and process == "mlpcore" and "W3" in workloads:
                extra.append("adam")
            if not (wl and dts) and not extra:
                continue
            if m["isolate"] == "process":
                tasks = (["epoch"] if wl and dts else []) + extra
                jobs.append((process, threads, tasks, wl or workloads, dts or dtypes))
            else:  # one process per workload (both dtypes)
                for w in wl:
                    jobs.append((process, threads, ["epoch"], [w], dts))
                if extra:
                    jobs.append((process, threads, extra, workloads, dtypes))
    return jobs


def merge_rounds(rows, key):
    """One row per key: epoch rows pool the repeats of every round (median over all of them);
    micro rows take the median of the rounds' per-call figures."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in key), []).append(r)
    merged = []
    for group in groups.values():
        good = [r for r in group if "error" not in r]
        if not good:
            merged.append(group[0])
            continue
        row = dict(good[0])
        if len(good) > 1:
            if "times_ms" in row:
                row["times_ms"] = [t for r in good for t in r["times_ms"]]
                row["cpu_times_ms"] = [t for r in good for t in r["cpu_times_ms"]]
                if "overhead_ms" in row:
                    row["overhead_ms"] = C.median([r["overhead_ms"] for r in good])
                C.finalize_epoch_row(row)
            else:
                row["us"] = C.median([r["us"] for r in good])
            row["rounds"] = len(good)
        merged.append(row)
    return merged


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="reduced N and repeats: under 2 minutes")
    g.add_argument("--smoke", action="store_true",
                   help="tiny sizes, mlpcore + NumPy + GEMM floor only: a few seconds (CI)")
    p.add_argument("--check", action="store_true",
                   help="only check that all implementations agree after one epoch")
    p.add_argument("--impls", default=None,
                   help=f"comma list of processes ({', '.join(PROCESSES)}) or 'all'")
    p.add_argument("--threads", default=None, help="comma list, e.g. 1 or 1,2")
    p.add_argument("--dtypes", default=None, help="comma list of float64, float32")
    p.add_argument("--workloads", default=None,
                   help=f"comma list of {', '.join(C.EPOCH_WORKLOADS)}")
    p.add_argument("--rounds", type=int, default=None,
                   help="run every process this many times, interleaved (full: 2, else 1)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory section")
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--plot", action="store_true", help="draw bench/samples_per_second.png")
    args = p.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    m = C.MODES[mode]
    t_start = time.perf_counter()

    if args.impls in (None, ""):
        wanted = SMOKE_PROCESSES if mode == "smoke" else PROCESSES
    elif args.impls == "all":
        wanted = PROCESSES
    else:
        wanted = tuple(args.impls.split(","))
        unknown = set(wanted) - set(PROCESSES)
        if unknown:
            p.error(f"unknown implementation(s) {sorted(unknown)}; choose from {PROCESSES}")
    notes, skipped = [], []
    processes = []
    for proc in PROCESSES:
        if proc not in wanted:
            if mode == "smoke" and args.impls is None:
                skipped.append(dict(impl=proc, reason="not run in --smoke (use --quick or "
                                    "--smoke --impls all)"))
            continue
        if not installed(C.REQUIRES[proc]):
            skipped.append(dict(impl=proc, reason=f"{C.REQUIRES[proc]} is not installed"))
            continue
        processes.append(proc)
    threads_list = [int(t) for t in args.threads.split(",")] if args.threads else list(m["threads"])
    dtypes = args.dtypes.split(",") if args.dtypes else list(m["dtypes"])
    workloads = args.workloads.split(",") if args.workloads else list(C.EPOCH_WORKLOADS)

    result = dict(mode=mode, meta=machine_info(), settings=dict(
        learning_rate=C.LEARNING_RATE, hidden_activation=C.HIDDEN_ACTIVATION,
        output="softmax", loss="cross_entropy (batch mean)", optimizer="plain SGD",
        repeats=m["repeats"], warmup=m["warmup"], threads=threads_list, dtypes=dtypes,
        n=m["n"], slow_subset=m["slow_subset"], slow_batch=m["slow_batch"],
        workloads={w: dict(C.WORKLOADS[w], n_run=C.n_samples(w, mode)) for w in C.WORKLOADS}),
        epoch=[], micro=[], adam=[], memory=[], check=[], workers=[], skipped=skipped,
        notes=notes, loadavg_start=os.getloadavg())

    if args.check:
        rows = run_check(processes, mode, dtypes, notes)
        result["check"] = rows
        print(check_table(rows))
        for s in skipped:
            print(f"- skipped {s['impl']}: {s['reason']}")
        write_json(result, args.out, name="check.json")
        return 0 if rows and all(r["ok"] for r in rows) else 1

    log = sys.stderr
    jobs = plan(mode, processes, threads_list, dtypes, workloads)
    rounds = args.rounds or m["rounds"]
    result["settings"]["rounds"] = rounds
    raw = {"epoch": [], "micro": [], "adam": []}
    check_dir = tempfile.mkdtemp() if mode == "smoke" else None
    check_paths = []
    for rnd in range(1, rounds + 1):
        for i, (process, threads, tasks, wl, dts) in enumerate(jobs, 1):
            print(f"[round {rnd}/{rounds}, {i}/{len(jobs)}] {process} threads={threads} "
                  f"{'+'.join(tasks)} {','.join(wl)} {','.join(dts)}", file=log, flush=True)
            check_out = None
            if check_dir and process in ("mlpcore", "numpy") and rnd == 1 and threads == 1:
                tasks = tasks + ["check"]  # smoke: the check rides along, no extra process
                check_out = os.path.join(check_dir, f"{process}.npz")
                check_paths.append(check_out)
            out = run_worker(process, threads, mode, tasks, wl, dts, check_out=check_out)
            notes.extend(out.pop("errors", []))
            for r in out.pop("results", []):
                raw[r["kind"]].append(r)
                if "error" in r:
                    notes.append(f"{r['impl']} {C.case_id(r['workload'], r['batch'], r['dtype'])}"
                                 f" T={r['threads']}: {r['error']}")
            out["round"] = rnd
            result["workers"].append(out)
    result["epoch"] = merge_rounds(raw["epoch"], ("impl", "workload", "batch", "dtype", "threads"))
    result["adam"] = merge_rounds(raw["adam"], ("rule", "dtype", "threads"))
    result["micro"] = merge_rounds(raw["micro"], ("impl", "op", "batch", "dtype", "threads"))

    if check_dir:
        result["check"] = compare_checks(check_paths)
        shutil.rmtree(check_dir, ignore_errors=True)
        bad = [r for r in result["check"] if not r["ok"]]
        if bad:
            notes.append(f"CHECK FAILED: {bad}")

    if not args.no_memory:
        import memory
        for case in m["memory_cases"]:
            for impl in m["memory_impls"]:
                if not installed(memory.REQUIRES[impl]):
                    continue
                print(f"[memory] {impl} {case}", file=log, flush=True)
                r = memory.run_in_subprocess(impl, case, timeout=TIMEOUT[mode])
                result["memory"].append(r)
                if "error" in r:
                    notes.append(f"memory {impl} {case}: {r['error']}")

    add_ratios(result["epoch"])
    result["loadavg_end"] = os.getloadavg()
    result["seconds"] = time.perf_counter() - t_start
    print(report(result))
    # A smoke run (CI, tests) never overwrites the last real run's latest.json.
    path = write_json(result, args.out, name="smoke.json" if mode == "smoke" else "latest.json")
    print(f"\nJSON written to {os.path.relpath(path)}" + (f" and {args.out}" if args.out else ""))
    if args.plot:
        if installed("matplotlib"):
            import plot
            print(f"plot written to {plot.plot(path)}")
        else:
            print("plot skipped: matplotlib is not installed")
    failed = [r for r in result["check"] if not r["ok"]]
    return 1 if failed else 0


def report(result):
    meta = result["meta"]
    out = [f"# mlpcore benchmark ({result['mode']})", "",
           f"{meta['date']}, {meta['cpu']}, {meta['cores']} cores, Python {meta['python']}, "
           f"commit {meta['git_commit']}"
           f"{' (engine sources modified)' if meta['engine_sources_modified'] else ''}; "
           f"load average {result['loadavg_start'][0]:.2f} at start, "
           f"{result['loadavg_end'][0]:.2f} at end; {result['seconds']:.0f} s.",
           "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v) + ".",
           "Env: " + (", ".join(f"{k}={v}" for k, v in meta["env"].items()) or
                      "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE not set") + ".",
           "",
           f"Settings: softmax + cross-entropy (batch mean), {C.HIDDEN_ACTIVATION} hidden, plain "
           f"SGD, lr {C.LEARNING_RATE}; median of {result['settings']['repeats']} repeats "
           f"(each after {result['settings']['warmup']} warm-up epoch) x "
           f"{result['settings'].get('rounds', 1)} interleaved round(s); one fresh process "
           "per implementation; one-thread workers pinned to one CPU.",
           "`*n`: timed on n samples and scaled per sample to the workload's N. "
           "`†`: the floor is mostly Python call overhead (subtracted). "
           "Ratios are time / mlpcore's time (above 1: slower than mlpcore).", ""]
    epoch = result["epoch"]
    for t in sorted({r["threads"] for r in epoch}):
        out += ["## Epochs", "", epoch_table(epoch, t, "ms_per_epoch"), "",
                epoch_table(epoch, t, "us_per_sample"), ""]
    if any(r["impl"] == "mlpcore" and r["threads"] == 2 for r in epoch):
        out += ["## 2 threads against 1", "", scaling_table(epoch), ""]
    one = [r["cpu_util"] for r in epoch if r["threads"] == 1 and "cpu_util" in r]
    starved = sum(u < 0.8 for u in one)
    if one and starved >= 0.25 * len(one):
        out += [f"The machine was contended ({starved} of {len(one)} one-thread rows got under "
                "80% of a core): the same rows on process CPU time, which is less sensitive to "
                "being descheduled (still not to sharing caches):", "",
                epoch_table(epoch, 1, "cpu_ms_per_epoch"), ""]
    if result["micro"]:
        out += ["## Microbenchmarks (784-128-10)", "", micro_table(result["micro"]), ""]
    if result["adam"]:
        out += ["## Per-sample Adam vs SGD in mlpcore (W3, batch 1)", "",
                adam_table(result["adam"]), ""]
    if result["memory"]:
        import memory
        out += ["## Peak memory of a fit (one epoch)", "", memory.table(result["memory"]), ""]
    if result["check"]:
        out += ["## Check: weights after one epoch vs NumPy", "", check_table(result["check"]),
                ""]
    if result["workers"]:
        out += ["## BLAS and threads per process", "", blas_table(result["workers"]), ""]
        low = [r for r in epoch if r.get("cpu_util") is not None and r["threads"] == 1
               and r["cpu_util"] < 0.8]
        busy = [r for r in epoch if r.get("cpu_util") is not None and r["threads"] == 1
                and r["cpu_util"] > 1.2]
        if low:
            out.append(f"- {len(low)} one-thread rows got under 80% of a core (CPU time / wall "
                       "time): the machine was busy, those figures are pessimistic: " +
                       ", ".join(f"{r['impl']} {C.case_id(r['workload'], r['batch'], r['dtype'])}"
                                 f" ({r['cpu_util']:.2f})" for r in low[:12]) +
                       (" …" if len(low) > 12 else ""))
        if busy:
            out.append(f"- {len(busy)} one-thread rows used more than one core: " +
                       ", ".join(f"{r['impl']} {C.case_id(r['workload'], r['batch'], r['dtype'])}"
                                 f" ({r['cpu_util']:.2f})" for r in busy[:12]))
    for s in result["skipped"]:
        out.append(f"- skipped {s['impl']}: {s['reason']}")
    for n in result["notes"]:
        out.append(f"- note: {n.splitlines()[0] if n else n}")
    return "\n".join(out)


def write_json(result, out=None, name="latest.json"):
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", name)
    for target in [path] + ([out] if out else []):
        with open(target, "w") as f:
            json.dump(result, f, indent=1)
    return path


if __name__ == "__main__":
    sys.exit(main())
