"""Referrers of one subject at scale, Angos alone, in process (issue 16): a quick before and
after figure, not the side-by-side bench (Distribution 2.8 has no referrers API).

    .venv/bin/python -m bench.referrers [--referrers 1000] [--rounds 3]

Pushes one image and ``R`` referrers of it (OCI manifests with an ``artifactType``, an
annotation each) through the HTTP API of the code under test, so the store holds what that
code writes, on an fs store with the memory cache. Then each round starts a fresh app on
the store (cold: no link, tag or manifest body cached in process; the OS page cache is
warm) and times, over real HTTP on 127.0.0.1, the whole listing (following ``Link``) and,
on another fresh app, the first page ``n=100``. Figures are medians of the rounds. For a
before figure run the same script with the old code first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
import time
from pathlib import Path

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from angos_core.http import make_app_from_toml

EMPTY = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER = b"layer"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SBOM = "application/spdx+json"
PUSH_CONCURRENCY = 16


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(data: bytes, media_type: str) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


async def _push_blob(session: ClientSession, url: str, data: bytes) -> None:
    upload = f"{url}v2/lib/app/blobs/uploads/?digest={_digest(data)}"
    async with session.post(upload, data=data) as r:
        assert r.status == 201, r.status


async def _put(session: ClientSession, url: str, ref: str, body: bytes) -> None:
    headers = {"Content-Type": MANIFEST}
    async with session.put(f"{url}v2/lib/app/manifests/{ref}", data=body, headers=headers) as r:
        assert r.status == 201, (r.status, await r.text())


async def seed(session: ClientSession, url: str, count: int) -> str:
    for blob in (EMPTY, CONFIG, LAYER):
        await _push_blob(session, url, blob)
    subject = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": _descriptor(CONFIG, "application/vnd.oci.image.config.v1+json"),
            "layers": [_descriptor(LAYER, "application/vnd.oci.image.layer.v1.tar")],
        }
    ).encode()
    await _put(session, url, "latest", subject)
    limit = asyncio.Semaphore(PUSH_CONCURRENCY)

    async def one(i: int) -> None:
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "artifactType": SBOM,
                "config": _descriptor(EMPTY, EMPTY_TYPE),
                "layers": [],
                "subject": _descriptor(subject, MANIFEST),
                "annotations": {"org.example.index": str(i)},
            }
        ).encode()
        async with limit:
            await _put(session, url, _digest(body), body)

    await asyncio.gather(*(one(i) for i in range(count)))
    return _digest(subject)


async def listing(session: ClientSession, url: str, subject: str, n: int | None) -> int:
    """Referrers listed, following Link to the end (only the first page when ``n``)."""
    found = 0
    path: str | None = f"v2/lib/app/referrers/{subject}" + (f"?n={n}" if n else "")
    while path:
        async with session.get(url + path) as resp:
            assert resp.status == 200, resp.status
            found += len((await resp.json())["manifests"])
            link = resp.headers.get("Link")
        path = link[2 : link.index(">")] if link and not n else None
    return found


async def serve(root: Path) -> TestServer:
    server = TestServer(make_app_from_toml(f'[blob_store.fs]\nroot_dir = "{root}"\n'))
    await server.start_server()
    return server


async def cold(root: Path, subject: str, n: int | None, total: int) -> float:
    server = await serve(root)
    try:
        url = str(server.make_url("/"))
        async with ClientSession() as session:
            t0 = time.perf_counter()
            found = await listing(session, url, subject, n)
            elapsed = time.perf_counter() - t0
        # Code from before the index ignores n and answers every referrer at once.
        assert found in ({min(n, total), total} if n else {total}), (found, n, total)
        return elapsed
    finally:
        await server.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--referrers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = await serve(root)
        try:
            url = str(server.make_url("/"))
            async with ClientSession() as session:
                t0 = time.perf_counter()
                subject = await seed(session, url, args.referrers)
                seeding = time.perf_counter() - t0
        finally:
            await server.close()
        whole, first = [], []
        for _ in range(args.rounds):
            whole.append(await cold(root, subject, None, args.referrers))
            first.append(await cold(root, subject, 100, args.referrers))
    count = f"{args.referrers:,}"
    print("| workload | seconds (median) |\n|---|---:|")
    print(f"| seeding: push {count} referrers of one subject, 16 clients | {seeding:.3f} |")
    for label, times in (
        (f"referrers, {count} of one subject, cold, whole listing", whole),
        (f"referrers, {count} of one subject, cold, first page n=100", first),
    ):
        print(f"| {label} | {sorted(times)[len(times) // 2]:.4f} |")


if __name__ == "__main__":
    asyncio.run(main())
