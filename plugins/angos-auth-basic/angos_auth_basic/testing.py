"""For tests (this package's and a registry's): cheap hashes and a counting verifier.

Never for production hashes: the costs here are the lowest each scheme allows, so that a
test hashes in milliseconds instead of a second.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cache

from angos_auth_basic.hashing import Cost, hash_password, verify_password

#: Argon2id and bcrypt at their lowest costs.
CHEAP_ARGON2 = Cost("argon2id", (64, 1, 1))
CHEAP_BCRYPT = Cost("bcrypt", (4,))


@cache
def cheap_argon2(password: str) -> str:
    return hash_password(password, cost=CHEAP_ARGON2)


@cache
def cheap_bcrypt(password: str) -> str:
    return hash_password(password, cost=CHEAP_BCRYPT)


@dataclass
class CountingVerify:
    """``verify_password`` that records each call: (hash, password, thread name)."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, password_hash: str, password: str) -> bool:
        with self.lock:
            self.calls.append((password_hash, password, threading.current_thread().name))
        return verify_password(password_hash, password)

    @property
    def count(self) -> int:
        return len(self.calls)
