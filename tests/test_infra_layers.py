"""The layers Lambda will run: built with pip for the target, within size limits, and sufficient.

Builds that never land on this process's ``sys.path``: for each architecture the
stack can deploy (the folders under ``build/`` that synth ships), to check what
would ship; and for this machine, in a temporary folder, to import every handler
in a fresh interpreter that sees only the layers and ``functions/`` (no venv),
as Lambda's runtime would.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from infra.build_layers import (
    LAMBDA_UNZIPPED_LIMIT,
    REQUIREMENTS,
    build_code_asset,
    build_deps_layer,
    ensure_deps_layer,
    tree_size,
)
from infra.config import ARCHITECTURES, PYTHON_VERSION, ROOT, Architecture
from infra.functions import function_specs

ELF_MACHINE = {"arm64": 183, "x86_64": 62}  # e_machine: EM_AARCH64, EM_X86_64
WHEEL_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}


def _requirement_name(line: str) -> str:
    return re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module", params=ARCHITECTURES)
def architecture(request: pytest.FixtureRequest) -> Architecture:
    chosen: Architecture = request.param
    return chosen


@pytest.fixture(scope="module")
def target_layer(architecture: Architecture) -> Path:
    """The dependency layer synth ships for ``architecture`` (``-c architecture=...``)."""
    return ensure_deps_layer(architecture) / "python"


@pytest.fixture(scope="module")
def host_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_deps_layer(tmp_path_factory.mktemp("deps-host"), platform=None)


@pytest.fixture(scope="module")
def code_assets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The function code and the shared layer as the stack ships them: copied and precompiled."""
    root = tmp_path_factory.mktemp("code")
    functions = build_code_asset(ROOT / "functions", root / "functions", "/var/task")
    shared = build_code_asset(ROOT / "layers" / "vmregistry", root / "vmregistry", "/opt")
    return functions, shared


def test_requirements_cover_every_runtime_dependency() -> None:
    # GIVEN the package's declared dependencies and the layer's requirements
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_requirement_name(d) for d in project["dependencies"]}
    lines = [line for line in REQUIREMENTS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    # THEN every dependency ships in the layer, pinned
    assert declared <= {_requirement_name(line) for line in lines}
    assert all("==" in line for line in lines)


def test_dependency_layer_is_built_for_the_lambda_target(target_layer: Path, architecture: Architecture) -> None:
    # GIVEN the layer pip built for the functions' platform
    extensions = list(target_layer.rglob("*.so"))
    assert extensions, "cryptography and cffi ship compiled modules"
    for extension in extensions:
        header = extension.read_bytes()[:20]
        # THEN every compiled module is an ELF for the functions' architecture ...
        assert header[:4] == b"\x7fELF", extension
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINE[architecture], extension
        # ... and, when version-tagged, for the runtime's Python
        match = re.search(r"cpython-(\d)(\d+)", extension.name)
        if match:
            assert f"{match[1]}.{match[2]}" == PYTHON_VERSION, extension
    # ... and the platform wheels pip chose are tagged for that architecture
    (wheel,) = target_layer.glob("cryptography-*.dist-info/WHEEL")
    tags = [line.split(": ", 1)[1] for line in wheel.read_text().splitlines() if line.startswith("Tag: ")]
    assert tags
    assert all(tag.endswith(WHEEL_ARCH[architecture]) for tag in tags), tags


def test_function_and_layers_fit_lambdas_unzipped_limit(target_layer: Path, code_assets: tuple[Path, Path]) -> None:
    # GIVEN what one function carries: its code, the shared package and the dependencies
    functions, shared = code_assets
    total = tree_size(target_layer) + tree_size(shared) + tree_size(functions)
    # THEN it stays under Lambda's 250 MB, with room to grow
    assert total < LAMBDA_UNZIPPED_LIMIT * 0.6, f"{total / 1e6:.0f} MB"


def _assert_precompiled(tree: Path) -> None:
    """Every module has runtime bytecode that Lambda will use without checking the source."""
    tag = f"cpython-{PYTHON_VERSION.replace('.', '')}"
    modules = list(tree.rglob("*.py"))
    assert modules
    for module in modules:
        pyc = module.parent / "__pycache__" / f"{module.stem}.{tag}.pyc"
        assert pyc.is_file(), module
        header = pyc.read_bytes()[:8]
        assert header[:4] == importlib.util.MAGIC_NUMBER, pyc
        # flags: bit 0 hash-based, bit 1 check the source; Lambda's zip timestamps must not matter
        assert int.from_bytes(header[4:8], "little") == 0b01, pyc


def test_the_layer_ships_runtime_bytecode_and_no_scripts(target_layer: Path) -> None:
    # Lambda's /opt is read-only: modules without bytecode would be compiled at every cold start
    _assert_precompiled(target_layer)
    assert not (target_layer / "bin").exists()


def test_our_code_assets_are_precompiled(code_assets: tuple[Path, Path]) -> None:
    functions, shared = code_assets
    _assert_precompiled(functions)
    _assert_precompiled(shared)
    assert not list(shared.rglob("*.egg-info"))


@pytest.mark.parametrize("spec", function_specs(), ids=lambda s: s.name)
def test_each_handler_imports_with_only_the_layers_on_the_path(
    spec: object, host_layer: Path, code_assets: tuple[Path, Path]
) -> None:
    handler: str = getattr(spec, "handler")  # noqa: B009 - spec is typed loosely for the param ids
    module, _, attribute = handler.rpartition(".")
    # GIVEN a fresh interpreter without site-packages (-I -S), whose path is only what Lambda
    # puts there: the function code (/var/task) and the layers' python/ folders (/opt/python)
    functions, shared = code_assets
    path = [str(functions), str(shared / "python"), str(host_layer)]
    code = (
        "import importlib, sys; sys.path[:0] = " + repr(path) + "\n"
        f"handler = getattr(importlib.import_module({module!r}), {attribute!r})\n"
        "assert callable(handler)\n"
        "leaks = [m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)"
        f" and 'site-packages' in m.__file__ and not m.__file__.startswith({str(host_layer)!r})]\n"
        "assert not leaks, leaks\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "VMREGISTRY_STORAGE": "s3",
        "VMREGISTRY_S3_BUCKET": "bucket",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "1",
    }
    # WHEN the handler module is imported
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    # THEN it imports, and nothing came from anywhere but those folders and the standard library
    assert result.returncode == 0, result.stderr[-3000:]
