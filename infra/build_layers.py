"""Build the Lambda layers' folders with pip, without Docker.

CDK's usual answer to "install my requirements for Lambda" is Docker bundling,
and this machine (like many CI runners) has no Docker engine. pip can do the
same job on its own: ``--platform manylinux2014_aarch64 --implementation cp
--python-version 3.13 --only-binary=:all:`` picks exactly the wheels the
Lambda runtime can load, whatever machine runs the build. Every dependency
ships such wheels for both architectures (cryptography as abi3), so no compiler
is involved.

Layout (everything under ``build/``, never on a test's ``sys.path``: foreign
architecture wheels there would shadow the venv's own compiled modules)::

    build/layers/
    ├── deps-arm64/python/...    third-party packages, one folder per architecture
    ├── deps-x86_64/python/...                         -> /opt/python on Lambda
    ├── deps-<arch>.stamp        what deps-<arch>/ was built from (rebuild when it changes)
    └── authkey/vmregistry-auth/public.pem
                                 the Auth Server's public key -> /opt/vmregistry-auth/public.pem

    build/layers/vmregistry/python/vmregistry/...
                                 the shared package, copied and precompiled -> /opt/python
    build/functions/vmregistry_functions/...
                                 the handlers, copied and precompiled      -> /var/task

Every module ships with bytecode compiled for the runtime's Python
(:func:`compile_bytecode`): Lambda's ``/opt`` and ``/var/task`` are read-only,
so without it every cold start compiles every module it imports again. The pycs
are hash-based and unchecked: valid whatever timestamps the asset zip carries.

Run ``python -m infra.build_layers`` to build by hand; the CDK app builds what
it needs itself before synth.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

from infra.config import ARCHITECTURES, DEFAULT_ARCHITECTURE, LAMBDA_PLATFORMS, PYTHON_VERSION, ROOT, Architecture

__all__ = [
    "AUTH_KEY_LAMBDA_PATH",
    "BYTECODE_VERSION",
    "LAMBDA_UNZIPPED_LIMIT",
    "REQUIREMENTS",
    "build_auth_key_layer",
    "build_code_asset",
    "build_deps_layer",
    "compile_bytecode",
    "ensure_deps_layer",
    "tree_size",
]

REQUIREMENTS = ROOT / "layers" / "deps" / "requirements.txt"
BUILD_DIR = ROOT / "build" / "layers"
AUTH_KEY_FOLDER = "vmregistry-auth"
AUTH_KEY_LAMBDA_PATH = f"/opt/{AUTH_KEY_FOLDER}/public.pem"
"""Where a function finds the public key: the value of ``VMREGISTRY_AUTH_PUBLIC_KEY``."""

LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
"""Lambda's limit on a function's code plus all its layers, unzipped."""

# Scripts are never run, and pip's own pycs are replaced by ours (see compile_bytecode).
_PRUNE = ("bin", "__pycache__")
_COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
BYTECODE_VERSION = "unchecked-hash-1"
"""Part of the dependency layer's fingerprint: bump it when the bytecode recipe changes."""


def compile_bytecode(tree: Path, lambda_dir: str) -> None:
    """Precompile every module under ``tree`` for the runtime's Python.

    ``lambda_dir`` is where ``tree`` sits on Lambda (``/opt/python``, ``/var/task``):
    tracebacks then name the files as they are there.
    """
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != PYTHON_VERSION:
        raise RuntimeError(
            f"Lambda runs Python {PYTHON_VERSION} and only Python {PYTHON_VERSION} can compile its bytecode;"
            f" this build runs {running}: build from the project's venv (make install)"
        )
    compiled = compileall.compile_dir(
        str(tree),
        ddir=lambda_dir,
        quiet=2,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not compiled:
        raise RuntimeError(f"some modules under {tree} do not compile with Python {running}")


def build_code_asset(source: Path, target: Path, lambda_dir: str) -> Path:
    """Copy our own code (without caches) to ``target`` and precompile it; returns ``target``."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=_COPY_IGNORE)
    compile_bytecode(target, lambda_dir)
    return target


def build_deps_layer(
    target: Path,
    *,
    platform: str | None = LAMBDA_PLATFORMS[DEFAULT_ARCHITECTURE],
    python_version: str | None = PYTHON_VERSION,
    requirements: Path = REQUIREMENTS,
) -> Path:
    """Install ``requirements`` into ``target/python`` for a platform; return that folder.

    ``platform=None`` builds for the machine running the build (its own wheels
    and Python), which is what an import test wants.
    """
    site = target / "python"
    if target.exists():
        shutil.rmtree(target)
    site.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check"]
    if platform is not None:
        command += ["--platform", platform, "--implementation", "cp", "--only-binary=:all:"]
        command += ["--python-version", python_version or PYTHON_VERSION]
    command += ["--target", str(site), "-r", str(requirements)]
    env = {**os.environ, "PIP_NO_INPUT": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pip could not build the dependency layer:\n{result.stdout}\n{result.stderr}")
    for pruned in _PRUNE:
        for path in site.rglob(pruned):
            if path.is_dir():
                shutil.rmtree(path)
    if platform is not None:
        compile_bytecode(site, "/opt/python")
    return site


def _fingerprint(requirements: Path, platform: str, python_version: str) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(f"\0{platform}\0{python_version}\0{BYTECODE_VERSION}".encode())
    return digest.hexdigest()


def ensure_deps_layer(
    architecture: Architecture = DEFAULT_ARCHITECTURE, build_dir: Path = BUILD_DIR, requirements: Path = REQUIREMENTS
) -> Path:
    """The dependency layer's asset folder for ``architecture``, built unless it is up to date.

    Each architecture has its own folder, so switching ``-c architecture`` back and forth
    does not rebuild."""
    platform = LAMBDA_PLATFORMS[architecture]
    target = build_dir / f"deps-{architecture}"
    stamp = build_dir / f"deps-{architecture}.stamp"
    wanted = _fingerprint(requirements, platform, PYTHON_VERSION)
    if not (stamp.is_file() and stamp.read_text() == wanted and (target / "python").is_dir()):
        build_deps_layer(target, platform=platform, requirements=requirements)
        stamp.write_text(wanted)
    return target


def build_auth_key_layer(public_key: Path, build_dir: Path = BUILD_DIR) -> Path:
    """A layer folder holding only the public key, so functions read it as a file, like local mode."""
    target = build_dir / "authkey"
    if target.exists():
        shutil.rmtree(target)
    (target / AUTH_KEY_FOLDER).mkdir(parents=True)
    shutil.copyfile(public_key, target / AUTH_KEY_FOLDER / "public.pem")
    return target


def tree_size(path: Path) -> int:
    """Bytes of every file under ``path``: what Lambda counts against its unzipped limit."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the dependency layer for Lambda with pip (no Docker).")
    parser.add_argument("--host", action="store_true", help="build for this machine instead of Lambda")
    parser.add_argument("--architecture", choices=ARCHITECTURES, default=DEFAULT_ARCHITECTURE, help="Lambda's")
    parser.add_argument("--target", type=Path, help="output folder (default: build/layers/deps)")
    args = parser.parse_args(argv)
    if args.host:
        site = build_deps_layer(args.target or BUILD_DIR / "deps-host", platform=None)
    else:
        platform = LAMBDA_PLATFORMS[args.architecture]
        if args.target:
            site = build_deps_layer(args.target, platform=platform)
        else:
            site = ensure_deps_layer(args.architecture) / "python"
    print(f"{site}: {tree_size(site) / 1e6:.1f} MB unzipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
