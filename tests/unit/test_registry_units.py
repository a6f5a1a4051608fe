"""Unit tests of the pure pieces under the HTTP API: ranges, manifest parsing, hashing
streams, backend error translation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

import pytest

from angos_core.errors import (
    BackendError,
    BackendUnavailable,
    BlobUnknown,
    ManifestInvalid,
    RangeNotSatisfiable,
)
from angos_core.http.blob_handlers import parse_range
from angos_core.oci import mediatypes as mt
from angos_core.oci.manifest import parse_manifest, stored_media_type
from angos_core.registry.hashing import HashingStream, hash_stream
from angos_core.registry.wrappers import WrappedCache, translate

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, (0, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("bytes=0-1,3-4", 10, None),  # multi-range: serve it all
        ("items=0-1", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=10-", 10), ("bytes=5-4", 10), ("bytes=-0", 10), ("bytes=0-0", 0)]
)
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def _image(**extra: object) -> bytes:
    desc = {"mediaType": "x/y", "digest": D, "size": 1}
    return json.dumps({"schemaVersion": 2, "config": desc, "layers": [desc], **extra}).encode()


def test_media_type_from_field_header_or_shape() -> None:
    assert parse_manifest(_image(), None).media_type == mt.OCI_MANIFEST
    assert parse_manifest(_image(), mt.DOCKER_MANIFEST).media_type == mt.DOCKER_MANIFEST
    index = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert parse_manifest(index, "application/json").media_type == mt.OCI_INDEX
    assert stored_media_type(index) == mt.OCI_INDEX
    assert stored_media_type(b'{"schemaVersion":1,"signatures":[]}') == mt.DOCKER_SCHEMA1_SIGNED
    assert stored_media_type(b"garbage") == "application/octet-stream"


def test_content_type_parameters_ignored() -> None:
    body = _image(mediaType=mt.OCI_MANIFEST)
    assert parse_manifest(body, f"{mt.OCI_MANIFEST}; charset=utf-8").media_type == mt.OCI_MANIFEST


def test_effective_artifact_type() -> None:
    assert parse_manifest(_image(), None).effective_artifact_type() == "x/y"
    typed = parse_manifest(_image(artifactType="a/b"), None)
    assert typed.effective_artifact_type() == "a/b"


@pytest.mark.parametrize(
    "extra",
    [
        {"manifests": []},
        {"subject": {"digest": D}},
        {"annotations": {"a": 1}},
        {"artifactType": 3},
        {"mediaType": 7},
    ],
)
def test_invalid_manifest_fields(extra: dict[str, object]) -> None:
    with pytest.raises(ManifestInvalid):
        parse_manifest(_image(**extra), None)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_hashing_stream_hashes_and_counts() -> None:
    big = b"z" * (600 * 1024)  # above the thread threshold
    parts = (b"abc", big, b"", b"def", big)
    hasher = hashlib.sha256()
    stream = HashingStream(_chunks(*parts), hasher)
    assert not stream.started
    received = [c async for c in stream]
    assert b"".join(received) == b"".join(parts)
    assert stream.started
    assert stream.count == len(b"".join(parts))
    assert hasher.hexdigest() == hashlib.sha256(b"".join(parts)).hexdigest()


async def test_hash_stream_sha512() -> None:
    hexdigest, size = await hash_stream(_chunks(b"a", b"b"), "sha512")
    assert hexdigest == hashlib.sha512(b"ab").hexdigest()
    assert size == 2


def test_translate() -> None:
    assert isinstance(translate("s3", "get", OSError("x")), BackendUnavailable)
    assert isinstance(translate("s3", "get", TimeoutError()), BackendUnavailable)
    err = translate("redis", "get", ValueError("boom"))
    assert type(err) is BackendError
    assert err.backend == "redis"
    own = BlobUnknown()
    assert translate("fs", "stat", own) is own


class _BrokenCache:
    name = "broken"

    async def get(self, key: str) -> bytes | None:
        raise ConnectionError("down")

    async def set(self, key: str, value: bytes, ttl_secs: float | None = None) -> None:
        raise RuntimeError("down")

    async def delete(self, key: str) -> None:
        raise OSError("down")


async def test_cache_failures_are_misses() -> None:
    calls: list[tuple[str, str | None]] = []
    cache = WrappedCache(_BrokenCache(), lambda kind, name, op, secs, err: calls.append((op, err)))
    assert await cache.get("k") is None
    await cache.set("k", b"v")
    await cache.delete("k")
    assert calls == [("get", "ConnectionError"), ("set", "RuntimeError"), ("delete", "OSError")]
