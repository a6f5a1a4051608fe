"""The contract every lock provider passes. Subclass it and override ``lock_provider_factory``.

The factory builds providers with given settings (``ttl`` seconds, ``max_retries``,
``retry_delay_ms``: the names every provider shares). All providers one factory builds must
share one lock space, like replicas sharing one Redis, so exclusion is tested across them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import pytest

from angos_core.errors import LockLost, LockUnavailable
from angos_core.protocols import LockProvider


class LockProviderFactory(Protocol):
    def __call__(self, **settings: Any) -> Awaitable[LockProvider]:
        """An opened provider with these settings, closed by the fixture at teardown."""


def block_event_loop(seconds: float) -> None:
    """Stall the whole process, as a long GC pause or a stuck syscall would: no background
    renewal can run meanwhile."""
    time.sleep(seconds)


class LockProviderContract:
    """Behaviour every :class:`~angos_core.protocols.LockProvider` must have."""

    @pytest.fixture
    async def lock_provider_factory(self) -> AsyncIterator[LockProviderFactory]:
        raise NotImplementedError(
            "override the lock_provider_factory fixture: yield an async callable taking "
            "ttl, max_retries and retry_delay_ms that returns an opened provider"
        )
        yield  # pragma: no cover

    @pytest.fixture
    async def lock_provider(self, lock_provider_factory: LockProviderFactory) -> LockProvider:
        return await lock_provider_factory(ttl=10, max_retries=3000, retry_delay_ms=5)

    # ------------------------------------------------------------------ basics

    async def test_is_a_lock_provider(self, lock_provider: LockProvider) -> None:
        assert isinstance(lock_provider, LockProvider)
        assert isinstance(lock_provider.name, str) and lock_provider.name
        await lock_provider.health()

    async def test_acquire_and_release(
        self, lock_provider: LockProvider, lock_provider_factory: LockProviderFactory
    ) -> None:
        impatient = await lock_provider_factory(ttl=10, max_retries=0, retry_delay_ms=1)
        async with lock_provider.acquire(["contract/repo"]) as lease:
            lease.check()
            with pytest.raises(LockUnavailable) as info:
                async with impatient.acquire(["contract/repo"]):
                    pass  # pragma: no cover
            assert info.value.backend == impatient.name
        # Released on exit: taken at the first try.
        async with impatient.acquire(["contract/repo"]) as lease:
            lease.check()

    async def test_released_when_the_block_raises(
        self, lock_provider: LockProvider, lock_provider_factory: LockProviderFactory
    ) -> None:
        impatient = await lock_provider_factory(ttl=10, max_retries=0, retry_delay_ms=1)
        with pytest.raises(ZeroDivisionError):
            async with lock_provider.acquire(["contract/raise"]):
                1 / 0  # noqa: B018
        async with impatient.acquire(["contract/raise"]):
            pass

    async def test_released_when_the_holder_is_cancelled(
        self, lock_provider: LockProvider, lock_provider_factory: LockProviderFactory
    ) -> None:
        impatient = await lock_provider_factory(ttl=10, max_retries=0, retry_delay_ms=1)
        inside = asyncio.Event()

        async def hold_forever() -> None:
            async with lock_provider.acquire(["contract/cancel"]):
                inside.set()
                await asyncio.sleep(3600)

        holder = asyncio.create_task(hold_forever())
        await asyncio.wait_for(inside.wait(), 10)
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holder
        async with impatient.acquire(["contract/cancel"]):
            pass

    async def test_cancelled_waiter_takes_nothing(
        self, lock_provider: LockProvider, lock_provider_factory: LockProviderFactory
    ) -> None:
        impatient = await lock_provider_factory(ttl=10, max_retries=0, retry_delay_ms=1)
        keys = ["contract/w1", "contract/w2"]
        async with lock_provider.acquire(["contract/w2"]):
            # Wants w1 (free) and w2 (held): it may take w1, then waits for w2.
            waiter = asyncio.create_task(self._enter(lock_provider, keys))
            await asyncio.sleep(0.1)
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        async with impatient.acquire(keys):
            pass

    @staticmethod
    async def _enter(provider: LockProvider, keys: list[str]) -> None:
        async with provider.acquire(keys):
            pass

    async def test_unrelated_keys_do_not_contend(
        self, lock_provider: LockProvider, lock_provider_factory: LockProviderFactory
    ) -> None:
        impatient = await lock_provider_factory(ttl=10, max_retries=0, retry_delay_ms=1)
        async with lock_provider.acquire(["contract/a"]), impatient.acquire(["contract/b"]):
            pass
        async with lock_provider.acquire(["contract/a"]), impatient.acquire(["contract/a/b"]):
            pass  # keys are names, not prefixes

    async def test_duplicate_keys(self, lock_provider: LockProvider) -> None:
        async with lock_provider.acquire(["contract/dup", "contract/dup"]) as lease:
            lease.check()
        async with lock_provider.acquire(["contract/dup"]) as lease:
            lease.check()

    # ------------------------------------------------------------------ exclusion

    async def test_mutual_exclusion_under_contention(
        self, lock_provider_factory: LockProviderFactory
    ) -> None:
        providers = [
            await lock_provider_factory(ttl=10, max_retries=3000, retry_delay_ms=2)
            for _ in range(2)
        ]
        counter = 0
        inside = 0
        most_inside = 0

        async def increment(i: int) -> None:
            nonlocal counter, inside, most_inside
            async with providers[i % 2].acquire(["contract/counter"]) as lease:
                inside += 1
                most_inside = max(most_inside, inside)
                seen = counter
                await asyncio.sleep(0.001)  # lose updates here if two were inside
                lease.check()
                counter = seen + 1
                inside -= 1

        await asyncio.wait_for(asyncio.gather(*(increment(i) for i in range(40))), 60)
        assert counter == 40
        assert most_inside == 1

    async def test_several_keys_in_any_order_never_deadlock(
        self, lock_provider_factory: LockProviderFactory
    ) -> None:
        providers = [
            await lock_provider_factory(ttl=10, max_retries=3000, retry_delay_ms=2)
            for _ in range(2)
        ]
        orders = [["contract/x", "contract/y"], ["contract/y", "contract/x"]]
        holding: set[int] = set()
        overlaps = 0

        async def work(i: int) -> None:
            nonlocal overlaps
            async with providers[i % 2].acquire(orders[i % 2]) as lease:
                if holding:
                    overlaps += 1
                holding.add(i)
                await asyncio.sleep(0.001)
                lease.check()
                holding.discard(i)

        await asyncio.wait_for(asyncio.gather(*(work(i) for i in range(30))), 60)
        assert overlaps == 0

    async def test_partial_overlap_excludes(
        self, lock_provider: LockProvider, lock_provider_factory: LockProviderFactory
    ) -> None:
        impatient = await lock_provider_factory(ttl=10, max_retries=0, retry_delay_ms=1)
        async with lock_provider.acquire(["contract/p", "contract/q"]):
            with pytest.raises(LockUnavailable):
                async with impatient.acquire(["contract/q", "contract/r"]):
                    pass  # pragma: no cover
        # Nothing of the failed attempt stays held.
        async with impatient.acquire(["contract/r"]), impatient.acquire(["contract/p"]):
            pass

    async def test_waits_for_a_release(self, lock_provider_factory: LockProviderFactory) -> None:
        holder = await lock_provider_factory(ttl=10, max_retries=0, retry_delay_ms=1)
        patient = await lock_provider_factory(ttl=10, max_retries=500, retry_delay_ms=10)
        order: list[str] = []

        async def second() -> None:
            async with patient.acquire(["contract/wait"]):
                order.append("second")

        async with holder.acquire(["contract/wait"]):
            task = asyncio.create_task(second())
            await asyncio.sleep(0.2)
            order.append("first released")
        await asyncio.wait_for(task, 10)
        assert order == ["first released", "second"]

    async def test_unavailable_after_bounded_retries(
        self, lock_provider: LockProvider, lock_provider_factory: LockProviderFactory
    ) -> None:
        few = await lock_provider_factory(ttl=10, max_retries=3, retry_delay_ms=20)
        async with lock_provider.acquire(["contract/busy"]):
            began = time.monotonic()
            with pytest.raises(LockUnavailable) as info:
                async with few.acquire(["contract/busy"]):
                    pass  # pragma: no cover
            waited = time.monotonic() - began
        assert info.value.backend == few.name
        assert waited >= 0.03  # it did retry: about 3 x 20 ms, not at once

    # ------------------------------------------------------------------ ttl and renewal

    async def test_renewal_keeps_the_lock_past_its_ttl(
        self, lock_provider_factory: LockProviderFactory
    ) -> None:
        short = await lock_provider_factory(ttl=1, max_retries=0, retry_delay_ms=1)
        impatient = await lock_provider_factory(ttl=10, max_retries=0, retry_delay_ms=1)
        async with short.acquire(["contract/renewed"]) as lease:
            for _ in range(5):
                await asyncio.sleep(0.5)  # 2.5 s in all: well past the ttl
                lease.check()
                with pytest.raises(LockUnavailable):
                    async with impatient.acquire(["contract/renewed"]):
                        pass  # pragma: no cover
        async with impatient.acquire(["contract/renewed"]):
            pass

    async def test_expiry_lets_another_holder_in_and_the_old_one_loses(
        self, lock_provider_factory: LockProviderFactory
    ) -> None:
        stalled = await lock_provider_factory(ttl=0.5, max_retries=0, retry_delay_ms=1)
        other = await lock_provider_factory(ttl=10, max_retries=50, retry_delay_ms=20)
        third = await lock_provider_factory(ttl=10, max_retries=0, retry_delay_ms=1)

        old_cm = stalled.acquire(["contract/expiring"])
        old = await old_cm.__aenter__()
        old.check()
        block_event_loop(1.2)  # the holder stalls past its ttl; nothing renews meanwhile

        new_cm = other.acquire(["contract/expiring"])
        new = await new_cm.__aenter__()
        with pytest.raises(LockLost) as info:
            old.check()
        assert info.value.backend == stalled.name
        await asyncio.sleep(0.3)  # the old holder's renewal must not take the lock back
        with pytest.raises(LockLost):
            old.check()
        # The old holder leaves: it must not release the lock the new holder owns. (Leaving
        # may report the loss.)
        with contextlib.suppress(LockLost):
            await old_cm.__aexit__(None, None, None)
        new.check()
        with pytest.raises(LockUnavailable):
            async with third.acquire(["contract/expiring"]):
                pass  # pragma: no cover
        await new_cm.__aexit__(None, None, None)
        async with third.acquire(["contract/expiring"]):
            pass

    async def test_lost_lease_stays_lost(self, lock_provider_factory: LockProviderFactory) -> None:
        stalled = await lock_provider_factory(ttl=0.5, max_retries=0, retry_delay_ms=1)
        with contextlib.suppress(LockLost):
            async with stalled.acquire(["contract/stale"]) as lease:
                block_event_loop(1.2)
                with pytest.raises(LockLost):
                    lease.check()
                await asyncio.sleep(0.3)
                # Nobody took the key meanwhile, but the holder cannot know it held on.
                with pytest.raises(LockLost):
                    lease.check()
        async with stalled.acquire(["contract/stale"]) as lease:
            lease.check()
