"""How many BLAS threads the engine's matrix products use.

The engine calls SciPy's BLAS (through ``scipy.linalg.cython_blas``), which PyPI wheels ship
as their own OpenBLAS, separate from NumPy's. threadpoolctl limits both. The default is
chosen by the work in one matrix product: a second thread speeds up large products (full
batches, wide layers) but makes small ones slower, since the worker thread spends its time
synchronising; on a machine where another process keeps the cores busy, spinning BLAS
threads can be many times slower still. Users can always cap the count, either with
``n_threads=`` or around any call::

    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        model = mlpcore.fit(X, y)
"""

import contextlib
import threading

# Products with fewer multiply-adds than this (batch rows x fan_in x fan_out of the widest
# layer) run on one BLAS thread unless the user says otherwise: about a millisecond of work.
SINGLE_THREAD_BELOW_MACS = 1 << 22
# Prediction leaves products under this size alone: BLAS runs them on one thread anyway,
# and setting a limit (tens of microseconds) would cost more than the product.
UNLIMITED_BELOW_MACS = 1 << 19
# BLAS libraries take the thread count as a C int: a larger count cannot be passed (Python
# ints beyond 64 bits make ctypes raise, others would wrap around to negative counts).
MAX_THREADS = 2**31 - 1

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


def blas_threads(n_threads, batch_rows, sizes, *, inference=False):
    """A context manager limiting BLAS threads for products of ``batch_rows`` rows.

    Parameters
    ----------
    n_threads : int or None
        Explicit thread count, or None for the default: 1 when one product of the widest
        layer has fewer than ``SINGLE_THREAD_BELOW_MACS`` multiply-adds, BLAS's own
        setting otherwise.
    batch_rows : int
        Rows per forward/backward pass (the batch, at most the engine's chunk).
    sizes : sequence of int
        Layer widths (D, M_1, ..., K).
    inference : bool
        For prediction: products under ``UNLIMITED_BELOW_MACS`` are left alone.

    Raises
    ------
    ValueError
        ``n_threads`` above ``MAX_THREADS`` (what BLAS can be given).
    """
    if n_threads is not None and n_threads > MAX_THREADS:
        raise ValueError(f"n_threads must be at most {MAX_THREADS} (BLAS takes the thread "
                         f"count as a C int), got {n_threads}")
    if n_threads is None:
        work = batch_rows * max(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        if work >= SINGLE_THREAD_BELOW_MACS or (inference and work < UNLIMITED_BELOW_MACS):
            return contextlib.nullcontext()
        n_threads = 1
    return _exclusive_limit(n_threads)


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
