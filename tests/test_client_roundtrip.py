"""The reference client end to end: push a multi-part disk image, pull it back, compare bytes.

Runs against a real ``vmregistry serve`` on the filesystem backend and, when
LocalStack is available, on S3, through the same Python API the CLI uses;
the CLI itself is exercised as a subprocess for the listing commands.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vmregistry import mediatypes
from vmregistry.client import (
    Progress,
    PullOptions,
    PushOptions,
    Reference,
    RegistryClient,
    pull_image,
    push_image,
)

from tests.cli import run_vmregistry
from tests.conftest import RunningServer

MiB = 1024 * 1024
Connect = Callable[[str], tuple[RegistryClient, Reference]]


pytestmark = pytest.mark.usefixtures("isolated_client")


def make_disk(path: Path, pattern: list[tuple[str, int]]) -> Path:
    """A disk of random and zero regions, e.g. [("random", 6 MiB), ("zero", 4 MiB), ("random", 2 MiB)]."""
    with open(path, "wb") as handle:
        for kind, size in pattern:
            handle.write(os.urandom(size) if kind == "random" else bytes(size))
    return path


@pytest.fixture
def connect() -> Iterator[Callable[[str], tuple[RegistryClient, Reference]]]:
    """``RegistryClient.for_reference``, closing every client at the end of the test."""
    opened: list[RegistryClient] = []

    def open_client(text: str) -> tuple[RegistryClient, Reference]:
        client, ref = RegistryClient.for_reference(text)
        opened.append(client)
        return client, ref

    yield open_client
    for client in opened:
        client.close()


@pytest.fixture(params=["filesystem", "s3"])
def any_server(request: pytest.FixtureRequest) -> RunningServer:
    server: RunningServer = request.getfixturevalue("server" if request.param == "filesystem" else "s3_server")
    return server


def test_push_then_pull_round_trips_a_multipart_disk_sparsely(
    any_server: RunningServer, tmp_path: Path, connect: Connect
) -> None:
    # GIVEN a 12 MiB disk with a 4 MiB hole and a 5 MiB part size (three parts)
    disk = make_disk(tmp_path / "disk.img", [("random", 6 * MiB), ("zero", 4 * MiB), ("random", 2 * MiB)])
    client, ref = connect(f"{any_server.url}/client/roundtrip:v1")

    # WHEN it is pushed and pulled back with 4 MiB ranged chunks in parallel
    pushed = push_image(
        client,
        ref.repository,
        "v1",
        [disk],
        cpus=2,
        memory_mib=2048,
        options=PushOptions(part_size=5 * MiB, concurrency=3),
        progress=Progress(mode="quiet"),
    )
    pulled = pull_image(
        client, ref.repository, "v1", tmp_path / "out", options=PullOptions(chunk_size=4 * MiB, concurrency=3)
    )

    # THEN the bytes are identical, the manifest digest matches, and the hole stayed a hole
    out = tmp_path / "out" / "disk.img"
    assert out.read_bytes() == disk.read_bytes()
    assert pulled.digest == pushed.digest
    assert pushed.outcomes[next(iter(pushed.outcomes))] == "multipart"
    assert out.stat().st_blocks * 512 <= 8 * MiB + 64 * 1024
    # AND the config records the machine and the disk as measured
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["cpus"] == 2
    assert config["memoryMiB"] == 2048
    assert config["disks"] == [
        {
            "name": "disk.img",
            "format": "raw",
            "size": 12 * MiB,
            "digest": json.loads((tmp_path / "out" / "manifest.json").read_text())["layers"][0]["digest"],
        }
    ]
    assert not list((tmp_path / "out").glob("*.partial*"))


def test_a_blob_of_one_part_goes_through_the_presigned_single_put(
    any_server: RunningServer, tmp_path: Path, connect: Connect
) -> None:
    # GIVEN a disk over the inline limit but within one part
    disk = make_disk(tmp_path / "one-part.img", [("random", 5 * MiB)])
    client, ref = connect(f"{any_server.url}/client/single:v1")

    # WHEN it is pushed and pulled back
    pushed = push_image(client, ref.repository, "v1", [disk], options=PushOptions(part_size=5 * MiB))
    pull_image(client, ref.repository, pushed.digest, tmp_path / "out")

    # THEN it went through one presigned PUT and came back intact
    assert list(pushed.outcomes.values()) == ["single", "inline"]
    assert (tmp_path / "out" / "one-part.img").read_bytes() == disk.read_bytes()


def test_second_push_skips_blobs_the_registry_already_holds(
    server: RunningServer, tmp_path: Path, connect: Connect
) -> None:
    # GIVEN an image already pushed
    disk = make_disk(tmp_path / "base.qcow2", [("random", 6 * MiB)])
    client, ref = connect(f"{server.url}/client/skip:v1")
    options = PushOptions(part_size=5 * MiB)
    push_image(client, ref.repository, "v1", [disk], options=options)

    # WHEN the same disk is pushed under another tag
    again = push_image(client, ref.repository, "v2", [disk], options=options)

    # THEN no blob was uploaded again
    assert set(again.outcomes.values()) == {"exists"}
    assert client.tags(ref.repository) == ["v1", "v2"]


def test_disk_formats_are_detected_from_magic_bytes(server: RunningServer, tmp_path: Path, connect: Connect) -> None:
    # GIVEN a qcow2 header (virtual size 1 GiB) and an ISO 9660 volume descriptor
    qcow2 = tmp_path / "root.qcow2"
    qcow2.write_bytes(b"QFI\xfb" + bytes(20) + (1 << 30).to_bytes(8, "big") + bytes(1000))
    iso = tmp_path / "seed.iso"
    iso.write_bytes(bytes(32769) + b"CD001" + bytes(2000))
    client, ref = connect(f"{server.url}/client/formats:v1")

    # WHEN both are pushed as one image, with a user config merged under the flags
    user = {"bootloader": "bios", "cpus": 8, "firmwareNotes": "legacy"}
    push_image(client, ref.repository, "v1", [qcow2, iso], user_config=user, cpus=4)
    pull_image(client, ref.repository, "v1", tmp_path / "out")

    # THEN the config names each disk's format and the merged settings
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert [(d["name"], d["format"]) for d in config["disks"]] == [("root.qcow2", "qcow2"), ("seed.iso", "iso")]
    assert config["disks"][0]["virtualSize"] == 1 << 30
    assert (config["cpus"], config["bootloader"], config["firmwareNotes"]) == (4, "bios", "legacy")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["mediaType"] == mediatypes.MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [mediatypes.DISK, mediatypes.DISK]
    assert (tmp_path / "out" / "seed.iso").read_bytes() == iso.read_bytes()


def test_cli_push_pull_tags_catalog_inspect_rm(server: RunningServer, tmp_path: Path) -> None:
    # GIVEN a disk and the registry written as host:port (http because it is loopback)
    registry = server.url.removeprefix("http://")
    make_disk(tmp_path / "vm.img", [("random", 1 * MiB), ("zero", 1 * MiB)])

    # WHEN the CLI pushes it (not a terminal: plain progress lines) and pulls it by digest
    pushed = run_vmregistry(
        "push", f"{registry}/client/cli:1.0", "--disk", "vm.img", "--cpus", "2", "--memory", "1G", cwd=tmp_path
    )
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip()
    assert "push vm.img: pushed" in pushed.stderr
    pulled = run_vmregistry("pull", f"{registry}/client/cli@{digest}", "-o", "got", "-q", cwd=tmp_path)

    # THEN the listing commands see it, inspect describes it, and rm removes the tag
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stderr == ""
    assert (tmp_path / "got" / "vm.img").read_bytes() == (tmp_path / "vm.img").read_bytes()
    assert run_vmregistry("tags", f"{registry}/client/cli", cwd=tmp_path).stdout.split() == ["1.0"]
    assert "client/cli" in run_vmregistry("catalog", registry, cwd=tmp_path).stdout.split()
    human = run_vmregistry("inspect", f"{registry}/client/cli:1.0", cwd=tmp_path).stdout
    assert "Memory:      1024 MiB" in human
    assert "vm.img" in human
    as_json = json.loads(run_vmregistry("inspect", f"{registry}/client/cli:1.0", "--json", cwd=tmp_path).stdout)
    assert as_json["digest"] == digest
    assert as_json["config"]["cpus"] == 2
    assert run_vmregistry("rm", f"{registry}/client/cli:1.0", cwd=tmp_path).returncode == 0
    gone = run_vmregistry("inspect", f"{registry}/client/cli:1.0", cwd=tmp_path)
    assert gone.returncode == 1
    assert "MANIFEST_UNKNOWN" in gone.stderr
    assert "what to do:" in gone.stderr


def test_catalog_follows_pagination(server: RunningServer, tmp_path: Path, connect: Connect) -> None:
    # GIVEN several repositories
    disk = make_disk(tmp_path / "tiny.img", [("random", 4096)])
    client, _ = connect(f"{server.url}/client/page-a:1")
    for name in ("client/page-a", "client/page-b", "client/page-c"):
        push_image(client, name, "1", [disk])

    # WHEN the catalog is read two entries per page
    repositories = client.catalog(page_size=2)

    # THEN every page was followed
    assert {"client/page-a", "client/page-b", "client/page-c"} <= set(repositories)
    assert repositories == sorted(repositories)
