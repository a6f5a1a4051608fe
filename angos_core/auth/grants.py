"""What an identity may do: the one place the rule lives.

Two questions, both asked here and nowhere else:

- :func:`token_grants`: what a token minted for an identity grants of the scopes it asked
  for (``GET /token?scope=...``);
- :func:`authorize`: whether an identity may make a request that needs ``needed``
  (:func:`angos_core.http.auth.request_access`).

Until access policies exist (the next issue extends both functions): an authenticated
identity may do everything, except that an identity whose credential carries grants (a
token's ``access`` claim, ``Identity.access``) may do only what they allow. A token minted
for such an identity grants at most those.

A token short of what a request needs is answered as Distribution does: 401 with the
challenge naming the scope it needs (``error="insufficient_scope"``), so the client fetches
a token for it; :data:`Verdict.DENY` (403 ``DENIED``) is for a caller whose credential is
enough but who may not (a policy's answer).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from angos_core.auth.scope import ALL, allows
from angos_core.identity import Access, Identity


class Verdict(enum.Enum):
    ALLOW = "allow"
    #: The credential's grants do not cover the request: 401 with the needed scope.
    INSUFFICIENT_SCOPE = "insufficient_scope"
    #: The caller may not: 403 DENIED.
    DENY = "deny"


def authorize(identity: Identity, needed: Sequence[Access]) -> Verdict:
    """Whether ``identity`` may make a request needing ``needed`` (empty: ``GET /v2/``)."""
    if identity.access is not None and not all(allows(identity.access, n) for n in needed):
        return Verdict.INSUFFICIENT_SCOPE
    return Verdict.ALLOW


def token_grants(identity: Identity, requested: Iterable[Access]) -> tuple[Access, ...]:
    """What a token for ``identity`` grants of ``requested``: every requested action, cut
    to ``identity.access`` when the identity is itself limited; one entry per resource,
    in the order first asked; resources left with no action are left out."""
    return narrow(requested, identity.access)


def narrow(requested: Iterable[Access], limit: Iterable[Access] | None) -> tuple[Access, ...]:
    """``requested``, each cut to the actions ``limit`` holds for its resource (``*`` holds
    every action); ``limit`` None: no limit."""
    held: dict[tuple[str, str], set[str]] | None = None
    if limit is not None:
        held = {}
        for grant in limit:
            held.setdefault((grant.type, grant.name), set()).update(grant.actions)
    merged: dict[tuple[str, str], set[str]] = {}
    for access in requested:
        actions = set(access.actions)
        if held is not None:
            have = held.get((access.type, access.name), set())
            if ALL in actions:
                actions = set(have)  # "everything" within the limit is the limit
            elif ALL not in have:
                actions &= have
        merged.setdefault((access.type, access.name), set()).update(actions)
    return tuple(
        Access(type_, name, frozenset(actions))
        for (type_, name), actions in merged.items()
        if actions
    )
