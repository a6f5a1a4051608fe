"""``[maintenance.gc]``: collections inside the server, on a schedule, with their metrics."""

from __future__ import annotations

import asyncio

import pytest

from angos_core.errors import ConfigError
from tests.support.api import Api, digest_of
from tests.support.storage import Storage

pytestmark = pytest.mark.shapes("fs")

SCHEDULE = """
[maintenance.gc]
interval_secs = 0.3
min_age_secs = 0
"""


async def metric(api: Api, name: str) -> float:
    async with await api.get("/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def test_the_server_collects_garbage_on_its_schedule(storage: Storage) -> None:
    async with storage.open_api(SCHEDULE) as api:
        layer = b"scheduled garbage"
        digest, _ = await api.push_image("sched/app", "v1", layer=layer)
        kept, _ = await api.push_image("sched/keep", "v1", layer=b"kept layer")
        assert (await api.client.delete(f"/v2/sched/app/manifests/{digest}")).status == 202
        for _ in range(300):
            if await metric(api, 'angos_gc_runs_total{result="ok"}') >= 2:
                break
            await asyncio.sleep(0.05)
        assert await metric(api, 'angos_gc_runs_total{result="ok"}') >= 2
        assert await metric(api, "angos_gc_bytes_reclaimed_total") >= len(layer)
        assert await metric(api, 'angos_gc_objects_deleted_total{kind="blob"}') >= 1
        async with await api.get(f"/v2/sched/app/blobs/{digest_of(layer)}") as resp:
            assert resp.status == 404
        async with await api.get("/v2/sched/keep/manifests/v1") as resp:
            assert resp.status == 200 and digest_of(await resp.read()) == kept


async def test_off_by_default(storage: Storage) -> None:
    async with storage.open_api() as api:
        await asyncio.sleep(0.5)
        assert await metric(api, "angos_gc_runs_total") == 0


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("interval_secs = -1", "maintenance.gc.interval_secs"),
        ("min_age_secs = -5", "maintenance.gc.min_age_secs"),
        ("concurrency = 0", "maintenance.gc.concurrency"),
    ],
)
async def test_bad_settings_name_the_key(storage: Storage, table: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        async with storage.open_api(f"[maintenance.gc]\n{table}\n"):
            pass
