"""Cache ``memory``: a bounded LRU with a ttl per entry, private to this process."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

BACKEND = "memory"


@dataclass
class MemoryCacheConfig:
    #: Entries kept at most; the least recently used one is dropped beyond this.
    max_entries: int = 10000

    def __post_init__(self) -> None:
        if self.max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {self.max_entries}")


class MemoryCache:
    name = BACKEND

    def __init__(self, config: MemoryCacheConfig) -> None:
        self.config = config
        # key -> (value, monotonic expiry or None)
        self._entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()

    async def open(self) -> None:
        return None

    async def health(self) -> None:
        return None

    async def aclose(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_secs: float | None = None) -> None:
        if ttl_secs is not None and ttl_secs <= 0:
            self._entries.pop(key, None)
            return
        expires = None if ttl_secs is None else time.monotonic() + ttl_secs
        self._entries[key] = (bytes(value), expires)
        self._entries.move_to_end(key)
        while len(self._entries) > self.config.max_entries:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)
