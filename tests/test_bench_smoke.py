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
