"""What a token minted for an identity grants: :func:`token_grants`, the token service's
one question (``GET /token?scope=...``).

Everything requested, cut to the identity's own grants when its credential is itself a
token (``Identity.access``). Whether a token's grants cover a request is the access policy
engine's question, asked once, against its table
(:data:`angos_core.policy.actions.TOKEN_SCOPES`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from angos_core.auth.scope import ALL, DELETE, PULL, PUSH
from angos_core.identity import Access, Identity
from angos_core.policy.actions import (
    DELETE_MANIFEST,
    GET_MANIFEST,
    LIST_CATALOG,
    PUT_MANIFEST,
    PolicyRequest,
)

if TYPE_CHECKING:
    from angos_core.policy import PolicyEngine

#: The request a token action is asked as when deciding what a caller with no credentials
#: is granted: the one it most stands for (a docker pull's first request, a push's last).
ANONYMOUS_PROBES = {PULL: GET_MANIFEST, PUSH: PUT_MANIFEST, DELETE: DELETE_MANIFEST}


def token_grants(identity: Identity, requested: Iterable[Access]) -> tuple[Access, ...]:
    """What a token for ``identity`` grants of ``requested``: every requested action, cut
    to ``identity.access`` when the identity is itself limited; one entry per resource,
    in the order first asked; resources left with no action are left out."""
    return narrow(requested, identity.access)


def anonymous_grants(
    policy: PolicyEngine, client_ip: str, requested: Iterable[Access]
) -> tuple[Access, ...]:
    """What a token for a caller with no credentials grants: ``requested`` (merged) if the
    access policy allows an anonymous caller from ``client_ip`` every action of it, each
    asked as :data:`ANONYMOUS_PROBES` says; else nothing, and the caller is asked to log in
    (a docker push without login then fails at once, "authentication required", rather
    than being retried on a token that cannot push). Nothing without an access policy
    either: authentication is on, so an anonymous caller may do nothing. A request made
    with the token is decided as an anonymous one (``identity.ANONYMOUS``)."""
    if not policy.configured:
        return ()
    wanted = narrow(requested, None)
    for access in wanted:
        if access.type == "registry" and access.name == "catalog":
            probes = [PolicyRequest(LIST_CATALOG)]
        elif access.type == "repository":
            actions = set(ANONYMOUS_PROBES) if ALL in access.actions else set(access.actions)
            if not actions <= set(ANONYMOUS_PROBES):
                return ()
            probes = [PolicyRequest(ANONYMOUS_PROBES[a], access.name) for a in sorted(actions)]
        else:
            return ()
        if not all(policy.decide(None, client_ip, probe).allowed for probe in probes):
            return ()
    return wanted


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
