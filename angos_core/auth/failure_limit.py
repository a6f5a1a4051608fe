"""Repeated authentication failures from one (client address, username): 429.

A fixed window per pair: the first failure opens it, ``max_failures`` failures within
``window_secs`` close the pair until the window ends (its credentials are not even checked,
so a password guesser costs nothing). Nothing sleeps: other pairs are never slowed. The
table is an LRU bounded by ``max_tracked``; usernames are kept as a 16-byte digest, so its
memory is bounded whatever clients send. Per process: with ``--workers N`` each worker
counts its own connections' failures.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from angos_core.auth.config import FailureLimitConfig

Key = tuple[str, bytes]


@dataclass(slots=True)
class _Window:
    started: float
    failures: int


class FailureLimiter:
    def __init__(
        self, config: FailureLimitConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_failures = config.max_failures
        self.window_secs = config.window_secs
        self.max_tracked = config.max_tracked
        self._clock = clock
        self._windows: OrderedDict[Key, _Window] = OrderedDict()

    @staticmethod
    def key(client_ip: str, username: str) -> Key:
        return client_ip, hashlib.blake2b(username.encode(), digest_size=16).digest()

    def __len__(self) -> int:
        return len(self._windows)

    def retry_after(self, key: Key) -> int | None:
        """Whole seconds until ``key`` may try again, or None if it may now."""
        if not self.max_failures:
            return None
        window = self._windows.get(key)
        if window is None:
            return None
        left = window.started + self.window_secs - self._clock()
        if left <= 0:
            del self._windows[key]
            return None
        if window.failures < self.max_failures:
            return None
        return max(1, math.ceil(left))

    def failed(self, key: Key) -> None:
        if not self.max_failures:
            return
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now >= window.started + self.window_secs:
            self._windows[key] = _Window(now, 1)
        else:
            window.failures += 1
        self._windows.move_to_end(key)
        while len(self._windows) > self.max_tracked:
            self._windows.popitem(last=False)

    def succeeded(self, key: Key) -> None:
        self._windows.pop(key, None)
