"""The 8x8 handwritten digits, embedded so the first run needs no download.

Source: the test set of the UCI "Optical Recognition of Handwritten Digits" data set
(E. Alpaydin and C. Kaynak, 1998; https://archive.ics.uci.edu/dataset/80), the same 1,797
images scikit-learn ships as ``sklearn.datasets.load_digits``. Licence: Creative Commons
Attribution 4.0 International (CC BY 4.0), as published by the UCI Machine Learning
Repository. Each image is 32x32 bitmaps counted in 4x4 blocks, so every pixel is an integer
from 0 to 16. Stored as uint8 in a compressed .npz (about 45 kB).
"""

import pathlib

import numpy as np

_PATH = pathlib.Path(__file__).parent / "data" / "digits.npz"


def load_digits(*, dtype=np.float64, return_images=False):
    """Load the 1,797 handwritten digits (8x8 pixels, 10 classes).

    Parameters
    ----------
    dtype : numpy dtype, default float64
        dtype of the pixel values (0..16).
    return_images : bool, default False
        Also return the images as an (1797, 8, 8) array.

    Returns
    -------
    X : ndarray of shape (1797, 64)
        Pixel values in 0..16, one flattened image per row.
    y : ndarray of shape (1797,)
        The digit 0..9 each image shows.
    images : ndarray of shape (1797, 8, 8), only if ``return_images``.
    """
    with np.load(_PATH, allow_pickle=False) as data:
        images = data["images"]
        y = data["target"].astype(np.int64)
    X = images.reshape(len(images), 64).astype(dtype)
    if return_images:
        return X, y, images.astype(dtype)
    return X, y
