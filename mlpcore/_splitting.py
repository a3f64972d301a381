"""Holding out a validation set, stratified by class for classification."""

import math

import numpy as np


def validation_split(n_samples, fraction, rng, labels=None):
    """Indices (train, validation) holding out about ``fraction`` of the samples.

    Parameters
    ----------
    n_samples : int
    fraction : float in (0, 1)
    rng : numpy.random.Generator
    labels : ndarray of shape (n_samples,), optional
        Class of each sample: each class then contributes its share to the validation set
        (stratified), as scikit-learn's ``train_test_split(stratify=...)`` does.

    Returns
    -------
    train, val : ndarrays of intp, each sorted.

    Raises
    ------
    ValueError
        If either part would be empty.
    """
    n_val = math.ceil(fraction * n_samples)
    if n_val < 1 or n_val >= n_samples:
        raise ValueError(f"validation_fraction={fraction} leaves {n_val} of {n_samples} "
                         "samples for validation; both parts need at least one sample")
    perm = rng.permutation(n_samples)
    if labels is None:
        val = perm[:n_val]
    else:
        # Largest-remainder allocation of n_val over the classes, then a random pick in each.
        classes, counts = np.unique(labels, return_counts=True)
        share = counts * (n_val / n_samples)
        take = np.floor(share).astype(int)
        extra = n_val - take.sum()
        take[np.argsort(-(share - take), kind="stable")[:extra]] += 1
        shuffled_labels = labels[perm]
        val = np.concatenate([perm[shuffled_labels == c][:t] for c, t in zip(classes, take)])
    mask = np.zeros(n_samples, dtype=bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)
