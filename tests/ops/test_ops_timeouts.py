"""Slow-client and idle timeouts, over raw sockets so the client's stall is exact.

* A request body that stops arriving for ``[server] read_timeout_secs`` is cut with 408;
  what an upload had received stays (resumable) and nothing half-written becomes visible.
* A connection that sends no request (or stops inside its headers) is closed after
  ``keepalive_timeout_secs``.
* Manifests over ``max_manifest_size`` get 413 (also covered in test_api_manifests).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator

import pytest

from tests.support.api import Api, digest_of, error_code
from tests.support.storage import Storage

TIMEOUTS = "[server]\nread_timeout_secs = 0.5\nkeepalive_timeout_secs = 1\n"


# Timeouts are the HTTP server's; the storage under it is fs.
pytestmark = pytest.mark.shapes("fs")


@pytest.fixture
async def api(storage: Storage) -> AsyncIterator[Api]:
    """The app with the short timeouts of :data:`TIMEOUTS` (overrides the shared ``api``)."""
    async with storage.open_api(TIMEOUTS) as api:
        yield api


async def _connect(api: Api) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = api.client.port
    assert port is not None
    return await asyncio.open_connection("127.0.0.1", port)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), 10)
    return status, headers, body


async def _stalled_request(
    api: Api, method: str, path: str, total: int, sent: bytes, content_type: str
) -> tuple[int, bytes, float]:
    """Send headers for ``total`` body bytes, then only ``sent``, then nothing."""
    reader, writer = await _connect(api)
    try:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {total}\r\n\r\n"
        )
        writer.write(head.encode() + sent)
        await writer.drain()
        loop = asyncio.get_running_loop()
        start = loop.time()
        status, _, body = await _read_response(reader)
        return status, body, loop.time() - start
    finally:
        writer.close()


async def test_stalled_upload_body_is_cut_and_the_upload_resumes(api: Api) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    resp = await api.client.post("/v2/slow/blobs/uploads/")
    location = resp.headers["Location"]
    part = 1024 * 1024 + 5
    status, body, waited = await _stalled_request(
        api, "PATCH", location, len(data), data[:part], "application/octet-stream"
    )
    assert status == 408
    assert json.loads(body)["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    assert "stalled" in json.loads(body)["errors"][0]["message"]
    assert waited >= 0.4

    # What arrived before the stall is kept; the client resumes from there.
    resp = await api.client.get(location)
    assert resp.status == 204
    received = int(resp.headers["Range"].split("-")[1]) + 1
    assert 0 < received <= part
    digest = digest_of(data)
    resp = await api.client.put(
        f"{location}?digest={digest}",
        data=data[received:],
        headers={"Content-Range": f"{received}-{len(data) - 1}"},
    )
    assert resp.status == 201, await resp.text()
    resp = await api.client.get(f"/v2/slow/blobs/{digest}")
    assert hashlib.sha256(await resp.read()).hexdigest() == digest.split(":")[1]


async def test_stalled_monolithic_upload_leaves_no_blob(api: Api) -> None:
    data = os.urandom(200_000)
    digest = digest_of(data)
    status, _, _ = await _stalled_request(
        api,
        "POST",
        f"/v2/slow/blobs/uploads/?digest={digest}",
        len(data),
        data[:1000],
        "application/octet-stream",
    )
    assert status == 408
    assert (await api.client.head(f"/v2/slow/blobs/{digest}")).status == 404
    assert not any("blobs/sha256" in f for f in api.files())


async def test_stalled_manifest_body_is_cut_and_nothing_is_stored(api: Api) -> None:
    await api.push_image("slow", "v1")
    before = api.files()
    _, good = await api.push_image("slow", "v2")
    body = good.replace(b'"schemaVersion"', b'"schemaVersion" ')
    status, _, _ = await _stalled_request(
        api,
        "PUT",
        "/v2/slow/manifests/v3",
        len(body),
        body[: len(body) // 2],
        "application/vnd.oci.image.manifest.v1+json",
    )
    assert status == 408
    resp = await api.client.get("/v2/slow/manifests/v3")
    assert resp.status == 404
    assert await error_code(resp) == "MANIFEST_UNKNOWN"
    assert {f for f in api.files() - before if "/v3/" in f} == set()


async def test_idle_connection_is_closed_after_keepalive_timeout(api: Api) -> None:
    reader, writer = await _connect(api)
    try:
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()


async def test_connection_stalled_inside_headers_is_closed(api: Api) -> None:
    reader, writer = await _connect(api)
    try:
        writer.write(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()


async def test_keepalive_connection_serves_requests_then_idles_out(api: Api) -> None:
    reader, writer = await _connect(api)
    try:
        for _ in range(3):
            writer.write(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            status, _, _ = await _read_response(reader)
            assert status == 200
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()


async def test_a_slow_but_steady_body_is_not_cut(api: Api) -> None:
    data = os.urandom(64 * 1024)
    digest = digest_of(data)

    async def trickle() -> AsyncIterator[bytes]:
        # 2 s in all, never 0.5 s without a byte.
        for i in range(0, len(data), 8192):
            await asyncio.sleep(0.25)
            yield data[i : i + 8192]

    resp = await api.client.post(f"/v2/slow/blobs/uploads/?digest={digest}", data=trickle())
    assert resp.status == 201, await resp.text()


async def test_oversized_manifest_is_413(storage: Storage) -> None:
    async with storage.open_api('[global]\nmax_manifest_size = "1KiB"\n') as api:
        resp = await api.put_manifest("big", "v1", b"{" + b" " * 2048 + b"}")
        assert resp.status == 413
        assert await error_code(resp) in ("SIZE_INVALID", "MANIFEST_INVALID")
