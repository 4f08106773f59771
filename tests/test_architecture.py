"""The house rules that keep the code readable, checked on every run.

* Imports only run downward: every module of ``vmregistry`` belongs to a floor
  (:data:`FLOORS`, lowest first), and a module may import only from its own
  floor or below. No floor imports a higher one, so there is no import cycle
  between floors. The handler package (``vmregistry_functions``) and the stack
  (``infra``) sit above the whole library.
* Every module says in its first lines what it is for (a docstring), and none
  grows past :data:`MAX_LINES` (a module should be readable in one sitting).
* So does every test module, bounded by :data:`TEST_MAX_LINES`: a long one is
  split by theme, its shared fixtures in a ``conftest.py`` or a helper module.
* What ships (the library, the handlers, the stack) never imports the harness
  (:data:`HARNESS`): tests, benchmarks, the conformance runner, the emulator
  scripts and their shared ``loopback`` helpers are not in the Lambda layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "layers" / "vmregistry" / "python" / "vmregistry"
MAX_LINES = 400
TEST_MAX_LINES = 450
"""Tests read longer (tables of cases, GIVEN/WHEN/THEN steps), but not without end."""

FLOORS: list[set[str]] = [
    {"__init__", "lazy", "coldstart", "errors", "mediatypes", "digests"},
    {"names", "httprange", "config", "oci", "extents"},
    {"paths", "routes"},
    {"storage"},
    {"wire"},
    {"auth"},
    {"registry"},
    {"runtime", "verifiers"},
    {"api"},
    {"local", "client"},
    {"cli"},
    {"__main__"},
]
FLOOR_OF = {unit: index for index, units in enumerate(FLOORS) for unit in units}


def unit_of(module: str) -> str:
    """``vmregistry.storage.s3`` -> ``storage``; ``vmregistry`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def is_unit(name: str) -> bool:
    return (LIBRARY / f"{name}.py").exists() or (LIBRARY / name / "__init__.py").exists()


def imported_units(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "vmregistry":  # a submodule, or a name of the package itself
                found.update(a.name if is_unit(a.name) else "__init__" for a in node.names)
            elif node.module.startswith("vmregistry."):
                found.add(unit_of(node.module))
        elif isinstance(node, ast.Import):
            found.update(unit_of(a.name) for a in node.names if a.name.startswith("vmregistry."))
    return found


MODULES = sorted(LIBRARY.rglob("*.py"))
SHIPPED = [*MODULES, *(ROOT / "functions").rglob("*.py"), *(ROOT / "infra").rglob("*.py")]
HARNESS = frozenset({"tests", "bench", "conformance", "emulator", "loopback"})


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(LIBRARY)))
def test_imports_run_downward(path: Path) -> None:
    # GIVEN a module of the library and the floor it lives on
    relative = path.relative_to(LIBRARY)
    unit = relative.parts[0].removesuffix(".py")
    assert unit in FLOOR_OF, f"{relative}: add {unit!r} to a floor in FLOORS"
    # THEN everything it imports from the library lives on its floor or below
    for imported in imported_units(path) - {unit}:
        assert imported in FLOOR_OF, f"{relative} imports {imported!r}, which is on no floor"
        assert FLOOR_OF[imported] <= FLOOR_OF[unit], f"{relative} ({unit}) imports {imported} from a floor above"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_what_ships_never_imports_the_harness(path: Path) -> None:
    # GIVEN a module that is deployed (library, handler or stack)
    tree = ast.parse(path.read_text())
    # THEN none of its imports, wherever they stand, names a harness package
    roots = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    roots |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    assert not roots & HARNESS, f"{path.relative_to(ROOT)} imports {sorted(roots & HARNESS)}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_says_what_it_is_for_and_stays_small(path: Path) -> None:
    source = path.read_text()
    assert ast.get_docstring(ast.parse(source)), f"{path.relative_to(ROOT)} has no module docstring"
    assert source.count("\n") <= MAX_LINES, f"{path.relative_to(ROOT)} is over {MAX_LINES} lines: split it"


TEST_MODULES = sorted(p for p in (ROOT / "tests").rglob("*.py") if p.name != "__init__.py" or p.stat().st_size)


@pytest.mark.parametrize("path", TEST_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_test_module_says_what_it_proves_and_stays_small(path: Path) -> None:
    source = path.read_text()
    assert ast.get_docstring(ast.parse(source)), f"{path.relative_to(ROOT)} has no module docstring"
    assert source.count("\n") <= TEST_MAX_LINES, f"{path.relative_to(ROOT)} is over {TEST_MAX_LINES} lines: split it"
