import os
import pathlib
import subprocess
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


class InProcess:
    """``mlpcore.__main__.main`` in this process: exit status, stdout, stderr."""

    def __init__(self, capsys):
        self.capsys = capsys

    def __call__(self, *args):
        from mlpcore import _cli

        status = _cli.main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(args, status, out, err)


@pytest.fixture
def cli(capsys, tmp_path, monkeypatch):
    """The command line, run in this process from a fresh folder (tmp_path)."""
    monkeypatch.chdir(tmp_path)
    return InProcess(capsys)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def pytest_report_header(config):
    import mlpcore
    from mlpcore import _engine

    return [f"mlpcore {mlpcore.__version__} from {pathlib.Path(mlpcore.__file__).parent}",
            f"engine: {_engine.__file__}"]
