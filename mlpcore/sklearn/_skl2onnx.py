"""Registration of the drop-in classes with skl2onnx's converters for scikit-learn's MLPs.

skl2onnx finds a converter by the model's exact class, so a subclass of scikit-learn's
``MLPClassifier`` raises ``MissingShapeCalculator`` until it is registered. The drop-in's
fitted attributes are scikit-learn's (``coefs_``, ``intercepts_``, ``n_layers_``,
``activation``, ``out_activation_``, ``classes_``, ``_label_binarizer``), so skl2onnx's own
shape calculators and converters apply unchanged; the classes are registered under
scikit-learn's aliases, with the options those aliases already have (``zipmap``, ``nocl``,
...), so ``skl2onnx.to_onnx`` treats a drop-in exactly like the estimator it replaces,
inside pipelines too.
"""

# The options skl2onnx declares for its MLP classifier converter; used only if the
# installed skl2onnx does not say (they must be kept as they are: the alias is shared with
# scikit-learn's own class).
_CLASSIFIER_OPTIONS = {"zipmap": [True, False, "columns"], "nocl": [True, False]}


def register(classifier, regressor):
    """Register ``classifier`` and ``regressor`` with skl2onnx, if it is installed.

    Parameters
    ----------
    classifier : type
        The drop-in subclass of :class:`sklearn.neural_network.MLPClassifier`.
    regressor : type
        The drop-in subclass of :class:`sklearn.neural_network.MLPRegressor`.

    Returns
    -------
    registered : bool
        True if skl2onnx is installed and the classes are registered, False if it is not
        installed.
    """
    try:
        from skl2onnx import update_registered_converter
        from skl2onnx.common._registration import get_converter
        from skl2onnx.common.shape_calculator import (
            calculate_linear_classifier_output_shapes,
            calculate_linear_regressor_output_shapes,
        )
        from skl2onnx.operator_converters.multilayer_perceptron import (
            convert_sklearn_mlp_classifier,
            convert_sklearn_mlp_regressor,
        )
    except ImportError:
        return False

    def options(alias, default):
        try:
            registered = get_converter(alias).get_allowed_options()
        except ValueError:  # not registered yet
            registered = None
        return dict(registered) if registered else default

    update_registered_converter(
        classifier, "SklearnMLPClassifier", calculate_linear_classifier_output_shapes,
        convert_sklearn_mlp_classifier,
        options=options("SklearnMLPClassifier", _CLASSIFIER_OPTIONS))
    update_registered_converter(
        regressor, "SklearnMLPRegressor", calculate_linear_regressor_output_shapes,
        convert_sklearn_mlp_regressor, options=options("SklearnMLPRegressor", None))
    return True
