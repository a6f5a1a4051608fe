"""What a token minted for an identity grants: :func:`token_grants`, the token service's
one question (``GET /token?scope=...``).

Everything requested, cut to the identity's own grants when its credential is itself a
token (``Identity.access``). Whether a token's grants cover a request is the access policy
engine's question, asked once, against its table
(:data:`angos_core.policy.actions.TOKEN_SCOPES`).
"""

from __future__ import annotations

from collections.abc import Iterable

from angos_core.auth.scope import ALL
from angos_core.identity import Access, Identity


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
