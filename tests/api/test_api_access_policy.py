"""Access policies over HTTP, with the test authenticators (tests/support/auth.py): a denied
anonymous request gets 401 with the challenge, a denied identity 403 DENIED, the probes and
public pulls follow the policy, and a mount from a repository the caller may not pull falls
back to a plain upload."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from angos_core.http.app import make_app_from_toml
from angos_core.testing.api import Api, digest_of, error_code, fs_toml, open_api
from tests.support.auth import TEST_AUTH_PLUGIN

USERS = {"admin": "admin-password", "reader": "reader-password", "pusher": "pusher-password"}
CONFIG = "".join(f'[auth.static.{user}]\npassword = "{pw}"\n' for user, pw in USERS.items())
CONFIG += """
[global.access_policy]
default = "deny"
rules = [
  "request.action in ['healthz', 'readyz']",
  "identity.username != null && request.action == 'get-api-version'",
  "identity.username == 'admin'",
  '''has(request.namespace) && request.namespace.startsWith('public/') &&
     request.action in ['get-manifest', 'get-blob', 'list-tags']''',
  "identity.username == 'reader' && request.action in ['get-manifest', 'get-blob', 'list-tags']",
  '''identity.username == 'pusher' &&
     has(request.namespace) && request.namespace.startsWith('drop/')''',
]
"""


def basic(user: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Api]:
    async with open_api(tmp_path, CONFIG, [TEST_AUTH_PLUGIN], headers=basic("admin")) as api:
        yield api


@pytest.fixture
async def as_user(admin: Api) -> AsyncIterator[dict[str | None, aiohttp.ClientSession]]:
    """A client of the same server per user (None: anonymous)."""
    base = admin.client.make_url("/")
    sessions: dict[str | None, aiohttp.ClientSession] = {None: aiohttp.ClientSession(base_url=base)}
    for user in ("reader", "pusher"):
        sessions[user] = aiohttp.ClientSession(base_url=base, headers=basic(user))
    try:
        yield sessions
    finally:
        for session in sessions.values():
            await session.close()


async def test_anonymous_pulls_public_and_gets_the_challenge_elsewhere(
    admin: Api, as_user: dict[str | None, aiohttp.ClientSession]
) -> None:
    await admin.push_image("public/app", "v1")
    await admin.push_image("team/app", "v1")
    anonymous = as_user[None]
    resp = await anonymous.get("/v2/public/app/manifests/v1")
    assert resp.status == 200
    for path in ("/v2/team/app/manifests/v1", "/v2/", "/v2/_catalog"):
        resp = await anonymous.get(path)
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="angos"'
        assert await error_code(resp) == "UNAUTHORIZED"
    resp = await anonymous.post("/v2/public/app/blobs/uploads/")
    assert resp.status == 401
    assert (await anonymous.get("/healthz")).status == 200
    assert (await anonymous.get("/metrics")).status == 401  # the policy allows it to admin
    assert (await admin.get("/metrics")).status == 200


async def test_an_identity_the_policy_denies_gets_403(
    admin: Api, as_user: dict[str | None, aiohttp.ClientSession]
) -> None:
    digest, _ = await admin.push_image("team/app", "v1")
    reader = as_user["reader"]
    assert (await reader.get("/v2/team/app/manifests/v1")).status == 200
    assert (await reader.get("/v2/team/app/tags/list")).status == 200
    for method, path in [
        ("POST", "/v2/team/app/blobs/uploads/"),
        ("PUT", "/v2/team/app/manifests/v2"),
        ("DELETE", f"/v2/team/app/manifests/{digest}"),
        ("GET", "/v2/_catalog"),
    ]:
        resp = await reader.request(method, path, data=b"{}" if method == "PUT" else None)
        assert resp.status == 403, (method, path)
        assert await error_code(resp) == "DENIED"
        assert "WWW-Authenticate" not in resp.headers
    # Nothing of the refused requests reached the registry.
    assert (await admin.get("/v2/team/app/manifests/v2")).status == 404
    assert (await admin.get(f"/v2/team/app/manifests/{digest}")).status == 200


async def test_a_mount_needs_pull_on_from(
    admin: Api, as_user: dict[str | None, aiohttp.ClientSession]
) -> None:
    layer = b"a layer both repositories could share"
    digest = digest_of(layer)
    await admin.push_blob("team/secret", layer)
    await admin.push_blob("drop/source", layer)
    pusher = as_user["pusher"]
    # May not pull team/secret: a plain upload session, nothing said about the blob.
    resp = await pusher.post(f"/v2/drop/app/blobs/uploads/?mount={digest}&from=team/secret")
    assert resp.status == 202
    assert (await pusher.head(f"/v2/drop/app/blobs/{digest}")).status == 404
    # May pull drop/source: mounted.
    resp = await pusher.post(f"/v2/drop/app/blobs/uploads/?mount={digest}&from=drop/source")
    assert resp.status == 201
    assert (await pusher.head(f"/v2/drop/app/blobs/{digest}")).status == 200
    # And may not push outside drop/.
    resp = await pusher.post(f"/v2/team/app/blobs/uploads/?mount={digest}&from=drop/source")
    assert resp.status == 403


async def test_a_policy_without_authenticators_refuses_with_403(tmp_path: Path) -> None:
    policy = """
