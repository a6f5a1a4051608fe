"""``angos serve`` on S3 (moto over HTTP on loopback): redirects, startup and runtime
failures of S3, and a server killed during a push."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from tests.integration.s3_serve_support import (
    blob_chunks,
    client_session,
    pull_sha256,
    push_streamed,
    s3_serve_toml,
)
from tests.support.angos_server import AngosServerFactory
from tests.support.moto_server import (
    S3Bucket,
    create_bucket,
    s3_client,
    s3_settings,
    start_moto_server,
    stop_moto_server,
)

MIB = 1024 * 1024


def corrupt_blobs(bucket: S3Bucket, prefix: str = "") -> list[str]:
    """Keys of committed blobs whose bytes do not hash to the digest in their key."""
    client = s3_client(bucket.endpoint)
    bad = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket.name, Prefix=prefix + "v2/blobs/"
    ):
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(prefix) :].split("/")
            body = client.get_object(Bucket=bucket.name, Key=obj["Key"])["Body"]
            hasher = hashlib.new(parts[2])
            while chunk := body.read(MIB):
                hasher.update(chunk)
            if hasher.hexdigest() != parts[4]:
                bad.append(obj["Key"])
    return bad


# --------------------------------------------------------------------------- redirects


async def test_blob_get_redirects_to_a_presigned_url(
    angos_server_factory: AngosServerFactory, s3_bucket: S3Bucket
) -> None:
    server = angos_server_factory(s3_serve_toml(s3_bucket, redirect=True))
    async with client_session() as http:
        digest = await push_streamed(http, server.url, "lib/app", "redirect", 3 * MIB + 7)
        blob_url = URL(server.url) / f"v2/lib/app/blobs/{digest}"
        async with http.get(blob_url, allow_redirects=False) as resp:
            assert resp.status == 307
            assert resp.headers["Location"].startswith(f"{s3_bucket.endpoint}/{s3_bucket.name}/")
            assert "X-Amz-Signature=" in resp.headers["Location"]
        # A real client follows the redirect and gets the bytes from S3 itself.
        async with http.get(blob_url) as resp:
            assert resp.status == 200
            assert resp.url.port != server.port
            assert resp.headers["Content-Type"] == "application/octet-stream"
            assert "sha256:" + hashlib.sha256(await resp.read()).hexdigest() == digest
        async with http.head(blob_url, allow_redirects=False) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(3 * MIB + 7)


async def test_with_redirects_off_the_registry_streams_the_blob(
    angos_server_factory: AngosServerFactory, s3_bucket: S3Bucket
) -> None:
    server = angos_server_factory(s3_serve_toml(s3_bucket, redirect=False))
    async with client_session() as http:
        digest = await push_streamed(http, server.url, "lib/app", "no-redirect", 3 * MIB + 7)
        blob_url = URL(server.url) / f"v2/lib/app/blobs/{digest}"
        async with http.get(blob_url, allow_redirects=False) as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Content-Digest"] == digest
            assert "sha256:" + hashlib.sha256(await resp.read()).hexdigest() == digest
        async with http.get(blob_url, headers={"Range": "bytes=3145700-3145719"}) as resp:
            assert resp.status == 206
            assert len(await resp.read()) == 20


# --------------------------------------------------------------------------- S3 unusable


def _refused_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_startup_fails_naming_a_missing_bucket(
    angos_server_factory: AngosServerFactory, moto_server: str
) -> None:
    missing = S3Bucket(
        "no-such-registry-bucket", s3_settings(moto_server, "no-such-registry-bucket")
    )
    server = angos_server_factory(s3_serve_toml(missing), start=False)
    with pytest.raises(RuntimeError) as info:
        server.start()
    message = str(info.value)
    assert "exited with 1" in message
    assert "no-such-registry-bucket" in message and moto_server in message
    assert "does not exist" in message
    assert "Traceback" not in message


def test_startup_fails_naming_an_unreachable_endpoint(
    angos_server_factory: AngosServerFactory,
) -> None:
    endpoint = _refused_endpoint()
    bucket = S3Bucket("registry", s3_settings(endpoint, "registry"))
    server = angos_server_factory(s3_serve_toml(bucket, max_attempts=1), start=False)
    started = time.monotonic()
    with pytest.raises(RuntimeError) as info:
        server.start()
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert "registry" in message and endpoint in message and "unreachable" in message
    assert "Traceback" not in message


async def _error(resp: aiohttp.ClientResponse) -> str:
    assert resp.content_type == "application/json"
    body = await resp.json()
    return f"{body['errors'][0]['code']}: {body['errors'][0]['message']}"


async def test_503_while_running_when_the_endpoint_goes_away(
    angos_server_factory: AngosServerFactory,
) -> None:
    proc, endpoint = start_moto_server()
    try:
        bucket = S3Bucket(create_bucket(endpoint), {})
        bucket = S3Bucket(bucket.name, s3_settings(endpoint, bucket.name))
        server = angos_server_factory(
            s3_serve_toml(bucket, max_attempts=2, operation_attempt_timeout_secs=2)
        )
        async with client_session() as http:
            digest = await push_streamed(http, server.url, "lib/app", "gone", 100_000)
            stop_moto_server(proc)
            base = URL(server.url)
            started = time.monotonic()
            for method, path in [
                ("GET", f"v2/lib/app/blobs/{digest}"),
                ("HEAD", f"v2/lib/app/blobs/{digest}"),
                ("POST", "v2/lib/app/blobs/uploads/"),
                ("GET", "v2/lib/app/tags/list"),
            ]:
                async with http.request(method, base / path) as resp:
                    assert resp.status == 503, (method, path, resp.status)
                    if method != "HEAD":
                        message = await _error(resp)
                        assert "s3" in message and endpoint in message, message
            assert time.monotonic() - started < 60
    finally:
        stop_moto_server(proc)


async def test_503_while_running_when_the_bucket_is_deleted(
    angos_server_factory: AngosServerFactory, s3_bucket: S3Bucket
) -> None:
    server = angos_server_factory(s3_serve_toml(s3_bucket))
    async with client_session() as http:
        async with http.get(URL(server.url) / "readyz") as resp:
            assert resp.status == 200
        s3_client(s3_bucket.endpoint).delete_bucket(Bucket=s3_bucket.name)
        async with http.post(URL(server.url) / "v2/lib/app/blobs/uploads/") as resp:
            assert resp.status == 503
            message = await _error(resp)
            assert s3_bucket.name in message and "does not exist" in message
        # Readiness says which stores fail and why.
        async with http.get(URL(server.url) / "readyz") as resp:
            assert resp.status == 503
            body = await resp.json()
            assert set(body["failing"]) == {"blob_store (s3)", "metadata_store (s3)"}
            assert s3_bucket.name in body["backends"]["blob_store"]["error"]


# --------------------------------------------------------------------------- crashes


async def test_kill_9_during_a_push_then_the_retry_succeeds(
    angos_server_factory: AngosServerFactory, s3_bucket: S3Bucket
) -> None:
    size = 24 * MIB
    server = angos_server_factory(s3_serve_toml(s3_bucket, multipart_part_size="5MiB"))
    base = URL(server.url)
    async with client_session() as http:
        async with http.post(base / "v2/lib/app/blobs/uploads/") as resp:
            assert resp.status == 202
            location = base.join(URL(resp.headers["Location"]))

        async def killing_body() -> AsyncIterator[bytes]:
            sent = 0
            async for chunk in blob_chunks("crash", size):
                yield chunk
                sent += len(chunk)
                if sent >= 13 * MIB:  # two parts out, a third being spooled
                    await asyncio.sleep(0.5)
                    server.kill()
                    await asyncio.sleep(0.5)

        with pytest.raises(aiohttp.ClientError):
            async with http.patch(
                location,
                data=killing_body(),
                headers={"Content-Type": "application/octet-stream"},
            ) as resp:
                await resp.read()

        server.start()
        # The session survived in the bucket; it reports what was recorded.
        async with http.get(location) as resp:
            assert resp.status == 204
            recorded = (
                int(resp.headers["Range"].split("-")[1]) + 1 if "Range" in resp.headers else 0
            )
        assert recorded < 13 * MIB
        # Nothing was committed, nothing corrupt is visible.
        assert corrupt_blobs(s3_bucket) == []

        # The client retries the blob as docker does: a new upload, all the bytes.
        digest = await push_streamed(http, server.url, "lib/app", "crash", size)
        assert await pull_sha256(http, server.url, "lib/app", digest) == (200, digest)
        assert corrupt_blobs(s3_bucket) == []


async def test_the_final_put_after_a_restart_completes_the_upload(
    angos_server_factory: AngosServerFactory, s3_bucket: S3Bucket
) -> None:
    """The upload's state is in the bucket: PATCH, kill -9, restart, PUT -> 201."""
    size = 11 * MIB + 5
    server = angos_server_factory(s3_serve_toml(s3_bucket, multipart_part_size="5MiB"))
    base = URL(server.url)
    async with client_session() as http:
        async with http.post(base / "v2/lib/app/blobs/uploads/") as resp:
            location = base.join(URL(resp.headers["Location"]))
        hasher = hashlib.sha256()
        async with http.patch(
            location,
            data=blob_chunks("restart", size, hasher),
            headers={"Content-Type": "application/octet-stream"},
        ) as resp:
            assert resp.status == 202
            location = base.join(URL(resp.headers["Location"]))
        server.kill()
        server.start()
        digest = f"sha256:{hasher.hexdigest()}"
        # A wrong digest is refused (the server re-hashes what the bucket holds) ...
        async with http.put(location.update_query({"digest": "sha256:" + "0" * 64})) as resp:
            assert resp.status == 400
            assert (await _error(resp)).startswith("DIGEST_INVALID")
        async with http.post(base / "v2/lib/app/blobs/uploads/") as resp:
            location2 = base.join(URL(resp.headers["Location"]))
        async with http.patch(
            location2,
            data=blob_chunks("restart", size),
            headers={"Content-Type": "application/octet-stream"},
        ) as resp:
            location2 = base.join(URL(resp.headers["Location"]))
        server.kill()
        server.start()
        # ... and the right one commits it.
        async with http.put(location2.update_query({"digest": digest})) as resp:
            assert resp.status == 201, await resp.text()
        assert await pull_sha256(http, server.url, "lib/app", digest) == (200, digest)
    assert corrupt_blobs(s3_bucket) == []
