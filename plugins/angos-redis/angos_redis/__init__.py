"""Angos plugin ``angos-redis``: lock provider ``redis`` and cache ``redis``.

Several replicas sharing one store (a shared filesystem or an S3 bucket) coordinate through
one Redis: locks keep concurrent writes to a repository apart, and the cache is shared so a
write on one replica invalidates what every replica has cached.
"""

from angos_redis.cache import RedisCache
from angos_redis.config import RedisCacheConfig, RedisLockConfig
from angos_redis.lock import RedisLease, RedisLockProvider

__all__ = [
    "RedisCache",
    "RedisCacheConfig",
    "RedisLease",
    "RedisLockConfig",
    "RedisLockProvider",
]
