"""Backend faults reach clients as 503 JSON errors naming the backend, never a 500 or a
traceback; cache faults are invisible; a busy lock is a 503 too.

The faulty backends are the real fs / memory ones behind a proxy that raises on the
methods a test names, registered as a plugin exactly like a third-party one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from angos_fs.blob_store import FsBlobStore
from angos_fs.config import FsConfig
from angos_fs.metadata_store import FsMetadataStore
from angos_memory.cache import MemoryCache, MemoryCacheConfig

from angos_core import BackendSpec, hookimpl
from angos_core.http import make_app_from_toml
from tests.support.api import Api, digest_of, error_code, open_api


class Faults:
    """Which methods fail (``"<kind>.<method>"``), and with what."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.make: Callable[[str], BaseException] = lambda op: OSError(5, f"I/O error in {op}")


class FaultyProxy:
    def __init__(self, inner: Any, faults: Faults, kind: str) -> None:
        self._inner = inner
        self._faults = faults
        self._kind = kind
        self.name = "faulty"

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._inner, attr)
        if f"{self._kind}.{attr}" not in self._faults.failing:
            return value
        exc = self._faults.make(attr)
        if asyncio.iscoroutinefunction(value):

            async def fail_async(*args: Any, **kw: Any) -> Any:
                raise exc

            return fail_async

        def fail(*args: Any, **kw: Any) -> Any:
            raise exc

        return fail


class FaultyPlugin:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    @hookimpl
    def angos_blob_stores(self) -> list[BackendSpec[Any]]:
        return [
            BackendSpec(
                "faulty", lambda c: FaultyProxy(FsBlobStore(c), self.faults, "blob"), FsConfig
            )
        ]

    @hookimpl
    def angos_metadata_stores(self) -> list[BackendSpec[Any]]:
        return [
            BackendSpec(
                "faulty", lambda c: FaultyProxy(FsMetadataStore(c), self.faults, "meta"), FsConfig
            )
        ]

    @hookimpl
    def angos_caches(self) -> list[BackendSpec[Any]]:
        return [
            BackendSpec(
                "faulty",
                lambda c: FaultyProxy(MemoryCache(c), self.faults, "cache"),
                MemoryCacheConfig,
            )
        ]


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
async def faulty_api(tmp_path: Path, faults: Faults) -> AsyncIterator[Api]:
    root = tmp_path / "data"
    toml = (
        f'[blob_store.faulty]\nroot_dir = "{root}"\n'
        f'[metadata_store.faulty]\nroot_dir = "{root}"\n'
        "[cache.faulty]\n"
    )

    app = make_app_from_toml(toml, [FaultyPlugin(faults)])
    async with TestClient(TestServer(app)) as client:
        yield Api(client, root, app)


