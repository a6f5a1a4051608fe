"""The Docker scope of a request: what it needs, as the token spec names it.

``repository:<name>:pull`` (GET, HEAD), ``repository:<name>:pull,push`` (POST, PUT, PATCH:
a push also reads, as Distribution asks), ``repository:<name>:delete`` (DELETE),
``registry:catalog:*`` (``GET /v2/_catalog``); a cross-repository mount
(``POST .../blobs/uploads/?mount=<digest>&from=<repo>``) also needs ``pull`` on ``<repo>``.
``GET /v2/`` needs nothing but an identity.

One place for the 401 challenge's ``scope``, the token service's grants and the access
policy's checks; no aiohttp here (:func:`angos_core.http.auth.request_access` adapts a
request).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from angos_core.identity import Access

PULL = "pull"
PUSH = "push"
DELETE = "delete"
ALL = "*"

CATALOG = Access("registry", "catalog", frozenset({ALL}))

_ACTIONS_OF_METHOD: dict[str, frozenset[str]] = {
    "GET": frozenset({PULL}),
    "HEAD": frozenset({PULL}),
    "POST": frozenset({PULL, PUSH}),
    "PUT": frozenset({PULL, PUSH}),
    "PATCH": frozenset({PULL, PUSH}),
    "DELETE": frozenset({DELETE}),
}


def repository_access(
    method: str, repository: str, mount_from: str | None = None
) -> tuple[Access, ...]:
    """What ``method`` on ``repository`` needs (``mount_from``: the ``from`` of a mount)."""
    actions = _ACTIONS_OF_METHOD.get(method.upper(), frozenset({PULL, PUSH, DELETE}))
    needed = [Access("repository", repository, actions)]
    if mount_from and mount_from != repository:
        needed.append(Access("repository", mount_from, frozenset({PULL})))
    return tuple(needed)


def format_scope(access: Access) -> str:
    """``repository:team/app:pull,push`` (actions sorted, so equal grants read the same)."""
    return f"{access.type}:{access.name}:{','.join(sorted(access.actions))}"


def format_scopes(needed: Iterable[Access]) -> str:
    """The challenge's ``scope`` value: scopes separated by a space (Distribution's form)."""
    return " ".join(format_scope(access) for access in needed)


def parse_scope(text: str) -> Access:
    """One scope as a client asks for it (``GET /token?scope=repository:team/app:pull,push``).

    The name may hold ``:`` (a registry host with a port), so the type is before the first
    ``:`` and the actions after the last. Raises ``ValueError`` naming what is wrong.
    """
    type_, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and type_ and name and actions):
        raise ValueError(
            f"invalid scope {text!r}: expected <type>:<name>:<actions>, e.g. "
            "repository:team/app:pull,push"
        )
    parsed = frozenset(a for a in actions.split(",") if a)
    if not parsed:
        raise ValueError(f"invalid scope {text!r}: no action")
    return Access(type_, name, parsed)


def allows(grants: Sequence[Access], needed: Access) -> bool:
    """Whether ``grants`` (a token's ``access`` claim) cover ``needed``: a grant for the same
    type and name holding every needed action, or ``*``."""
    held: set[str] = set()
    for grant in grants:
        if grant.type == needed.type and grant.name == needed.name:
            held |= grant.actions
    return ALL in held or needed.actions <= held
