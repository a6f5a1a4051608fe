"""Migration between fs and S3 is a plain copy of the files, as the storage document says.

fs -> S3: push images on fs, stop, upload every file under ``root_dir`` to the bucket with
its relative path as key (what ``aws s3 sync /data/registry s3://bucket/`` does), serve on
S3, pull everything back byte-identical. S3 -> fs: the reverse (``aws s3 sync s3://bucket/
/data/registry/``), from under a ``key_prefix``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from angos_core.http import make_app_from_toml
from angos_core.oci import mediatypes as mt
from angos_core.testing.api import without_gc_bookkeeping
from tests.support.api import Api, descriptor, digest_of
from tests.support.moto_server import S3Bucket, s3_client

MIB = 1024 * 1024


@asynccontextmanager
async def serve(toml: str, root: Path) -> AsyncIterator[Api]:
    app = make_app_from_toml("[global]\nenable_redirect = false\n" + toml)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, root, app)


def fs_toml(root: Path) -> str:
    return f'[blob_store.fs]\nroot_dir = "{root}"\n'


def s3_toml(bucket: S3Bucket, prefix: str) -> str:
    return bucket.toml("blob_store", key_prefix=prefix, multipart_part_size="5MiB")


async def chunked_push(api: Api, name: str, data: bytes, pieces: int = 3) -> str:
    """POST, several PATCHes, PUT: the upload path docker's chunked clients take."""
    resp = await api.client.post(f"/v2/{name}/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    location = resp.headers["Location"]
    step = -(-len(data) // pieces)
    for start in range(0, len(data), step):
        chunk = data[start : start + step]
        resp = await api.client.patch(
            location,
            data=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(chunk) - 1}",
            },
        )
        assert resp.status == 202, await resp.text()
        location = resp.headers["Location"]
    digest = digest_of(data)
    sep = "&" if "?" in location else "?"
    resp = await api.client.put(f"{location}{sep}digest={digest}")
    assert resp.status == 201, await resp.text()
    return digest


async def push_fixture_images(api: Api) -> None:
    rng = os.urandom
    # A layer above one 5 MiB part: a multipart upload when S3 is the one receiving it.
    await api.push_image("library/alpine", "3.19", layer=rng(6 * MIB + 123))
    resp = await api.get("/v2/library/alpine/manifests/3.19")
    body = await resp.read()
    assert (await api.put_manifest("library/alpine", "latest", body)).status == 201

    config = b'{"architecture":"arm64","os":"linux"}'
    layers = [rng(200_000), rng(5 * MIB + 1)]
    await api.push_blob("team/app", config)
    digests = [await chunked_push(api, "team/app", layer) for layer in layers]
    layer_descs = [descriptor(x, "application/vnd.oci.image.layer.v1.tar+gzip") for x in layers]
    assert [d["digest"] for d in layer_descs] == digests
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": layer_descs,
    }
    body = json.dumps(manifest).encode()
    for tag in ("v1", "v1.0", "v1-rc"):
        assert (await api.put_manifest("team/app", tag, body)).status == 201

    # A referrer (a signature) of that image.
    sig = b"signature-bytes"
    empty = b"{}"
    await api.push_blob("team/app", empty)
    await api.push_blob("team/app", sig)
    artifact = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor(empty, "application/vnd.oci.empty.v1+json"),
        "layers": [descriptor(sig, "application/octet-stream")],
        "subject": descriptor(body, mt.OCI_MANIFEST),
    }
    art_body = json.dumps(artifact).encode()
    assert (await api.put_manifest("team/app", digest_of(art_body), art_body)).status == 201


