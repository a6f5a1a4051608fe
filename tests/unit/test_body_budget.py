"""The process's byte budget for upload bodies: bounded, first come first served, and no
bytes lost to a cancelled waiter."""

from __future__ import annotations

import asyncio

import pytest

from angos_core.http.body_budget import BodyBudget


async def test_takes_within_capacity_and_waits_beyond_it() -> None:
    budget = BodyBudget(10)
    assert await budget.acquire(6) == 6
    waiter = asyncio.ensure_future(budget.acquire(6))
    await asyncio.sleep(0)
    assert not waiter.done() and budget.waiting == 1
    budget.release(6)
    assert await waiter == 6
    assert budget.in_use == 6


async def test_more_than_capacity_takes_the_whole_budget() -> None:
    budget = BodyBudget(4)
    assert await budget.acquire(100) == 4
    assert budget.free == 0


async def test_first_come_first_served() -> None:
    budget = BodyBudget(10)
    await budget.acquire(10)
    order: list[str] = []

    async def take(name: str, size: int) -> None:
        await budget.acquire(size)
        order.append(name)

    big = asyncio.ensure_future(take("big", 8))
    await asyncio.sleep(0)
    small = asyncio.ensure_future(take("small", 1))
    await asyncio.sleep(0)
    budget.release(2)
    await asyncio.sleep(0)
    # The small one would fit, but the big one came first: it is not overtaken.
    assert order == []
    budget.release(8)
    await asyncio.gather(big, small)
    assert order == ["big", "small"]


async def test_a_cancelled_waiter_loses_no_bytes() -> None:
    budget = BodyBudget(10)
    await budget.acquire(10)
    first = asyncio.ensure_future(budget.acquire(5))
    second = asyncio.ensure_future(budget.acquire(5))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    budget.release(10)
    assert await second == 5
    assert budget.free == 5 and budget.waiting == 0


async def test_granted_then_cancelled_hands_the_bytes_on() -> None:
    budget = BodyBudget(10)
    await budget.acquire(10)
    first = asyncio.ensure_future(budget.acquire(10))
    await asyncio.sleep(0)
    budget.release(10)  # granted to `first`, which has not run yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert budget.free == 10


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        BodyBudget(0)
