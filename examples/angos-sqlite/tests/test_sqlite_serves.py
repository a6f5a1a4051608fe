"""The plugin selected by name in a TOML config serves a push and a pull.

First through core's HTTP app in process (``angos_core.testing.api.serve_config``, an
aiohttp test client): a chunked and a monolithic blob upload, a manifest by tag, then
everything read back, with the metadata in the SQLite file and none of it on the blob
store's disk. Then with the real ``docker`` client against
``angos serve`` (end to end, marked ``e2e``).
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from angos_core import layout
from angos_core.testing.api import serve_config

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.test_utils import TestClient

    from angos_core.testing.angos_server import AngosServerFactory
    from angos_core.testing.docker_engine import DockerEngine

    Client = TestClient[web.Request, web.Application]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO = "example/sqlite-app"


def sqlite_config(tmp_path: Path) -> str:
    return (
        f'[blob_store.fs]\nroot_dir = "{tmp_path / "blobs"}"\n\n'
        f'[metadata_store.sqlite]\npath = "{tmp_path / "meta" / "metadata.sqlite3"}"\n'
    )


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def stored_keys(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT replace(key, char(1), '/') FROM objects").fetchall()
    finally:
        conn.close()
    return [row[0] for row in rows]


async def push_blob_chunked(client: Client, data: bytes) -> str:
    digest = digest_of(data)
    start = await client.post(f"/v2/{REPO}/blobs/uploads/")
    assert start.status == 202, await start.text()
    location = start.headers["Location"]
    half = len(data) // 2
    for offset, chunk in ((0, data[:half]), (half, data[half:])):
        patch = await client.patch(
            location,
            data=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            },
        )
        assert patch.status == 202, await patch.text()
        location = patch.headers["Location"]
    sep = "&" if "?" in location else "?"
    done = await client.put(f"{location}{sep}digest={digest}")
    assert done.status == 201, await done.text()
    assert done.headers["Docker-Content-Digest"] == digest
    return digest


async def push_blob_monolithic(client: Client, data: bytes) -> str:
    digest = digest_of(data)
    resp = await client.post(
        f"/v2/{REPO}/blobs/uploads/?digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert resp.status == 201, await resp.text()
    return digest


async def test_push_and_pull_through_the_http_api(tmp_path: Path) -> None:
    async with serve_config(sqlite_config(tmp_path), root=tmp_path) as api:
        await push_and_pull(api.client, tmp_path)


async def push_and_pull(client: Client, tmp_path: Path) -> None:
    layer = bytes(range(256)) * 300
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer_digest = await push_blob_chunked(client, layer)
    config_digest = await push_blob_monolithic(client, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        },
        indent=3,
    ).encode()
    put = await client.put(
        f"/v2/{REPO}/manifests/v1", data=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert put.status == 201, await put.text()
    manifest_digest = digest_of(manifest)
    assert put.headers["Docker-Content-Digest"] == manifest_digest

    # Pull: by tag and by digest, byte for byte as pushed; then the blobs.
    for reference in ("v1", manifest_digest):
        got = await client.get(
            f"/v2/{REPO}/manifests/{reference}", headers={"Accept": OCI_MANIFEST}
        )
        assert got.status == 200, await got.text()
        assert await got.read() == manifest
        assert got.headers["Docker-Content-Digest"] == manifest_digest
    for digest, data in ((layer_digest, layer), (config_digest, config)):
        blob = await client.get(f"/v2/{REPO}/blobs/{digest}")
        assert blob.status == 200
        assert await blob.read() == data

    tags = await client.get(f"/v2/{REPO}/tags/list")
    assert (await tags.json())["tags"] == ["v1"]
    catalog = await client.get("/v2/_catalog")
    assert (await catalog.json())["repositories"] == [REPO]

    # The metadata went to SQLite, the blobs to the fs blob store.
    keys = stored_keys(tmp_path / "meta" / "metadata.sqlite3")
    assert layout.tag_current_key(REPO, "v1") in keys
    assert layout.revision_link_key(REPO, manifest_digest) in keys
    assert layout.layer_link_key(REPO, layer_digest) in keys
    # Manifest bodies are metadata (core keeps them at their blob key in the metadata
    # store); layer and config bytes are not.
    assert [k for k in keys if k.startswith(layout.blobs_prefix())] == [
        layout.blob_data_key(manifest_digest)
    ]
    blobs_root = tmp_path / "blobs"
    assert (blobs_root / layout.blob_data_key(layer_digest)).read_bytes() == layer
    # Finished upload sessions leave no file behind; links and tags are not on this disk.
    assert [p for p in (blobs_root / layout.REPOSITORIES).rglob("*") if p.is_file()] == []


def docker_image_tar(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in {"etc/motd": b"served from sqlite metadata\n"}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.e2e
def test_docker_push_and_pull(
    docker_engine: DockerEngine, angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    server = angos_server_factory(sqlite_config(tmp_path))
    ref = f"{server.host}/{REPO}:docker"
    docker = docker_engine
    docker.run("import", str(docker_image_tar(tmp_path / "rootfs.tar")), ref)
    pushed_id = docker.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()

    push = docker.run("push", ref)
    assert "digest: sha256:" in push.stdout, push.stdout
    docker.run("image", "rm", ref)
    docker.run("pull", ref)

    assert docker.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip() == pushed_id
    keys = stored_keys(tmp_path / "meta" / "metadata.sqlite3")
    assert layout.tag_current_key(REPO, "docker") in keys
