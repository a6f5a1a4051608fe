"""The HTTP API tests again, on S3 and on split stores (S3 + fs both ways).

A test module re-runs an fs API module by importing its tests and binding ``api`` to the
:func:`api` fixture here, parametrized over the configurations of :data:`LAYOUTS`::

    from tests.api.test_api_blobs import *  # noqa: F403
    from tests.api.s3_api_support import api  # noqa: F401  (replaces the module's fs fixture)

:class:`S3Api` keeps the tests' one storage-specific helper meaningful: ``files()`` lists
every stored object's relative key, in the bucket (below ``key_prefix``) and on disk.
Blob redirects are off here (the tests read blob bodies and headers from the registry);
redirects have their own tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from angos_core.http import make_app_from_toml
from tests.support.api import Api
from tests.support.moto_server import S3Bucket, s3_client

#: id -> (blob store, metadata store)
LAYOUTS = {
    "s3": ("s3", "s3"),
    "s3-blobs-fs-meta": ("s3", "fs"),
    "fs-blobs-s3-meta": ("fs", "s3"),
}
KEY_PREFIX = "registry/"


def layout_toml(layout: str, bucket: S3Bucket, root: Path, extra: str = "") -> str:
    """The config of ``layout`` on ``bucket`` and the local ``root``."""
    blob, meta = LAYOUTS[layout]
    parts = ["[global]\nenable_redirect = false\n" if "enable_redirect" not in extra else ""]
    parts.append(extra)
    s3 = {"key_prefix": KEY_PREFIX, "multipart_part_size": "5MiB"}
    if blob == "s3":
        parts.append(bucket.toml("blob_store", **s3))
    else:
        parts.append(f'[blob_store.fs]\nroot_dir = "{root}"\n')
    if meta != blob:
        if meta == "s3":
            parts.append(bucket.toml("metadata_store", **s3))
        else:
            parts.append(f'[metadata_store.fs]\nroot_dir = "{root}"\n')
    return "\n".join(p for p in parts if p)


class S3Api(Api):
    """An :class:`Api` whose storage is (partly) a bucket."""

    def __init__(
        self,
        client: TestClient[web.Request, web.Application],
        root: Path,
        app: web.Application,
        bucket: S3Bucket,
    ) -> None:
        super().__init__(client, root, app)
        self.bucket = bucket

    def bucket_keys(self) -> set[str]:
        client: Any = s3_client(self.bucket.endpoint)
        keys: set[str] = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket.name):
            for obj in page.get("Contents", []):
                assert obj["Key"].startswith(KEY_PREFIX), obj["Key"]
                keys.add(obj["Key"][len(KEY_PREFIX) :])
        return keys

    def files(self) -> set[str]:
        disk = super().files() if self.root.exists() else set()
        return disk | self.bucket_keys()


async def open_s3_api(layout: str, bucket: S3Bucket, root: Path, extra: str = "") -> Any:
    app = make_app_from_toml(layout_toml(layout, bucket, root, extra))
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return S3Api(client, root, app, bucket)


@pytest.fixture(name="api", params=list(LAYOUTS))
async def api(
    request: pytest.FixtureRequest, s3_bucket: S3Bucket, tmp_path: Path
) -> AsyncIterator[Api]:
    """The API on one of :data:`LAYOUTS` (fresh bucket, fresh directory)."""
    s3api = await open_s3_api(request.param, s3_bucket, tmp_path / "data")
    try:
        yield s3api
    finally:
        await s3api.client.close()
