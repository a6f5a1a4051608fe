"""Upload purging in a real ``angos serve`` process, on fs and on S3 (moto over HTTP).

With ``age_secs = 5`` and ``interval_secs = 0.5``: a started-and-abandoned upload holding
some bytes disappears from storage (on S3 its multipart upload is aborted too) and a late
PATCH gets 404 BLOB_UPLOAD_UNKNOWN; an upload started after that survives the next passes,
since its age counts from its own start, and completes and pulls; committed blobs and tags
stay. Nothing here measures speed: each wait polls against a generous deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from yarl import URL

from tests.integration.s3_serve_support import client_session, s3_serve_toml
from tests.support.angos_server import AngosServer, AngosServerFactory, fs_config
from tests.support.moto_server import S3Bucket, s3_client

#: The young upload must outlive two passes (about 1 s) with fs recording its start to the
#: second (up to 1 s older than it is): 5 s leaves room for a loaded machine.
AGE_SECS = 5
INTERVAL_SECS = 0.5
DEADLINE_SECS = 60.0
MIB = 1024 * 1024
REPO = "purge/team/app"

PURGING = f"""
[maintenance.upload_purging]
age_secs = {AGE_SECS}
interval_secs = {INTERVAL_SECS}
"""


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


async def until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_SECS
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting: {what}"
        await asyncio.sleep(0.05)


def passes_done(server: AngosServer) -> int:
    return len(re.findall(r"upload purge: pass done", server.stderr_text()))


class Registry:
    def __init__(self, http: aiohttp.ClientSession, server: AngosServer) -> None:
        self.http = http
        self.base = URL(server.url)

    async def start(self, repo: str = REPO) -> tuple[URL, str]:
        async with self.http.post(self.base / f"v2/{repo}/blobs/uploads/") as resp:
            assert resp.status == 202, await resp.text()
            return self.base.join(URL(resp.headers["Location"])), resp.headers["Docker-Upload-UUID"]

    async def patch(self, location: URL, data: bytes) -> tuple[int, bytes]:
        async with self.http.patch(
            location, data=data, headers={"Content-Type": "application/octet-stream"}
        ) as resp:
            return resp.status, await resp.read()

    async def push_blob(self, data: bytes, repo: str = REPO) -> str:
        digest = sha256(data)
        url = (self.base / f"v2/{repo}/blobs/uploads/").with_query(digest=digest)
        async with self.http.post(url, data=data) as resp:
            assert resp.status == 201, await resp.text()
        return digest

    async def push_image(self, tag: str) -> tuple[str, str]:
        """A config and a layer blob and a tagged manifest; returns the layer and manifest."""
        config = b'{"architecture":"amd64","os":"linux"}'
        layer = b"layer bytes of the committed image"
        media_type = "application/vnd.oci.image.manifest.v1+json"
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": await self.push_blob(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": await self.push_blob(layer),
                    "size": len(layer),
                }
            ],
        }
        body = json.dumps(manifest).encode()
        async with self.http.put(
            self.base / f"v2/{REPO}/manifests/{tag}",
            data=body,
            headers={"Content-Type": media_type},
        ) as resp:
            assert resp.status == 201, await resp.text()
        return sha256(layer), sha256(body)

    async def get(self, path: str) -> tuple[int, bytes]:
        async with self.http.get(self.base / path) as resp:
            return resp.status, await resp.read()


async def check_purging(
    server: AngosServer,
    session_gone: Callable[[str], Awaitable[bool]],
    abandoned_size: int,
) -> None:
    async with client_session() as http:
        registry = Registry(http, server)
        layer, manifest = await registry.push_image("v1")

        # An abandoned upload: started, some bytes, then nothing.
        abandoned, abandoned_id = await registry.start()
        first = bytes(range(256)) * (abandoned_size // 256)
        assert (await registry.patch(abandoned, first))[0] == 202
        await until("the abandoned upload is purged", lambda: session_gone(abandoned_id))
        status, body = await registry.patch(abandoned, b"too late")
        assert status == 404
        assert json.loads(body)["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"

        # A young upload, started after that purge, survives the following passes.
        young, young_id = await registry.start()
        assert (await registry.patch(young, b"young "))[0] == 202
        seen = passes_done(server)

        async def two_more_passes() -> bool:
            return passes_done(server) >= seen + 2

        await until("two purge passes after the young upload started", two_more_passes)
        assert not await session_gone(young_id)
        digest = sha256(b"young and complete")
        async with http.put(
            young.update_query(digest=digest),
            data=b"and complete",
            headers={"Content-Type": "application/octet-stream"},
        ) as resp:
            assert resp.status == 201, await resp.text()
        assert await registry.get(f"v2/{REPO}/blobs/{digest}") == (200, b"young and complete")

        # What was committed is untouched.
        status, body = await registry.get(f"v2/{REPO}/manifests/v1")
        assert status == 200 and sha256(body) == manifest
        status, body = await registry.get(f"v2/{REPO}/blobs/{layer}")
        assert (status, sha256(body)) == (200, layer)

        status, metrics = await registry.get("metrics")
        purged = re.search(rb"^angos_uploads_purged_total (\S+)$", metrics, re.MULTILINE)
        assert purged is not None and float(purged.group(1)) >= 1
    log = server.stderr_text()
    assert f"purged upload {abandoned_id} of repository {REPO}" in log


async def test_fs_abandoned_upload_is_purged(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    root = tmp_path / "registry-data"
    server = angos_server_factory(fs_config(root) + PURGING)
    uploads = root / "v2" / "repositories" / REPO / "_uploads"

    async def gone(upload_id: str) -> bool:
        return not (uploads / upload_id).exists()

    await check_purging(server, gone, abandoned_size=64 * 1024)


async def test_s3_abandoned_multipart_upload_is_aborted(
    angos_server_factory: AngosServerFactory, s3_bucket: S3Bucket
) -> None:
    server = angos_server_factory(s3_serve_toml(s3_bucket, multipart_part_size="5MiB") + PURGING)
    client = s3_client(s3_bucket.endpoint)
    prefix = f"v2/repositories/{REPO}/_uploads/"

    def multipart_ids() -> set[str]:
        listed = client.list_multipart_uploads(Bucket=s3_bucket.name, Prefix=prefix)
        return {u["Key"][len(prefix) :].split("/")[0] for u in listed.get("Uploads", [])}

    def objects(upload_id: str) -> list[str]:
        listed = client.list_objects_v2(Bucket=s3_bucket.name, Prefix=f"{prefix}{upload_id}/")
        return [o["Key"] for o in listed.get("Contents", [])]

    checked_multipart: list[str] = []

    async def gone(upload_id: str) -> bool:
        if not checked_multipart:
            # The first look, right after the PATCH: a full part went to a multipart upload.
            assert upload_id in multipart_ids()
            checked_multipart.append(upload_id)
        return upload_id not in multipart_ids() and not objects(upload_id)

    await check_purging(server, gone, abandoned_size=6 * MIB)
    assert checked_multipart


async def test_only_one_worker_purges(
    angos_server_factory: AngosServerFactory, tmp_path: Path, redis_url: str
) -> None:
    toml = (
        fs_config(tmp_path / "registry-data")
        + f'[metadata_store.fs.redis]\nurl = "{redis_url}"\n[cache.redis]\nurl = "{redis_url}"\n'
        + '[log]\nformat = "json"\n'
        + "[maintenance.upload_purging]\nage_secs = 3600\ninterval_secs = 0.2\n"
    )
    server = angos_server_factory(toml, extra_args=["--workers", "2"])
    async with client_session() as http:
        registry = Registry(http, server)
        await registry.start()

        def purge_records() -> list[dict[str, object]]:
            lines = server.stderr_text().splitlines()
            records = [json.loads(line) for line in lines if line.startswith("{")]
            return [r for r in records if r.get("logger") == "angos.upload_purge"]

        async def passes_found_it() -> bool:
            found = [r for r in purge_records() if "1 session(s) found" in str(r["message"])]
            return len(found) >= 3

        await until("three passes that found the session", passes_found_it)
        assert len({r["pid"] for r in purge_records()}) == 1
        # /metrics sums the workers; the idle one reports no open sessions.
        for _ in range(4):
            status, metrics = await registry.get("metrics")
            assert status == 200
            assert re.search(rb"^angos_upload_sessions_open 1\.0$", metrics, re.MULTILINE)
