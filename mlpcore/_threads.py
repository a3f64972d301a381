"""The thread policy: how many threads the engine uses, and BLAS's place in it.

``n_threads`` means all of the engine's parallelism. The engine splits every large enough
pass (a mini-batch, a CHUNK_ROWS chunk of a full batch, a block of rows to predict) among its
own OpenMP threads, each calling single-threaded BLAS; BLAS's own threads are not used, so
the two never multiply into more threads than cores. During a fit, BLAS (SciPy's and
NumPy's OpenBLAS: threadpoolctl limits both) is therefore held at one thread, and the engine
checks it again inside its parallel segments (``_engine.blas_num_threads``).

The default is the CPUs this process may run on (``os.sched_getaffinity``), capped by what
one pass can use: a thread must get about ``_engine.PARALLEL_MIN_MACS`` multiply-adds per
pass, or waking it costs more than it saves. Per-sample training (batch size 1) runs its
samples in order; on a large first layer, blocked per-sample SGD splits the hidden units
among the threads (one hidden layer, no L2) or each block's matrix products. Sparse X splits
its mini-batches by rows. On a busy machine, where another process holds a core, a pass
split across threads waits at each synchronisation for the thread that was descheduled; the
engine measures its passes and runs them on one thread while that is faster (see ``Tuner``
in src/_network.pxd). The weights do not depend on the thread count, so none of this changes
results. Users can cap the count with ``n_threads=``; BLAS limits set with threadpoolctl
around a fit are kept::

    model = mlpcore.fit(X, y, n_threads=1)
"""

import contextlib
import os
import threading

import mlpcore._engine as _engine

# Prediction leaves products under this size alone: BLAS runs them on one thread anyway,
# and setting a limit (tens of microseconds) would cost more than the product.
UNLIMITED_BELOW_MACS = 1 << 19
# BLAS libraries take the thread count as a C int: a larger count cannot be passed (Python
# ints beyond 64 bits make ctypes raise, others would wrap around to negative counts). The
# engine itself uses at most _engine.MAX_THREADS threads; a larger n_threads is capped there.
MAX_THREADS = 2**31 - 1

# One sentence on the default, shared by fit's docstring and the command line's --threads.
DEFAULT_THREADS_HELP = (
    "the engine's threads (each calls single-threaded BLAS); by default the CPUs this "
    "process may use, capped so that each thread gets about "
    f"{_engine.PARALLEL_MIN_MACS:,} multiply-adds per pass (per-sample training splits "
    "only large first layers); on a busy machine passes fall back to one thread while that "
    "is faster. The weights do not depend on it")

_controller = None

# BLAS thread counts are process-wide. A limit records the count it found and restores it on
# exit, so two fits limiting at overlapping times in two Python threads would restore out of
# order and could leave every later BLAS call in the process (NumPy's too) on the limited
# count. Only one fit at a time therefore holds a limit: a fit starting while another one
# holds it runs under that limit, and the holder restores the original count when it ends.
_limit_lock = threading.Lock()
_limit_held = False


def _threadpool_controller():
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def available_cpus():
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads(batch_rows, sizes):
    """The engine threads a fit with passes of ``batch_rows`` rows gets by default."""
    if not _engine.OPENMP:
        return 1
    if batch_rows <= 1:
        # Per-sample training runs its samples in order on one thread; only blocked SGD on a
        # large first layer splits the block's products (3 GRAM_BLOCK D M multiply-adds).
        if sizes[0] * sizes[1] < _engine.GRAM_MIN_WEIGHTS:
            return 1
        macs = 3 * _engine.GRAM_BLOCK * sizes[0] * sizes[1]
        useful = max(1, min(macs // _engine.PARALLEL_MIN_MACS,
                            _engine.GRAM_BLOCK // min(_engine.ROW_ALIGN.values())))
        return int(min(available_cpus(), useful, _engine.MAX_THREADS))
    macs = 3 * batch_rows * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    useful = max(1, min(macs // _engine.PARALLEL_MIN_MACS,
                        batch_rows // min(_engine.ROW_ALIGN.values())))
    return int(min(available_cpus(), useful, _engine.MAX_THREADS))


def blas_threads(n_threads, batch_rows, sizes, *, inference=False):
    """The thread policy for one fit (or prediction) as a context manager.

    Inside it, the engine's passes called from this Python thread use up to ``n_threads``
    threads (default: :func:`default_threads`) and BLAS runs single-threaded.

    Parameters
    ----------
    n_threads : int or None
        Explicit thread count, or None for the default.
    batch_rows : int
        Rows per forward/backward pass (the batch, at most the engine's chunk).
    sizes : sequence of int
        Layer widths (D, M_1, ..., K).
    inference : bool
        For prediction: products under ``UNLIMITED_BELOW_MACS`` are left alone (one
        thread, no BLAS limit).

    Raises
    ------
    ValueError
        ``n_threads`` above ``MAX_THREADS`` (what BLAS can be given).
    """
    if n_threads is not None and n_threads > MAX_THREADS:
        raise ValueError(f"n_threads must be at most {MAX_THREADS} (BLAS takes the thread "
                         f"count as a C int), got {n_threads}")
    if inference:
        work = batch_rows * max(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        if work < UNLIMITED_BELOW_MACS:
            return _engine_threads(1)
    if n_threads is None:
        n_threads = default_threads(batch_rows, sizes)
    return _policy(min(int(n_threads), _engine.MAX_THREADS))


@contextlib.contextmanager
def _engine_threads(n_threads):
    old = _engine.get_num_threads()
    _engine.set_num_threads(n_threads)
    try:
        yield
    finally:
        _engine.set_num_threads(old)


@contextlib.contextmanager
def _policy(n_threads):
    with _engine_threads(n_threads), _exclusive_limit(1):
        yield


@contextlib.contextmanager
def _exclusive_limit(n_threads):
    global _limit_held
    controller = _threadpool_controller()
    with _limit_lock:
        holder = not _limit_held
        _limit_held = True
    if not holder:  # another fit holds a limit now; it will restore the original count
        yield
        return
    try:
        with controller.limit(limits=n_threads, user_api="blas"):
            yield
    finally:
        with _limit_lock:
            _limit_held = False
