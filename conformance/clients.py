"""Real OCI clients against a running registry: skopeo copies in, out and between registries; podman pulls.

``python -m conformance`` runs these after the suite for every ``vmregistry-*``
server (``--no-clients`` skips them). Each check drives the tools as a user
would, on content made for the run (so skopeo's blob cache cannot stand in
for a transfer), and says what it saw:

- **container image in and out**: a small container image (an OCI image
  layout written here: a gzip layer, a config with its ``diff_ids``) is copied
  into the registry and back out with ``skopeo copy --preserve-digests``;
  the manifest digest is the same at every step.
- **podman pull**: podman (as root, ``--storage-driver vfs``, a throwaway
  root) pulls that image; its digest is the pushed one.
- **VM image mirror**: ``vmregistry push`` pushes a VM image (the seed's
  ``/v1`` way); skopeo copies it (its OCI form, docs/oci.md) to CNCF
  distribution and back into another repository, digests preserved; the
  reference client pulls the copy and gets the very disk bytes.

Tools missing on the machine are installed the way ``make conformance``
installs distribution (Debian packages); a check that cannot run is a failure.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conformance.servers import Registry, distribution

__all__ = ["CHECKS", "ClientResult", "run_clients"]

TIMEOUT = 300.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class ClientResult:
    name: str
    ok: bool
    detail: str
    seconds: float


class CheckFailed(AssertionError):
    """A check saw something other than what it expects; the message says what."""


def _run(*command: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        raise CheckFailed(
            f"{' '.join(command[:3])} ... exited {done.returncode}: {(done.stderr or done.stdout)[-800:]}"
        )
    return done.stdout


def _skopeo(*args: str) -> str:
    return _run("skopeo", "--insecure-policy", *args)


def _copy_between_registries(source: str, target: str) -> None:
    """skopeo copies an image from one plain-http registry to another, keeping its manifest's digest."""
    _skopeo(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{source}",
        f"docker://{target}",
    )


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _remote_digest(reference: str) -> str:
    """The digest of the manifest a registry holds under a reference, as skopeo reads it."""
    return _digest(_skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{reference}").encode())


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = _digest(data)
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def container_image(layout: Path, tag: str) -> str:
    """Write a one-layer container image as an OCI image layout; its manifest digest."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        content = f"made by the conformance run at {time.time()}\n".encode()
        entry = tarfile.TarInfo("hello.txt")
        entry.size, entry.mode, entry.mtime = len(content), 0o644, int(time.time())
        archive.addfile(entry, io.BytesIO(content))
    layer = gzip.compress(tar.getvalue(), mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [_digest(tar.getvalue())]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **_blob(layout, json.dumps(config).encode()),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(layout, layer)}],
    }
    body = json.dumps(manifest).encode()
    descriptor = {
        "mediaType": OCI_MANIFEST,
        **_blob(layout, body),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))
    return _digest(body)


def check_container_image(registry: Registry, work: Path) -> str:
    source, back = work / "image-layout", work / "image-back"
    digest = container_image(source, "v1")
    target = f"{registry.address}/clients/image:v1"
    _skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{source}:v1", f"docker://{target}")
    if (pushed := _remote_digest(target)) != digest:
        raise CheckFailed(f"pushed {digest}, the registry holds {pushed}")
    _skopeo("copy", "--preserve-digests", "--src-tls-verify=false", f"docker://{target}", f"oci:{back}:v1")
    index = json.loads((back / "index.json").read_text())
    if (copied := index["manifests"][0]["digest"]) != digest:
        raise CheckFailed(f"copied back {copied}, expected {digest}")
    return f"{digest} in and out"


def check_podman_pull(registry: Registry, work: Path) -> str:
    layout = work / "podman-layout"
    digest = container_image(layout, "v1")
    target = f"{registry.address}/clients/podman:v1"
    _skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{target}")
    # podman refuses a run root path longer than 50 characters: a short one of its own.
    scratch = Path(tempfile.mkdtemp(prefix="vmr-podman-"))
    podman = ["podman", "--storage-driver", "vfs", "--root", str(scratch / "root"), "--runroot", str(scratch / "run")]
    podman += ["--events-backend", "file", "--cgroup-manager", "cgroupfs"]
    try:
        _run(*podman, "pull", "--tls-verify=false", f"docker://{target}")
        pulled = _run(*podman, "image", "inspect", "--format", "{{.Digest}}", target).strip()
    finally:
        subprocess.run([*podman, "system", "reset", "--force"], capture_output=True, timeout=TIMEOUT, check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    if pulled != digest:
        raise CheckFailed(f"podman pulled {pulled}, expected {digest}")
    return f"podman (vfs, root) pulled {digest}"


def _vmregistry(*args: str, cwd: Path) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    environ |= {"VMREGISTRY_CACHE_DIR": str(cwd / "cache"), "DOCKER_CONFIG": str(cwd / "docker")}
    environ["VMREGISTRY_CREDENTIALS"] = str(cwd / "no-credentials.json")
    return _run(str(Path(sys.executable).with_name("vmregistry")), *args, cwd=cwd, env=environ)


def check_vm_image_mirror(registry: Registry, work: Path) -> str:
    vm = work / "vm"
    vm.mkdir(parents=True, exist_ok=True)
    disk = vm / "disk.qcow2"
    disk.write_bytes(os.urandom(7 * 1024 * 1024 + 123))
    source = f"{registry.address}/clients/vm:1"
    _vmregistry("push", source, "--disk", str(disk), cwd=vm)
    digest = _remote_digest(source)
    with distribution(work / "mirror") as mirror:
        mirrored = f"{mirror.address}/mirror/vm:1"
        _copy_between_registries(source, mirrored)
        if (held := _remote_digest(mirrored)) != digest:
            raise CheckFailed(f"distribution holds {held}, expected {digest}")
        back = f"{registry.address}/clients/vm-back:1"
        _copy_between_registries(mirrored, back)
    if (returned := _remote_digest(back)) != digest:
        raise CheckFailed(f"the copy back is {returned}, expected {digest}")
    _vmregistry("pull", back, "-o", str(vm / "out"), cwd=vm)
    if (vm / "out" / "disk.qcow2").read_bytes() != disk.read_bytes():
        raise CheckFailed("the disk pulled from the copy differs from the one pushed")
    return f"{digest} to distribution and back; the disk pulled intact"


CHECKS: dict[str, Callable[[Registry, Path], str]] = {
    "skopeo copies a container image in and out, digests preserved": check_container_image,
    "podman pulls a container image": check_podman_pull,
    "skopeo mirrors a VM image to distribution and back": check_vm_image_mirror,
}


def _ensure_tools() -> None:
    missing = [tool for tool in ("skopeo", "podman") if shutil.which(tool) is None]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *missing], check=False, timeout=TIMEOUT)


def run_clients(registry: Registry, work: Path) -> list[ClientResult]:
    """Run every check against ``registry``; nothing is shared between checks but the registry."""
    _ensure_tools()
    results = []
    for name, check in CHECKS.items():
        started = time.monotonic()
        directory = work / check.__name__
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        try:
            detail, ok = check(registry, directory), True
        except (CheckFailed, OSError, subprocess.TimeoutExpired) as exc:
            detail, ok = str(exc), False
        results.append(ClientResult(name, ok, detail, time.monotonic() - started))
    return results
