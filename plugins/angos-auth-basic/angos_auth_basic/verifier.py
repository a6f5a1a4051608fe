"""Checking a username and password against a table of users, without paying a hash
verification on every request.

A verified credential is remembered for ``ttl_secs`` (60 s): per username, an HMAC-SHA256 of
(username, password) under a key drawn at random when the process starts, compared with
``hmac.compare_digest``. The cache holds no password and nothing a password can be tested
against offline. Only a successful verification is remembered, and only for the user record
it was verified against: a reload that changes or removes a user drops its entry, and an
entry of a replaced record never matches. Verifications of one credential running at the
same time (a client's parallel first requests) share one.

Verifications run on a small private thread pool (at most one thread per CPU): a flood of
wrong passwords queues there instead of taking the event loop, or the default pool the
storage backends use.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from angos_auth_basic.hashing import verify_password

#: How long a verified credential is remembered.
CACHE_TTL_SECS = 60.0
#: At most this many usernames remembered (least recently used dropped first).
CACHE_MAX_ENTRIES = 10_000

Verify = Callable[[str, str], bool]


@dataclass(frozen=True, slots=True, eq=False)
class User:
    """One username and its hash. Compared by identity: a reload keeps the record of a user
    whose hash did not change, and makes a new one for a user whose hash did."""

    username: str
    password_hash: str

    def __repr__(self) -> str:  # never the hash, wherever a record is printed
        return f"User({self.username!r})"


@dataclass(slots=True)
class _Entry:
    user: User
    digest: bytes
    expires_at: float


class CredentialCache:
    """Recently verified credentials, keyed by username, holding only an HMAC digest."""

    def __init__(
        self,
        ttl_secs: float = CACHE_TTL_SECS,
        max_entries: int = CACHE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_secs = ttl_secs
        self.max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def digest(self, username: str, password: str) -> bytes:
        name = username.encode("utf-8", "surrogatepass")
        # The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        message = len(name).to_bytes(4, "big") + name + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def hit(self, user: User, digest: bytes) -> bool:
        entry = self._entries.get(user.username)
        if entry is None:
            return False
        if entry.expires_at <= self._clock() or entry.user is not user:
            del self._entries[user.username]
            return False
        if not hmac.compare_digest(entry.digest, digest):
            return False  # a wrong password; the right one stays remembered
        self._entries.move_to_end(user.username)
        return True

    def remember(self, user: User, digest: bytes) -> None:
        self._entries[user.username] = _Entry(user, digest, self._clock() + self.ttl_secs)
        self._entries.move_to_end(user.username)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, usernames: Iterable[str]) -> None:
        for username in usernames:
            self._entries.pop(username, None)


class PasswordVerifier:
    """Verifies passwords in threads, remembering the successes in a :class:`CredentialCache`.

    ``verify(hash, password)`` is the hash check (:func:`verify_password`); tests pass a
    counting one.
    """

    def __init__(
        self,
        verify: Verify = verify_password,
        cache: CredentialCache | None = None,
        max_threads: int | None = None,
    ) -> None:
        self.verify = verify
        self.cache = cache if cache is not None else CredentialCache()
        self._max_threads = max_threads or max(1, min(4, os.cpu_count() or 1))
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: dict[tuple[bytes, User], asyncio.Future[bool]] = {}

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._max_threads, thread_name_prefix="angos-auth-basic"
            )
        return self._executor

    async def run(self, password_hash: str, password: str) -> bool:
        """One verification in the pool, nothing remembered (the dummy check of an unknown
        username)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), self.verify, password_hash, password)

    async def check(self, user: User, password: str) -> bool:
        """Whether ``password`` is ``user``'s: from the cache, else by a verification."""
        digest = self.cache.digest(user.username, password)
        if self.cache.hit(user, digest):
            return True
        key = (digest, user)
        future = self._inflight.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._pool(), self.verify, user.password_hash, password)
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._settled(key, done))
        # shield: one waiter going away (a client hanging up) must not cancel the
        # verification the others wait for.
        return await asyncio.shield(future)

    def _settled(self, key: tuple[bytes, User], future: asyncio.Future[bool]) -> None:
        del self._inflight[key]
        if not future.cancelled() and future.exception() is None and future.result():
            digest, user = key
            self.cache.remember(user, digest)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
