"""The one rule of what an identity may do and what its tokens grant
(angos_core.auth.grants), before access policies."""

from __future__ import annotations

from angos_core.auth.grants import Verdict, authorize, narrow, token_grants
from angos_core.auth.scope import CATALOG, repository_access
from angos_core.identity import Access, Identity


def access(name: str, *actions: str, type_: str = "repository") -> Access:
    return Access(type_, name, frozenset(actions))


def limited(*grants: Access) -> Identity:
    return Identity("alice", "alice", "token_service", "token", access=grants)


UNLIMITED = Identity("alice", "alice", "identity", "basic")


def test_an_identity_without_grants_may_do_everything() -> None:
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        assert authorize(UNLIMITED, repository_access(method, "team/app")) is Verdict.ALLOW
    assert authorize(UNLIMITED, (CATALOG,)) is Verdict.ALLOW


def test_a_pull_grant_pulls_and_does_not_push_delete_or_list_the_catalog() -> None:
    puller = limited(access("team/app", "pull"))
    assert authorize(puller, repository_access("GET", "team/app")) is Verdict.ALLOW
    assert authorize(puller, repository_access("HEAD", "team/app")) is Verdict.ALLOW
    assert authorize(puller, ()) is Verdict.ALLOW  # GET /v2/
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        needed = repository_access(method, "team/app")
        assert authorize(puller, needed) is Verdict.INSUFFICIENT_SCOPE
    assert authorize(puller, repository_access("GET", "team/other")) is Verdict.INSUFFICIENT_SCOPE
    assert authorize(puller, (CATALOG,)) is Verdict.INSUFFICIENT_SCOPE


def test_push_needs_pull_too_and_a_mount_needs_pull_on_its_source() -> None:
    push_only = limited(access("team/app", "push"))
    assert authorize(push_only, repository_access("PUT", "team/app")) is Verdict.INSUFFICIENT_SCOPE
    pusher = limited(access("team/app", "pull", "push"))
    assert authorize(pusher, repository_access("PUT", "team/app")) is Verdict.ALLOW
    mount = repository_access("POST", "team/app", mount_from="lib/base")
    assert authorize(pusher, mount) is Verdict.INSUFFICIENT_SCOPE
    both = limited(access("team/app", "pull", "push"), access("lib/base", "pull"))
    assert authorize(both, mount) is Verdict.ALLOW


def test_a_star_grant_is_every_action() -> None:
    everything = limited(access("team/app", "*"), access("catalog", "*", type_="registry"))
    for method in ("GET", "PUT", "DELETE"):
        assert authorize(everything, repository_access(method, "team/app")) is Verdict.ALLOW
    assert authorize(everything, (CATALOG,)) is Verdict.ALLOW


def test_grants_split_over_entries_add_up() -> None:
    split = limited(access("team/app", "pull"), access("team/app", "push"))
    assert authorize(split, repository_access("PUT", "team/app")) is Verdict.ALLOW


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
