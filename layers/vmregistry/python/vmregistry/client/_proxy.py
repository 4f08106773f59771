"""Which proxy a request goes through: ``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY``, as curl reads them.

- ``https_proxy`` / ``HTTPS_PROXY`` for https URLs, ``http_proxy`` / ``HTTP_PROXY``
  for http URLs; the lowercase name wins when both are set (curl, urllib and
  requests do the same). A value is ``[http://][user:password@]host[:port]``
  (port 1080 if omitted, as curl). Credentials are percent-decoded and sent as
  ``Proxy-Authorization: Basic`` to the proxy only, never to the target.
- ``no_proxy`` / ``NO_PROXY``: comma- or space-separated entries, each
  ``*`` (no proxy at all), a host name (matching itself and every subdomain;
  a leading dot is allowed), an IP address, a CIDR block (``10.0.0.0/8``,
  ``fd00::/8``), optionally with ``:port`` to match only that port.
  Loopback is proxied like any other host unless listed, as curl does: a
  proxy on loopback may be the very thing that reaches the registry.

https goes through a ``CONNECT`` tunnel, so the proxy sees only host and
port and TLS is end to end; http is sent to the proxy with an absolute URL.
Only ``http://`` proxies are supported (the stdlib cannot run TLS inside a
TLS connection to a proxy); anything else is refused with a clear message
rather than silently ignored.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from vmregistry.client._errors import ClientError, Unreachable, UsageError

__all__ = ["Proxy", "ProxyConfig", "tunnel_refused", "unreachable"]

DEFAULT_PROXY_PORT = 1080


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None
    """``Proxy-Authorization`` value, if the URL carried credentials."""
    source: str
    """The variable it came from, for messages."""

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def display(self) -> str:
        """The proxy without its credentials (they never go into a message)."""
        return f"http://{self.netloc}"

    def headers(self) -> dict[str, str]:
        return {"Proxy-Authorization": self.authorization} if self.authorization else {}


def parse_proxy(value: str, source: str) -> Proxy:
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() != "http":
        raise UsageError(
            f"{source}={_redacted(value)}: only http:// proxies are supported (CONNECT tunnels carry https);"
            f" {parts.scheme}:// is not"
        )
    try:
        port = parts.port or DEFAULT_PROXY_PORT
    except ValueError:
        raise UsageError(f"{source}={_redacted(value)}: the port is not a number") from None
    if not parts.hostname:
        raise UsageError(f"{source}={_redacted(value)}: no proxy host")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(parts.hostname, port, authorization, source)


def _redacted(value: str) -> str:
    parts = urlsplit(value if "://" in value else "http://" + value)
    if parts.password is None:
        return value
    return value.replace(f":{parts.password}@", ":***@")


@dataclass(frozen=True, slots=True)
class _Exclusion:
    host: str | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = None

    def matches(self, host: str, port: int, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address is not None and address.version == self.network.version and address in self.network
        assert self.host is not None
        return host == self.host or host.endswith("." + self.host)


def _exclusion(entry: str) -> _Exclusion | None:
    text = entry.strip().lower()
    if not text:
        return None
    port: int | None = None
    if text.startswith("["):  # [v6]:port or [v6]
        inner, _, rest = text[1:].partition("]")
        text = inner
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    elif text.count(":") == 1:
        name, _, maybe_port = text.partition(":")
        if maybe_port.isdigit():
            text, port = name, int(maybe_port)
    try:
        return _Exclusion(network=ipaddress.ip_network(text, strict=False), port=port)
    except ValueError:
        pass
    return _Exclusion(host=text.lstrip(".").removeprefix("*."), port=port)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """The proxies of one environment, read once."""

    https: Proxy | None = None
    http: Proxy | None = None
    bypass_all: bool = False
    exclusions: tuple[_Exclusion, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxyConfig:
        env = os.environ if environ is None else environ

        def get(name: str) -> tuple[str, str] | None:
            for variable in (name.lower(), name.upper()):
                value = env.get(variable, "").strip()
                if value:
                    return value, variable
            return None

        proxies: dict[str, Proxy | None] = {}
        for scheme in ("https", "http"):
            found = get(f"{scheme}_proxy")
            proxies[scheme] = parse_proxy(*found) if found else None
        no_proxy = get("no_proxy")
        entries = no_proxy[0].replace(",", " ").split() if no_proxy else []
        exclusions = tuple(e for e in (_exclusion(entry) for entry in entries) if e is not None)
        return cls(proxies["https"], proxies["http"], "*" in entries, exclusions)

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for a request to ``scheme://host:port``, or ``None`` to connect directly."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or self.bypass_all:
            return None
        name = host.strip("[]").lower().rstrip(".")
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(name)
        except ValueError:
            address = None
        if any(exclusion.matches(name, port, address) for exclusion in self.exclusions):
            return None
        return proxy


# -- what to tell the user when the way out is blocked ------------------------------


def _reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return exc.strerror or "name not known"
    return exc.strerror or str(exc) or type(exc).__name__


def unreachable(exc: OSError, origin: str, registry: str, proxy: Proxy | None, role: str = "") -> Unreachable:
    """The first connection to ``origin`` failed: say whether the proxy, the name or the registry is at fault.

    ``role`` names what ``origin`` is when it is neither the registry nor storage (the Auth Server).
    """
    if proxy is not None:
        return Unreachable(
            f"cannot connect to the proxy {proxy.display} (from {proxy.source}) on the way to {origin}:"
            f" {_reason(exc)}.\n  what to do: is the proxy running? If {urlsplit(origin).hostname} needs no proxy,"
            " add it to NO_PROXY"
        )
    if isinstance(exc, socket.gaierror):
        return Unreachable(f"cannot resolve the host of {origin}: {_reason(exc)}.\n  what to do: check the address")
    if urlsplit(registry).netloc == urlsplit(origin).netloc:
        return Unreachable(
            f"cannot connect to {origin}: {_reason(exc)}.\n  what to do: is the registry running at {registry}?"
            " Check the host and port"
        )
    what = role or "the storage the registry sent the client to"
    return Unreachable(f"cannot connect to {what} at {origin}: {_reason(exc)}")


def tunnel_refused(proxy: Proxy, netloc: str, detail: str) -> ClientError:
    hint = (
        "put the proxy's credentials in the URL: http://USER:PASSWORD@host:port"
        if "407" in detail
        else f"the proxy will not connect to {netloc}: ask its operator, or add the host to NO_PROXY"
    )
    return ClientError(f"the proxy {proxy.display} (from {proxy.source}) refused: {detail}\n  what to do: {hint}")
