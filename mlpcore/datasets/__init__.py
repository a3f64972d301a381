"""Data sets that ship with mlpcore, and readers for common file formats.

``load_digits``
    The embedded 8x8 handwritten digits (1,797 images, 10 classes); no download.
``load_idx``, ``read_idx``
    MNIST-style IDX files, plain or gzipped.
``load_csv``, ``load_npz``
    CSV files with a header row, and NumPy ``.npz`` archives holding arrays ``X`` and ``y``.
"""

from mlpcore.datasets._digits import load_digits
from mlpcore.datasets._files import load_csv, load_npz
from mlpcore.datasets._idx import load_idx, read_idx

__all__ = ["load_csv", "load_digits", "load_idx", "load_npz", "read_idx"]
