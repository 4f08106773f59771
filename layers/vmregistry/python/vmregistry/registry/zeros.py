"""Zero ranges: declared by uploaders, filled by storage, recorded with blobs, checked when manifests claim them.

**Upload** (``PATCH .../uploads/<uuid>?zero=N:OFFSET:LENGTH,...``, :func:`fill`):
each named part becomes LENGTH zero bytes that storage fills itself
(:meth:`Storage.multipart_zero_part <vmregistry.storage.base.Storage.multipart_zero_part>`:
nothing crosses the network), and the request's parts, with the etags storage
gave them, are recorded under ``uploads/<uuid>/zeros/<first part>``.

**Completion** (:func:`holes_of`): a recorded zero part counts if the part
being completed is still that one (same number, size and etag: a part sent
again with data afterwards is not); its range follows from the sizes of the
parts before it. The ranges wait in ``uploads/<uuid>/holes`` for the verifier,
which hashes them from memory and fetches only the rest
(:func:`hash_object_sparse`); once the digest is verified they are published
with the blob in ``zeros/<algorithm>/<hex>`` (:func:`publish`, merged with what
earlier uploads of the same bytes recorded). The digest check is what makes
them true: a client that declared zeros where its disk holds data gets
DIGEST_INVALID, and nothing is recorded.

**Manifests** (:func:`check_annotations`): a layer's extent annotation
(:data:`vmregistry.extents.DATA_ANNOTATION`, the ranges that may hold data)
must be a well-formed list inside the layer, and every byte it leaves out must
lie in the blob's recorded zero ranges: a claim the registry cannot verify is
MANIFEST_INVALID, so a client that trusts the annotation (fetching only those
ranges) gets the blob's bytes, and verifies them by its digest anyway.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vmregistry import paths
from vmregistry.digests import hasher
from vmregistry.errors import RegistryError
from vmregistry.extents import (
    DATA_ANNOTATION,
    Extent,
    ExtentError,
    complement,
    covers,
    format_extents,
    merge,
    parse_extents,
    update_with_zeros,
)
from vmregistry.oci.descriptors import Descriptor
from vmregistry.registry.blobs import hash_object
from vmregistry.storage import MAX_PARTS, MAX_ZERO_PART_SIZE, ObjectNotFound, Storage, UploadedPart
from vmregistry.wire import MAX_ZERO_BYTES_PER_REQUEST, MAX_ZERO_PARTS_PER_REQUEST

if TYPE_CHECKING:  # imported where used: a manifest PUT (check_annotations) never starts a thread
    from concurrent.futures import Future

__all__ = [
    "check_annotations",
    "fill",
    "hash_object_sparse",
    "hash_stored",
    "holes_of",
    "load_holes",
    "parse_zero_spec",
    "publish",
    "recorded",
    "save_holes",
]

_ZERO_ITEM = re.compile(r"([1-9][0-9]{0,4}):(0|[1-9][0-9]{0,15}):([1-9][0-9]{0,15})")
FILLERS = 8
"""Zero parts filled at once (S3: parallel server-side copies)."""
READ_CHUNK = 8 * 1024 * 1024
READ_AHEAD = 4
"""Ranged reads in flight while hashing what is stored (S3: latency hidden, memory bounded)."""


def _invalid_upload(message: str, **detail: Any) -> RegistryError:
    return RegistryError("BLOB_UPLOAD_INVALID", message, detail or None)


def parse_zero_spec(spec: str) -> list[tuple[int, int, int]]:
    """``"N:OFFSET:LENGTH,..."`` -> (part number, offset, length), within the per-request limits."""
    items = spec.split(",")
    if len(items) > MAX_ZERO_PARTS_PER_REQUEST:
        raise _invalid_upload(f"at most {MAX_ZERO_PARTS_PER_REQUEST} zero parts per request")
    parsed = []
    for item in items:
        found = _ZERO_ITEM.fullmatch(item)
        if found is None or int(found.group(1)) > MAX_PARTS:
            raise _invalid_upload("a zero part is N:OFFSET:LENGTH (comma-separated)", zero=item[:60])
        number, offset, length = (int(g) for g in found.groups())
        if length > MAX_ZERO_PART_SIZE:
            raise _invalid_upload(f"a zero part is at most {MAX_ZERO_PART_SIZE} bytes", zero=item)
        parsed.append((number, offset, length))
    if sum(length for _, _, length in parsed) > MAX_ZERO_BYTES_PER_REQUEST:
        raise _invalid_upload(f"at most {MAX_ZERO_BYTES_PER_REQUEST} zero bytes per request")
    return parsed


def fill(
    storage: Storage, key: str, multipart_id: str, upload_id: str, items: list[tuple[int, int, int]], placed: bool
) -> list[UploadedPart]:
    """Have storage fill these zero parts, then record them (``placed``: the upload takes offsets)."""

    from concurrent.futures import ThreadPoolExecutor

    def one(item: tuple[int, int, int]) -> UploadedPart:
        number, offset, length = item
        return storage.multipart_zero_part(key, multipart_id, number, length, offset=offset if placed else None)

    try:
        with ThreadPoolExecutor(min(FILLERS, len(items)), thread_name_prefix="zero-part") as pool:
            parts = list(pool.map(one, items))
    except ValueError as exc:  # a zero part that does not fit the object declared
        raise _invalid_upload(str(exc)) from None
    record = json.dumps([[p.number, p.size, p.etag] for p in parts]).encode()
    storage.write(paths.upload_zeros_key(upload_id, items[0][0]), record)
    return parts


def holes_of(storage: Storage, upload_id: str, parts: list[UploadedPart]) -> list[Extent]:
    """The ranges of the joined object that are declared zero parts (those still as storage filled them)."""
    declared: set[tuple[int, int, str]] = set()
    for key in storage.list(paths.upload_zeros_prefix(upload_id)):
        try:
            entries = json.loads(storage.read(key))
            declared.update((int(n), int(size), str(etag)) for n, size, etag in entries)
        except (ObjectNotFound, ValueError, TypeError):
            continue
    if not declared:
        return []
    holes, offset = [], 0
    for part in parts:
        if (part.number, part.size, part.etag) in declared:
            holes.append(Extent(offset, part.size))
        offset += part.size
    return merge(holes)


def save_holes(storage: Storage, upload_id: str, holes: list[Extent]) -> None:
    if holes:
        storage.write(paths.upload_holes_key(upload_id), format_extents(holes).encode())


def _parse_record(raw: bytes) -> list[Extent]:
    try:
        return parse_extents(raw.decode("ascii"), 1 << 63)
    except (UnicodeDecodeError, ExtentError):
        return []  # not ours: trust nothing in it


def load_holes(storage: Storage, upload_id: str) -> list[Extent]:
    try:
        return _parse_record(storage.read(paths.upload_holes_key(upload_id)))
    except ObjectNotFound:
        return []


def recorded(storage: Storage, digest: str) -> list[Extent]:
    """The blob's zero ranges that uploads declared and its digest verified."""
    try:
        return _parse_record(storage.read(paths.zeros_key(digest)))
    except ObjectNotFound:
        return []