[global.access_policy]
default = "allow"
rules = ["request.action.startsWith('delete-')"]
"""
    async with open_api(tmp_path, policy) as api:
        digest, _ = await api.push_image("team/app", "v1")
        resp = await api.request("DELETE", f"/v2/team/app/manifests/{digest}")
        assert resp.status == 403
        assert await error_code(resp) == "DENIED"
        assert (await api.get("/v2/team/app/manifests/v1")).status == 200


async def test_the_catalog_shows_what_the_caller_may_pull(tmp_path: Path) -> None:
    # viewer may list the catalog, and pull only public/ (the public rule).
    config = CONFIG.replace(
        "[global.access_policy]",
        '[auth.static.viewer]\npassword = "viewer-password"\n\n[global.access_policy]',
    ).replace(
        "  \"identity.username == 'admin'\",\n",
        "  \"identity.username == 'admin'\",\n"
        "  \"identity.username == 'viewer' && request.action == 'list-catalog'\",\n",
    )
    viewer = {"Authorization": "Basic " + base64.b64encode(b"viewer:viewer-password").decode()}
    async with open_api(tmp_path, config, [TEST_AUTH_PLUGIN], headers=basic("admin")) as admin:
        for name in ("drop/a", "public/b", "public/c", "team/d"):
            await admin.push_image(name, "v1")
        resp = await admin.get("/v2/_catalog")
        assert (await resp.json())["repositories"] == ["drop/a", "public/b", "public/c", "team/d"]
        url = admin.client.make_url("/")
        async with aiohttp.ClientSession(base_url=url, headers=viewer) as session:
            resp = await session.get("/v2/_catalog")
            assert resp.status == 200
            assert (await resp.json())["repositories"] == ["public/b", "public/c"]
            # Pages follow the names read, shown or not.
            resp = await session.get("/v2/_catalog?n=1")
            assert (await resp.json())["repositories"] == []
            assert "last=drop%2Fa" in resp.headers["Link"]
            assert (await session.get("/v2/_catalog?n=1&last=drop/a")).status == 200
        async with aiohttp.ClientSession(base_url=url, headers=basic("reader")) as reader:
            assert (await reader.get("/v2/_catalog")).status == 403


async def test_a_route_that_is_no_action_is_denied(tmp_path: Path) -> None:
    policy = '[global.access_policy]\ndefault = "allow"\nrules = ["false"]\n'
    app = make_app_from_toml(fs_toml(tmp_path, policy))

    async def extension(request: web.Request) -> web.Response:
        raise AssertionError("a route no action names was reached")

    app.router.add_get("/v2/_extension", extension, name="extension")  # as a plugin's
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/v2/_extension")).status == 403
        assert (await client.get("/v2/")).status == 200
        assert (await client.get("/nonexistent")).status == 404
