import os
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# The NumPy reference lives beside the tests; importlib mode does not put this folder on
# sys.path by itself.
sys.path.insert(0, str(pathlib.Path(__file__).parent))

# Property tests (hypothesis, each in the file of its subject): "ci", the default, is small
# and derandomized so every run tries the same examples in a few seconds;
# HYPOTHESIS_PROFILE=thorough explores.
settings.register_profile("ci", max_examples=50, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def pytest_report_header(config):
    import mlpcore
    from mlpcore import _engine

    return [f"mlpcore {mlpcore.__version__} from {pathlib.Path(mlpcore.__file__).parent}",
            f"engine: {_engine.__file__}"]
