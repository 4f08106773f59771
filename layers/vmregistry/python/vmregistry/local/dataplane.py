"""The local data plane: S3's part for the filesystem backend.

It serves exactly the URLs :class:`~vmregistry.storage.signing.UrlSigner`
minted, and behaves like S3 where clients can tell:

* ``GET /_data/get`` streams the object with ``sendfile`` (zero copy), one
  ``Range`` per request (206/416), ``ETag`` and ``Content-Length``;
* ``PUT /_data/put`` streams the body to a temporary file while hashing it
  and publishes it only if it hashes to the signed SHA-256 (like S3's signed
  ``x-amz-checksum-sha256``: a wrong body is a 400 and is never visible);
* ``PUT /_data/part`` stores one multipart part (at its signed offset, in an
  upload written in place: a part that would not fit is a 400);
* the signature alone authorizes a request: an ``Authorization`` header is
  ignored. OCI clients (skopeo, podman, oras) send the registry's bearer token
  again when they follow a 307 to the same host and port, which this data
  plane shares with the API; S3 is on another host, where they do not.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from vmregistry.errors import RegistryError
from vmregistry.httprange import parse_range
from vmregistry.local.bodies import ChunkedReader, LengthReader
from vmregistry.local.http import Exchange, Reply
from vmregistry.storage import MAX_PART_SIZE, MAX_SINGLE_PUT_SIZE, ChecksumMismatch, ObjectNotFound
from vmregistry.storage.filesystem import FilesystemStorage, Readable
from vmregistry.storage.signing import SignatureInvalid, UrlSigner

__all__ = ["PREFIX", "DataPlane"]

PREFIX = "/_data/"
"""The data plane's paths: ``/_data/<operation>?<signed parameters>``."""


class DataPlane:
    def __init__(self, storage: FilesystemStorage, signer: UrlSigner) -> None:
        self.storage = storage
        self.signer = signer

    def __call__(self, exchange: Exchange) -> Reply:
        operation = exchange.path.removeprefix(PREFIX)
        query = dict(parse_qsl(exchange.query_string, keep_blank_values=True))
        try:
            params = self.signer.verify(exchange.method, operation, query)
        except SignatureInvalid as exc:
            raise RegistryError("SIGNATURE_INVALID", str(exc)) from None
        if operation == "get":
            return self._get(params["key"], exchange.headers.get("range"))
        reader = exchange.body_reader()
        if reader is None:
            raise RegistryError("SIZE_INVALID", "send Content-Length or Transfer-Encoding: chunked")
        if operation == "put":
            return self._put(params, reader)
        return self._part(params, reader)

    def _get(self, key: str, range_header: str | None) -> Reply:
        info = self.storage.stat(key)
        if info is None:
            raise RegistryError("BLOB_UNKNOWN", detail={"key": key})
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{info.etag}"',
        }
        span = parse_range(range_header, info.size)
        path = str(self.storage.path(key))
        if span is None:
            headers["Content-Length"] = str(info.size)
            return Reply(200, list(headers.items()), file=(path, 0, info.size))
        start, end = span
        headers |= {"Content-Length": str(end - start + 1), "Content-Range": f"bytes {start}-{end}/{info.size}"}
        return Reply(206, list(headers.items()), file=(path, start, end - start + 1))

    @staticmethod
    def _source(reader: LengthReader | ChunkedReader, limit: int) -> tuple[Readable, int | None]:
        """The body as a reader and its length (``None``: chunked, read to the end)."""
        if isinstance(reader, LengthReader):
            if reader.remaining > limit:
                raise RegistryError("TOO_LARGE", f"at most {limit} bytes per request", {"limit": limit})
            return reader, reader.remaining
        return _Capped(reader, limit), None

    def _put(self, params: Mapping[str, str], reader: LengthReader | ChunkedReader) -> Reply:
        source, length = self._source(reader, MAX_SINGLE_PUT_SIZE)
        try:
            info = self.storage.receive(
                params["key"], source, length, sha256=params["sha256"], marker=params.get("marker")
            )
        except ChecksumMismatch as exc:
            raise RegistryError("DIGEST_INVALID", f"the body was discarded: {exc}") from None
        return Reply(200, [("ETag", f'"{info.etag}"')])

    def _part(self, params: Mapping[str, str], reader: LengthReader | ChunkedReader) -> Reply:
        source, length = self._source(reader, MAX_PART_SIZE)
        offset = int(params["offset"]) if "offset" in params else None
        try:
            part = self.storage.receive_part(
                params["key"], params["upload"], int(params["part"]), source, length, offset=offset
            )
        except ObjectNotFound:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "the upload was completed or cancelled") from None
        except ValueError as exc:
            raise RegistryError("BLOB_UPLOAD_INVALID", str(exc)) from None
        return Reply(200, [("ETag", f'"{part.etag}"')])


class _Capped:
    """A chunked body (length unknown) that may not grow past ``limit``."""

    def __init__(self, reader: ChunkedReader, limit: int) -> None:
        self._reader = reader
        self._left = limit

    def readinto(self, buffer: memoryview) -> int:
        n = self._reader.readinto(buffer)
        self._left -= n
        if self._left < 0:
            raise RegistryError("TOO_LARGE", "the chunked body is larger than one request may carry")
        return n
