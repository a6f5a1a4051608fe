"""The upload endpoints: /v2/<name>/blobs/uploads/[<uuid>]."""

from __future__ import annotations

import re

from aiohttp import web

from angos_core.errors import BlobUploadInvalid, DigestInvalid
from angos_core.http.context import byte_offset, registry, upload_location, upload_range
from angos_core.http.policy import mount_allowed
from angos_core.http.streams import body_chunks, has_body
from angos_core.oci.digest import parse_digest
from angos_core.protocols import UploadRef

_CONTENT_RANGE_RE = re.compile(
    r"\s*(?:bytes[ =])?([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?\s*", re.ASCII
)


def _blob_created(name: str, digest: str) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": digest,
        },
    )


def _accepted(upload: UploadRef, size: int) -> web.Response:
    return web.Response(
        status=202,
        headers={
            "Location": upload_location(upload.name, upload.upload_id),
            "Range": upload_range(size),
            "Docker-Upload-UUID": upload.upload_id,
        },
    )


def _content_range(request: web.Request) -> int | None:
    """The chunk's start from Content-Range, checked against Content-Length."""
    header = request.headers.get("Content-Range")
    if not header:
        return None
    m = _CONTENT_RANGE_RE.fullmatch(header)
    if not m:
        raise BlobUploadInvalid(
            f"malformed Content-Range {header!r}", detail={"Content-Range": header}
        )
    start, end = byte_offset(m.group(1)), byte_offset(m.group(2))
    if end < start:
        raise BlobUploadInvalid(
            f"Content-Range {header!r} ends before it starts", detail={"Content-Range": header}
        )
    length = request.content_length
    if length is not None and length != end - start + 1:
        raise BlobUploadInvalid(
            f"Content-Range {header!r} does not match Content-Length {length}",
            detail={"Content-Range": header, "Content-Length": length},
        )
    return start


async def start_upload(request: web.Request) -> web.StreamResponse:
    reg = registry(request)
    name = request.match_info["name"]
    query = request.query

    mount, from_name = query.get("mount"), query.get("from")
    if mount and from_name and mount_allowed(request):
        parse_digest(mount)
        size = await reg.blobs.mount(name, from_name, mount)
        if size is not None:
            return _blob_created(name, mount)
        # Not mountable: fall back to a plain upload session (the spec's 202).

    digest = query.get("digest")
    if digest:
        parse_digest(digest)
        upload = await reg.uploads.start(name, request.remote)
        try:
            if has_body(request):
                await reg.uploads.append(upload, body_chunks(request), 0)
            await reg.uploads.complete(upload, digest)
        except BaseException:
            # The original error is what the client must see.
            await reg.uploads.discard(upload)
            raise
        return _blob_created(name, digest)

    upload = await reg.uploads.start(name, request.remote)
    return _accepted(upload, 0)


async def patch_upload(request: web.Request) -> web.StreamResponse:
    reg = registry(request)
    upload = reg.uploads.ref(request.match_info["name"], request.match_info["uuid"])
    start = _content_range(request)
    size = await reg.uploads.append(upload, body_chunks(request), start)
    return _accepted(upload, size)


async def upload_status(request: web.Request) -> web.StreamResponse:
    reg = registry(request)
    upload = reg.uploads.ref(request.match_info["name"], request.match_info["uuid"])
    size = await reg.uploads.size(upload)
    return web.Response(
        status=204,
        headers={
            "Location": upload_location(upload.name, upload.upload_id),
            "Range": upload_range(size),
            "Docker-Upload-UUID": upload.upload_id,
        },
    )


async def finish_upload(request: web.Request) -> web.StreamResponse:
    reg = registry(request)
    upload = reg.uploads.ref(request.match_info["name"], request.match_info["uuid"])
    digest = request.query.get("digest")
    if not digest:
        raise DigestInvalid("the digest query parameter is required", detail={"digest": None})
    parse_digest(digest)
    if has_body(request):
        start = _content_range(request)
        await reg.uploads.append(upload, body_chunks(request), start)
    await reg.uploads.complete(upload, digest)
    return _blob_created(upload.name, digest)


async def cancel_upload(request: web.Request) -> web.StreamResponse:
    reg = registry(request)
    upload = reg.uploads.ref(request.match_info["name"], request.match_info["uuid"])
    await reg.uploads.cancel(upload)
    return web.Response(status=204)
