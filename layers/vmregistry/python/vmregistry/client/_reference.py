"""Image references: ``REGISTRY/REPO:TAG`` and ``REGISTRY/REPO@DIGEST``.

``REGISTRY`` is either ``host[:port]`` or a full URL. The short form means
https, except on loopback (``localhost``, ``127.0.0.1``, ``[::1]``) where it
means http, which is what ``vmregistry serve`` speaks. A full URL may carry a
base path, because an API Gateway URL ends with its stage
(``https://abc.execute-api.eu-west-1.amazonaws.com/prod``); which leading path
segments are the base and which are the repository is settled by asking the
registry (see :meth:`vmregistry.client.RegistryClient.resolve`), so the
parser returns every split it cannot rule out.

Plain http to anything but loopback sends tokens and images in the clear, so
it is refused unless the caller says ``insecure=True`` (``--insecure``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from vmregistry.client._errors import UsageError
from vmregistry.names import is_digest, is_valid_name

__all__ = ["Reference", "RegistryHost", "is_loopback", "parse_reference", "parse_registry"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class RegistryHost:
    """Where a registry's ``/v1`` API lives: ``base_url`` + ``/v1/...``."""

    base_url: str
    """``scheme://host[:port][/base-path]`` without a trailing slash."""
    key: str
    """How the user wrote the registry (credentials file key)."""

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as ``/v1/_catalog``."""
        return self.base_url + path


@dataclass(frozen=True, slots=True)
class Reference:
    registry: RegistryHost
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest if there is one, else the tag (``latest`` by default)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        suffix = f"@{self.digest}" if self.digest else f":{self.tag or 'latest'}"
        return f"{self.registry.key}/{self.repository}{suffix}"


def _check_scheme(scheme: str, host: str, insecure: bool) -> None:
    if scheme not in ("http", "https"):
        raise UsageError(f"registry URLs are http:// or https://, not {scheme}://")
    if scheme == "http" and not is_loopback(host) and not insecure:
        raise UsageError(
            f"refusing plain http to {host}: tokens and images would travel unencrypted."
            " Use https, or pass --insecure if you really mean it."
        )


def parse_registry(text: str, *, insecure: bool = False) -> RegistryHost:
    """A registry alone (``vmregistry catalog REGISTRY``): everything in a URL's path is the base path."""
    text = text.rstrip("/")
    if "://" in text:
        parts = urlsplit(text)
        if not parts.hostname:
            raise UsageError(f"no host in registry URL {text!r}")
        _check_scheme(parts.scheme, parts.hostname, insecure)
        return RegistryHost(f"{parts.scheme}://{parts.netloc}{parts.path}", text)
    if not text or "/" in text:
        raise UsageError(f"a registry is host[:port] or a URL, not {text!r}")
    host = urlsplit(f"//{text}").hostname or ""
    scheme = "http" if is_loopback(host) or insecure else "https"
    return RegistryHost(f"{scheme}://{text}", text)


def _looks_like_host(text: str) -> bool:
    """Docker's rule: ``host.domain``, ``host:port``, ``[v6]`` or ``localhost``, not a repository component."""
    return "." in text or ":" in text or text.startswith("[") or text == "localhost"


def _split_repository(path: str) -> tuple[str, str | None, str | None]:
    """``repo:tag`` / ``repo@digest`` / ``repo`` -> (repository, tag, digest)."""
    digest = tag = None
    if "@" in path:
        path, digest = path.split("@", 1)
        if not is_digest(digest):
            raise UsageError(f"{digest!r} is not a digest (sha256: followed by 64 lowercase hex characters)")
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
    if not is_valid_name(path):
        raise UsageError(
            f"{path!r} is not a repository name: lowercase components ([a-z0-9] separated by"
            " '.', '_', '__' or '-') joined by '/'"
        )
    return path, tag, digest


def parse_reference(text: str, *, insecure: bool = False) -> list[Reference]:
    """Every reading of ``text`` as REGISTRY/REPO[:TAG|@DIGEST], most likely first.

    There is more than one reading only when a full URL has a path: each
    leading part of that path may be the registry's base path.
    """
    if "://" in text:
        parts = urlsplit(text)
        if not parts.hostname:
            raise UsageError(f"no host in {text!r}")
        _check_scheme(parts.scheme, parts.hostname, insecure)
        segments = parts.path.strip("/").split("/")
        origin = f"{parts.scheme}://{parts.netloc}"
        readings = []
        # A stage path of one segment is the common case (API Gateway), then none, then longer ones.
        for base_len in sorted(range(len(segments)), key=lambda n: (n != 1, n)):
            base = "/".join(segments[:base_len])
            try:
                repository, tag, digest = _split_repository("/".join(segments[base_len:]))
            except UsageError:
                continue
            base_url = origin + (f"/{base}" if base else "")
            readings.append(Reference(RegistryHost(base_url, base_url), repository, tag, digest))
        if not readings:
            _split_repository("/".join(segments))  # raises the explanation
        return readings
    if "/" not in text:
        raise UsageError(
            f"{text!r} has no repository: write REGISTRY/REPO[:TAG|@DIGEST], e.g. localhost:8080/ubuntu:24.04"
        )
    registry_text, rest = text.split("/", 1)
    if not _looks_like_host(registry_text):
        raise UsageError(
            f"{text!r} needs a registry host: a reference is REGISTRY/REPO[:TAG|@DIGEST], e.g."
            f" localhost:8080/{text} (the first component is the registry when it has a '.' or a ':' or is"
            " localhost, as docker reads references)"
        )
    repository, tag, digest = _split_repository(rest)
    return [Reference(parse_registry(registry_text, insecure=insecure), repository, tag, digest)]