async def assert_unavailable(resp: ClientResponse) -> None:
    assert resp.status == 503
    body = await resp.json()
    error = body["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert "faulty" in error["message"]
    assert error["detail"] == {"backend": "faulty"}
    assert "Traceback" not in json.dumps(body)


@pytest.mark.parametrize("failing", ["stat", "local_path", "read"])
async def test_blob_store_fault_on_read(faulty_api: Api, faults: Faults, failing: str) -> None:
    digest = await faulty_api.push_blob("lib/app", b"payload")
    faults.failing = {f"blob.{failing}"}
    if failing == "read":  # else the response is a sendfile of the local path
        faults.failing.add("blob.local_path")
    if failing == "stat":  # a GET that can sendfile does not stat; HEAD does
        resp = await faulty_api.head(f"/v2/lib/app/blobs/{digest}")
        assert resp.status == 503
        resp = await faulty_api.get(f"/v2/lib/app/blobs/{digest}", headers={"Range": "bytes=0-1"})
    else:
        resp = await faulty_api.get(f"/v2/lib/app/blobs/{digest}")
    await assert_unavailable(resp)
    faults.failing = set()
    resp = await faulty_api.get(f"/v2/lib/app/blobs/{digest}")
    assert await resp.read() == b"payload"


@pytest.mark.parametrize("failing", ["upload_start", "upload_append", "upload_commit"])
async def test_blob_store_fault_on_upload(faulty_api: Api, faults: Faults, failing: str) -> None:
    faults.failing = {f"blob.{failing}"}
    digest = digest_of(b"payload")
    resp = await faulty_api.client.post(
        f"/v2/lib/app/blobs/uploads/?digest={digest}", data=b"payload"
    )
    await assert_unavailable(resp)
    faults.failing = set()
    assert (await faulty_api.head(f"/v2/lib/app/blobs/{digest}")).status == 404
    assert await faulty_api.push_blob("lib/app", b"payload") == digest


@pytest.mark.parametrize("failing", ["get", "put", "list_children_page"])
async def test_metadata_store_fault(faulty_api: Api, faults: Faults, failing: str) -> None:
    _, body = await faulty_api.push_image("lib/app", "latest")
    faults.failing = {f"meta.{failing}"}
    if failing == "put":
        resp = await faulty_api.put_manifest("lib/app", "other", body)
    elif failing == "list_children_page":
        resp = await faulty_api.get("/v2/lib/app/tags/list")
    else:
        resp = await faulty_api.get("/v2/lib/app/manifests/latest")  # the tag is not cached yet
    await assert_unavailable(resp)
    faults.failing = set()
    resp = await faulty_api.get("/v2/lib/app/manifests/latest")
    assert await resp.read() == body


async def test_library_exception_is_a_backend_error(faulty_api: Api, faults: Faults) -> None:
    faults.make = lambda op: RuntimeError("client library exploded")
    faults.failing = {"blob.local_path"}
    digest = await faulty_api.push_blob("lib/app", b"x")
    resp = await faulty_api.get(f"/v2/lib/app/blobs/{digest}")
    await assert_unavailable(resp)


async def test_cache_faults_are_invisible(faulty_api: Api, faults: Faults) -> None:
    faults.failing = {"cache.get", "cache.set", "cache.delete"}
    faults.make = lambda op: ConnectionError("cache down")
    _, body = await faulty_api.push_image("lib/app", "latest")
    resp = await faulty_api.get("/v2/lib/app/manifests/latest")
    assert resp.status == 200
    assert await resp.read() == body
    assert (await faulty_api.request("DELETE", "/v2/lib/app/manifests/latest")).status == 202
    assert (await faulty_api.get("/v2/lib/app/manifests/latest")).status == 404


async def test_busy_lock_is_503(tmp_path: Path) -> None:
    """Another process holds the repository's lock (taken on the provider itself, as a
    replica sharing it would) past the provider's retries."""
    extra = "[metadata_store.fs.memory]\nmax_retries = 2\nretry_delay_ms = 5\n"
    async with open_api(tmp_path / "data", extra) as api:
        digest, body = await api.push_image("lib/app", "latest")
        # A push or delete of the manifest, and a move or delete of a tag, each wait for
        # the keys they change.
        keys = [f"manifest:lib/app@{digest}", "tag:lib/app:latest", "tag:lib/app:other"]
        async with api.registry.stores.locks.inner.acquire(keys):
            for method, path in (
                ("DELETE", "/v2/lib/app/manifests/latest"),
                ("DELETE", f"/v2/lib/app/manifests/{digest}"),
                ("PUT", "/v2/lib/app/manifests/other"),
            ):
                resp = await api.request(method, path, data=body if method == "PUT" else None)
                assert resp.status == 503, (method, path)
                assert await error_code(resp) == "UNAVAILABLE"
                assert resp.headers["Retry-After"] == "1"
            # Reads do not take the lock, and nothing changed.
            assert await (await api.get("/v2/lib/app/manifests/latest")).read() == body
            assert (await api.get("/v2/lib/app/manifests/other")).status == 404
        resp = await api.request("DELETE", "/v2/lib/app/manifests/latest")
        assert resp.status == 202
        assert (await api.get(f"/v2/lib/app/manifests/{digest}")).status == 200


async def test_contention_inside_one_process_queues(tmp_path: Path) -> None:
    """Many pushes to one repository at once: they queue in-process, none gets a 503, even
    with a provider that gives up almost at once."""
    extra = "[metadata_store.fs.memory]\nmax_retries = 1\nretry_delay_ms = 1\n"
    async with open_api(tmp_path / "data", extra) as api:
        _, body = await api.push_image("lib/app", "latest")
        responses = await asyncio.gather(
            *(api.put_manifest("lib/app", f"t{i}", body) for i in range(40))
        )
        assert [r.status for r in responses] == [201] * 40
        tags = (await (await api.get("/v2/lib/app/tags/list")).json())["tags"]
        assert len(tags) == 41
