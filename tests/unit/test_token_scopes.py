"""Whether a token's ``access`` covers a request: the policy engine's one table
(angos_core.policy.actions.TOKEN_SCOPES), asked once per request. Its decisions are the ones
``angos_core.auth.grants.authorize`` made before it was folded in (the cases below), and
agree, for every route of the app, with the scope the 401 challenge asks for: a client that
fetches the token the challenge names is let through."""

from __future__ import annotations

import base64
import itertools
from pathlib import Path

from multidict import MultiDict

from angos_core.auth.scope import CATALOG, allows, repository_access
from angos_core.http.app import make_app_from_toml
from angos_core.identity import Access, Identity
from angos_core.policy import PolicyEngine, PolicyRequest, policy_request
from tests.support.auth import TEST_AUTH_PLUGIN

D = "sha256:" + "a" * 64
U = "3f2a7c1e-0000-4000-8000-000000000000"
ENGINE = PolicyEngine()  # no access policy: only the token's grants restrict


def access(name: str, *actions: str, type_: str = "repository") -> Access:
    return Access(type_, name, frozenset(actions))


def limited(*grants: Access) -> Identity:
    return Identity("alice", "alice", "token_service", "token", access=grants)


UNLIMITED = Identity("alice", "alice", "identity", "basic")


def decide(identity: Identity, method: str, route: str, query: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    params = {"name": "team/app", "reference": "v1", "digest": D, "uuid": U}
    wanted = policy_request(method, route, params, MultiDict(query or {}))
    assert wanted is not None
    return ENGINE.decide(identity, "127.0.0.1", wanted)


def test_an_identity_without_grants_may_do_everything() -> None:
    for method, route in [
        ("GET", "manifest"),
        ("PUT", "manifest"),
        ("DELETE", "blob"),
        ("POST", "uploads"),
        ("PATCH", "upload"),
        ("GET", "catalog"),
    ]:
        assert decide(UNLIMITED, method, route).allowed, (method, route)


def test_a_pull_grant_pulls_and_does_not_push_delete_or_list_the_catalog() -> None:
    puller = limited(access("team/app", "pull"))
    assert decide(puller, "GET", "manifest").allowed
    assert decide(puller, "HEAD", "blob").allowed
    assert decide(puller, "GET", "base").allowed  # GET /v2/
    for method, route in [
        ("POST", "uploads"),
        ("PUT", "manifest"),
        ("PATCH", "upload"),
        ("DELETE", "manifest"),
    ]:
        decision = decide(puller, method, route)
        assert not decision.allowed and decision.insufficient_scope, (method, route)
    other = ENGINE.decide(puller, "", PolicyRequest("get-manifest", "team/other", reference="v1"))
    assert other.insufficient_scope
    assert decide(puller, "GET", "catalog").insufficient_scope


def test_push_needs_pull_too_and_a_mount_needs_pull_on_its_source() -> None:
    assert decide(limited(access("team/app", "push")), "PUT", "manifest").insufficient_scope
    pusher = limited(access("team/app", "pull", "push"))
    assert decide(pusher, "PUT", "manifest").allowed
    mount = {"mount": D, "from": "lib/base"}
    assert decide(pusher, "POST", "uploads", mount).insufficient_scope
    both = limited(access("team/app", "pull", "push"), access("lib/base", "pull"))
    assert decide(both, "POST", "uploads", mount).allowed


def test_a_star_grant_is_every_action() -> None:
    everything = limited(access("team/app", "*"), access("catalog", "*", type_="registry"))
    for method, route in [("GET", "manifest"), ("PUT", "manifest"), ("DELETE", "manifest")]:
        assert decide(everything, method, route).allowed
    assert decide(everything, "GET", "catalog").allowed


def test_grants_split_over_entries_add_up() -> None:
    split = limited(access("team/app", "pull"), access("team/app", "push"))
    assert decide(split, "PUT", "manifest").allowed


def test_every_route_agrees_with_the_scope_the_challenge_asks_for(tmp_path: Path) -> None:
    secret = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    toml = (
        f'[blob_store.fs]\nroot_dir = "{tmp_path}"\n'
        '[auth.static.alice]\npassword = "x"\n'
        f'[auth.token_service]\nsecret_key = "{secret}"\n'
    )
    app = make_app_from_toml(toml, [TEST_AUTH_PLUGIN])
    params = {"name": "team/app", "reference": "v1", "digest": D, "uuid": U}
    grants = [
        access("team/app", *actions)
        for n in range(4)
        for actions in itertools.combinations(("pull", "push", "delete", "*"), n)
    ] + [access("lib/base", "pull"), access("catalog", "*", type_="registry")]
    checked = 0
    for route in app.router.routes():
        for query in ({}, {"mount": D, "from": "lib/base"}):
            wanted = policy_request(route.method, route.name, params, MultiDict(query))
            assert wanted is not None
            if wanted.namespace is not None:
                source = query.get("from") if wanted.action == "mount-blob" else None
                needed = repository_access(route.method, "team/app", source)
            elif wanted.action == "list-catalog":
                needed = (CATALOG,)
            else:
                needed = ()
            for held in itertools.combinations(grants, 2):
                token = limited(*held)
                expected = all(allows(held, n) for n in needed)
                decision = ENGINE.decide(token, "", wanted)
                assert decision.allowed is expected, (route.method, route.name, query, held)
                assert decision.insufficient_scope is (not expected)
                checked += 1
    assert checked > 1000
