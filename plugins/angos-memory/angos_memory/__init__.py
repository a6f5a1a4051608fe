"""Angos in-process backends: lock provider ``memory`` and cache ``memory``."""

from angos_memory.cache import MemoryCache, MemoryCacheConfig
from angos_memory.lock import LockTable, MemoryLockConfig, MemoryLockProvider

__all__ = [
    "LockTable",
    "MemoryCache",
    "MemoryCacheConfig",
    "MemoryLockConfig",
    "MemoryLockProvider",
]
