"""How a blob is served: which bytes a ``Range`` asks for, and the headers that keep a browser from running it.

Pure functions of the stored blob and the request's ``Range``, tested without a server. A blob is stored with the
type its uploader gave, which may be ``text/html`` or ``image/svg+xml``: served inline from the API's origin,
such a blob could run script with the caller's cookies. So every blob goes out with ``nosniff`` and a sandboxing
``Content-Security-Policy``, and as an attachment unless its type is one a browser only ever displays
(:data:`INLINE_TYPES`: raster images and plain text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from handoff.errors import RangeNotSatisfiable

#: Types served inline: they display and cannot script. SVG is an image that can, so it is not here.
INLINE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp", "text/plain"}
)

_BYTE_RANGE = re.compile(r"([0-9]*)[ \t]*-[ \t]*([0-9]*)", re.ASCII)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``first`` to ``last`` of a blob, both included (as ``Content-Range`` writes them)."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def byte_range(header: str | None, size: int) -> ByteRange | None:
    """The part of a ``size``-byte blob that ``Range: header`` asks for; ``None`` for the whole blob.

    The whole blob is answered when there is no ``Range``, when its unit is not ``bytes`` (RFC 9110 14.2: ignore
    it) and when it asks for several ranges (a server may answer those in full; ``multipart/byteranges`` is
    not offered). A bytes range that is malformed, or that no byte satisfies (it starts past the end, a suffix
    of 0 bytes, any range of an empty blob): :class:`RangeNotSatisfiable`.
    """
    if header is None:
        return None
    unit, equals, spec = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    match = _BYTE_RANGE.fullmatch(spec.strip())
    if match is None or not any(match.groups()):
        raise _unsatisfiable(header, size)
    first_text, last_text = match.groups()
    if not first_text:  # a suffix: the last N bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return ByteRange(max(0, size - suffix), size - 1)
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size or last < first:
        raise _unsatisfiable(header, size)
    return ByteRange(first, min(last, size - 1))


def _unsatisfiable(header: str, size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(f"Range {header[:100]!r} selects no byte of this {size}-byte blob", size=size)


def media_type(content_type: str) -> str:
    """The ``type/subtype`` of a Content-Type, lower case, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def headers(*, blob_id: str, size: int, sha256: str, content_type: str, part: ByteRange | None) -> dict[str, str]:
    """The response headers of a blob (or of the part of it ``part`` names)."""
    disposition = "inline" if media_type(content_type) in INLINE_TYPES else "attachment"
    found = {
        "content-type": content_type,
        "content-length": str(part.length if part else size),
        "etag": f'"{sha256}"',
        "accept-ranges": "bytes",
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; sandbox",
        "content-disposition": f'{disposition}; filename="{blob_id}"',
    }
    if part is not None:
        found["content-range"] = f"bytes {part.first}-{part.last}/{size}"
    return found
