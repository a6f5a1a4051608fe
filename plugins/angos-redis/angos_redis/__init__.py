"""Angos plugin ``angos-redis``: lock provider ``redis`` and cache ``redis``.

Several replicas sharing one store (a shared filesystem or an S3 bucket) coordinate through
one Redis: locks keep concurrent writes to a repository apart, and the cache is shared so a
write on one replica invalidates what every replica has cached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from angos_core.lazy import lazy_exports
from angos_redis.config import RedisCacheConfig, RedisLockConfig

if TYPE_CHECKING:
    from angos_redis.cache import RedisCache
    from angos_redis.lock import RedisLease, RedisLockProvider

__all__ = [
    "RedisCache",
    "RedisCacheConfig",
    "RedisLease",
    "RedisLockConfig",
    "RedisLockProvider",
]

# Loaded on first use, so that finding the plugin does not import redis-py.
__getattr__ = lazy_exports(
    __name__,
    {
        "RedisCache": "angos_redis.cache",
        "RedisLease": "angos_redis.lock",
        "RedisLockProvider": "angos_redis.lock",
    },
)
