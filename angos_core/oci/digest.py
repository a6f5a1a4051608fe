"""Digests: parsing, validation and streaming hashers for sha256 and sha512."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from angos_core.errors import DigestInvalid

#: Algorithms the registry accepts, with the hex length of their encoded part.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

# The spec's grammar is wider (algorithm-component/separators); we accept the registered
# algorithms only, whose encoded part is lowercase hex of a fixed length.
# Always used with fullmatch: "$" would also match before a final "\n".
_DIGEST_RE = re.compile(r"(?P<alg>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<hex>[a-zA-Z0-9=_-]+)")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse_digest(value: str) -> Digest:
    """Parse ``alg:hex``; raise ``DigestInvalid`` for anything else (never touches a path)."""
    m = _DIGEST_RE.fullmatch(value or "")
    if not m:
        raise DigestInvalid(f"invalid digest {value!r}", detail={"digest": value})
    alg, hexpart = m.group("alg"), m.group("hex")
    if alg not in ALGORITHMS:
        raise DigestInvalid(
            f"unsupported digest algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}",
            detail={"digest": value},
        )
    if len(hexpart) != ALGORITHMS[alg] or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise DigestInvalid(f"invalid {alg} digest {value!r}", detail={"digest": value})
    return Digest(alg, hexpart)


#: Exactly what :func:`parse_digest` accepts, in one match: the tag list checks a page of
#: links at a time.
_VALID_RE = re.compile("|".join(f"{alg}:[0-9a-f]{{{n}}}" for alg, n in ALGORITHMS.items()))


def is_digest(value: str) -> bool:
    return _VALID_RE.fullmatch(value) is not None


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
