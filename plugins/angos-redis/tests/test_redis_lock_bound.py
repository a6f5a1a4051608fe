"""A hung Redis costs a lock request a bounded wait, however many requests queue (issue 10).

Requests for one key queue in each process and reach the provider one after another. With
Redis stopped (SIGSTOP) each used to wait out its own command timeout and one retry in
turn, so the last of N waited N times that long. Now a command has a hard deadline of twice
its timeout, and once one went unanswered that long the next acquires fail at once for a
while; any answer ends that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from angos_redis import RedisLockProvider

from angos_core.errors import BackendUnavailable
from angos_core.testing.redis_server import RedisServer

ProviderFactory = Callable[..., Awaitable[RedisLockProvider]]

#: ttl = 3 s: commands time out after 1 s, and the deadline is 2 s.
TTL = 3
DEADLINE_SECS = 2 * TTL / 3


async def test_queued_acquires_on_a_hung_redis_all_fail_within_one_deadline(
    make_provider: ProviderFactory, redis_server: RedisServer
) -> None:
    provider = await make_provider(ttl=TTL)
    async with provider.acquire(["repo/x"]):
        pass  # connected
    waits: list[float] = []
    with redis_server.frozen():
        began = time.monotonic()
        for _ in range(5):  # one after another, as a process's queue hands the key on
            start = time.monotonic()
            try:
                async with provider.acquire(["repo/x"]):
                    raise AssertionError("acquired a lock with Redis hung")
            except BackendUnavailable as exc:
                assert exc.backend == "redis"
            waits.append(time.monotonic() - start)
        total = time.monotonic() - began
    # Generous for a loaded machine; without the bound the five take five deadlines.
    assert max(waits) < 1.5 * DEADLINE_SECS, waits
    assert total < 2 * DEADLINE_SECS, waits


async def test_acquires_work_again_soon_after_redis_resumes(
    make_provider: ProviderFactory, redis_server: RedisServer
) -> None:
    provider = await make_provider(ttl=TTL)
    with redis_server.frozen():
        try:
            async with provider.acquire(["repo/x"]):
                raise AssertionError("acquired a lock with Redis hung")
        except BackendUnavailable:
            pass
    resumed = time.monotonic()
    while True:
        try:
            async with provider.acquire(["repo/x"]) as lease:
                lease.check()
            break
        except BackendUnavailable:
            # At most the fail-fast window (one command timeout) plus a releaser tick.
            assert time.monotonic() - resumed < DEADLINE_SECS, "still refused after Redis resumed"
            await asyncio.sleep(0.05)
