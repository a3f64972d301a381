"""scikit-learn's own MLP test suite, run against the drop-in with only the import swapped.

The installed scikit-learn's ``sklearn/neural_network/tests/test_mlp.py`` is read, its one
``from sklearn.neural_network import MLPClassifier, MLPRegressor`` line is replaced by the
import of :mod:`mlpcore.sklearn`, and the result is executed in this module's namespace, so
pytest collects every upstream test here (parametrisations and marks included). The
``global_random_seed`` fixture that scikit-learn's conftest provides is supplied below, with
the same ``SKLEARN_TESTS_GLOBAL_RANDOM_SEED`` conventions (default: seed 42 only).
"""

import ast
import os
import pathlib

import pytest

pytest.importorskip("sklearn")

import sklearn.neural_network  # noqa: E402

import mlpcore.sklearn  # noqa: E402

UPSTREAM = pathlib.Path(sklearn.neural_network.__file__).parent / "tests" / "test_mlp.py"
UPSTREAM_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor\n"
DROP_IN_IMPORT = "from mlpcore.sklearn import MLPClassifier, MLPRegressor\n"


def _upstream_source():
    if not UPSTREAM.is_file():
        raise RuntimeError(f"scikit-learn {sklearn.__version__} ships no {UPSTREAM}; the "
                           "upstream suite cannot run (install scikit-learn from a wheel)")
    source = UPSTREAM.read_text()
    if source.count(UPSTREAM_IMPORT) != 1:
        raise RuntimeError(f"{UPSTREAM} no longer imports the estimators with exactly "
                           f"{UPSTREAM_IMPORT.strip()!r}; update this module")
    return source.replace(UPSTREAM_IMPORT, DROP_IN_IMPORT)


def _seeds():
    # scikit-learn's conftest.py: unset -> [42]; "all" -> 0..99; "a-b" or "n" otherwise.
    value = os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED")
    if value is None:
        return [42]
    if value == "all":
        return list(range(100))
    if "-" in value:
        start, stop = value.split("-")
        return list(range(int(start), int(stop) + 1))
    return [int(value)]


@pytest.fixture(params=_seeds())
def global_random_seed(request):
    return request.param


def _compiled(source):
    """The code of ``source``, with pytest's assertion rewriting when it is available (so
    a failing upstream ``assert`` shows its values, as in a collected test file)."""
    tree = ast.parse(source, str(UPSTREAM))
    try:
        from _pytest.assertion.rewrite import rewrite_asserts
    except ImportError:  # pragma: no cover - a pytest without it: plain asserts
        pass
    else:
        rewrite_asserts(tree, source.encode(), str(UPSTREAM))
    return compile(tree, str(UPSTREAM), "exec")


exec(_compiled(_upstream_source()), globals())  # noqa: S102

# The names the upstream tests use must be the drop-in's, or this module tests nothing.
assert MLPClassifier is mlpcore.sklearn.MLPClassifier  # noqa: F821
assert MLPRegressor is mlpcore.sklearn.MLPRegressor  # noqa: F821


def test_upstream_suite_was_loaded():
    names = [n for n in globals()
             if n.startswith("test_") and n != "test_upstream_suite_was_loaded"]
    assert len(names) >= 40, names
    assert "test_gradient" in names and "test_nonfinite_params" in names
