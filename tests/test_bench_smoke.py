"""The benchmark suite must keep running: ``bench/run.py --smoke`` in a subprocess.

Speed is never asserted here; only that the suite runs, that mlpcore and the NumPy baseline
agree after one epoch, and that the JSON it writes has the expected shape.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_smoke_runs_and_writes_json(tmp_path):
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=180, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| workload | batch | dtype |" in proc.stdout

    result = json.loads(out.read_text())
    for key in ("mode", "meta", "settings", "epoch", "micro", "adam", "memory", "check",
                "workers", "skipped", "notes"):
        assert key in result, key
    assert result["mode"] == "smoke"

    rows = result["epoch"]
    assert not [r for r in rows if "error" in r]
    impls = {r["impl"] for r in rows}
    assert {"floor", "mlpcore", "mlpcore.fit", "numpy"} <= impls
    for r in rows:
        for key in ("workload", "batch", "dtype", "threads", "ms_per_epoch", "us_per_sample",
                    "times_ms", "n_timed", "n_nominal", "cpu_util"):
            assert key in r, (key, r)
        assert r["ms_per_epoch"] >= 0 and len(r["times_ms"]) == result["settings"]["repeats"]
        if r["impl"] != "mlpcore":
            assert r["ratio_vs_mlpcore"] >= 0
    assert {r["workload"] for r in rows if r["impl"] == "mlpcore"} == {"W1", "W2", "W3", "W4",
                                                                     "W5"}

    ops = {(r["impl"], r["op"]) for r in result["micro"]}
    for op in ("forward", "backprop", "update", "sgd step"):
        assert ("mlpcore", op) in ops and ("numpy", op) in ops
    assert {r["rule"] for r in result["adam"]} == {"sgd", "adam", "adam floor"}

    assert result["check"] and all(r["ok"] for r in result["check"])
    assert all("error" not in r and r["fit_extra_bytes"] >= 0 for r in result["memory"])

    blas = [lib for w in result["workers"] for lib in w["blas"]]
    assert blas and all({"internal_api", "version", "num_threads", "filepath"} <= set(lib)
                        for lib in blas)
    # Peers are never needed by --smoke: each one not run is listed with the reason.
    skipped = {s["impl"] for s in result["skipped"]}
    assert {"sklearn", "torch", "jax-step", "jax-scan"} <= skipped


def test_sparse_bench_smoke_runs(tmp_path):
    # bench/sparse.py --smoke: every row of the sparse table (scikit-learn's too, if installed)
    # and the nnz plot at tiny sizes. Speed is not asserted.
    out, png = tmp_path / "sparse.json", tmp_path / "sparse_nnz.png"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "sparse.py"), "--smoke", "--json", str(out),
         "-o", str(png)], capture_output=True, text=True, timeout=180, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| problem | implementation | input | batch |" in proc.stdout
    result = json.loads(out.read_text())
    assert result["mode"] == "smoke" and png.stat().st_size > 0
    rows = {r["id"]: r for r in result["table"]}
    for key in ("mlpcore sgd b1", "mlpcore sgd b200", "mlpcore adam b200",
                "small mlpcore sgd b1", "small mlpcore dense sgd b1"):
        assert key in rows, key
    for r in rows.values():
        assert r["us_per_sample"] > 0 and r["n"] > 0 and len(r["walls"]) == result["repeats"]
    assert {r["key"] for r in result["ratios"]} >= {"dense b1"}
    if "sklearn" not in result["skipped"]:
        assert {"sklearn b1", "sklearn b200", "adam b200"} <= {r["key"] for r in result["ratios"]}
    assert {(p["width"], p["batch"]) for p in result["sweep"]} == {
        (w, b) for w in {p["width"] for p in result["sweep"]} for b in (1, 200)}
    assert result["conditions"]["blas"] and result["conditions"]["machine"]
