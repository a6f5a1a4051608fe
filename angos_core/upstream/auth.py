"""Authenticating to an upstream: Basic, or the Docker token flow.

The token flow (distribution's ``docs/spec/auth/token.md``): a request answered 401 with
``WWW-Authenticate: Bearer realm="...",service="...",scope="..."`` is repeated with a token
fetched from the realm for that service and scope, with the upstream's Basic credentials if
it has any. Tokens are kept per scope until shortly before they expire.

No secret (password, token) ever reaches a log line or an error message: errors name the
upstream's URL and the realm only.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass

#: A token is dropped this long before its stated expiry, so none expires in flight.
EXPIRY_MARGIN_SECS = 10.0
#: The spec's default lifetime when the token service states none.
DEFAULT_TOKEN_SECS = 60.0

_PARAM_RE = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header, or None if unreadable."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), params)


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float


class TokenCache:
    """Bearer tokens by scope, each until shortly before it expires."""

    def __init__(self) -> None:
        self._tokens: dict[str, _Token] = {}

    def get(self, scope: str) -> str | None:
        token = self._tokens.get(scope)
        if token is None:
            return None
        if time.monotonic() >= token.expires_at:
            del self._tokens[scope]
            return None
        return token.value

    def put(self, scope: str, value: str, expires_in: float | None) -> None:
        lifetime = expires_in if expires_in and expires_in > 0 else DEFAULT_TOKEN_SECS
        self._tokens[scope] = _Token(
            value, time.monotonic() + max(lifetime - EXPIRY_MARGIN_SECS, 1.0)
        )

    def forget(self, scope: str) -> None:
        self._tokens.pop(scope, None)
