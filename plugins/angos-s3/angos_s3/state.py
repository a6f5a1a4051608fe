"""An upload session's state, kept in the bucket beside its data.

Every process reads the state from S3 at each request, so a ``PATCH`` or the final ``PUT``
may land on another replica, or after a restart. Objects under the session's
``layout.upload_prefix``::

    state          this JSON document: the commit point of every change
    data           the multipart upload's key; after sealing, the complete bytes
    tail.<gen>     bytes after the last full part (less than one part), one object

The state is written last: parts uploaded or a tail written by a request that then died are
simply not referenced (a part number is re-sent by the next request, an unreferenced tail is
deleted with the session). So a crash never leaves a session whose recorded bytes are wrong.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from angos_core.layout import upload_key
from angos_core.protocols import UploadRef

VERSION = 1


@dataclass
class Part:
    etag: str
    size: int


@dataclass
class UploadState:
    #: Bytes received: the parts, then the tail; or the sealed ``data`` object.
    size: int = 0
    #: Bumped at every write; names the tail object so a new tail never overwrites the
    #: one the stored state refers to.
    gen: int = 0
    #: The open multipart upload at ``data`` (None until the first full part).
    mpu_id: str | None = None
    #: Parts sent, in order: part number = index + 1. All but the last are full parts.
    parts: list[Part] = field(default_factory=list)
    tail_key: str | None = None
    tail_size: int = 0
    #: The multipart upload is complete: ``data`` holds all ``size`` bytes.
    sealed: bool = False

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc["v"] = VERSION
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> UploadState:
        doc: dict[str, Any] = json.loads(raw)
        doc.pop("v", None)
        parts = [Part(**p) for p in doc.pop("parts", [])]
        return cls(parts=parts, **doc)

    @property
    def parts_size(self) -> int:
        return sum(p.size for p in self.parts)


def state_key(upload: UploadRef) -> str:
    return upload_key(upload, "state")


def data_key(upload: UploadRef) -> str:
    return upload_key(upload, "data")


def tail_key(upload: UploadRef, gen: int) -> str:
    return upload_key(upload, f"tail.{gen}")
