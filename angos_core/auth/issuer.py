"""The token issuer a Bearer challenge points at.

An authenticator that also satisfies :class:`TokenIssuer` (the registry's own token
service, an external token server Angos trusts) turns the 401 challenge from
``Basic realm="angos"`` into ``Bearer realm=...,service=...,scope=...``: core asks the first
such authenticator of the chain (lowest ``order``) for the challenge of each request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from angos_core.auth.scope import format_scopes
from angos_core.identity import Access

BASIC_CHALLENGE = 'Basic realm="angos"'


@runtime_checkable
class TokenIssuer(Protocol):
    """Where clients get a token: ``realm`` is the token endpoint's URL, ``service`` the
    name tokens are issued for (their ``aud``). An empty ``realm`` is the registry's own
    token endpoint at the request's ``<scheme>://<host>/token``: core builds that challenge
    itself (:func:`angos_core.http.auth.challenge`)."""

    realm: str
    service: str

    def challenge(self, needed: Sequence[Access]) -> str:
        """The ``WWW-Authenticate`` value for a request that needs ``needed`` (empty for
        ``GET /v2/``): usually ``bearer_challenge(self.realm, self.service, needed)``."""


def _quoted(value: str) -> str:
    # A quoted-string (RFC 9110): backslash-escape what would end it.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bearer_challenge(realm: str, service: str, needed: Sequence[Access] = ()) -> str:
    """``Bearer realm="...",service="...",scope="repository:team/app:pull,push"`` (no
    ``scope`` when nothing is needed), as the Docker token spec writes it."""
    parts = [f"realm={_quoted(realm)}", f"service={_quoted(service)}"]
    if needed:
        parts.append(f"scope={_quoted(format_scopes(needed))}")
    return "Bearer " + ",".join(parts)
