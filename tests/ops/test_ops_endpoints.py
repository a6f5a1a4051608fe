"""``/healthz``, ``/readyz`` and ``/metrics`` on the in-process app (real fs, memory, Redis).

Backends that fail or hang their health check, and a lock that cannot be had, are real fs /
memory backends behind small proxies registered as a plugin, like a third-party one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from angos_memory.cache import MemoryCache, MemoryCacheConfig
from angos_memory.lock import MemoryLockConfig, MemoryLockProvider
from prometheus_client.parser import text_string_to_metric_families

from angos_core import BackendSpec, hookimpl
from angos_core.errors import BackendUnavailable, LockUnavailable
from angos_core.http import make_app_from_toml
from tests.support.api import Api, digest_of, fs_toml
from tests.support.redis_server import RedisServer


class SickCache(MemoryCache):
    """A working memory cache whose health check fails or never answers."""

    name = "sick"
    hang = False

    async def health(self) -> None:
        if self.hang:
            await asyncio.sleep(3600)
        raise BackendUnavailable("sick", "PING failed: connection refused")


class HangingCache(SickCache):
    name = "hanging"
    hang = True


class StuckLocks(MemoryLockProvider):
    name = "stuck"

    def acquire(self, keys: Any) -> Any:
        raise LockUnavailable("stuck", "held elsewhere")


class OpsPlugin:
    @hookimpl
    def angos_caches(self) -> list[BackendSpec[Any]]:
        return [
            BackendSpec("sick", SickCache, MemoryCacheConfig),
            BackendSpec("hanging", HangingCache, MemoryCacheConfig),
        ]

    @hookimpl
    def angos_lock_providers(self) -> list[BackendSpec[Any]]:
        return [BackendSpec("stuck", StuckLocks, MemoryLockConfig)]


@asynccontextmanager
async def serving(toml: str) -> AsyncIterator[TestClient[Any, Any]]:
    app = make_app_from_toml(toml, [OpsPlugin()])
    async with TestClient(TestServer(app)) as client:
        yield client


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(v for n, lab, v in samples(text) if n == name and labels.items() <= lab.items())


async def scrape(client: TestClient[Any, Any]) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return await resp.text()


# --------------------------------------------------------------------------- health


async def test_healthz(tmp_path: Path) -> None:
    async with serving(fs_toml(tmp_path / "d")) as client:
        resp = await client.get("/healthz")
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}
        assert (await client.head("/healthz")).status == 200


async def test_readyz_names_every_backend(tmp_path: Path) -> None:
    async with serving(fs_toml(tmp_path / "d")) as client:
        resp = await client.get("/readyz")
        assert resp.status == 200
        body = await resp.json()
        assert body["status"] == "ready"
        assert {k: v["name"] for k, v in body["backends"].items()} == {
            "blob_store": "fs",
            "metadata_store": "fs",
            "lock_provider": "memory",
            "cache": "memory",
        }
        assert all(v["ok"] for v in body["backends"].values())


async def test_readyz_names_the_failing_backend(tmp_path: Path) -> None:
    async with serving(fs_toml(tmp_path / "d", "[cache.sick]\n")) as client:
        # A sick cache is reported but fails neither check: a cache failure is a miss.
        assert (await client.get("/readyz?write=1")).status == 200
        resp = await client.get("/readyz")
        assert resp.status == 200
        body = await resp.json()
        assert body["status"] == "degraded"
        assert body["failing"] == ["cache (sick)"]
        assert "connection refused" in body["backends"]["cache"]["error"]
        assert body["backends"]["blob_store"]["ok"] is True
        # The registry itself still serves: a sick cache is a miss, not an outage.
        assert (await client.get("/v2/")).status == 200
        # Probes are not requests in the metrics; the failed health check is a backend error.
        text = await scrape(client)
        assert value(text, "angos_http_requests_total", route="/readyz") == 0
        assert value(text, "angos_http_requests_total", route="/v2/") == 1
        errors = value(
            text, "angos_backend_operation_errors_total", kind="cache", backend="sick", op="health"
        )
        assert errors == 2


async def test_readyz_bounds_a_hanging_backend(tmp_path: Path) -> None:
    toml = fs_toml(tmp_path / "d", "[server]\nhealth_timeout_secs = 0.3\n[cache.hanging]\n")
    async with serving(toml) as client:
        resp = await asyncio.wait_for(client.get("/readyz"), 10)
        assert resp.status == 200
        body = await resp.json()
        assert body["failing"] == ["cache (hanging)"]
        assert body["backends"]["cache"]["error"] == "no answer within 0.3s"
        assert body["backends"]["lock_provider"]["ok"] is True


async def test_readyz_with_redis_down(tmp_path: Path, redis_server: RedisServer) -> None:
    redis_server.start()
    url = redis_server.url
    toml = fs_toml(
        tmp_path / "d",
        f'[metadata_store.fs.redis]\nurl = "{url}"\n[cache.redis]\nurl = "{url}"\n'
        "[server]\nhealth_timeout_secs = 2\n",
    )
    async with serving(toml) as client:
        assert (await client.get("/readyz")).status == 200
        with redis_server.down():
            # Reads go on without the lock provider and the cache; pushes cannot.
            assert (await client.get("/readyz")).status == 200
            resp = await client.get("/readyz?write=1")
            assert resp.status == 503
            body = await resp.json()
            assert body["status"] == "read-only"
            assert body["failing"] == ["lock_provider (redis)", "cache (redis)"]
            assert body["backends"]["blob_store"]["ok"] is True
            assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 200


# --------------------------------------------------------------------------- metrics


async def test_metrics_count_requests_bytes_and_backends(tmp_path: Path) -> None:
    async with serving(fs_toml(tmp_path / "d")) as client:
        api = Api(client, tmp_path / "d", client.app)
        layer = b"L" * 300_000
        config = b'{"architecture":"amd64","os":"linux"}'
        for name in ("team/one", "team/two"):
            await api.push_image(name, "v1", layer=layer, config=config)
        resp = await client.get(f"/v2/team/one/blobs/{digest_of(layer)}")
        assert await resp.read() == layer
        assert (await client.get("/v2/team/none/manifests/v1")).status == 404

        text = await scrape(client)
        manifest_route = "/v2/{name}/manifests/{reference}"
        assert (
            value(
                text, "angos_http_requests_total", route=manifest_route, method="PUT", status="201"
            )
            == 2
        )
        assert (
            value(
                text, "angos_http_requests_total", route=manifest_route, method="GET", status="404"
            )
            == 1
        )
        # Bounded cardinality: no label carries a repository name, tag or digest.
        for _, labels, _ in samples(text):
            for label in labels.values():
                assert "team" not in label and "sha256" not in label, labels
        uploads = "/v2/{name}/blobs/uploads/"
        assert value(text, "angos_http_request_bytes_total", route=uploads) >= 2 * len(layer)
        blob_route = "/v2/{name}/blobs/{digest}"
        assert value(text, "angos_http_response_bytes_total", route=blob_route) >= len(layer)
        assert (
            value(
                text,
                "angos_http_request_duration_seconds_count",
                route=manifest_route,
                method="PUT",
            )
            == 2
        )
        assert value(
            text, "angos_backend_operation_duration_seconds_count",
            kind="metadata_store", backend="fs", op="create",
        ) > 0  # fmt: skip
        assert value(text, "angos_lock_wait_seconds_count", backend="memory") >= 2
        assert value(text, "angos_lock_failures_total") == 0
        assert value(text, "angos_http_requests_in_flight") == 0
        assert value(text, "angos_uploads_in_progress") == 0
        assert value(text, "process_resident_memory_bytes") > 0


async def test_metrics_lock_failures(tmp_path: Path) -> None:
    toml = fs_toml(tmp_path / "d", "[metadata_store.fs.stuck]\n")
    async with serving(toml) as client:
        # Blob uploads take no lock (a layer link is a create-if-absent); a tag delete does.
        resp = await client.delete("/v2/r/manifests/latest")
        assert resp.status == 503
        text = await scrape(client)
        assert (
            value(text, "angos_lock_failures_total", backend="stuck", error="LockUnavailable") == 1
        )
        assert value(text, "angos_lock_wait_seconds_count", backend="stuck") == 1
        assert (
            value(
                text,
                "angos_http_requests_total",
                route="/v2/{name}/manifests/{reference}",
                status="503",
            )
            == 1
        )


async def test_uploads_in_progress_gauge(tmp_path: Path) -> None:
    async with serving(fs_toml(tmp_path / "d")) as client:
        resp = await client.post("/v2/r/blobs/uploads/")
        assert resp.status == 202
        location = resp.headers["Location"]
        release = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b"x" * 1000
            await release.wait()
            yield b"y" * 1000

        patch = asyncio.ensure_future(client.patch(location, data=body()))
        text = ""
        for _ in range(100):
            text = await scrape(client)
            if value(text, "angos_uploads_in_progress") == 1:
                break
            await asyncio.sleep(0.02)
        assert value(text, "angos_uploads_in_progress") == 1
        assert value(text, "angos_http_requests_in_flight") == 1  # /metrics is not counted
        release.set()
        assert (await patch).status == 202
        text = await scrape(client)
        assert value(text, "angos_uploads_in_progress") == 0
        assert value(text, "angos_http_requests_in_flight") == 0


async def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    async with serving(fs_toml(tmp_path / "a")) as one, serving(fs_toml(tmp_path / "b")) as two:
        for _ in range(3):
            assert (await one.get("/v2/")).status == 200
        assert value(await scrape(one), "angos_http_requests_total", route="/v2/") == 3
        assert value(await scrape(two), "angos_http_requests_total", route="/v2/") == 0


async def test_ops_endpoints_need_no_auth_header_and_are_json(tmp_path: Path) -> None:
    async with serving(fs_toml(tmp_path / "d")) as client:
        for path in ("/healthz", "/readyz"):
            resp = await client.get(path)
            assert resp.content_type == "application/json"
            json.loads(await resp.text())


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_ops_endpoints_carry_a_request_id(tmp_path: Path, path: str) -> None:
    async with serving(fs_toml(tmp_path / "d")) as client:
        resp = await client.get(path)
        assert len(resp.headers["X-Request-ID"]) == 32
