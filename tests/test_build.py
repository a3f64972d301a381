"""The tests must exercise the compiled engine built from this checkout, never a stale copy."""

import pathlib
import re

import mlpcore
from mlpcore import _engine

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def build_inputs():
    """Every file the build of the engine reads: the Cython sources and the headers they
    cimport or include, and the two meson.build files that say how to compile them."""
    files = [ROOT / "meson.build", SRC / "meson.build"]
    for pattern in ("*.pyx", "*.pxd", "*.h"):
        files += sorted(SRC.glob(pattern))
    return files


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
    built = pathlib.Path(_engine.__file__).resolve().stat().st_mtime
    newer = [str(p.relative_to(ROOT)) for p in build_inputs() if p.stat().st_mtime > built]
    assert not newer, f"the compiled engine is older than {', '.join(newer)}"


def test_every_file_of_the_engine_is_watched():
    # A file in src/ that build_inputs() does not list (a new kind of source, say a .c
    # file) could change without the test above noticing: it must be added there.
    watched = set(build_inputs())
    # Documentation (src/README.md) is the one kind of file in src/ the build never reads.
    unwatched = [p.name for p in SRC.iterdir()
                 if p.is_file() and p not in watched and p.suffix != ".md"]
    assert not unwatched, f"not watched by test_engine_newer_than_its_sources: {unwatched}"
    named = set(re.findall(r"'([\w.]+)'", (SRC / "meson.build").read_text()))
    sources = {n for n in named if n.endswith((".pyx", ".pxd", ".h", ".c"))}
    assert sources and sources <= {p.name for p in watched}
