"""Samples per second against batch size on 784-128-10, one line per implementation.

    python bench/plot.py [results.json] [-o bench/samples_per_second.png]

Reads the JSON of ``run.py`` (default ``bench/results/latest.json``) and draws, log-log, the
training throughput (samples per second = 1e6 / µs per sample) of every implementation at
batch 1, 8, 32, 64, 128, 256, 1024 and full batch, float64, one BLAS thread. The points come
from the workloads of that network: W3 (batch 1), the sweep S (8, 32, 128, 1024), W2 (64,
256) and W1 (full batch, drawn at x = N). The GEMM floor is drawn dashed: no implementation
that does these matrix products can sit above it (its batch-1 point is mostly Python call
overhead subtracted, so it is left out where that overhead dominated).
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

NETWORK_WORKLOADS = ("W1", "W2", "W3", "S")
STYLE = {"floor": dict(color="black", linestyle="--", marker=""),
         "mlpcore": dict(color="tab:red", linewidth=2.5, marker="o"),
         "mlpcore.fit": dict(color="tab:red", linestyle=":", marker="."),
         "numpy": dict(color="tab:blue", marker="s"),
         "sklearn": dict(color="tab:orange", marker="^"),
         "torch": dict(color="tab:purple", marker="v"),
         "jax-step": dict(color="tab:green", marker="D"),
         "jax-scan": dict(color="tab:olive", marker="d")}


def series(rows, dtype="float64", threads=1):
    """{impl: [(batch_size_as_number, samples_per_second), ...]} sorted by batch size."""
    out = {}
    for r in rows:
        if (r.get("kind") != "epoch" or r["workload"] not in NETWORK_WORKLOADS or "error" in r
                or r["dtype"] != dtype or r["threads"] != threads or not r.get("us_per_sample")):
            continue
        if r["impl"] == "floor" and r.get("raw_ms") and r["ms_per_epoch"] < 0.5 * r["raw_ms"]:
            continue
        x = r["n_nominal"] if r["batch"] == "full" else int(r["batch"])
        out.setdefault(r["impl"], {})[x] = 1e6 / r["us_per_sample"]
    return {impl: sorted(pts.items()) for impl, pts in out.items()}


def plot(json_path, out_path=None, dtype="float64", threads=1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(json_path) as f:
        result = json.load(f)
    data = series(result["epoch"], dtype, threads)
    if not data:
        raise SystemExit(f"no {dtype}, {threads}-thread rows of 784-128-10 in {json_path}")
    out_path = out_path or os.path.join(HERE, "samples_per_second.png")
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for impl in C.EPOCH_IMPLS:
        if impl in data:
            xs, ys = zip(*data[impl])
            ax.plot(xs, ys, label="GEMM floor (SciPy BLAS)" if impl == "floor" else impl,
                    **STYLE.get(impl, {}))
    N = C.WORKLOADS["W1"]["N"]
    ticks = [b for b in C.PLOT_BATCHES if b is not None] + [N]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks[:-1]] + [f"full\n({N:,})"])
    ax.minorticks_off()
    ax.set_xlabel("batch size")
    ax.set_ylabel("training samples per second")
    meta = result.get("meta", {})
    ax.set_title(f"784-128-10 MLP, SGD, {dtype}, {threads} BLAS thread"
                 f"{'s' if threads > 1 else ''} ({result.get('mode', '?')} run)\n"
                 f"{meta.get('cpu', '')}, {meta.get('date', '')}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("json", nargs="?", default=os.path.join(HERE, "results", "latest.json"))
    p.add_argument("-o", "--out", default=None)
    p.add_argument("--dtype", default="float64")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    print(plot(args.json, args.out, args.dtype, args.threads))


if __name__ == "__main__":
    main()
