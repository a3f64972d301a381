import pathlib
import sys

import numpy as np
import pytest

# The NumPy reference lives beside the tests; importlib mode does not put this folder on
# sys.path by itself.
sys.path.insert(0, str(pathlib.Path(__file__).parent))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def pytest_report_header(config):
    import mlpcore
    from mlpcore import _engine

    return [f"mlpcore {mlpcore.__version__} from {pathlib.Path(mlpcore.__file__).parent}",
            f"engine: {_engine.__file__}"]
