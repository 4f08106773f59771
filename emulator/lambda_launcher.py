"""Start one emulated Lambda function the way Lambda's Python runtime would: layers at /opt, no site.

MiniStack runs ``<program> <worker script>`` for each Python function and
passes the folders it extracted the function's layers into in
``_LAMBDA_LAYERS_DIRS``. Lambda instead extracts every layer, in order, into
``/opt`` (a later layer's files win), puts ``/opt/python`` on ``sys.path``,
and runs an interpreter that sees nothing else of the machine. So this
launcher:

1. merges the layer folders into one ``opt/`` beside them (hard links, so
   it costs no copy), later layers over earlier ones;
2. enters a private mount namespace (``unshare --mount``; as a non-root
   user also a user namespace that maps the caller to root) and bind-mounts
   that folder on ``/opt``, visible to this function's process alone;
3. points ``_LAMBDA_LAYERS_DIRS`` at ``/opt`` and replaces itself with the
   runtime's Python in isolated mode without ``site`` (``-I -S``): the
   standard library, the function's code and ``/opt/python``, nothing from
   MiniStack's virtual environment or the host's.

Standard library only: it runs under MiniStack's interpreter.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

__all__ = ["OPT", "main", "merge_layers"]

OPT = Path("/opt")


def merge_layers(layer_dirs: list[Path], target: Path) -> Path:
    """Lay ``layer_dirs`` over each other into ``target``, as Lambda extracts layers into /opt."""
    target.mkdir(parents=True, exist_ok=True)
    for layer in layer_dirs:
        for source in sorted(layer.rglob("*")):
            destination = target / source.relative_to(layer)
            if source.is_dir() and not source.is_symlink():
                destination.mkdir(exist_ok=True)
                continue
            if destination.exists() or destination.is_symlink():
                destination.unlink()
            try:
                os.link(source, destination, follow_symlinks=False)
            except OSError:  # another file system, or links not allowed: copy
                shutil.copy2(source, destination, follow_symlinks=False)
    return target


def main(argv: list[str]) -> None:
    if not OPT.is_dir():
        raise SystemExit(f"{OPT} does not exist: the emulator mounts the function's layers there (create it)")
    layers = [Path(p) for p in os.environ.get("_LAMBDA_LAYERS_DIRS", "").split(os.pathsep) if p]
    if layers:
        merged = merge_layers(layers, layers[0].parent / "opt")
    else:
        merged = Path(os.environ.get("TMPDIR", "/tmp")) / "vmregistry-emulator-empty-opt"
        merged.mkdir(exist_ok=True)
    os.environ["_LAMBDA_LAYERS_DIRS"] = str(OPT)
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("unshare (util-linux) is required: the emulator mounts the function's layers at /opt")
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    python = [sys.executable, "-I", "-S", *argv]
    mount_and_run = 'mount --bind "$0" /opt && exec "$@"'
    namespace = [unshare, "--mount", "--propagation", "private", *user, "--"]
    os.execv(unshare, [*namespace, "/bin/sh", "-c", mount_and_run, str(merged), *python])


if __name__ == "__main__":
    main(sys.argv[1:])