def publish(storage: Storage, upload_id: str, digest: str) -> None:
    """After the digest was verified: the upload's zero ranges join the blob's record (before the blob appears)."""
    holes = load_holes(storage, upload_id)
    if holes:
        known = recorded(storage, digest)
        if not covers(known, holes):
            storage.write(paths.zeros_key(digest), format_extents(merge([*known, *holes])).encode())


def hash_object_sparse(storage: Storage, key: str, algorithm: str, size: int, holes: list[Extent]) -> str:
    """The digest of a stored object whose ``holes`` are known zeros: they are hashed from memory, the rest read."""
    from concurrent.futures import ThreadPoolExecutor

    chunks = [
        (start, min(READ_CHUNK, data.end - start))
        for data in complement(holes, size)
        for start in range(data.offset, data.end, READ_CHUNK)
    ]
    digest = hasher(algorithm)
    position = 0
    with ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="hash-read") as pool:
        pending: deque[tuple[int, int, Future[bytes]]] = deque()
        waiting = iter(chunks)
        for offset, length in waiting:
            pending.append((offset, length, pool.submit(storage.read, key, offset, length)))
            if len(pending) >= READ_AHEAD:
                break
        while pending:
            offset, length, future = pending.popleft()
            following = next(waiting, None)
            if following is not None:
                pending.append((*following, pool.submit(storage.read, key, *following)))
            data = future.result()
            if len(data) != length:
                raise ObjectNotFound(f"{key} ended before {offset + length} bytes")
            update_with_zeros(digest, offset - position)
            digest.update(data)
            position = offset + length
    update_with_zeros(digest, size - position)
    return digest.hexdigest()


def hash_stored(storage: Storage, key: str, algorithm: str, size: int, holes: list[Extent]) -> str:
    """The digest of a stored object: its declared zeros (``holes``) from memory, the rest read back."""
    if holes:
        return hash_object_sparse(storage, key, algorithm, size, holes)
    return hash_object(storage, key, algorithm)


def _invalid_manifest(message: str, **detail: Any) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, {"annotation": DATA_ANNOTATION, **detail})


def check_annotations(storage: Storage, layers: Sequence[Descriptor]) -> None:
    """Refuse a manifest whose layers claim (by their extent annotation) zeros their blobs are not known to hold."""
    for index, layer in enumerate(layers):
        text = layer.annotations.get(DATA_ANNOTATION)
        if text is None:
            continue
        digest, size = layer.digest, layer.size
        try:
            claimed = complement(parse_extents(text, size), size)
        except ExtentError as exc:
            raise _invalid_manifest(f"layers[{index}]: {exc}", layer=index) from None
        if claimed and not covers(recorded(storage, digest), claimed):
            raise _invalid_manifest(
                f"layers[{index}]: the extent annotation leaves out bytes the registry does not know to be"
                " zeros (only zero parts declared when the blob was uploaded are); drop the annotation,"
                " or upload the blob declaring them",
                layer=index,
                digest=digest,
            )
