"""What a token minted for an identity grants (angos_core.auth.grants). Whether a token
covers a request is the policy engine's: tests/unit/test_token_scopes.py."""

from __future__ import annotations

from angos_core.auth.grants import narrow, token_grants
from angos_core.identity import Access, Identity


def access(name: str, *actions: str, type_: str = "repository") -> Access:
    return Access(type_, name, frozenset(actions))


def limited(*grants: Access) -> Identity:
    return Identity("alice", "alice", "token_service", "token", access=grants)


UNLIMITED = Identity("alice", "alice", "identity", "basic")


def test_an_unlimited_identity_gets_every_requested_action_merged() -> None:
    requested = [access("team/app", "pull"), access("team/app", "push"), access("x", "delete")]
    assert token_grants(UNLIMITED, requested) == (
        access("team/app", "pull", "push"),
        access("x", "delete"),
    )
    assert token_grants(UNLIMITED, []) == ()


def test_a_limited_identity_gets_at_most_its_grants() -> None:
    puller = limited(access("team/app", "pull"), access("lib/base", "*"))
    requested = [
        access("team/app", "pull", "push"),
        access("lib/base", "push"),
        access("y", "pull"),
    ]
    assert token_grants(puller, requested) == (
        access("team/app", "pull"),
        access("lib/base", "push"),
    )
    # Asking for everything within a limit is the limit.
    assert narrow([access("team/app", "*")], [access("team/app", "pull")]) == (
        access("team/app", "pull"),
    )
    assert narrow([access("team/app", "push")], []) == ()
