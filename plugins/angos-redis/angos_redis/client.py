"""The Redis connection both backends use, and the one place Redis errors become ours."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from angos_core.errors import BackendUnavailable

BACKEND = "redis"
T = TypeVar("T")

#: A request must fail fast when Redis is gone: a refused connection answers at once, a
#: black-holed one within this many seconds.
CONNECT_TIMEOUT_SECS = 2.0


def make_client(url: str, op_timeout_secs: float) -> aioredis.Redis:
    """A pooled client; a broken pooled connection is replaced on the next command.

    One retry (after ~10 ms) covers a connection the pool held across a Redis restart; more
    would only delay the 503 a client gets while Redis is really down. Every command the
    backends send is idempotent, so retrying one is safe.
    """
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECS,
        socket_timeout=op_timeout_secs,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.05), retries=1),
        decode_responses=False,
    )


def redact(url: str) -> str:
    """The URL without a password, for error messages and logs."""
    scheme, sep, rest = url.partition("://")
    _creds, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{'***@' if at else ''}{host}" if sep else url


async def call(aw: Awaitable[T], url: str, what: str) -> T:
    """Await a Redis command; any Redis or socket failure becomes ``BackendUnavailable``.

    A task cancelled while the command was in flight raises ``CancelledError`` here even if
    the reply came back: ``asyncio.wait_for`` on Python 3.11, which redis-py uses, returns
    the result and drops the cancellation when both land in the same loop iteration
    (CPython gh-86296). Without this a cancelled lock waiter would go on retrying.
    """
    try:
        result = await aw
    except (RedisError, OSError) as exc:
        raise BackendUnavailable(
            BACKEND, f"{what} failed at {redact(url)}: {type(exc).__name__}: {exc}"
        ) from exc
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    return result
