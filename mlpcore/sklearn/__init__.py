"""Drop-in replacements for scikit-learn's MLPClassifier and MLPRegressor.

::

    # from sklearn.neural_network import MLPClassifier
    from mlpcore.sklearn import MLPClassifier

Same constructor, attributes and methods as scikit-learn's classes (they are subclasses);
the training and prediction numerics run in mlpcore's compiled engine. Needs scikit-learn:
``pip install "mlpcore[sklearn]"``. The documented differences are listed in
``mlpcore.sklearn._multilayer_perceptron``.
"""

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError(
        "mlpcore.sklearn needs scikit-learn; install it with: pip install 'mlpcore[sklearn]'"
    ) from exc

from mlpcore.sklearn._multilayer_perceptron import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
