"""``[maintenance.prune]``: ``angos prune`` inside the server, on a schedule."""

from __future__ import annotations

import asyncio

import pytest

from angos_core.errors import ConfigError
from tests.ops.test_gc import push_image
from tests.ops.test_prune import dated
from tests.support.api import Api
from tests.support.storage import Storage

pytestmark = pytest.mark.shapes("fs")

SCHEDULE = """
[global.retention_policy]
rules = ["image.pushed_at > now() - days(7)"]

[maintenance.prune]
interval_secs = 0.3
min_age_secs = 0
"""


async def revision(api: Api, name: str, digest: str) -> bool:
    return await api.registry.links.has_revision(name, digest, fresh=True)


async def test_the_server_prunes_on_its_schedule(storage: Storage) -> None:
    async with storage.open_api(SCHEDULE) as api:
        old = await push_image(api, "sched/app", None, b"old untagged")
        new = await push_image(api, "sched/app", None, b"new untagged")
        await dated(api, "sched/app", old, 30)
        for _ in range(200):
            if not await revision(api, "sched/app", old):
                break
            await asyncio.sleep(0.05)
        assert not await revision(api, "sched/app", old)
        assert await revision(api, "sched/app", new)


async def test_off_by_default(storage: Storage) -> None:
    policy = '[global.retention_policy]\nrules = ["image.pushed_at > now() - days(7)"]\n'
    async with storage.open_api(policy) as api:
        old = await push_image(api, "sched/app", None, b"old untagged")
        await dated(api, "sched/app", old, 30)
        await asyncio.sleep(0.8)
        assert await revision(api, "sched/app", old)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("[maintenance.prune]\ninterval_secs = -1\n", "maintenance.prune.interval_secs"),
        ("[maintenance.prune]\nmin_age_secs = -5\n", "maintenance.prune.min_age_secs"),
        # Scheduled, but no policy to apply.
        ("[maintenance.prune]\ninterval_secs = 60\n", "maintenance.prune.interval_secs"),
    ],
)
async def test_bad_settings_name_the_key(storage: Storage, table: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        async with storage.open_api(table):
            pass