async def snapshot(api: Api) -> dict[str, Any]:
    """Everything a client can pull: catalog, tags, manifests, referrers, blob hashes."""
    snap: dict[str, Any] = {}
    resp = await api.get("/v2/_catalog")
    assert resp.status == 200
    repos = (await resp.json())["repositories"]
    snap["catalog"] = repos
    for repo in repos:
        resp = await api.get(f"/v2/{repo}/tags/list")
        tags = (await resp.json())["tags"]
        snap[f"{repo} tags"] = tags
        for tag in tags:
            resp = await api.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": mt.OCI_MANIFEST})
            assert resp.status == 200
            body = await resp.read()
            digest = resp.headers["Docker-Content-Digest"]
            assert digest == digest_of(body)
            snap[f"{repo}:{tag}"] = body
            manifest = json.loads(body)
            for desc in [manifest["config"], *manifest["layers"]]:
                blob = await api.get(f"/v2/{repo}/blobs/{desc['digest']}")
                assert blob.status == 200, desc
                data = await blob.read()
                assert digest_of(data) == desc["digest"]  # byte-identical
                snap[f"{repo}@{desc['digest']}"] = len(data)
            resp = await api.get(f"/v2/{repo}/referrers/{digest}")
            assert resp.status == 200
            snap[f"{repo} referrers of {tag}"] = sorted(
                m["digest"] for m in (await resp.json())["manifests"]
            )
    return snap


def upload_tree(root: Path, bucket: S3Bucket, prefix: str) -> int:
    """``aws s3 sync root s3://bucket/prefix``: every file, relative path as key."""
    client = s3_client(bucket.endpoint)
    count = 0
    for path in root.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket.name, prefix + path.relative_to(root).as_posix())
            count += 1
    return count


def download_tree(bucket: S3Bucket, prefix: str, root: Path) -> int:
    """``aws s3 sync s3://bucket/prefix root``: every key below the prefix, as a file."""
    client = s3_client(bucket.endpoint)
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name, Prefix=prefix):
        for obj in page.get("Contents", []):
            path = root / obj["Key"][len(prefix) :]
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket.name, obj["Key"], str(path))
            count += 1
    return count


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


async def test_fs_to_s3(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    root = tmp_path / "registry"
    async with serve(fs_toml(root), root) as fs_api:
        await push_fixture_images(fs_api)
        before = await snapshot(fs_api)
    assert upload_tree(root, s3_bucket, "") > 0
    async with serve(s3_toml(s3_bucket, ""), root) as s3_api:
        after = await snapshot(s3_api)
        assert after == before
        # And the migrated registry keeps working: push and pull on top of it.
        await s3_api.push_image("library/alpine", "edge", layer=b"new layer")
        assert (await s3_api.get("/v2/library/alpine/manifests/edge")).status == 200


async def test_s3_to_fs(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    prefix = "mirror/registry/"
    async with serve(s3_toml(s3_bucket, prefix), tmp_path) as s3_api:
        await push_fixture_images(s3_api)
        before = await snapshot(s3_api)
    root = tmp_path / "restored"
    assert download_tree(s3_bucket, prefix, root) > 0
    # No upload leftovers: the committed layout only (the fs store would ignore them anyway).
    assert not [k for k in tree_digest(root) if "/_uploads/" in k]
    async with serve(fs_toml(root), root) as fs_api:
        after = await snapshot(fs_api)
        assert after == before
        await fs_api.push_image("team/app", "v2", layer=b"another layer")
        assert (await fs_api.get("/v2/team/app/manifests/v2")).status == 200


async def test_the_same_keys_on_both(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    """The same pushes give the same relative keys on fs and in the bucket."""
    root = tmp_path / "fs"
    layer = b"one layer, the same on both"
    async with serve(fs_toml(root), root) as fs_api:
        await fs_api.push_image("lib/same", "1", layer=layer)
    async with serve(s3_toml(s3_bucket, "p/"), tmp_path) as s3_api:
        await s3_api.push_image("lib/same", "1", layer=layer)
    keys = {
        o["Key"][2:]
        for o in s3_client(s3_bucket.endpoint)
        .list_objects_v2(Bucket=s3_bucket.name)
        .get("Contents", [])
    }
    files = set(tree_digest(root))
    # Less the writers' reference marks: each push names its own (a random token).
    assert without_gc_bookkeeping(keys) == without_gc_bookkeeping(files)
    assert any(k.startswith("v2/blobs/sha256/") and k.endswith("/data") for k in keys)
    assert any("/_manifests/tags/1/current/link" in k for k in keys)
