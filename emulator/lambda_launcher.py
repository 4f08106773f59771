"""Start one emulated Lambda function the way Lambda's Python runtime would: layers at /opt, no site.

MiniStack runs ``<program> <worker script>`` for each Python function and
passes the folders it extracted the function's layers into in
``_LAMBDA_LAYERS_DIRS``. Lambda instead extracts every layer, in order, into a
read-only ``/opt`` (a later layer's files win), puts ``/opt/python`` on
``sys.path``, and runs an interpreter that sees nothing else of the machine.
So this launcher:

1. enters a private mount namespace (``unshare --mount``; as a non-root user
   also a user namespace that maps the caller to root), visible to this
   function's process alone;
2. mounts the layers on ``/opt`` there, read-only: an overlay of them, the
   last layer on top, or a bind mount of the only one;
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
import tempfile
from pathlib import Path

__all__ = ["OPT", "main", "mount_command"]

OPT = Path("/opt")


def mount_command(layers: list[Path]) -> str:
    """The shell command that mounts ``layers`` (in Lambda's order) read-only on /opt."""
    if len(layers) > 1:
        # overlayfs: the leftmost lower layer is on top, and Lambda's later layers win.
        lower = ":".join(str(layer) for layer in reversed(layers))
        return f"mount -t overlay overlay -o 'lowerdir={lower}' /opt"
    source = layers[0] if layers else Path(tempfile.mkdtemp(prefix="vmregistry-empty-opt-"))
    return f"mount --bind '{source}' /opt && mount -o remount,bind,ro /opt"


def main(argv: list[str]) -> None:
    if not OPT.is_dir():
        raise SystemExit(f"{OPT} does not exist: the emulator mounts the function's layers there (create it)")
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("unshare (util-linux) is required: the emulator mounts the function's layers at /opt")
    layers = [Path(p) for p in os.environ.get("_LAMBDA_LAYERS_DIRS", "").split(os.pathsep) if p]
    os.environ["_LAMBDA_LAYERS_DIRS"] = str(OPT)
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    namespace = [unshare, "--mount", "--propagation", "private", *user, "--"]
    python = [sys.executable, "-I", "-S", *argv]
    os.execv(unshare, [*namespace, "/bin/sh", "-c", f'{mount_command(layers)} && exec "$@"', "sh", *python])


if __name__ == "__main__":
    main(sys.argv[1:])
