"""Helpers for the ``angos migrate`` tests: images to push, what a client can pull, and
``angos migrate`` run as a real process (to kill it).

Not a fixture module; the tests use these with the fixtures of tests/support.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from angos_core.config import load_config
from angos_core.migrate import walk
from angos_core.oci import mediatypes as mt
from angos_core.plugins import load_catalogue
from angos_core.registry import Stores
from tests.support.api import Api, descriptor, digest_of, serve_config

ACCEPT = ", ".join([mt.OCI_MANIFEST, mt.OCI_INDEX])


def served(toml: str) -> str:
    # The test client pulls blobs itself: no redirect to the S3 endpoint.
    return "[global]\nenable_redirect = false\n\n" + toml


@asynccontextmanager
async def serve(config: Path, root: Path) -> AsyncIterator[Api]:
    toml = served(await asyncio.to_thread(config.read_text))
    async with serve_config(toml, root=root) as api:
        yield api


def write_config(path: Path, toml: str) -> Path:
    path.write_text(toml)
    return path


async def push_images(api: Api, prefix: str, count: int, layers: int = 2) -> None:
    """``count`` images of ``layers`` small random layers each, over five repositories."""
    for i in range(count):
        repo = f"{prefix}/app{i % 5}"
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": f"{prefix}{i}"})
        blobs = [os.urandom(2048 + 37 * i + j) for j in range(layers)]
        await api.push_blob(repo, config.encode())
        for blob in blobs:
            await api.push_blob(repo, blob)
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": descriptor(config.encode(), "application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor(b, "application/vnd.oci.image.layer.v1.tar+gzip") for b in blobs],
        }
        resp = await api.put_manifest(repo, f"v{i}", manifest)
        assert resp.status == 201, await resp.text()


async def push_extras(api: Api) -> None:
    """An index of two images, a second tag on it, a referrer, a 3 MiB layer."""
    repo = "extras/multi"
    children = []
    for arch in ("amd64", "arm64"):
        digest, body = await api.push_image(
            repo, None, layer=os.urandom(4096), config=json.dumps({"architecture": arch}).encode()
        )
        children.append({"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(body)})
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": children})
    for tag in ("1", "latest"):
        resp = await api.put_manifest(repo, tag, index.encode(), mt.OCI_INDEX)
        assert resp.status == 201, await resp.text()
    _, signed = await api.push_image("extras/big", "v1", layer=os.urandom(3 * 1024 * 1024 + 5))
    empty, sig = b"{}", b"signature"
    await api.push_blob("extras/big", empty)
    await api.push_blob("extras/big", sig)
    artifact = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor(empty, "application/vnd.oci.empty.v1+json"),
        "layers": [descriptor(sig, "application/octet-stream")],
        "subject": descriptor(signed, mt.OCI_MANIFEST),
    }
    body = json.dumps(artifact).encode()
    assert (await api.put_manifest("extras/big", digest_of(body), body)).status == 201


async def pusher(api: Api, stop: asyncio.Event, limit: int = 15) -> int:
    """Push one image after another into ``api`` until ``stop`` (or ``limit``)."""
    pushed = 0
    while not stop.is_set() and pushed < limit:
        await push_images(api, f"live{pushed}", 1)
        pushed += 1
        await asyncio.sleep(0.02)
    return pushed


async def snapshot(api: Api) -> dict[str, Any]:
    """Everything a client can pull, every blob's bytes checked against its digest.

    Fails if a listed tag cannot be pulled whole: a half-copied image shows here."""
    snap: dict[str, Any] = {}
    resp = await api.get("/v2/_catalog")
    assert resp.status == 200
    for repo in (await resp.json())["repositories"]:
        resp = await api.get(f"/v2/{repo}/tags/list")
        if resp.status == 404:
            continue  # a repository with layers but no tag yet
        tags = (await resp.json())["tags"] or []
        snap[f"{repo} tags"] = sorted(tags)
        for tag in tags:
            snap[f"{repo}:{tag}"] = await _pull(api, repo, tag, snap)
    return snap


async def _pull(api: Api, repo: str, reference: str, snap: dict[str, Any]) -> str:
    resp = await api.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT})
    assert resp.status == 200, (repo, reference, resp.status)
    body = await resp.read()
    digest = digest_of(body)
    assert resp.headers["Docker-Content-Digest"] == digest
    doc = json.loads(body)
    for child in doc.get("manifests", []):
        await _pull(api, repo, child["digest"], snap)
    for desc in [d for d in [doc.get("config"), *doc.get("layers", [])] if d]:
        blob = await api.get(f"/v2/{repo}/blobs/{desc['digest']}")
        assert blob.status == 200, (repo, reference, desc)
        assert digest_of(await blob.read()) == desc["digest"]
    resp = await api.get(f"/v2/{repo}/referrers/{digest}")
    assert resp.status == 200
    snap[f"{repo}@{digest} referrers"] = sorted(
        m["digest"] for m in (await resp.json())["manifests"]
    )
    return digest


def migrate_argv(source: Path, target: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "angos_core.cli",
        "migrate",
        "--from",
        str(source),
        "--to",
        str(target),
        *extra,
    ]


async def run_migrate(source: Path, target: Path, *extra: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *migrate_argv(source, target, *extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@asynccontextmanager
async def open_stores(config: Path) -> AsyncIterator[Stores]:
    stores = Stores.from_config(load_config(str(config), load_catalogue()))
    await stores.open()
    try:
        yield stores
    finally:
        await stores.aclose()


async def blob_count(stores: Stores) -> int:
    return len([d async for d in stores.blobs.list_digests()])


#: Objects a second the killed runs write: a seeded store takes a few seconds to copy.
KILL_PACE = 40


async def kill_mid_copy(
    source: Path, target: Path, ready: Callable[[Stores], Awaitable[bool]], jobs: int = 1
) -> None:
    """Run ``angos migrate --jobs <jobs>`` and SIGKILL it as soon as ``ready(destination)``.

    Paced (``--max-writes-per-sec``) so that the copy lasts seconds, not the fraction of one
    a small store takes on a quiet machine: the kill lands mid-copy, wherever the poll
    falls."""
    proc = await asyncio.create_subprocess_exec(
        *migrate_argv(
            source,
            target,
            "--jobs",
            str(jobs),
            "--passes",
            "1",
            "--max-writes-per-sec",
            str(KILL_PACE),
        ),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with open_stores(target) as dst:
            while proc.returncode is None:
                if await ready(dst):
                    with contextlib.suppress(ProcessLookupError):  # it may just have ended
                        proc.send_signal(signal.SIGKILL)
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 0.2)
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"finished before the kill: {proc.returncode}"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def has_blobs(dst: Stores, count: int) -> bool:
    return await blob_count(dst) >= count


async def has_tags(dst: Stores, count: int) -> bool:
    """At least ``count`` tags at the destination (a copy runs repositories side by side,
    their tags last: a kill once enough repositories exist may come before any tag)."""
    total = 0
    for name in await walk.repositories(dst.meta):
        total += len(await walk.tags(dst.meta, name))
        if total >= count:
            return True
    return False


async def assert_blobs_whole(stores: Stores) -> None:
    """Every blob the store lists hashes to its digest: nothing half-written is visible."""
    async for digest in stores.blobs.list_digests():
        hasher = hashlib.sha256()
        async for chunk in stores.blobs.read(digest):
            hasher.update(chunk)
        assert f"sha256:{hasher.hexdigest()}" == digest
