"""Lock provider ``redis`` against a real redis-server: the Redis-specific behaviour.

The shared lock contract (mutual exclusion, expiry, owner-only release, renewal) runs in
test_redis_contracts.py; these tests pin what only a networked lock has: foreign tokens,
renewal past the ttl, renewal failure, and Redis going away and coming back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from angos_redis import RedisLockProvider

from angos_core.errors import BackendUnavailable, LockLost, LockUnavailable
from angos_core.testing.redis_server import RedisServer

ProviderFactory = Callable[..., Awaitable[RedisLockProvider]]


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_keys_live_under_the_prefix_and_go_on_release(
    make_provider: ProviderFactory, raw: aioredis.Redis
) -> None:
    provider = await make_provider(key_prefix="locks")
    async with provider.acquire(["repo/a"]) as lease:
        assert await raw.get("locks:repo/a") == lease.token.encode()
        assert 0 < await raw.pttl("locks:repo/a") <= 10_000
    assert await raw.exists("locks:repo/a") == 0


async def test_unrelated_keys_do_not_contend(make_provider: ProviderFactory) -> None:
    a = await make_provider(max_retries=0)
    b = await make_provider(max_retries=0)
    async with a.acquire(["repo/one"]), b.acquire(["repo/two"]) as lease:
        lease.check()


async def test_overlapping_key_sets_never_deadlock(make_provider: ProviderFactory) -> None:
    a = await make_provider(max_retries=5000, retry_delay_ms=1)
    b = await make_provider(max_retries=5000, retry_delay_ms=1)
    done = 0

    async def hold(provider: RedisLockProvider, keys: list[str]) -> None:
        nonlocal done
        async with provider.acquire(keys):
            await asyncio.sleep(0.001)
            done += 1

    await asyncio.wait_for(
        asyncio.gather(
            *(hold(a, ["x", "y", "z"]) for _ in range(20)),
            *(hold(b, ["z", "y", "x"]) for _ in range(20)),
            *(hold(b, ["y", "w"]) for _ in range(20)),
        ),
        timeout=60,
    )
    assert done == 60


async def test_all_or_nothing_when_one_key_is_taken(
    make_provider: ProviderFactory, raw: aioredis.Redis
) -> None:
    holder = await make_provider()
    other = await make_provider(max_retries=2, retry_delay_ms=5)
    async with holder.acquire(["b"]):
        with pytest.raises(LockUnavailable) as excinfo:
            async with other.acquire(["a", "b", "c"]):
                pytest.fail("acquired a key another holder has")
        assert excinfo.value.backend == "redis"
        # The free keys were not left taken by the failed attempt.
        assert await raw.exists("registry-locks:a", "registry-locks:c") == 0


async def test_bounded_wait_then_lock_unavailable(make_provider: ProviderFactory) -> None:
    holder = await make_provider()
    waiter = await make_provider(max_retries=5, retry_delay_ms=20)
    async with holder.acquire(["repo/busy"]):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(LockUnavailable, match="gave up after 5 retries"):
            async with waiter.acquire(["repo/busy"]):
                pytest.fail("acquired a held lock")
        # It waited (5 jittered pauses of 10-30 ms) rather than giving up at once.
        assert loop.time() - started >= 0.05


async def test_waiter_gets_the_lock_once_released(make_provider: ProviderFactory) -> None:
    holder = await make_provider()
    waiter = await make_provider(max_retries=500, retry_delay_ms=10)
    order: list[str] = []
    released = asyncio.Event()

    async def hold() -> None:
        async with holder.acquire(["repo/x"]):
            order.append("holder in")
            released.set()
            await asyncio.sleep(0.2)
            order.append("holder out")

    async def wait() -> None:
        await released.wait()
        async with waiter.acquire(["repo/x"]):
            order.append("waiter in")

    await asyncio.gather(hold(), wait())
    assert order == ["holder in", "holder out", "waiter in"]


async def test_only_the_owner_releases(make_provider: ProviderFactory, raw: aioredis.Redis) -> None:
    provider = await make_provider(ttl=5)
    async with provider.acquire(["repo/x"]):
        # Our lock expired and someone else took it: our release must not free theirs.
        await raw.set("registry-locks:repo/x", b"someone-else", px=5000)
    assert await raw.get("registry-locks:repo/x") == b"someone-else"


async def test_release_script_ignores_a_foreign_token(
    make_provider: ProviderFactory, raw: aioredis.Redis
) -> None:
    provider = await make_provider()
    async with provider.acquire(["repo/x"]) as lease:
        await provider._release_quietly(lease.keys, "not-the-owner")
        assert await raw.get("registry-locks:repo/x") == lease.token.encode()


async def test_renewal_keeps_the_lock_past_its_ttl(
    make_provider: ProviderFactory, raw: aioredis.Redis
) -> None:
    holder = await make_provider(ttl=0.3)
    other = await make_provider(ttl=0.3, max_retries=0)
    async with holder.acquire(["repo/long"]) as lease:
        await asyncio.sleep(1.0)  # more than three ttls
        lease.check()
        assert await raw.get("registry-locks:repo/long") == lease.token.encode()
        with pytest.raises(LockUnavailable):
            async with other.acquire(["repo/long"]):
                pytest.fail("acquired a lock that is being renewed")


async def test_an_abandoned_lock_expires(
    make_provider: ProviderFactory, raw: aioredis.Redis
) -> None:
    # A replica that died while holding the lock: its key stays only until the ttl.
    await raw.set("registry-locks:repo/x", b"dead-replica", px=300)
    provider = await make_provider(max_retries=200, retry_delay_ms=10)
    async with provider.acquire(["repo/x"]) as lease:
        lease.check()


async def test_lock_taken_away_makes_check_raise(
    make_provider: ProviderFactory, raw: aioredis.Redis
) -> None:
    provider = await make_provider(ttl=0.3)
    async with provider.acquire(["repo/x"]) as lease:
        lease.check()
        await raw.delete("registry-locks:repo/x")
        await asyncio.sleep(0.25)  # at least one renewal attempt finds it gone
        with pytest.raises(LockLost) as excinfo:
            lease.check()
        assert excinfo.value.backend == "redis"


async def test_renewal_failure_makes_check_raise(
    make_provider: ProviderFactory, redis_server: RedisServer
) -> None:
    provider = await make_provider(ttl=0.6)
    # Redis goes away while the lock is held; leaving the block (release) must not raise.
    async with provider.acquire(["repo/x"]) as lease:
        redis_server.stop()
        await asyncio.sleep(0.5)  # the renewal at ttl/3 fails
        with pytest.raises(LockLost, match="renewal failed"):
            lease.check()
    redis_server.start()


async def test_outage_gives_backend_unavailable_then_recovers(
    make_provider: ProviderFactory, redis_server: RedisServer
) -> None:
    provider = await make_provider()
    async with provider.acquire(["repo/x"]):
        pass  # the pool now holds a connection that the restart will break
    with redis_server.down():
        with pytest.raises(BackendUnavailable) as excinfo:
            async with provider.acquire(["repo/x"]):
                pytest.fail("acquired a lock with Redis down")
        assert excinfo.value.backend == "redis"
        with pytest.raises(BackendUnavailable):
            await provider.health()
    # Same provider, no restart of ours: the pool reconnects.
    async with provider.acquire(["repo/x"]) as lease:
        lease.check()
    await provider.health()


async def test_cancelled_holder_releases(
    make_provider: ProviderFactory, raw: aioredis.Redis
) -> None:
    provider = await make_provider()
    entered = asyncio.Event()

    async def hold() -> None:
        async with provider.acquire(["repo/x"]):
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(hold())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await raw.exists("registry-locks:repo/x") == 0


@pytest.mark.parametrize("hang_secs", [0.0, 4.0])
async def test_hung_redis_gives_backend_unavailable_and_leaves_no_lock_behind(
    make_provider: ProviderFactory, redis_server: RedisServer, hang_secs: float
) -> None:
    provider = await make_provider(ttl=3)  # commands time out after 1 s
    with redis_server.frozen():
        with pytest.raises(BackendUnavailable):
            async with provider.acquire(["repo/x"]):
                pytest.fail("acquired a lock with Redis hung")
        await asyncio.sleep(hang_secs)  # the hang may outlast the ttl
    # Redis resumes and runs the acquire it had received, which takes the key for a ttl
    # from now unless the provider releases it; it keeps trying until Redis answers. The
    # other provider waits less than the ttl.
    other = await make_provider(ttl=3, max_retries=150, retry_delay_ms=10)
    async with other.acquire(["repo/x"]) as lease:
        lease.check()


async def test_a_cancelled_waiter_stops_and_holds_nothing(
    make_provider: ProviderFactory, raw: aioredis.Redis
) -> None:
    # Cancelling a waiter while its acquire script is in flight once went unnoticed (Python
    # 3.11's wait_for drops a cancellation that lands with the reply), so the waiter went on
    # retrying. Many rounds, because the race needs the two to land together.
    provider = await make_provider(max_retries=100_000, retry_delay_ms=1)
    for _ in range(40):
        async with provider.acquire(["repo/held"]):
            waiter = asyncio.create_task(_enter(provider, ["repo/free", "repo/held"]))
            await asyncio.sleep(0.03)
            waiter.cancel()
            done, _ = await asyncio.wait([waiter], timeout=10)
            assert done, "the cancelled waiter kept on retrying"
            assert waiter.cancelled()
        assert await raw.exists("registry-locks:repo/free", "registry-locks:repo/held") == 0


async def _enter(provider: RedisLockProvider, keys: list[str]) -> None:
    async with provider.acquire(keys):
        pytest.fail("acquired a held lock")
