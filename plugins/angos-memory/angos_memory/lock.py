"""Lock provider ``memory``: mutual exclusion between the tasks of one process.

Same settings and semantics as the ``redis`` provider (ttl, owner token, renewal, bounded
retries), so a single-instance registry behaves exactly like a replicated one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from angos_core.errors import LockLost, LockUnavailable

BACKEND = "memory"


@dataclass
class MemoryLockConfig:
    #: Seconds a lock stays held without renewal; renewed every ttl/3 while held.
    ttl: float = 10.0
    #: Give up (``LockUnavailable``) after ``max_retries`` waits of ``retry_delay_ms``.
    max_retries: int = 100
    #: Milliseconds between attempts (a release in this process wakes waiters sooner).
    retry_delay_ms: int = 10

    def __post_init__(self) -> None:
        if self.ttl <= 0:
            raise ValueError(f"ttl must be positive, got {self.ttl}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries cannot be negative, got {self.max_retries}")
        if self.retry_delay_ms < 0:
            raise ValueError(f"retry_delay_ms cannot be negative, got {self.retry_delay_ms}")


class LockTable:
    """Who holds which key until when. Thread-safe; usable from several event loops."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held: dict[str, tuple[str, float]] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def try_take(self, key: str, token: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._mutex:
            held = self._held.get(key)
            if held is not None and held[1] > now and held[0] != token:
                return False
            self._held[key] = (token, now + ttl)
            return True

    def renew(self, key: str, token: str, ttl: float) -> bool:
        """Extend the key's expiry if ``token`` still holds it and it has not expired."""
        now = time.monotonic()
        with self._mutex:
            held = self._held.get(key)
            if held is None or held[0] != token or held[1] <= now:
                return False
            self._held[key] = (token, now + ttl)
            return True

    def holds(self, key: str, token: str) -> bool:
        with self._mutex:
            held = self._held.get(key)
            return held is not None and held[0] == token and held[1] > time.monotonic()

    def release(self, key: str, token: str) -> None:
        """Release ``key`` if ``token`` holds it (expired or not); wake its waiters."""
        with self._mutex:
            held = self._held.get(key)
            if held is None or held[0] != token:
                return
            del self._held[key]
            waiters = self._waiters.pop(key, set())
        for fut in waiters:
            with contextlib.suppress(RuntimeError):  # that waiter's loop is closed
                fut.get_loop().call_soon_threadsafe(_wake, fut)

    def add_waiter(self, key: str, fut: asyncio.Future[None]) -> None:
        with self._mutex:
            self._waiters.setdefault(key, set()).add(fut)

    def remove_waiter(self, key: str, fut: asyncio.Future[None]) -> None:
        with self._mutex:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(fut)
                if not waiters:
                    del self._waiters[key]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class MemoryLease:
    def __init__(self, table: LockTable, keys: list[str], token: str, ttl: float) -> None:
        self._table = table
        self.keys = keys
        self.token = token
        self.ttl = ttl
        self._lost = False

    def check(self) -> None:
        if self._lost or not all(self._table.holds(k, self.token) for k in self.keys):
            self._lost = True
            raise LockLost(BACKEND, f"lock on {', '.join(self.keys)} expired or was taken")

    def renew(self) -> bool:
        if self._lost:
            return False
        ok = all(self._table.renew(k, self.token, self.ttl) for k in self.keys)
        if not ok:
            self._lost = True
        return ok


class MemoryLockProvider:
    name = BACKEND

    def __init__(self, config: MemoryLockConfig, table: LockTable | None = None) -> None:
        self.config = config
        #: Providers sharing one table exclude each other (each built alone gets its own).
        self.table = table if table is not None else LockTable()

    async def open(self) -> None:
        return None

    async def health(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    @contextlib.asynccontextmanager
    async def acquire(self, keys: Sequence[str]) -> AsyncIterator[MemoryLease]:
        ordered = sorted(set(keys))
        token = secrets.token_hex(16)
        ttl = self.config.ttl
        lease = MemoryLease(self.table, ordered, token, ttl)
        taken: list[str] = []
        try:
            await self._take_all(ordered, token, taken)
            renewal = asyncio.create_task(self._renew(lease), name=f"lock-renewal:{ordered}")
            try:
                yield lease
            finally:
                renewal.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewal
        finally:
            for key in reversed(taken):
                self.table.release(key, token)

    async def _take_all(self, keys: list[str], token: str, taken: list[str]) -> None:
        # Keys are taken one by one in sorted order, holding the earlier ones, so two holders
        # of overlapping key sets never wait on each other in a cycle.
        delay = max(self.config.retry_delay_ms, 1) / 1000
        deadline = time.monotonic() + self.config.max_retries * delay
        loop = asyncio.get_running_loop()
        for key in keys:
            while not self.table.try_take(key, token, self.config.ttl):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LockUnavailable(
                        BACKEND,
                        f"lock on {key!r} still held by another holder after "
                        f"{self.config.max_retries} retries of {self.config.retry_delay_ms} ms",
                    )
                fut: asyncio.Future[None] = loop.create_future()
                self.table.add_waiter(key, fut)
                try:
                    await asyncio.wait_for(fut, timeout=min(delay, remaining))
                except TimeoutError:
                    pass
                finally:
                    self.table.remove_waiter(key, fut)
            taken.append(key)

    async def _renew(self, lease: MemoryLease) -> None:
        interval = lease.ttl / 3
        while True:
            await asyncio.sleep(interval)
            if not lease.renew():
                return
