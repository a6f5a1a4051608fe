"""Upload sessions: monolithic, chunked, streamed, status, final chunk, cancel, mount, and the
bad inputs (out-of-order chunk, unknown / malformed upload id, wrong digest)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientResponse, ClientSession, web

from angos_core.http import make_app_from_toml
from tests.support.api import Api, digest_of, error_code
from tests.support.storage import Storage

DATA = b"0123456789abcdef" * 4096  # 64 KiB


async def start(api: Api, name: str = "lib/app") -> ClientResponse:
    resp = await api.client.post(f"/v2/{name}/blobs/uploads/")
    assert resp.status == 202
    assert resp.headers["Range"] == "0-0"
    assert resp.headers["Location"].endswith(resp.headers["Docker-Upload-UUID"])
    return resp


def uploads_in_progress(api: Api) -> list[str]:
    return [f for f in api.files() if "/_uploads/" in f]


async def assert_blob(api: Api, name: str, digest: str, data: bytes) -> None:
    resp = await api.get(f"/v2/{name}/blobs/{digest}")
    assert resp.status == 200
    assert await resp.read() == data


async def test_monolithic_post(api: Api) -> None:
    digest = digest_of(DATA)
    resp = await api.client.post(f"/v2/lib/app/blobs/uploads/?digest={digest}", data=DATA)
    assert resp.status == 201
    assert resp.headers["Location"] == f"/v2/lib/app/blobs/{digest}"
    assert resp.headers["Docker-Content-Digest"] == digest
    await assert_blob(api, "lib/app", digest, DATA)
    assert uploads_in_progress(api) == []


async def test_monolithic_put_after_post(api: Api) -> None:
    loc = (await start(api)).headers["Location"]
    digest = digest_of(DATA)
    resp = await api.client.put(f"{loc}?digest={digest}", data=DATA)
    assert resp.status == 201
    await assert_blob(api, "lib/app", digest, DATA)


async def test_chunked_upload_with_status(api: Api) -> None:
    resp = await start(api)
    loc, upload_id = resp.headers["Location"], resp.headers["Docker-Upload-UUID"]
    chunks = [DATA[:1000], DATA[1000:40000], DATA[40000:]]
    offset = 0
    for chunk in chunks:
        end = offset + len(chunk) - 1
        resp = await api.client.patch(loc, data=chunk, headers={"Content-Range": f"{offset}-{end}"})
        assert resp.status == 202, await resp.text()
        assert resp.headers["Range"] == f"0-{end}"
        assert resp.headers["Docker-Upload-UUID"] == upload_id
        loc = resp.headers["Location"]
        offset = end + 1
        status = await api.get(loc)
        assert status.status == 204
        assert status.headers["Range"] == f"0-{end}"
        assert status.headers["Docker-Upload-UUID"] == upload_id
    digest = digest_of(DATA)
    resp = await api.client.put(f"{loc}?digest={digest}")
    assert resp.status == 201
    await assert_blob(api, "lib/app", digest, DATA)
    # The session is gone.
    assert (await api.get(loc)).status == 404


async def test_streamed_patch_chunked_transfer(api: Api) -> None:
    loc = (await start(api)).headers["Location"]
    big = DATA * 40  # 2.5 MiB, several coalesced chunks

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 100_000):
            yield big[i : i + 100_000]

    resp = await api.client.patch(loc, data=body())
    assert resp.status == 202
    assert resp.headers["Range"] == f"0-{len(big) - 1}"
    resp = await api.client.put(f"{resp.headers['Location']}?digest={digest_of(big)}")
    assert resp.status == 201
    await assert_blob(api, "lib/app", digest_of(big), big)


async def test_streamed_patches_without_content_range(api: Api) -> None:
    loc = (await start(api)).headers["Location"]
    for part in (DATA[:10], DATA[10:]):
        resp = await api.client.patch(loc, data=part)
        assert resp.status == 202
    assert resp.headers["Range"] == f"0-{len(DATA) - 1}"
    resp = await api.client.put(f"{loc}?digest={digest_of(DATA)}")
    assert resp.status == 201


async def test_put_with_final_chunk(api: Api) -> None:
    loc = (await start(api)).headers["Location"]
    resp = await api.client.patch(loc, data=DATA[:100], headers={"Content-Range": "0-99"})
    assert resp.status == 202
    resp = await api.client.put(
        f"{loc}?digest={digest_of(DATA)}",
        data=DATA[100:],
        headers={"Content-Range": f"100-{len(DATA) - 1}"},
    )
    assert resp.status == 201
    await assert_blob(api, "lib/app", digest_of(DATA), DATA)


async def test_out_of_order_chunk(api: Api) -> None:
    loc = (await start(api)).headers["Location"]
    await api.client.patch(loc, data=DATA[:100], headers={"Content-Range": "0-99"})
    for bad in ("200-299", "0-99", "50-149"):
        resp = await api.client.patch(loc, data=DATA[:100], headers={"Content-Range": bad})
        assert resp.status == 416, bad
        assert await error_code(resp) == "BLOB_UPLOAD_INVALID"
        assert resp.headers["Range"] == "0-99"
        assert resp.headers["Location"] == loc
    # The session is intact and can be finished.
    resp = await api.client.patch(
        loc, data=DATA[100:], headers={"Content-Range": f"100-{len(DATA) - 1}"}
    )
    assert resp.status == 202
    resp = await api.client.put(f"{loc}?digest={digest_of(DATA)}")
    assert resp.status == 201
    await assert_blob(api, "lib/app", digest_of(DATA), DATA)


async def test_content_range_must_match_length(api: Api) -> None:
    loc = (await start(api)).headers["Location"]
    resp = await api.client.patch(loc, data=DATA[:100], headers={"Content-Range": "0-49"})
    assert resp.status in (400, 416)
    assert await error_code(resp) == "BLOB_UPLOAD_INVALID"
    resp = await api.client.patch(loc, data=b"x", headers={"Content-Range": "nonsense"})
    assert resp.status == 400
    assert await error_code(resp) == "BLOB_UPLOAD_INVALID"
    assert (await api.get(loc)).headers["Range"] == "0-0"


async def test_wrong_digest_stores_nothing(api: Api) -> None:
    kept = await api.push_blob("lib/app", b"kept")
    before = api.files()
    loc = (await start(api)).headers["Location"]
    await api.client.patch(loc, data=DATA)
    wrong = digest_of(b"something else")
    resp = await api.client.put(f"{loc}?digest={wrong}")
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    assert (await api.head(f"/v2/lib/app/blobs/{wrong}")).status == 404
    assert (await api.head(f"/v2/lib/app/blobs/{digest_of(DATA)}")).status == 404
    # The session was discarded and nothing new is on disk.
    assert (await api.get(loc)).status == 404
    assert api.files() == before
    await assert_blob(api, "lib/app", kept, b"kept")


async def test_wrong_digest_monolithic(api: Api) -> None:
    before = api.files()
    wrong = digest_of(b"other")
    resp = await api.client.post(f"/v2/lib/app/blobs/uploads/?digest={wrong}", data=DATA)
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    assert api.files() == before


async def test_malformed_digest_on_put(api: Api) -> None:
    loc = (await start(api)).headers["Location"]
    await api.client.patch(loc, data=DATA)
    for bad in ("sha256:short", ""):
        resp = await api.client.put(f"{loc}?digest={bad}")
        assert resp.status == 400
        assert await error_code(resp) == "DIGEST_INVALID"
    # Still there: a malformed request does not discard the session.
    assert (await api.get(loc)).headers["Range"] == f"0-{len(DATA) - 1}"


@pytest.mark.parametrize(
    "upload_id", ["3f0e0a43-7f0d-4b0e-9d71-1c1a5bd2b2a1", "not-a-uuid", "..", "%2e%2e"]
)
async def test_unknown_upload(api: Api, upload_id: str) -> None:
    kept = await api.push_blob("lib/app", b"kept")
    before = api.files()
    base = f"/v2/lib/app/blobs/uploads/{upload_id}"
    for method, path, data in (
        ("GET", base, None),
        ("PATCH", base, b"abc"),
        ("PUT", f"{base}?digest={digest_of(b'abc')}", b"abc"),
        ("DELETE", base, None),
    ):
        resp = await api.raw(method, path, data=data)
        assert resp.status == 404, (method, upload_id)
        if resp.content_type == "application/json":
            assert await error_code(resp) in ("BLOB_UPLOAD_UNKNOWN", "UNSUPPORTED")
    assert api.files() == before
    await assert_blob(api, "lib/app", kept, b"kept")


async def test_upload_of_another_repository_is_unknown(api: Api) -> None:
    upload_id = (await start(api, "one")).headers["Docker-Upload-UUID"]
    resp = await api.client.patch(f"/v2/two/blobs/uploads/{upload_id}", data=b"abc")
    assert resp.status == 404
    assert await error_code(resp) == "BLOB_UPLOAD_UNKNOWN"


async def test_cancel(api: Api) -> None:
    loc = (await start(api)).headers["Location"]
    await api.client.patch(loc, data=DATA)
    resp = await api.request("DELETE", loc)
    assert resp.status == 204
    resp = await api.get(loc)
    assert resp.status == 404
    assert await error_code(resp) == "BLOB_UPLOAD_UNKNOWN"
    assert uploads_in_progress(api) == []


async def test_sha512_chunked(api: Api) -> None:
    loc = (await start(api)).headers["Location"]
    await api.client.patch(loc, data=DATA[:5], headers={"Content-Range": "0-4"})
    await api.client.patch(loc, data=DATA[5:])
    digest = digest_of(DATA, "sha512")
    resp = await api.client.put(f"{loc}?digest={digest}")
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == digest
    await assert_blob(api, "lib/app", digest, DATA)


async def test_completion_on_another_replica_rehashes(storage: Storage) -> None:
    """PATCH on one process, PUT on another sharing the storage: the hash is recomputed."""
    async with storage.open_api() as one, storage.open_api() as two:
        loc = (await start(one)).headers["Location"]
        await one.client.patch(loc, data=DATA[:1000])
        await two.client.patch(loc, data=DATA[1000:2000])
        resp = await one.client.patch(loc, data=DATA[2000:])
        assert resp.status == 202
        assert resp.headers["Range"] == f"0-{len(DATA) - 1}"
        resp = await one.client.put(f"{loc}?digest={digest_of(b'wrong')}")
        assert resp.status == 400

        loc = (await start(one)).headers["Location"]
        await one.client.patch(loc, data=DATA[:1000])
        resp = await two.client.put(f"{loc}?digest={digest_of(DATA)}", data=DATA[1000:])
        assert resp.status == 201
        await assert_blob(one, "lib/app", digest_of(DATA), DATA)


async def test_mount(api: Api) -> None:
    digest = await api.push_blob("source/repo", DATA)
    resp = await api.client.post(f"/v2/target/blobs/uploads/?mount={digest}&from=source/repo")
    assert resp.status == 201
    assert resp.headers["Location"] == f"/v2/target/blobs/{digest}"
    assert resp.headers["Docker-Content-Digest"] == digest
    await assert_blob(api, "target", digest, DATA)


async def test_mount_fallback_to_upload(api: Api) -> None:
    digest = await api.push_blob("source/repo", DATA)
    missing = digest_of(b"nowhere")
    for query in (
        f"mount={missing}&from=source/repo",
        f"mount={digest}&from=elsewhere",
        f"mount={digest}",
    ):
        resp = await api.client.post(f"/v2/target/blobs/uploads/?{query}")
        assert resp.status == 202, query
        assert "Docker-Upload-UUID" in resp.headers
    assert (await api.head(f"/v2/target/blobs/{digest}")).status == 404


async def test_mount_with_bad_input(api: Api) -> None:
    resp = await api.client.post("/v2/target/blobs/uploads/?mount=sha256:zz&from=source")
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    digest = digest_of(b"x")
    resp = await api.raw("POST", f"/v2/target/blobs/uploads/?mount={digest}&from=../etc")
    assert resp.status == 400
    assert await error_code(resp) == "NAME_INVALID"


async def test_large_streamed_upload_hash(api: Api) -> None:
    big = hashlib.sha256(b"seed").digest() * (8 * 1024 * 1024 // 32)  # 8 MiB
    loc = (await start(api)).headers["Location"]

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 300_000):
            yield big[i : i + 300_000]

    resp = await api.client.patch(loc, data=body())
    assert resp.status == 202
    resp = await api.client.put(f"{loc}?digest={digest_of(big)}")
    assert resp.status == 201
    resp = await api.get(f"/v2/lib/app/blobs/{digest_of(big)}")
    assert hashlib.sha256(await resp.read()).hexdigest() == digest_of(big).split(":")[1]


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_client_disconnect_mid_patch(
    storage: Storage, caplog: pytest.LogCaptureFixture, handler_cancellation: bool
) -> None:
    """Both aiohttp modes: the CLI's (body read fails) and handler cancellation."""
    app = make_app_from_toml(storage.toml())
    runner = web.AppRunner(app, handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    try:
        async with ClientSession() as client:
            resp = await client.post(f"{base}/v2/lib/app/blobs/uploads/")
            loc = resp.headers["Location"]
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(DATA)}\r\n\r\n"
            writer.write(head.encode() + DATA[:3000])
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0.3)
            # Not mistaken for a storage failure, and no 500.
            assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
            # Whatever was stored is kept; the client resumes from the reported end.
            status = await client.get(f"{base}{loc}")
            assert status.status == 204
            end = int(status.headers["Range"].split("-")[1])
            kept = end + 1 if end else 0
            assert kept <= 3000
            resp = await client.patch(
                f"{base}{loc}",
                data=DATA[kept:],
                headers={"Content-Range": f"{kept}-{len(DATA) - 1}"},
            )
            assert resp.status == 202
            resp = await client.put(f"{base}{loc}?digest={digest_of(DATA)}")
            assert resp.status == 201
            resp = await client.get(f"{base}/v2/lib/app/blobs/{digest_of(DATA)}")
            assert await resp.read() == DATA
    finally:
        await runner.cleanup()
