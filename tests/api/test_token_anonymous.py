"""Anonymous tokens: with the token service and an access policy that lets anyone pull
``public/...``, a client with no credentials (docker before ``docker login``) gets a token
for that pull, and the token lets it do no more than an anonymous request may.

Attacks: an anonymous token asked for push, for a private repository, for the catalog;
used to push, to pull elsewhere, to delete; one forged with another key; many of them from
one address (not failures: the failure limit must not lock the address out).
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from angos_auth_token.service import ACCESS_TYPE, ISSUER

from tests.api.test_token_service import (
    PASSWORD,
    SECRET,
    basic,
    bearer,
    challenge_params,
    get_token,
    push,
)
from tests.support.api import Api
from tests.support.auth import TEST_AUTH_PLUGIN
from tests.support.storage import Storage

pytestmark = pytest.mark.shapes("fs")  # authentication, not storage, is under test

PUBLIC, PRIVATE = "public/base", "team/app"

POLICY_TOML = f"""
[auth.static.alice]
password = "{PASSWORD}"

[auth.token_service]
secret_key = "{SECRET}"

[auth.failure_limit]
max_failures = 3
window_secs = 60

[global.access_policy]
default = "deny"
rules = [
  "request.action == 'get-token'",
  "identity.username != null && request.action == 'get-api-version'",
  "identity.username == 'alice'",
  '''has(request.namespace) && request.namespace.startsWith('public/') &&
     request.action in ['get-manifest', 'get-blob', 'get-referrers', 'list-tags']''',
]
"""


@pytest.fixture
async def api(storage: Storage) -> AsyncIterator[Api]:
    async with storage.open_api(POLICY_TOML, extra_plugins=[TEST_AUTH_PLUGIN]) as api:
        for name in (PUBLIC, PRIVATE):
            token = (await get_token(api, f"repository:{name}:pull,push"))["token"]
            assert (await push(api, token, name)).status == 201
        yield api


async def anonymous_token(api: Api, *scopes: str) -> tuple[int, Any]:
    query = [("service", "angos"), *(("scope", s) for s in scopes)]
    resp = await api.get("/token", params=query)
    return resp.status, (await resp.json(), resp.headers)


async def test_docker_before_login_pulls_a_public_repository(api: Api) -> None:
    # docker: GET /v2/ -> 401 Bearer -> GET /token with no credentials -> pull with it.
    base = await api.get("/v2/")
    assert base.status == 401 and challenge_params(base)["realm"].endswith("/token")
    status, (body, headers) = await anonymous_token(api, f"repository:{PUBLIC}:pull")
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    assert body["scope"] == f"repository:{PUBLIC}:pull"
    assert "refresh_token" not in body
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sub"] == ""
    token = body["token"]
    manifest = await api.get(f"/v2/{PUBLIC}/manifests/v1", headers=bearer(token))
    assert manifest.status == 200
    assert (await api.get(f"/v2/{PUBLIC}/tags/list", headers=bearer(token))).status == 200


async def test_an_anonymous_token_does_no_more_than_an_anonymous_request(api: Api) -> None:
    status, (body, _) = await anonymous_token(api, f"repository:{PUBLIC}:pull")
    assert status == 200
    token = body["token"]
    refused = await push(api, token, PUBLIC, tag="v2")
    assert refused.status == 401
    assert challenge_params(refused)["scope"].startswith(f"repository:{PUBLIC}:")
    delete = await api.request("DELETE", f"/v2/{PUBLIC}/manifests/v1", headers=bearer(token))
    assert delete.status == 401
    for path in (f"/v2/{PRIVATE}/manifests/v1", f"/v2/{PRIVATE}/tags/list", "/v2/_catalog"):
        resp = await api.get(path, headers=bearer(token))
        assert resp.status == 401, path
    # Still anonymous to the policy: get-api-version is for identities only.
    assert (await api.get("/v2/", headers=bearer(token))).status == 401
    assert (await api.get(f"/v2/{PUBLIC}/manifests/v1")).status == 200  # nor less


@pytest.mark.parametrize(
    "scopes",
    [
        [f"repository:{PRIVATE}:pull"],
        [f"repository:{PUBLIC}:push"],
        [f"repository:{PUBLIC}:delete"],
        [f"repository:{PUBLIC}:pull,push"],
        [f"repository:{PUBLIC}:*"],
        [f"repository:{PUBLIC}:pull", f"repository:{PRIVATE}:pull"],
        ["registry:catalog:*"],
        [],
    ],
    ids=[
        "private-pull",
        "public-push",
        "public-delete",
        "public-pull-push",
        "public-all",
        "public-and-private-pull",
        "catalog",
        "no-scope",
    ],
)
async def test_anything_anyone_may_not_do_gets_the_basic_challenge(
    api: Api, scopes: list[str]
) -> None:
    status, (body, headers) = await anonymous_token(api, *scopes)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="angos"'
    assert "token" not in body


async def test_a_forged_anonymous_token_is_refused(api: Api) -> None:
    now = int(time.time())
    forged = jwt.encode(
        {
            "iss": ISSUER,
            "sub": "",
            "aud": "angos",
            "exp": now + 300,
            "nbf": now,
            "iat": now,
            "angos": {"username": "", "provider": "", "method": "anonymous", "claims": {}},
            "access": [{"type": "repository", "name": PRIVATE, "actions": ["pull"]}],
        },
        base64.b64decode(SECRET)[::-1],
        algorithm="HS256",
        headers={"typ": ACCESS_TYPE},
    )
    for name in (PRIVATE, PUBLIC):  # refused outright, not taken as anonymous
        resp = await api.get(f"/v2/{name}/manifests/v1", headers=bearer(forged))
        assert resp.status == 401, name
        assert forged not in await resp.text()


async def test_anonymous_tokens_are_not_failures_for_the_failure_limit(api: Api) -> None:
    _, (body, _) = await anonymous_token(api, f"repository:{PUBLIC}:pull")
    for _ in range(10):  # more than max_failures = 3
        resp = await api.get(f"/v2/{PUBLIC}/manifests/v1", headers=bearer(body["token"]))
        assert resp.status == 200
    # The address is not locked out: alice still logs in.
    assert (await api.get("/token", params={"service": "angos"}, headers=basic())).status == 200
    metrics = await (await api.get("/metrics", headers=basic())).text()
    line = 'angos_auth_attempts_total{method="bearer",result="anonymous"}'
    assert any(
        row.startswith(line) and float(row.split()[-1]) >= 10 for row in metrics.splitlines()
    )
