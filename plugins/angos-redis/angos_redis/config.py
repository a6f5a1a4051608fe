"""The TOML tables of the lock provider and the cache."""

from __future__ import annotations

from dataclasses import dataclass, field

from angos_core.config import ByteSize

_SCHEMES = ("redis://", "rediss://", "unix://")


def _check_url(url: str) -> None:
    if not url.startswith(_SCHEMES):
        raise ValueError(
            f"url must start with one of {', '.join(_SCHEMES)} (e.g. redis://redis:6379), "
            f"got {url!r}"
        )


@dataclass
class RedisLockConfig:
    """``[metadata_store.<store>.redis]``."""

    url: str
    #: Seconds a lock lives unless renewed; holders renew it every ttl/3 while they work.
    ttl: float = 10.0
    key_prefix: str = "registry-locks"
    #: Attempts after the first before giving up with LockUnavailable.
    max_retries: int = 100
    #: Mean pause between attempts (jittered by +-50% so waiters do not move in step).
    retry_delay_ms: int = 10

    def __post_init__(self) -> None:
        _check_url(self.url)
        if self.ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {self.ttl}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries cannot be negative, got {self.max_retries}")
        if self.retry_delay_ms < 0:
            raise ValueError(f"retry_delay_ms cannot be negative, got {self.retry_delay_ms}")


@dataclass
class RedisCacheConfig:
    """``[cache.redis]``."""

    url: str
    key_prefix: str = "cache"
    #: Bytes the near cache of each process may hold (keys, values and their overhead);
    #: 0 turns it off and every read asks Redis.
    near_cache_size: ByteSize = field(default_factory=lambda: ByteSize(16 * 1024 * 1024))

    def __post_init__(self) -> None:
        _check_url(self.url)
        if self.near_cache_size < 0:
            raise ValueError(f"near_cache_size cannot be negative, got {self.near_cache_size}")
