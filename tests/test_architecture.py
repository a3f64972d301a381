"""The package's architecture contracts (``[tool.importlinter]`` in pyproject.toml).

import-linter reads the package from its source files, so it is run on a copy of
``mlpcore/`` in which an empty ``_engine.py`` stands for the compiled engine (whose source
is Cython in ``src/``): without it, ``import mlpcore._engine`` would count as importing the
package root, and with it everything the root imports. The editable install's import hook
(meson-python) is removed in that subprocess: it answers for ``mlpcore`` with a virtual
search path that import-linter cannot walk. Run as a script (``python
tests/test_architecture.py``) it prints the report.
"""

import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

LINT = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "MesonpyMetaFinder"]
sys.path.insert(0, sys.argv[1])
from importlinter.cli import lint_imports
status = lint_imports(config_filename=sys.argv[2], no_cache=True, no_logo=True)
import grimp
graph = grimp.build_graph("mlpcore")
cycles = set()
for module in graph.modules:
    for imported in graph.find_modules_directly_imported_by(module):
        chain = graph.find_shortest_chain(importer=imported, imported=module)
        if chain:
            cycles.add(" -> ".join((module, *chain)))
print("import cycles:", len(cycles))
for cycle in sorted(cycles):
    print("  ", cycle)
sys.exit(status or (1 if cycles else 0))
"""


def run_lint_imports():
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT / "mlpcore", pathlib.Path(tmp, "mlpcore"),
                        ignore=shutil.ignore_patterns("__pycache__", "data"))
        pathlib.Path(tmp, "mlpcore", "_engine.py").write_text(
            '"""Stands for the compiled engine (src/_engine.pyx) in the import graph."""\n')
        return subprocess.run([sys.executable, "-c", LINT, tmp, str(ROOT / "pyproject.toml")],
                              capture_output=True, text=True, timeout=300, cwd=tmp)


def test_import_contracts_hold_and_there_is_no_import_cycle():
    pytest.importorskip("importlinter", reason="import-linter is in the test extra")
    proc = run_lint_imports()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Both contracts were checked (a renamed layer would make a contract vanish silently).
    assert "2 kept, 0 broken" in proc.stdout, proc.stdout
    assert "import cycles: 0" in proc.stdout, proc.stdout


if __name__ == "__main__":
    result = run_lint_imports()
    print(result.stdout + result.stderr)
    sys.exit(result.returncode)
