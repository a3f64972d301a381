"""Drop-in replacements for scikit-learn's MLPClassifier and MLPRegressor.

::

    # from sklearn.neural_network import MLPClassifier
    from mlpcore.sklearn import MLPClassifier

Same constructor, attributes and methods as scikit-learn's classes (they are subclasses);
the training and prediction numerics run in mlpcore's compiled engine. Needs scikit-learn:
``pip install "mlpcore[sklearn]"``. The documented differences are listed in
``mlpcore.sklearn._multilayer_perceptron``. When skl2onnx is installed, importing this
module registers both classes with skl2onnx's MLP converters, so ``skl2onnx.to_onnx``
converts them, alone or inside a ``Pipeline``.
"""

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError(
        "mlpcore.sklearn needs scikit-learn; install it with: pip install 'mlpcore[sklearn]'"
    ) from exc

from mlpcore.sklearn._multilayer_perceptron import MLPClassifier, MLPRegressor
from mlpcore.sklearn._skl2onnx import register as _register_with_skl2onnx

# With skl2onnx installed, skl2onnx.to_onnx converts the drop-in (alone or in a Pipeline)
# with the converters of scikit-learn's classes.
_register_with_skl2onnx(MLPClassifier, MLPRegressor)

__all__ = ["MLPClassifier", "MLPRegressor"]
