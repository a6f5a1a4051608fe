"""The request -> action mapping and the token scopes each action needs."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from multidict import MultiDict

from angos_core.http.app import make_app_from_toml
from angos_core.identity import Access
from angos_core.policy import ACTIONS, TOKEN_SCOPES, PolicyRequest, policy_request
from angos_core.policy.actions import token_permits
from tests.support.auth import TEST_AUTH_PLUGIN

D = "sha256:" + "a" * 64
U = "3f2a7c1e-0000-4000-8000-000000000000"

#: (method, route name, path parameters, query) -> the request, written out by hand.
CASES: list[tuple[str, str, dict[str, str], list[tuple[str, str]], PolicyRequest]] = [
    ("GET", "base", {}, [], PolicyRequest("get-api-version")),
    ("HEAD", "base-bare", {}, [], PolicyRequest("get-api-version")),
    ("POST", "uploads", {"name": "a/b"}, [], PolicyRequest("start-upload", "a/b")),
    (
        "POST",
        "uploads-bare",
        {"name": "a/b"},
        [("digest", D)],
        PolicyRequest("start-upload", "a/b", digest=D),
    ),
    (
        "POST",
        "uploads",
        {"name": "a/b"},
        [("mount", D), ("from", "c/d")],
        PolicyRequest("mount-blob", "a/b", digest=D, from_="c/d"),
    ),
    # A mount without ``from`` is a plain upload (the handler falls back to one).
    ("POST", "uploads", {"name": "a/b"}, [("mount", D)], PolicyRequest("start-upload", "a/b")),
    (
        "PATCH",
        "upload",
        {"name": "a/b", "uuid": U},
        [],
        PolicyRequest("update-upload", "a/b", uuid=U),
    ),
    (
        "PUT",
        "upload",
        {"name": "a/b", "uuid": U},
        [("digest", D)],
        PolicyRequest("complete-upload", "a/b", digest=D, uuid=U),
    ),
    ("GET", "upload", {"name": "a/b", "uuid": U}, [], PolicyRequest("get-upload", "a/b", uuid=U)),
    (
        "DELETE",
        "upload",
        {"name": "a/b", "uuid": U},
        [],
        PolicyRequest("cancel-upload", "a/b", uuid=U),
    ),
    ("GET", "blob", {"name": "a/b", "digest": D}, [], PolicyRequest("get-blob", "a/b", digest=D)),
    ("HEAD", "blob", {"name": "a/b", "digest": D}, [], PolicyRequest("get-blob", "a/b", digest=D)),
    (
        "DELETE",
        "blob",
        {"name": "a/b", "digest": D},
        [],
        PolicyRequest("delete-blob", "a/b", digest=D),
    ),
    (
        "PUT",
        "manifest",
        {"name": "a/b", "reference": "v1"},
        [],
        PolicyRequest("put-manifest", "a/b", tags=("v1",)),
    ),
    (
        "PUT",
        "manifest",
        {"name": "a/b", "reference": D},
        [("tag", "v1"), ("tag", "latest")],
        PolicyRequest("put-manifest", "a/b", digest=D, tags=("v1", "latest")),
    ),
    (
        "PUT",
        "manifest",
        {"name": "a/b", "reference": D},
        [],
        PolicyRequest("put-manifest", "a/b", digest=D, tags=()),
    ),
    (
        "GET",
        "manifest",
        {"name": "a/b", "reference": "v1"},
        [],
        PolicyRequest("get-manifest", "a/b", reference="v1"),
    ),
    (
        "HEAD",
        "manifest",
        {"name": "a/b", "reference": D},
        [],
        PolicyRequest("get-manifest", "a/b", reference=D),
    ),
    (
        "DELETE",
        "manifest",
        {"name": "a/b", "reference": "v1"},
        [],
        PolicyRequest("delete-manifest", "a/b", reference="v1"),
    ),
    (
        "GET",
        "referrers",
        {"name": "a/b", "digest": D},
        [("artifactType", "x")],
        PolicyRequest("get-referrers", "a/b", digest=D),
    ),
    ("GET", "catalog", {}, [("n", "10")], PolicyRequest("list-catalog")),
    ("GET", "tags", {"name": "a/b"}, [], PolicyRequest("list-tags", "a/b")),
    ("GET", "token", {}, [("scope", "repository:a/b:pull")], PolicyRequest("get-token")),
    ("POST", "token", {}, [], PolicyRequest("get-token")),
    ("POST", "token-post", {}, [], PolicyRequest("get-token")),
    ("GET", "healthz", {}, [], PolicyRequest("healthz")),
    ("GET", "readyz", {}, [("write", "1")], PolicyRequest("readyz")),
    ("GET", "metrics", {}, [], PolicyRequest("metrics")),
]


@pytest.mark.parametrize(("method", "route", "match", "query", "expected"), CASES)
def test_policy_request(
    method: str,
    route: str,
    match: dict[str, str],
    query: list[tuple[str, str]],
    expected: PolicyRequest,
) -> None:
    assert policy_request(method, route, match, MultiDict(query)) == expected


def test_every_action_has_a_request() -> None:
    assert {case[4].action for case in CASES} == set(ACTIONS)
    assert len(ACTIONS) == 19


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("POST", "manifest"),
        ("PATCH", "blob"),
        ("PUT", "catalog"),
        ("GET", "nonexistent"),
        ("GET", None),
    ],
)
def test_no_action_for_what_the_router_refuses(method: str, route: str | None) -> None:
    assert policy_request(method, route, {"name": "a", "reference": "v1"}, MultiDict()) is None


def test_every_route_of_the_app_maps_to_an_action(tmp_path: Any) -> None:
    secret = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    toml = (
        f'[blob_store.fs]\nroot_dir = "{tmp_path}"\n'
        '[auth.static.alice]\npassword = "x"\n'
        f'[auth.token_service]\nsecret_key = "{secret}"\n'
    )
    app = make_app_from_toml(toml, [TEST_AUTH_PLUGIN])
    params = {"name": "a/b", "reference": "v1", "digest": D, "uuid": U}
    seen = set()
    for route in app.router.routes():
        assert route.name, f"unnamed route {route.method} {route.resource}"
        request = policy_request(route.method, route.name, params, MultiDict())
        assert request is not None, f"{route.method} {route.name} maps to no action"
        seen.add(request.action)
    # A mount is a query of the upload route's POST; every other action is a route.
    assert set(ACTIONS) - seen == {"mount-blob"}


def test_the_token_scope_table() -> None:
    for action in ("get-blob", "get-manifest", "get-referrers", "list-tags", "get-upload"):
        assert TOKEN_SCOPES[action] == {"pull"}, action
    for action in ("start-upload", "mount-blob", "update-upload", "complete-upload"):
        assert TOKEN_SCOPES[action] == {"pull", "push"}, action
    assert TOKEN_SCOPES["put-manifest"] == {"pull", "push"}
    for action in ("delete-blob", "delete-manifest", "cancel-upload"):
        assert TOKEN_SCOPES[action] == {"delete"}, action
    assert set(TOKEN_SCOPES) | {"list-catalog", "get-api-version", "get-token"} | {
        "healthz",
        "readyz",
        "metrics",
    } == set(ACTIONS)


def test_token_permits_is_per_repository() -> None:
    access = (
        Access("repository", "a/b", frozenset({"pull", "push"})),
        Access("repository", "c", frozenset({"delete"})),
        Access("registry", "catalog", frozenset({"*"})),
    )
    assert token_permits(access, PolicyRequest("put-manifest", "a/b", tags=("v1",)))
    assert not token_permits(access, PolicyRequest("put-manifest", "c", tags=("v1",)))
    assert token_permits(access, PolicyRequest("delete-manifest", "c", reference="v1"))
    assert not token_permits(access, PolicyRequest("get-manifest", "a", reference="v1"))
    assert token_permits(access, PolicyRequest("list-catalog"))
    assert not token_permits(access[:1], PolicyRequest("list-catalog"))
    assert token_permits((), PolicyRequest("healthz"))
    assert not token_permits((), PolicyRequest("get-blob", "a/b"))
