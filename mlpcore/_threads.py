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

# Batches below this many rows train with one BLAS thread unless the user says otherwise.
SINGLE_THREAD_BELOW_ROWS = 64

_controller = None


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
    return _threadpool_controller().limit(limits=n_threads, user_api="blas")
