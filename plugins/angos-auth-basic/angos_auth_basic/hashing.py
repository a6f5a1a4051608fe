"""Password hashes: which are accepted, making them, checking a password against one.

Accepted: Argon2id in its PHC string form (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``),
what ``angos hash-password`` prints, and bcrypt (``$2y$``, ``$2b$``, ``$2a$``), what
``htpasswd -B`` writes, so Distribution's htpasswd users bring their hashes as they are.

Both libraries compare the derived key in constant time. bcrypt reads only the first 72 bytes
of a password: a longer password never matches a bcrypt hash here (the bytes beyond would not
count), though it costs the same verification, so length is not told apart by time.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argon2

# argon2-cffi and bcrypt (with cffi, about 0.8 MiB resident) are imported where a hash is
# made, checked or its Argon2id parameters read: every process with this plugin installed
# imports this module (the config dataclasses validate with hash_problem), most configure
# no users.

#: bcrypt reads at most this many bytes of a password.
BCRYPT_MAX_PASSWORD_BYTES = 72
#: The cost ``angos hash-password --bcrypt`` uses (2^12 rounds), bcrypt's own default.
BCRYPT_DEFAULT_COST = 12
HASH_HINT = "make one with `angos hash-password` and paste its output"

# PHC string of Argon2id, version 1.3: base64 without padding for the salt and the hash.
_ARGON2ID = re.compile(
    r"\$argon2id\$v=19\$m=(\d{1,10}),t=(\d{1,10}),p=(\d{1,3})\$([A-Za-z0-9+/]{11,})\$([A-Za-z0-9+/]{6,})"
)
# Modular crypt format of bcrypt: cost, then 22 characters of salt and 31 of hash.
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")


@functools.cache
def _argon2_hasher() -> argon2.PasswordHasher:
    import argon2

    return argon2.PasswordHasher()


@dataclass(frozen=True, slots=True)
class Cost:
    """What a hash costs to verify: its scheme and parameters (a dummy hash of the same cost
    takes as long)."""

    scheme: str  # "argon2id" or "bcrypt"
    params: tuple[int, ...]  # argon2id: (memory_kib, time, parallelism); bcrypt: (cost,)


def hash_problem(encoded: str) -> str | None:
    """Why ``encoded`` is not an accepted hash, or None if it is. The message never repeats
    the value (it may be a password written where its hash belongs)."""
    if encoded.startswith("$argon2id$"):
        m = _ARGON2ID.fullmatch(encoded)
        if not m:
            return (
                "is not a well-formed Argon2id hash (expected "
                f"$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>); {HASH_HINT}"
            )
        import argon2.exceptions

        try:
            params = argon2.extract_parameters(encoded)
        except argon2.exceptions.InvalidHashError:
            return f"is not a well-formed Argon2id hash; {HASH_HINT}"
        if params.memory_cost < 8 * params.parallelism or params.time_cost < 1:
            return f"has Argon2id parameters no hasher produces; {HASH_HINT}"
        return None
    if encoded.startswith(("$argon2i$", "$argon2d$")):
        return f"is an Argon2i or Argon2d hash; only Argon2id is accepted: {HASH_HINT}"
    if encoded.startswith(("$2y$", "$2b$", "$2a$")):
        m = _BCRYPT.fullmatch(encoded)
        if not m:
            return f"is not a well-formed bcrypt hash ($2b$<cost>$<53 characters>); {HASH_HINT}"
        if not 4 <= int(m.group(1)) <= 31:
            return f"has a bcrypt cost outside 4..31; {HASH_HINT}"
        return None
    if encoded.startswith("$"):
        return (
            "is a hash of a scheme that is not accepted (only Argon2id $argon2id$ and bcrypt "
            f"$2y$/$2b$/$2a$ are); {HASH_HINT}"
        )
    return f"is not a password hash (a plaintext password?); store its hash: {HASH_HINT}"


def cost_of(encoded: str) -> Cost:
    """The cost of an accepted hash (``hash_problem`` returned None for it)."""
    if encoded.startswith("$argon2id$"):
        import argon2

        p = argon2.extract_parameters(encoded)
        return Cost("argon2id", (p.memory_cost, p.time_cost, p.parallelism))
    return Cost("bcrypt", (int(encoded[4:6]),))


def _password_bytes(password: str) -> bytes:
    # surrogatepass: whatever string a request's header decoded to, it encodes (and fails
    # to match) rather than raising.
    return password.encode("utf-8", "surrogatepass")


def hash_password(password: str, *, scheme: str = "argon2id", cost: Cost | None = None) -> str:
    """A new hash of ``password`` with a random salt: Argon2id with argon2-cffi's defaults
    (RFC 9106's low-memory choice: 64 MiB, 3 passes, 4 lanes), or bcrypt at cost 12.
    ``cost`` overrides the parameters (dummy hashes of a given cost)."""
    secret = _password_bytes(password)
    if cost is not None:
        scheme = cost.scheme
    if scheme == "argon2id":
        import argon2

        hasher = _argon2_hasher()
        if cost is not None:
            memory, time_cost, lanes = cost.params
            hasher = argon2.PasswordHasher(
                time_cost=time_cost, memory_cost=memory, parallelism=lanes
            )
        return hasher.hash(secret)
    if scheme == "bcrypt":
        if len(secret) > BCRYPT_MAX_PASSWORD_BYTES:
            raise ValueError(
                f"bcrypt reads only the first {BCRYPT_MAX_PASSWORD_BYTES} bytes of a password; "
                "use a shorter one, or Argon2id (without --bcrypt)"
            )
        import bcrypt

        rounds = cost.params[0] if cost is not None else BCRYPT_DEFAULT_COST
        return bcrypt.hashpw(secret, bcrypt.gensalt(rounds=rounds, prefix=b"2b")).decode()
    raise ValueError(f"unknown hash scheme {scheme!r}: argon2id or bcrypt")


def verify_password(encoded: str, password: str) -> bool:
    """Whether ``password`` matches the accepted hash ``encoded``. CPU-bound (tens to hundreds
    of milliseconds by design): call it in a thread, never on the event loop."""
    secret = _password_bytes(password)
    if encoded.startswith("$argon2id$"):
        import argon2.exceptions

        try:
            return _argon2_hasher().verify(encoded, secret)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
    import bcrypt

    try:
        matched = bcrypt.checkpw(secret[:BCRYPT_MAX_PASSWORD_BYTES], encoded.encode())
    except ValueError:
        return False
    return matched and len(secret) <= BCRYPT_MAX_PASSWORD_BYTES


def main_cost(hashes: Iterable[str]) -> Cost | None:
    """The cost most of ``hashes`` have (None for none)."""
    costs = Counter(cost_of(h) for h in hashes)
    return costs.most_common(1)[0][0] if costs else None


def dummy_hash(cost: Cost | None) -> str:
    """A hash of a random password at ``cost`` (None: Argon2id's defaults): what an unknown
    username is verified against, so that it takes as long as a wrong password. Slow like any
    hash: call it in a thread."""
    return hash_password(secrets.token_urlsafe(24), cost=cost)
