"""``python -m emulator up|down``: what ``make emulator-up`` and ``make emulator-down`` run.

``up`` starts MiniStack on ``--port`` (4566) with its state in ``--state``
(``.emulator/``), creates ``auth.key``/``auth.pub`` in the working directory
with ``vmregistry keygen`` when there are none, deploys the stack with them,
and prints the API's URL on the emulator as its last line (OCI clients use
its custom domain, ``registry.localhost:<port>``, printed before). ``down`` stops
MiniStack (and with it every function, the API, the bucket) and removes the
state folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from emulator.deploy import DeployError, deploy
from emulator.process import EmulatorUnavailable, start, stop

__all__ = ["main"]

DEFAULT_STATE = Path(".emulator")
DEFAULT_PORT = 4566


def _ensure_keys(folder: Path) -> Path:
    public, private = folder / "auth.pub", folder / "auth.key"
    if not public.exists():
        if private.exists():
            raise SystemExit(f"{private} exists without {public}: restore it, or remove both to make a new pair")
        vmregistry = Path(sys.executable).with_name("vmregistry")
        subprocess.run([str(vmregistry), "keygen", "-dir", str(folder)], check=True)
    return public


def _context(pairs: list[str]) -> dict[str, str]:
    context = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"-c takes key=value, not {pair!r}")
        context[key] = value
    return context


def up(state: Path, port: int, context: dict[str, str]) -> int:
    public_key = _ensure_keys(Path.cwd())
    if stop(state):
        print(f"stopped the emulator that was running from {state}", file=sys.stderr)
    shutil.rmtree(state, ignore_errors=True)
    print(f"starting MiniStack on https://127.0.0.1:{port} (log: {state / 'ministack.log'})", file=sys.stderr)
    try:
        emulator = start(state, port)
        print(f"deploying the stack with {public_key} (log: {state / 'deploy.log'})", file=sys.stderr)
        deployment = deploy(emulator, public_key, context)
    except (EmulatorUnavailable, DeployError) as exc:
        stop(state)  # whatever start() left behind
        print(f"emulator-up: {exc}", file=sys.stderr)
        return 1
    summary = {
        "url": deployment.url,
        "host": deployment.host,
        "ociHost": deployment.oci_host,
        "awsUrl": deployment.aws_url,
        "bucket": deployment.bucket,
        "ca": str(emulator.ca),
    }
    (state / "api.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"deployed in {deployment.seconds:.0f} s; the stack's ApiUrl in AWS would be {deployment.aws_url}\n"
        f"trust the emulator's CA: export VMREGISTRY_CA_BUNDLE={emulator.ca} (curl --cacert, AWS_CA_BUNDLE)\n"
        f"tokens: .venv/bin/vmregistry token -scope 'repository:**:pull,push,delete'\n"
        f"OCI clients: {deployment.oci_host} (/v2 at its root, a custom domain; *.localhost is 127.0.0.1)\n"
        f"stop it: make emulator-down",
        file=sys.stderr,
    )
    print(deployment.url + "/")
    return 0


def down(state: Path) -> int:
    was_running = stop(state)
    shutil.rmtree(state, ignore_errors=True)
    print("emulator stopped" if was_running else "no emulator was running", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description="Run the stack in MiniStack.")
    parser.add_argument("command", choices=("up", "down"))
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="folder of its logs, keys and data")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="loopback port of the emulator")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE", help="CDK context")
    args = parser.parse_args(argv)
    state = args.state.resolve()
    if args.command == "up":
        return up(state, args.port, _context(args.context))
    return down(state)


if __name__ == "__main__":
    raise SystemExit(main())
