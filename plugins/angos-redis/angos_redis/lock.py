"""Lock provider ``redis``: mutual exclusion across every replica sharing one Redis.

Each ``acquire`` gets a fresh random token. Lua scripts keep every step atomic in Redis:

* acquire: all keys or none. The script refuses if any key is held under another token and
  otherwise sets every key to our token with the ttl. Taking a set of keys in one step means
  no holder ever sits on some keys while waiting for others, so there is no deadlock and
  nothing to back out of. A key already holding our own token counts as free, which makes a
  retried acquire (after a lost reply) harmless.
* renew: extend each key's ttl only where it still holds our token (compare-and-pexpire).
* release: delete each key only where it still holds our token (compare-and-delete), so a
  holder whose lock expired never frees a lock someone else has since taken.

While the ``async with`` block runs, a background task renews every ttl/3. If a renewal
fails or finds a key gone, the lease is marked lost and ``Lease.check()`` raises ``LockLost``;
core calls it before each commit. ``check()`` also refuses once the ttl measured from the last
successful acquire/renew has run out, which protects a holder whose renewals stalled.

When a command gets no answer (Redis hung or the network dropped the reply), the provider
cannot know whether Redis ran it, or will once it resumes. It then keeps releasing the keys
in the background until Redis has answered, so an acquire that was reported as failed does
not block a repository for a whole ttl after the outage.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from angos_core.errors import BackendUnavailable, LockLost, LockUnavailable
from angos_redis.client import BACKEND, call, make_client, redact
from angos_redis.config import RedisLockConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

_ACQUIRE = """
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder and holder ~= ARGV[1] then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return 0
"""

_RENEW = """
local held = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held = held + 1
  end
end
return held
"""

_RELEASE = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
"""

#: Pause between attempts to release keys an unanswered command may have taken.
_ORPHAN_TICK_SECS = 0.2
#: Such keys remembered at most (a long outage with many requests); the oldest go first.
_MAX_ORPHANS = 10_000


@dataclass
class _Orphan:
    keys: tuple[str, ...]
    answers: int = 0


#: Share of the ttl kept back for clock drift between us and Redis (as Redlock does).
_DRIFT_FACTOR = 0.01
_DRIFT_MIN_SECS = 0.002


class RedisLease:
    """A held set of keys. ``check()`` raises ``LockLost`` once they may no longer be ours."""

    def __init__(self, keys: tuple[str, ...], token: str, valid_until: float) -> None:
        self.keys = keys
        self.token = token
        self._valid_until = valid_until
        self._lost: str | None = None

    @property
    def lost(self) -> bool:
        return self._lost is not None or time.monotonic() >= self._valid_until

    def check(self) -> None:
        if self._lost is not None:
            raise LockLost(BACKEND, f"lock on {', '.join(self.keys)} lost: {self._lost}")
        if time.monotonic() >= self._valid_until:
            raise LockLost(
                BACKEND, f"lock on {', '.join(self.keys)} expired before it could be renewed"
            )

    def _extend(self, valid_until: float) -> None:
        self._valid_until = max(self._valid_until, valid_until)

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
            log.warning("redis lock on %s lost: %s", ", ".join(self.keys), reason)


