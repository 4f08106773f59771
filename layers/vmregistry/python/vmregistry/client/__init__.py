"""``vmregistry.client``: push and pull VM images, the reference for how the protocol is used.

The ``vmregistry push/pull/tags/catalog/inspect/rm`` commands are a thin
layer over this API; a daemon can call it directly::

    from vmregistry.client import RegistryClient, push_image, pull_image

    client, ref = RegistryClient.for_reference("localhost:8080/ubuntu:24.04", token=token)
    result = push_image(client, ref.repository, ref.reference, [Path("disk.qcow2")], cpus=2)
    pull_image(client, ref.repository, result.digest, Path("out"))

Modules, each small and private: references and URL rules (``_reference``),
where credentials come from (``_auth``, ``_dockerconfig``), tokens fetched
from the Auth Server (``_tokens``, ``_login``), proxies (``_proxy``), HTTP and
retries (``_transport``), the API calls
that fit in memory (``_registry``), image documents and disk detection
(``_image``), state kept between runs (``_state``), reading disks for their
data (``_scan``) and cutting them into parts (``_plan``), blob transfer
(``_push``, ``_parts``, ``_pushimage``, ``_pull``), terminal output (``_progress``) and errors with hints
(``_errors``).
"""

from __future__ import annotations

from vmregistry.client._auth import credentials_path, resolve_credentials, resolve_token
from vmregistry.client._errors import (
    HINTS,
    ClientError,
    DigestMismatch,
    RegistryAPIError,
    TransientError,
    Unreachable,
    UsageError,
    is_resumable,
)
from vmregistry.client._image import DiskInfo, build_config, build_manifest, detect_format, parse_memory
from vmregistry.client._login import LoginResult, login, logout
from vmregistry.client._progress import Progress, Task
from vmregistry.client._proxy import Proxy, ProxyConfig
from vmregistry.client._pull import PullOptions, PullResult, fetch_blob_bytes, pull_blob, pull_image
from vmregistry.client._push import Blob, PushOptions, PushResult, push_blob
from vmregistry.client._pushimage import push_image
from vmregistry.client._reference import Reference, RegistryHost, parse_reference, parse_registry
from vmregistry.client._registry import FetchedManifest, RegistryClient
from vmregistry.client._scan import hash_disk, scan_disk
from vmregistry.client._state import atomic_write_json, cache_dir
from vmregistry.client._tokens import Login, TokenSource

__all__ = [
    "HINTS",
    "Blob",
    "ClientError",
    "DigestMismatch",
    "DiskInfo",
    "FetchedManifest",
    "Login",
    "LoginResult",
    "Progress",
    "Proxy",
    "ProxyConfig",
    "PullOptions",
    "PullResult",
    "PushOptions",
    "PushResult",
    "Reference",
    "RegistryAPIError",
    "RegistryClient",
    "RegistryHost",
    "Task",
    "TokenSource",
    "TransientError",
    "Unreachable",
    "UsageError",
    "atomic_write_json",
    "build_config",
    "build_manifest",
    "cache_dir",
    "credentials_path",
    "detect_format",
    "fetch_blob_bytes",
    "hash_disk",
    "is_resumable",
    "login",
    "logout",
    "parse_memory",
    "parse_reference",
    "parse_registry",
    "pull_blob",
    "pull_image",
    "push_blob",
    "push_image",
    "resolve_credentials",
    "resolve_token",
    "scan_disk",
]
