"""The Docker token's ``access`` claim, both ways.

A token grants a list of ``{"type", "name", "actions"}`` objects (Distribution's
``ResourceActions``; ``class`` is accepted and ignored). Parsing is strict: a token whose
``access`` is not that shape is refused rather than read as "no access" or "all access".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from angos_core.identity import Access

#: Bounds on what one token may carry: a token is attacker-supplied until verified, and
#: even a verified one should not cost more than a few grants to read.
MAX_GRANTS = 256
MAX_ACTIONS = 16


class AccessClaimInvalid(ValueError):
    """The ``access`` claim is not a list of resource actions."""


def format_access(grants: Iterable[Access]) -> list[dict[str, Any]]:
    """The ``access`` claim of ``grants`` (actions sorted: equal grants encode the same)."""
    return [
        {"type": grant.type, "name": grant.name, "actions": sorted(grant.actions)}
        for grant in grants
    ]


def parse_access(value: Any) -> tuple[Access, ...]:
    """The grants of an ``access`` claim; absent (None) is no grant at all."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise AccessClaimInvalid("the access claim is not a list")
    if len(value) > MAX_GRANTS:
        raise AccessClaimInvalid(f"the access claim holds more than {MAX_GRANTS} entries")
    grants = []
    for entry in value:
        if not isinstance(entry, dict):
            raise AccessClaimInvalid("an access entry is not an object")
        type_, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not (isinstance(type_, str) and type_ and isinstance(name, str) and name):
            raise AccessClaimInvalid("an access entry has no type or name")
        if actions is None:
            actions = []
        if not isinstance(actions, list) or len(actions) > MAX_ACTIONS:
            raise AccessClaimInvalid("an access entry's actions are not a short list")
        if not all(isinstance(action, str) and action for action in actions):
            raise AccessClaimInvalid("an access entry's actions are not all names")
        grants.append(Access(type_, name, frozenset(actions)))
    return tuple(grants)


def lifetime_problem(payload: dict[str, Any], now: float, leeway: float) -> str | None:
    """Why a token is not valid at ``now`` (``"expired"``, ``"not valid yet"``, or a missing
    or malformed ``exp``), else None. Checked here rather than by PyJWT so that minting and
    checking read one clock (an injected one in tests)."""
    exp, nbf = payload.get("exp"), payload.get("nbf")
    if not _is_number(exp):
        return "has no valid exp"
    if nbf is not None and not _is_number(nbf):
        return "has an invalid nbf"
    assert isinstance(exp, int | float)
    if now > exp + leeway:
        return "has expired"
    if isinstance(nbf, int | float) and now < nbf - leeway:
        return "is not valid yet"
    return None


def decode_options(*required: str) -> Any:
    """PyJWT ``decode`` options: ``required`` claims present, and none of PyJWT's own time
    checks (:func:`lifetime_problem` makes them on the caller's clock)."""
    return {
        "require": list(required),
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