class RedisLockProvider:
    """``[metadata_store.<store>.redis]``: see the module docstring for the protocol."""

    name = BACKEND

    def __init__(self, config: RedisLockConfig) -> None:
        self.config = config
        self._ttl_ms = max(1, int(config.ttl * 1000))
        self._client: aioredis.Redis | None = None
        self._acquire_script: AsyncScript | None = None
        self._renew_script: AsyncScript | None = None
        self._release_script: AsyncScript | None = None
        #: Keys an unanswered command may have taken (or may yet take), by token.
        self._orphans: dict[str, _Orphan] = {}
        self._releaser: asyncio.Task[None] | None = None
        #: Each command's own timeout (redis-py's socket timeout, one retry on top) and the
        #: hard deadline of a command, reconnection and retry included.
        self._op_timeout = min(2.0, config.ttl / 3)
        self._deadline = 2 * self._op_timeout
        #: Until when acquires fail at once: set when a command went unanswered for its
        #: whole timeout (Redis hung), cleared by any answer.
        self._fail_fast_until = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        # Fail at startup, naming Redis, rather than at the first push (a wrong url or
        # password would otherwise look like a Redis outage later).
        await call(self._connect().ping(), self.config.url, "PING at startup")

    def _connect(self) -> aioredis.Redis:
        if self._client is not None:
            return self._client
        # A command must come back well within the renewal interval, or the lease would run
        # out while we wait for it.
        client = make_client(self.config.url, op_timeout_secs=self._op_timeout)
        # Scripts go by EVALSHA and fall back to EVAL after a Redis restart emptied its cache.
        self._acquire_script = client.register_script(_ACQUIRE)
        self._renew_script = client.register_script(_RENEW)
        self._release_script = client.register_script(_RELEASE)
        self._client = client
        return client

    async def health(self) -> None:
        await call(self._connect().ping(), self.config.url, "PING")

    async def aclose(self) -> None:
        if self._releaser is not None:
            self._releaser.cancel()
            await asyncio.wait([self._releaser])
            self._releaser = None
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------------ locking

    def _redis_key(self, key: str) -> str:
        prefix = self.config.key_prefix
        return f"{prefix}:{key}" if prefix else key

    async def _command(self, aw: Awaitable[T], what: str) -> T:
        """One lock command, answered within ``_deadline`` or ``BackendUnavailable``.

        A command that went unanswered that long means Redis is hung, not refusing: the
        requests queued behind this one would each wait as long again, so for one command
        timeout acquires fail at once (any answer ends that early).
        """
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self._deadline):
                result = await call(aw, self.config.url, what)
        except TimeoutError as exc:
            self._fail_fast_until = time.monotonic() + self._op_timeout
            raise BackendUnavailable(
                BACKEND,
                f"{what} failed at {redact(self.config.url)}: no answer within {self._deadline:g}s",
            ) from exc
        except BackendUnavailable:
            if time.monotonic() - sent >= self._op_timeout:
                self._fail_fast_until = time.monotonic() + self._op_timeout
            raise
        self._fail_fast_until = 0.0
        return result

    def _check_answering(self, keys: tuple[str, ...]) -> None:
        if time.monotonic() < self._fail_fast_until:
            raise BackendUnavailable(
                BACKEND,
                f"acquiring lock {', '.join(keys)}: Redis at {redact(self.config.url)} "
                f"left a lock command unanswered for {self._deadline:g}s just now; "
                "not waiting for it again yet",
            )

    @asynccontextmanager
    async def acquire(self, keys: Sequence[str]) -> AsyncIterator[RedisLease]:
        self._connect()
        ordered = tuple(sorted({self._redis_key(k) for k in keys}))
        if not ordered:
            raise ValueError("acquire() needs at least one key")
        token = secrets.token_hex(16)
        lease = RedisLease(ordered, token, await self._take(ordered, token))
        renewer = asyncio.create_task(self._renew_while_held(lease), name="angos-redis-renew")
        try:
            yield lease
        finally:
            renewer.cancel()
            try:
                # wait() rather than awaiting the task: its CancelledError is not ours to raise.
                await asyncio.wait([renewer])
            finally:
                await self._release(lease)

    async def _take(self, keys: tuple[str, ...], token: str) -> float:
        """Hold every key under ``token``; return the monotonic time the hold is valid until."""
        assert self._acquire_script is not None
        retries = self.config.max_retries
        delay = self.config.retry_delay_ms / 1000
        began = time.monotonic()
        blocker = 0
        for attempt in range(retries + 1):
            self._check_answering(keys)
            sent = time.monotonic()
            try:
                blocker = int(
                    await self._command(
                        self._acquire_script(keys=keys, args=[token, self._ttl_ms]),
                        f"acquiring lock {', '.join(keys)}",
                    )
                )
            except BackendUnavailable:
                # The script may have run (or may yet run, on a Redis that hung) even though
                # we got no reply: free the keys once Redis answers again.
                self._release_later(keys, token)
                raise
            except asyncio.CancelledError:
                # The script may have run before the waiter was cancelled.
                await self._release_quietly(keys, token)
                raise
            if blocker == 0:
                return self._valid_until(sent)
            if attempt < retries:
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
        raise LockUnavailable(
            BACKEND,
            f"lock {keys[blocker - 1]!r} is held by another request; gave up after "
            f"{retries} retries ({time.monotonic() - began:.2f}s)",
        )

    def _valid_until(self, sent: float) -> float:
        ttl = self.config.ttl
        return sent + ttl - (ttl * _DRIFT_FACTOR + _DRIFT_MIN_SECS)

    async def _renew_while_held(self, lease: RedisLease) -> None:
        assert self._renew_script is not None
        interval = self.config.ttl / 3
        while True:
            await asyncio.sleep(interval)
            sent = time.monotonic()
            try:
                held = int(
                    await self._command(
                        self._renew_script(keys=lease.keys, args=[lease.token, self._ttl_ms]),
                        f"renewing lock {', '.join(lease.keys)}",
                    )
                )
            except BackendUnavailable as exc:
                lease._lose(f"renewal failed ({exc.message})")
                return
            if held != len(lease.keys):
                lease._lose("it expired and may be held by another request")
                return
            lease._extend(self._valid_until(sent))

    async def _release(self, lease: RedisLease) -> None:
        # A release that fails is not the request's failure: whatever it did is done, and the
        # keys expire by themselves after the ttl.
        await self._release_quietly(lease.keys, lease.token)

    async def _release_quietly(self, keys: tuple[str, ...], token: str) -> None:
        assert self._release_script is not None
        try:
            await self._command(
                self._release_script(keys=keys, args=[token]), f"releasing lock {', '.join(keys)}"
            )
        except BackendUnavailable as exc:
            log.warning(
                "could not release redis lock %s at %s (retrying; it expires after %ss): %s",
                ", ".join(keys),
                redact(self.config.url),
                self.config.ttl,
                exc.message,
            )
            self._release_later(keys, token)

    def _release_later(self, keys: tuple[str, ...], token: str) -> None:
        self._orphans[token] = _Orphan(keys)
        while len(self._orphans) > _MAX_ORPHANS:
            del self._orphans[next(iter(self._orphans))]  # the oldest; it expires by itself
        if self._releaser is None or self._releaser.done():
            self._releaser = asyncio.get_running_loop().create_task(
                self._release_orphans(), name="angos-redis-release"
            )

    async def _release_orphans(self) -> None:
        """Release unanswered keys until Redis has answered twice for each.

        A Redis that hung executes the commands it had received once it resumes, however
        long after, including an acquire whose reply we gave up on, possibly after a release
        sent meanwhile. Until Redis answers again we cannot know, so no deadline applies;
        the second answer comes a tick after the first, when whatever Redis had buffered has
        run. Release is compare-and-delete, so repeating it never frees anyone else's lock.
        """
        assert self._release_script is not None
        while self._orphans:
            await asyncio.sleep(_ORPHAN_TICK_SECS)
            for token, orphan in list(self._orphans.items()):
                try:
                    await self._command(
                        self._release_script(keys=orphan.keys, args=[token]),
                        f"releasing lock {', '.join(orphan.keys)}",
                    )
                except BackendUnavailable:
                    orphan.answers = 0
                    break  # still unreachable: one command in flight per tick is enough
                orphan.answers += 1
                if orphan.answers >= 2:
                    self._orphans.pop(token, None)
