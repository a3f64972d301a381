"""No allocation inside the epoch loop, in any thread.

A fit allocates its work buffers once (Workspace); an epoch then runs without the GIL on the
calling thread and the engine's OpenMP threads. A small malloc shim, preloaded into a child
Python (LD_PRELOAD), counts every malloc/calloc/realloc/posix_memalign/aligned_alloc made by
a thread that does not hold the GIL while counting is on: the engine's nogil segments, its
worker threads, and BLAS called from them. Python's own allocations (argument parsing, the
returned tuple) happen with the GIL held and are not counted. The child trains one warm-up
epoch of each path (thread pools and BLAS buffers start then), then counts over more epochs.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

SHIM = r"""
#define _GNU_SOURCE
#include <stddef.h>
#include <stdatomic.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_int counting = 0;
static atomic_long count = 0;
static int (*gil_check)(void) = NULL;

static void note(void)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed) && gil_check && !gil_check())
        atomic_fetch_add(&count, 1);
}

void *malloc(size_t n) { note(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(); return __libc_realloc(p, n); }
int posix_memalign(void **p, size_t a, size_t n)
{
    note();
    *p = __libc_memalign(a, n);
    return *p ? 0 : 12;
}
void *aligned_alloc(size_t a, size_t n) { note(); return __libc_memalign(a, n); }
void *memalign(size_t a, size_t n) { note(); return __libc_memalign(a, n); }

void shim_start(void *check) { gil_check = (int (*)(void))check; atomic_store(&count, 0);
                               atomic_store(&counting, 1); }
long shim_stop(void) { atomic_store(&counting, 0); return atomic_load(&count); }
"""

CHILD = textwrap.dedent("""
    import ctypes, sys
    import numpy as np
    from threadpoolctl import threadpool_limits
    from mlpcore import _engine as E

    shim = ctypes.CDLL(sys.argv[1])
    shim.shim_stop.restype = ctypes.c_long
    gil_check = ctypes.cast(ctypes.pythonapi.PyGILState_Check, ctypes.c_void_p)

    def case(sizes, n, batch, rule, dtype, threads):
        rng = np.random.default_rng(0)
        net = E.Network(sizes, E.HIDDEN_ACTIVATIONS["sigmoid"], E.OUTPUT_ACTIVATIONS["softmax"],
                        E.LOSSES["cross_entropy"])
        X = rng.random((n, sizes[0])).astype(dtype)
        Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
        theta = (rng.standard_normal(net.n_params) * 0.1).astype(dtype)
        s1, s2 = np.zeros_like(theta), np.zeros_like(theta)
        w = rng.random(n).astype(dtype)
        ws = E.Workspace(net, min(batch, E.CHUNK_ROWS), dtype)
        ws_all = E.Workspace(net, min(n, E.CHUNK_ROWS), dtype)  # for loss_gradient (L-BFGS)
        orders = [rng.permutation(n) for _ in range(4)]
        grad = np.empty_like(theta)
        E.set_num_threads(threads)
        def epoch(i):
            E.train_epoch(net, ws, theta, X, Y, w, orders[i], batch, rule, 1e-3,
                          alpha=1e-4, state1=s1, state2=s2)
        epoch(0)                                       # warm-up: pools and buffers start
        E.loss_gradient(net, theta, X, Y, w, 1e-4, grad, ws_all)
        shim.shim_start(gil_check)
        for i in range(1, 4):
            epoch(i)
        E.loss_gradient(net, theta, X, Y, w, 1e-4, grad, ws_all)
        counted = shim.shim_stop()
        E.set_num_threads(1)
        return counted

    E._set_parallel_limits(min_macs=1, split_min_weights=1)  # split every pass
    results = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for threads in (1, 2):
            for args in [((40, 32, 5), 600, 64, "sgd", np.float32),
                         ((40, 32, 5), 600, 50, "adam", np.float64),
                         ((12, 16, 3), E.CHUNK_ROWS + 500, E.CHUNK_ROWS + 500, "momentum",
                          np.float64),
                         ((40, 32, 5), 300, 1, "adam", np.float64),
                         ((200, 100, 5), 300, 1, "sgd", np.float64)]:  # blocked per-sample
                results[(threads, args[2], args[3])] = case(*args, threads)
    print(results)
    # Positive control: the first region of a new team size makes libgomp allocate the team
    # (from the engine's nogil section), which the shim must see.
    rng = np.random.default_rng(1)
    net = E.Network((40, 32, 5), 1, 4, 1)
    X = rng.random((600, 40)); Y = np.eye(5)[rng.integers(0, 5, 600)]
    theta = rng.standard_normal(net.n_params) * 0.1
    ws = E.Workspace(net, 64, np.float64)
    E.set_num_threads(3)
    with threadpool_limits(limits=1, user_api="blas"):
        shim.shim_start(gil_check)
        E.train_epoch(net, ws, theta, X, Y, None, None, 64, "sgd", 1e-3)
        control = shim.shim_stop()
    print("control", control)
    sys.exit(1 if any(results.values()) or control == 0 else 0)
""")


def _compiler():
    return shutil.which(sysconfig.get_config_var("CC").split()[0] if sysconfig.get_config_var(
        "CC") else "cc") or shutil.which("cc") or shutil.which("gcc")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs glibc and LD_PRELOAD")
def test_no_allocation_inside_the_epoch_loop_in_any_thread(tmp_path):
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler to build the malloc shim")
    src = tmp_path / "shim.c"
    lib = tmp_path / "shim.so"
    src.write_text(SHIM)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    env = dict(os.environ, LD_PRELOAD=str(lib))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(lib)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # zero counted, control seen
    assert proc.stdout.count("):") >= 10, proc.stdout  # every case ran
    assert int(proc.stdout.split("control")[1]) > 0
