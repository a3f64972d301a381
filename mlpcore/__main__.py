"""``python -m mlpcore``: train on the embedded handwritten digits and report."""

import sys
import time

import numpy as np

import mlpcore
from mlpcore.datasets import load_digits


def main(argv=None):
    X, y = load_digits()
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):  # a stratified quarter held out for testing
        idx = rng.permutation(np.flatnonzero(y == label))
        test[idx[: len(idx) // 4]] = True
    start = time.perf_counter()
    model = mlpcore.fit(X[~test], y[~test], seed=0)
    elapsed = time.perf_counter() - start
    loss = model.history["loss"]
    for epoch in range(0, len(loss), 10):
        print(f"epoch {epoch + 1:4d}  loss {loss[epoch]:.4f}")
    print(f"final loss {loss[-1]:.4f}")
    print(f"test accuracy {model.score(X[test], y[test]):.4f} on {test.sum()} held-out digits")
    print(f"trained in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
