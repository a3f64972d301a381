"""How many BLAS threads the engine's matrix products use.

The engine calls SciPy's BLAS (through ``scipy.linalg.cython_blas``), which PyPI wheels ship
as their own OpenBLAS, separate from NumPy's. threadpoolctl limits both. The default is
chosen by batch size: a second thread speeds up large products (full batches, batches of 64
and more) but makes the small ones of SGD and small mini-batches slower, since the worker
thread spends its time synchronising; on a machine where another process keeps the cores
busy, spinning BLAS threads can be much slower still. Users can always cap the count,
either with ``n_threads=`` or around any call::

    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        model = mlpcore.fit(X, y)
"""

import contextlib
import threading

# Batches below this many rows train with one BLAS thread unless the user says otherwise.
SINGLE_THREAD_BELOW_ROWS = 64

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


def blas_threads(n_threads, batch_rows):
    """A context manager limiting BLAS threads for a fit with batches of ``batch_rows``.

    Parameters
    ----------
    n_threads : int or None
        Explicit thread count, or None for the default: 1 below
        ``SINGLE_THREAD_BELOW_ROWS`` rows per batch, BLAS's own setting otherwise.
    batch_rows : int
    """
    if n_threads is None:
        if batch_rows >= SINGLE_THREAD_BELOW_ROWS:
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
