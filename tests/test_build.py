"""The tests must exercise the compiled engine built from this checkout, never a stale copy."""

import pathlib

import mlpcore
from mlpcore import _engine

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_engine_is_compiled_extension():
    suffix = pathlib.Path(_engine.__file__).suffix
    assert suffix in (".so", ".pyd"), _engine.__file__


def test_package_and_engine_come_from_this_checkout_or_its_build():
    # With the editable install the Python files are the checkout's own and the extension
    # sits in the checkout's build directory, rebuilt on import; a wheel install would put
    # both in site-packages and then this test says so instead of silently passing.
    pkg = pathlib.Path(mlpcore.__file__).resolve()
    ext = pathlib.Path(_engine.__file__).resolve()
    assert pkg.is_relative_to(ROOT), f"mlpcore imported from {pkg}, not from {ROOT}"
    assert ext.is_relative_to(ROOT / "build"), f"engine imported from {ext}"


def test_engine_newer_than_its_sources():
    ext = pathlib.Path(_engine.__file__).resolve()
    newest = max(p.stat().st_mtime for p in (ROOT / "src").glob("*.p*"))
    assert ext.stat().st_mtime >= newest, "the compiled engine is older than src/"
